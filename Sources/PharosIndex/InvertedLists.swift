import Foundation
import PharosKernels

/// In-memory inverted lists in manually managed buffers, so that scans can hold plain
/// pointers into them (`InvertedListView`) without copying.
///
/// Each entry has a 64-bit id, a PQ code in the list's `CodeLayout` and optional refine code;
/// entries can be marked deleted (a bitmap per list) but are never moved.
public final class InvertedLists: InvertedListSource, @unchecked Sendable {
    // @unchecked: the owner serialises mutation against scans with its own lock.

    /// One list's buffers.
    private struct List {
        var ids = GrowableBuffer<Int64>()
        var codes = GrowableBuffer<UInt8>()
        var refine = GrowableBuffer<UInt8>()
        var deleted = GrowableBuffer<UInt64>()
    }

    /// The code layout of every list.
    public let layout: CodeLayout
    /// Number of lists.
    public let listCount: Int
    // A raw allocation rather than an array property: scans read it on every list they visit,
    // and a class's array property pays a dynamic exclusivity check on each access.
    private let lists: UnsafeMutablePointer<List>
    /// Entries in all lists, deleted ones included.
    public private(set) var count = 0
    /// Entries marked deleted.
    public private(set) var deletedCount = 0

    /// `lists` empty lists.
    public init(lists: Int, layout: CodeLayout) {
        self.layout = layout
        listCount = lists
        self.lists = .allocate(capacity: Swift.max(1, lists))
        self.lists.initialize(repeating: List(), count: lists)
    }

    deinit {
        for i in 0..<listCount {
            lists[i].ids.free(); lists[i].codes.free(); lists[i].refine.free(); lists[i].deleted.free()
        }
        lists.deinitialize(count: listCount)
        lists.deallocate()
    }

    /// Entries of list `list`.
    public func count(ofList list: Int) -> Int { lists[list].ids.count }

    /// Appends an entry to `list` and returns its offset in the list.
    @discardableResult
    public func append(list: Int, id: Int64, code: UnsafePointer<UInt8>, refineCode: UnsafePointer<UInt8>?) -> Int {
        let l = lists + list
        let position = l.pointee.ids.count
        l.pointee.ids.append(id)
        let needed = layout.codeBytes(count: position + 1)
        if needed > l.pointee.codes.count { l.pointee.codes.appendZeros(needed - l.pointee.codes.count) }
        layout.store(code, at: position, in: l.pointee.codes.base!)
        if layout.refineBytes > 0, let refineCode {
            l.pointee.refine.append(contentsOf: refineCode, count: layout.refineBytes)
        }
        count += 1
        return position
    }

    /// The id of entry `offset` of `list`.
    public func id(list: Int, offset: Int) -> Int64 { lists[list].ids.base![offset] }

    /// Calls `body` with the ids of `list`, in list order, valid only during the call.
    public func withIDs<R>(ofList list: Int, _ body: (UnsafeBufferPointer<Int64>) throws -> R) rethrows -> R {
        try body(lists[list].ids.buffer)
    }

    /// All ids of `list`, in list order (this module only: the buffer is valid while the list is unchanged).
    func ids(ofList list: Int) -> UnsafeBufferPointer<Int64> { lists[list].ids.buffer }

    /// The code area of `list` (`layout.codeBytes(count:)` bytes; this module only).
    func codes(ofList list: Int) -> UnsafeBufferPointer<UInt8> { lists[list].codes.buffer }

    /// The refine codes of `list` (this module only).
    func refineCodes(ofList list: Int) -> UnsafeBufferPointer<UInt8> { lists[list].refine.buffer }

    /// Whether entry `offset` of `list` is marked deleted.
    public func isDeleted(list: Int, offset: Int) -> Bool {
        let words = lists[list].deleted
        guard offset >> 6 < words.count else { return false }
        return words.base![offset >> 6] >> UInt64(offset & 63) & 1 == 1
    }

    /// Marks entry `offset` of `list` deleted; returns false if it already was.
    @discardableResult
    public func markDeleted(list: Int, offset: Int) -> Bool {
        let l = lists + list
        precondition(offset < l.pointee.ids.count, "offset \(offset) beyond list \(list)")
        let wordsNeeded = (l.pointee.ids.count + 63) / 64
        if l.pointee.deleted.count < wordsNeeded { l.pointee.deleted.appendZeros(wordsNeeded - l.pointee.deleted.count) }
        let word = l.pointee.deleted.base! + (offset >> 6)
        let bit = UInt64(1) << UInt64(offset & 63)
        guard word.pointee & bit == 0 else { return false }
        word.pointee |= bit
        deletedCount += 1
        return true
    }

    /// Replaces list `list` wholesale (used when loading an index file).
    func replace(list: Int, ids newIDs: [Int64], codes newCodes: [UInt8], refine newRefine: [UInt8]) {
        let l = lists + list
        count += newIDs.count - l.pointee.ids.count
        l.pointee.ids.removeAll(); l.pointee.codes.removeAll(); l.pointee.refine.removeAll(); l.pointee.deleted.removeAll()
        newIDs.withUnsafeBufferPointer { if let b = $0.baseAddress { l.pointee.ids.append(contentsOf: b, count: $0.count) } }
        newCodes.withUnsafeBufferPointer { if let b = $0.baseAddress { l.pointee.codes.append(contentsOf: b, count: $0.count) } }
        newRefine.withUnsafeBufferPointer { if let b = $0.baseAddress { l.pointee.refine.append(contentsOf: b, count: $0.count) } }
    }

    public func withList<R>(_ list: Int, _ body: (InvertedListView) throws -> R) rethrows -> R {
        try body(view(ofList: list))
    }

    public func entryID(list: Int, offset: Int) -> Int64 { id(list: list, offset: offset) }

    public func entryCount(ofList list: Int) -> Int { count(ofList: list) }

    /// The current view of list `list` (for this module's scans and tests; others use `withList`).
    func view(ofList list: Int) -> InvertedListView {
        let l = lists + list
        let n = l.pointee.ids.count
        guard n > 0 else { return .empty }
        return InvertedListView(count: n, codes: UnsafePointer(l.pointee.codes.base),
                                refine: layout.refineBytes > 0 ? UnsafePointer(l.pointee.refine.base) : nil,
                                deleted: l.pointee.deleted.count > 0 ? UnsafePointer(l.pointee.deleted.base) : nil,
                                deletedBits: l.pointee.deleted.count * 64)
    }
}

/// A malloc'd array that grows by doubling; its owner frees it explicitly.
struct GrowableBuffer<Element: BitwiseCopyable> {
    private(set) var base: UnsafeMutablePointer<Element>?
    private(set) var count = 0
    private var capacity = 0

    var buffer: UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: base, count: count) }

    private mutating func reserve(_ needed: Int) {
        guard needed > capacity else { return }
        let newCapacity = Swift.max(needed, capacity * 2, 16)
        let raw = realloc(base, newCapacity * MemoryLayout<Element>.stride)
        precondition(raw != nil, "out of memory growing a list to \(newCapacity) entries")
        base = raw!.bindMemory(to: Element.self, capacity: newCapacity)
        capacity = newCapacity
    }

    mutating func append(_ element: Element) {
        reserve(count + 1)
        (base! + count).initialize(to: element)
        count += 1
    }

    mutating func append(contentsOf source: UnsafePointer<Element>, count n: Int) {
        guard n > 0 else { return }
        reserve(count + n)
        (base! + count).initialize(from: source, count: n)
        count += n
    }

    mutating func removeAll() { count = 0 }

    mutating func free() {
        Foundation.free(base)
        base = nil
        count = 0
        capacity = 0
    }
}

extension GrowableBuffer where Element: FixedWidthInteger & BitwiseCopyable {
    mutating func appendZeros(_ n: Int) {
        guard n > 0 else { return }
        reserve(count + n)
        (base! + count).initialize(repeating: 0, count: n)
        count += n
    }
}

import Foundation
import PharosIndex
import PharosRouting

/// The in-memory segment that takes new writes: searchable at once, durable through the
/// log, sealed into a segment file once large enough.
///
/// Entries get ordinals in arrival order; the inverted lists store ordinals as their ids.
final class GrowingSegment: EntrySource, @unchecked Sendable {
    // @unchecked: mutated only under the shard's write lock; scans hold its read lock.

    let lists: InvertedLists
    private(set) var keys: [String] = []
    private(set) var metadata: [[UInt8]] = []
    /// (list, offset) of each ordinal.
    private(set) var locations: [(list: Int32, offset: Int32)] = []
    /// Key hash of each ordinal: its bucket for any bucket count (`KeyHash`).
    private(set) var hashes: [UInt64] = []
    /// Exclusion bitmaps per list for `exclusionSet`, with the entries they cover.
    private let exclusionLock = NSLock()
    private var exclusionSet: BucketSet?
    private var exclusionLists: [Int: (words: BitmapWords, covered: Int)] = [:]
    /// Live ordinal of each key.
    private var live: [String: Int32] = [:]

    init(lists: Int, layout: CodeLayout) {
        self.lists = InvertedLists(lists: lists, layout: layout)
    }

    /// Entries, deleted ones included.
    var count: Int { keys.count }
    /// Entries not deleted.
    var liveCount: Int { live.count }
    /// Bytes held, roughly (codes, keys, metadata), for the seal threshold.
    private(set) var approximateBytes = 0

    func withList<R>(_ list: Int, _ body: (InvertedListView) throws -> R) rethrows -> R { try lists.withList(list, body) }

    /// An entry's identity here is its ordinal (arrival order), which the lists store as its id.
    func entryID(list: Int, offset: Int) -> Int64 { lists.id(list: list, offset: offset) }

    func entryCount(ofList list: Int) -> Int { lists.count(ofList: list) }

    func key(ofEntry entry: Int64) throws -> String { keys[Int(entry)] }

    func metadata(ofEntry entry: Int64) throws -> [UInt8] { metadata[Int(entry)] }

    func location(ofKey key: String) -> EntryLocation? {
        guard let ordinal = live[key] else { return nil }
        let (list, offset) = locations[Int(ordinal)]
        return EntryLocation(entry: Int64(ordinal), list: Int(list), offset: Int(offset))
    }

    func location(ofEntry entry: Int64) throws -> EntryLocation {
        guard entry >= 0, entry < Int64(locations.count) else {
            throw StorageError.invalidInput(field: "entry", problem: "\(entry) beyond \(locations.count) entries in memory")
        }
        let (list, offset) = locations[Int(entry)]
        return EntryLocation(entry: entry, list: Int(list), offset: Int(offset))
    }

    /// Each list's exclusion bitmap for the bucket set searched last is kept and extended over
    /// the entries appended since (lists only grow); a new set starts again. Bitmaps are
    /// immutable once published: an extension makes a new one, so a search holding the old
    /// one is never disturbed. (Building it on every visit cost a fifth of a filtered search.)
    func withList<R>(_ list: Int, keeping buckets: BucketSet, _ body: (InvertedListView) throws -> R) throws -> R {
        try lists.withList(list) { view in
            guard view.count > 0, !buckets.isFull else { return try body(view) }
            let excluded = exclusion(ofList: list, count: view.count, buckets: buckets)
            return try withExtendedLifetime(excluded) { try body(view.excluding(UnsafePointer(excluded.words), bits: excluded.bits, base: 0)) }
        }
    }

    private func exclusion(ofList list: Int, count: Int, buckets: BucketSet) -> BitmapWords {
        let kept: (words: BitmapWords, covered: Int)? = exclusionLock.withLock {
            if exclusionSet != buckets {
                exclusionSet = buckets
                exclusionLists = [:]
            }
            return exclusionLists[list]
        }
        if let kept, kept.covered >= count { return kept.words }
        let words = BitmapWords(bits: count)
        let start = kept?.covered ?? 0
        if let kept { words.words.update(from: kept.words.words, count: Swift.min(kept.words.count, words.count)) }
        lists.withIDs(ofList: list) { ids in
            for offset in start..<count where !buckets.contains(hash: hashes[Int(ids[offset])]) { words.set(offset) }
        }
        exclusionLock.withLock { if exclusionSet == buckets { exclusionLists[list] = (words, count) } }
        return words
    }

    func liveEntries(in buckets: BucketSet) -> [(entry: Int64, hash: UInt64)] {
        // Over the arrays (the hash first, the deletion bit only for the buckets' entries),
        // not the key dictionary: reads of a bucket call this once per page.
        var entries: [(entry: Int64, hash: UInt64)] = []
        for (ordinal, hash) in hashes.enumerated() where buckets.contains(hash: hash) && !isDeleted(ordinal) {
            entries.append((Int64(ordinal), hash))
        }
        return entries
    }

    /// The live ordinal of `key`.
    func find(_ key: String) -> Int? { live[key].map(Int.init) }

    /// Adds an entry (the caller has already deleted any older version of `key`).
    func add(key: String, list: Int, code: UnsafePointer<UInt8>, refine: UnsafePointer<UInt8>?, metadata value: [UInt8]) {
        precondition(live[key] == nil, "key added twice without a delete")
        let ordinal = Int32(keys.count)
        let offset = lists.append(list: list, id: Int64(ordinal), code: code, refineCode: refine)
        keys.append(key)
        metadata.append(value)
        locations.append((Int32(list), Int32(offset)))
        hashes.append(KeyHash.of(key))
        live[key] = ordinal
        approximateBytes += key.utf8.count + value.count + lists.layout.subquantizers + lists.layout.refineBytes + 48
    }

    /// Deletes entry `ordinal`; returns false when it already was deleted.
    @discardableResult
    func delete(_ ordinal: Int) -> Bool {
        let (l, o) = locations[ordinal]
        guard lists.markDeleted(list: Int(l), offset: Int(o)) else { return false }
        live[keys[ordinal]] = nil
        return true
    }

    func isDeleted(_ ordinal: Int) -> Bool {
        let (l, o) = locations[ordinal]
        return lists.isDeleted(list: Int(l), offset: Int(o))
    }

    /// Ordinals deleted right now (a snapshot taken when sealing starts).
    func deletedOrdinals() -> Set<Int> {
        Set((0..<keys.count).filter { isDeleted($0) })
    }

    /// The entries of `list` for a segment file, skipping `skip`; their ordinals go to `ordinals`.
    func content(ofList list: Int, skipping skip: Set<Int>, ordinals: inout [Int]) -> SegmentWriter.ListContent {
        var content = SegmentWriter.ListContent()
        let layout = lists.layout, m = layout.subquantizers, r = layout.refineBytes
        var code = [UInt8](repeating: 0, count: m)
        lists.withList(list) { view in
            lists.withIDs(ofList: list) { ids in
                for (offset, id) in ids.enumerated() where !skip.contains(Int(id)) {
                    code.withUnsafeMutableBufferPointer { layout.load(at: offset, from: view.codes!, into: $0.baseAddress!) }
                    content.codes += code
                    if r > 0 { content.refine += UnsafeBufferPointer(start: view.refine! + offset * r, count: r) }
                    content.keys.append(keys[Int(id)])
                    content.metadata.append(metadata[Int(id)])
                    ordinals.append(Int(id))
                }
            }
        }
        return content
    }
}

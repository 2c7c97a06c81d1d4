#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
import PharosIndex
import PharosKernels
import PharosRouting
import PharosVectors

/// An immutable segment file, mapped read-only: opening reads the header only; each block's
/// checksum is verified the first time the block is used (and all of them by `verify`).
///
/// Entries are numbered ("positions") in list order, so a list is a contiguous run of
/// positions and the deletion bitmap doubles as the scan kernels' skip mask. Deletions made
/// after sealing live in `deletions`, never in the file.
final class Segment: EntrySource, @unchecked Sendable {
    // @unchecked: the mapping is read-only; verification flags are atomics (C helpers);
    // caches are guarded by `cacheLock`; `deletions` changes only under
    // the shard's write lock while scans hold its read lock.

    let path: String
    let header: SegmentHeader
    let deletions: DeletionBitmap
    /// Set once a newer manifest no longer names this segment: the file is unlinked when
    /// the last reference (a running search's snapshot) goes away.
    var isObsolete: Bool {
        get { cacheLock.withLock { obsolete } }
        set { cacheLock.withLock { obsolete = newValue } }
    }

    private let base: UnsafeRawPointer
    private let mappedBytes: Int
    /// One flag per list, then per key-index block: 1 once its CRC was checked.
    private let verified: UnsafeMutablePointer<UInt8>
    private let flagCount: Int
    private let cacheLock = NSLock()
    /// Decompressed key blocks, published once each and kept for the segment's life (about
    /// 12 bytes per key): searches resolve result keys here without locks.
    private let keySlots: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private var obsolete = false
    /// Exclusion bitmaps (by position) of the bucket sets searches named lately: a node's
    /// bucket set changes only with the cluster map, so a few cover every search.
    private var exclusions: [(buckets: BucketSet, bitmap: BitmapWords)] = []
    /// The metadata block read last.
    private var lastMetadata: (index: Int, block: BlobBlock)?

    var id: UInt64 { header.segmentID }
    var entries: Int { header.entries }
    var liveEntries: Int { header.entries - deletions.deletedCount }

    static func baseName(_ id: UInt64) -> String { String(format: "%016llx", id) }
    static func fileName(_ id: UInt64) -> String { baseName(id) + ".seg" }

    /// Maps and checks the header of `path`, which must be segment `id` encoded with
    /// `trainedVersion` in `layout` with `lists` lists.
    init(path: String, id: UInt64, trainedVersion: UInt64, layout: CodeLayout, lists: Int, deletions: DeletionBitmap?) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError.io(path: path, operation: "open segment", reason: FileIO.errnoText()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StorageError.io(path: path, operation: "stat", reason: FileIO.errnoText()) }
        let size = Int(st.st_size)
        guard size >= SegmentHeader.prefixBytes else {
            throw StorageError.corrupt(path: path, block: "header", problem: "file is \(size) bytes, shorter than a header: truncated")
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw StorageError.io(path: path, operation: "mmap \(size) bytes", reason: FileIO.errnoText())
        }
        base = UnsafeRawPointer(mapped)
        mappedBytes = size
        do {
            header = try SegmentHeader.parse(UnsafeRawBufferPointer(start: base, count: size), path: path)
            func mismatch(_ what: String, _ found: Any, _ expected: Any) -> StorageError {
                .corrupt(path: path, block: "header", problem: "\(what) is \(found), the manifest and trained state expect \(expected)")
            }
            guard header.segmentID == id else { throw mismatch("segment id", header.segmentID, id) }
            guard header.trainedVersion == trainedVersion else { throw mismatch("trained-state version", header.trainedVersion, trainedVersion) }
            guard header.layout == layout else { throw mismatch("code layout", header.layout, layout) }
            guard header.lists.count == lists else { throw mismatch("list count", header.lists.count, lists) }
        } catch {
            munmap(mapped, size)
            throw error
        }
        let bitmap = deletions ?? DeletionBitmap(entries: header.entries)
        precondition(bitmap.entries == header.entries, "deletion bitmap size differs from the segment")
        self.deletions = bitmap
        flagCount = header.lists.count + header.keyIndexCRCs.count
        verified = .allocate(capacity: Swift.max(1, flagCount))
        verified.initialize(repeating: 0, count: Swift.max(1, flagCount))
        keySlots = .allocate(capacity: Swift.max(1, header.keyBlocks.count))
        keySlots.initialize(repeating: nil, count: Swift.max(1, header.keyBlocks.count))
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), mappedBytes)
        verified.deallocate()
        for i in 0..<header.keyBlocks.count {
            if let p = keySlots[i] { Unmanaged<BlobBlock>.fromOpaque(p).release() }
        }
        keySlots.deallocate()
        if obsolete { unlink(path) }
    }

    // MARK: Scanning

    /// List `list` as mapped, its checksum verified on first use: a damaged list is an error
    /// here, where it is read (naming the file and the list), every time it is read.
    func withList<R>(_ list: Int, _ body: (InvertedListView) throws -> R) throws -> R {
        let l = header.lists[list]
        guard l.count > 0 else { return try body(.empty) }
        if pharos_flag_load(verified + list) == 0 { try verifyList(list) }
        return try body(InvertedListView(
            count: l.count, codes: (base + l.codesOffset).assumingMemoryBound(to: UInt8.self),
            refine: header.refineBytes > 0 ? (base + l.refineOffset).assumingMemoryBound(to: UInt8.self) : nil,
            deleted: deletions.deletedCount > 0 ? UnsafePointer(deletions.words) : nil,
            deletedBits: deletions.wordCount * 64, deletedBase: l.first))
    }

    func withList<R>(_ list: Int, keeping buckets: BucketSet, _ body: (InvertedListView) throws -> R) throws -> R {
        guard !buckets.isFull, header.lists[list].count > 0 else { return try withList(list, body) }
        let excluded = try exclusion(of: buckets)
        return try withList(list) { view in
            try withExtendedLifetime(excluded) {
                try body(view.excluding(UnsafePointer(excluded.words), bits: excluded.bits, base: header.lists[list].first))
            }
        }
    }

    /// The positions whose keys route outside `buckets`, built once from the key index (whose
    /// pairs carry each position's key hash, so no key is read) and kept for the next search.
    private func exclusion(of buckets: BucketSet) throws -> BitmapWords {
        if let kept = cacheLock.withLock({ exclusions.first { $0.buckets == buckets }?.bitmap }) { return kept }
        let bitmap = BitmapWords(bits: header.entries)
        for i in 0..<header.entries {
            let pair = try indexPair(i)
            guard pair.position < UInt64(header.entries) else {
                throw StorageError.corrupt(path: path, block: "key index", problem: "position \(pair.position) beyond \(header.entries) entries")
            }
            if !buckets.contains(hash: pair.hash) { bitmap.set(Int(pair.position)) }
        }
        cacheLock.withLock {
            exclusions.insert((buckets, bitmap), at: 0)
            if exclusions.count > 4 { exclusions.removeLast() }
        }
        return bitmap
    }

    func liveEntries(in buckets: BucketSet) throws -> [(entry: Int64, hash: UInt64)] {
        var entries: [(entry: Int64, hash: UInt64)] = []
        for i in 0..<header.entries {
            let pair = try indexPair(i)
            let p = Int(pair.position)
            guard p < header.entries else {
                throw StorageError.corrupt(path: path, block: "key index", problem: "position \(p) beyond \(header.entries) entries")
            }
            if buckets.contains(hash: pair.hash), !deletions.isDeleted(p) { entries.append((Int64(p), pair.hash)) }
        }
        return entries   // in hash order, as the key index is
    }

    /// From the key index, which is sorted by hash: a binary search to `hash`, then a scan
    /// that stops after `limit` entries of the buckets (and the ties of the last hash).
    func liveEntries(in buckets: BucketSet, fromHash hash: UInt64, limit: Int) throws -> [(entry: Int64, hash: UInt64)] {
        let n = header.entries
        var lo = 0, hi = n
        while lo < hi {
            let mid = (lo + hi) / 2
            if try indexPair(mid).hash < hash { lo = mid + 1 } else { hi = mid }
        }
        var entries: [(entry: Int64, hash: UInt64)] = []
        var i = lo
        while i < n {
            let pair = try indexPair(i)
            i += 1
            if entries.count >= limit, pair.hash != entries[entries.count - 1].hash { break }
            let p = Int(pair.position)
            guard p < n else {
                throw StorageError.corrupt(path: path, block: "key index", problem: "position \(p) beyond \(n) entries")
            }
            if buckets.contains(hash: pair.hash), !deletions.isDeleted(p) { entries.append((Int64(p), pair.hash)) }
        }
        return entries
    }

    func location(ofEntry entry: Int64) throws -> EntryLocation {
        let (list, offset) = location(of: try position(entry))
        return EntryLocation(entry: entry, list: list, offset: offset)
    }

    /// An entry's identity here is its position (lists are contiguous runs of positions).
    func entryID(list: Int, offset: Int) -> Int64 { Int64(header.lists[list].first + offset) }

    func entryCount(ofList list: Int) -> Int { header.lists[list].count }

    func key(ofEntry entry: Int64) throws -> String { try key(at: try position(entry)) }

    func metadata(ofEntry entry: Int64) throws -> [UInt8] { try metadata(at: try position(entry)) }

    func location(ofKey key: String) throws -> EntryLocation? {
        guard let p = try find(key) else { return nil }
        let (list, offset) = location(of: p)
        return EntryLocation(entry: Int64(p), list: list, offset: offset)
    }

    func position(_ entry: Int64) throws -> Int {
        guard entry >= 0, entry < Int64(header.entries) else {
            throw StorageError.corrupt(path: path, block: "entries", problem: "entry \(entry) beyond \(header.entries) entries")
        }
        return Int(entry)
    }

    private func verifyList(_ list: Int) throws {
        let l = header.lists[list]
        let codeBytes = header.layout.codeBytes(count: l.count), refineBytes = l.count * header.refineBytes
        let crc = pharos_crc32c(pharos_crc32c(0, base + l.codesOffset, codeBytes), base + l.refineOffset, refineBytes)
        guard crc == l.crc else {
            throw StorageError.corrupt(path: path, block: "list \(list)", problem: "CRC32C mismatch over its codes (stored \(l.crc), computed \(crc))")
        }
        pharos_flag_store(verified + list, 1)
    }

    // MARK: Entries

    /// The list and offset of `position`.
    func location(of position: Int) -> (list: Int, offset: Int) {
        var lo = 0, hi = header.lists.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if header.lists[mid].first <= position { lo = mid } else { hi = mid - 1 }
        }
        // Empty lists share their first with the next list: step to the one that holds it.
        while header.lists[lo].count == 0 || position >= header.lists[lo].first + header.lists[lo].count { lo += 1 }
        return (lo, position - header.lists[lo].first)
    }

    /// The key of entry `position`.
    func key(at position: Int) throws -> String {
        let index = position / StorageLimits.blobBlockEntries
        let slot = keySlots + index
        if let cached = pharos_slot_load(slot) {
            return Unmanaged<BlobBlock>.fromOpaque(cached).takeUnretainedValue().string(position % StorageLimits.blobBlockEntries)
        }
        let block = try blob(index, keys: true)
        let retained = Unmanaged.passRetained(block).toOpaque()
        if pharos_slot_publish(slot, retained) == 0 { Unmanaged<BlobBlock>.fromOpaque(retained).release() }
        return block.string(position % StorageLimits.blobBlockEntries)
    }

    /// The metadata bytes of entry `position`.
    func metadata(at position: Int) throws -> [UInt8] {
        let index = position / StorageLimits.blobBlockEntries
        // The last block read is kept: reads of a bucket's entries (moves) take them in runs.
        if let kept = cacheLock.withLock({ lastMetadata?.index == index ? lastMetadata?.block : nil }) {
            return kept.bytes(position % StorageLimits.blobBlockEntries)
        }
        let block = try blob(index, keys: false)
        cacheLock.withLock { lastMetadata = (index, block) }
        return block.bytes(position % StorageLimits.blobBlockEntries)
    }

    /// Decompresses (and on first use verifies) key or metadata block `index`.
    private func blob(_ index: Int, keys: Bool) throws -> BlobBlock {
        let block = (keys ? header.keyBlocks : header.metadataBlocks)[index]
        let name = "\(keys ? "key" : "metadata") block \(index)"
        let stored = UnsafeRawBufferPointer(start: base + block.offset, count: block.storedBytes)
        let crc = pharos_crc32c(0, stored.baseAddress, stored.count)
        guard crc == block.crc else {
            throw StorageError.corrupt(path: path, block: name, problem: "CRC32C mismatch (stored \(block.crc), computed \(crc))")
        }
        guard let raw = LZ4Block.decompress(stored, rawSize: block.rawBytes), let entries = BlobBlock(raw) else {
            throw StorageError.corrupt(path: path, block: name, problem: "does not decompress to \(block.rawBytes) bytes of entries")
        }
        let expected = Swift.min(StorageLimits.blobBlockEntries, header.entries - index * StorageLimits.blobBlockEntries)
        guard entries.count == expected else {
            throw StorageError.corrupt(path: path, block: name, problem: "holds \(entries.count) entries, expected \(expected)")
        }
        return entries
    }

    /// The position of `key` if this segment holds it and it is not deleted.
    func find(_ key: String) throws -> Int? {
        let n = header.entries
        guard n > 0 else { return nil }
        let hash = KeyHash.of(key)
        // Lower bound of `hash` in the sorted (hash, position) pairs.
        var lo = 0, hi = n
        while lo < hi {
            let mid = (lo + hi) / 2
            if try indexPair(mid).hash < hash { lo = mid + 1 } else { hi = mid }
        }
        while lo < n {
            let pair = try indexPair(lo)
            guard pair.hash == hash else { break }
            lo += 1
            let p = Int(pair.position)
            guard p < n else { throw StorageError.corrupt(path: path, block: "key index", problem: "position \(p) beyond \(n) entries") }
            if !deletions.isDeleted(p), try self.key(at: p) == key { return p }
        }
        return nil
    }

    func indexPair(_ i: Int) throws -> (hash: UInt64, position: UInt64) {
        let block = i / StorageLimits.keyIndexBlockEntries
        let flag = verified + header.lists.count + block
        if pharos_flag_load(flag) == 0 {
            let start = block * StorageLimits.keyIndexBlockEntries * 16
            let bytes = Swift.min(header.entries * 16 - start, StorageLimits.keyIndexBlockEntries * 16)
            let crc = pharos_crc32c(0, base + header.keyIndexOffset + start, bytes)
            guard crc == header.keyIndexCRCs[block] else {
                throw StorageError.corrupt(path: path, block: "key index block \(block)", problem: "CRC32C mismatch (stored \(header.keyIndexCRCs[block]), computed \(crc))")
            }
            pharos_flag_store(flag, 1)
        }
        let p = base + header.keyIndexOffset + i * 16
        return (p.loadUnaligned(as: UInt64.self).littleEndian, p.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian)
    }

    /// Appends the entries of `list` not deleted in `skip` (a bitmap snapshot) to `content`,
    /// and their positions to `positions`.
    func appendEntries(ofList list: Int, skipping skip: [UInt64], to content: inout SegmentWriter.ListContent,
                       positions: inout [Int]) throws {
        let l = header.lists[list], m = header.subquantizers, r = header.refineBytes
        var code = [UInt8](repeating: 0, count: m)
        try withList(list) { view in
            for offset in 0..<view.count {
                let p = l.first + offset
                if skip[p >> 6] >> UInt64(p & 63) & 1 == 1 { continue }
                code.withUnsafeMutableBufferPointer { header.layout.load(at: offset, from: view.codes!, into: $0.baseAddress!) }
                content.codes += code
                if r > 0 { content.refine += UnsafeBufferPointer(start: view.refine! + offset * r, count: r) }
                content.keys.append(try key(at: p))
                content.metadata.append(try metadata(at: p))
                positions.append(p)
            }
        }
    }

    /// Checks every block of the file; throws at the first damaged one.
    func verifyAll() throws {
        for l in 0..<header.lists.count where header.lists[l].count > 0 { try verifyList(l) }
        for b in 0..<header.keyBlocks.count {
            _ = try blob(b, keys: true)
            _ = try blob(b, keys: false)
        }
        var previous: UInt64 = 0
        for i in 0..<header.entries {
            let pair = try indexPair(i)
            guard pair.hash >= previous, pair.position < UInt64(header.entries) else {
                throw StorageError.corrupt(path: path, block: "key index", problem: "pair \(i) is out of order or out of range")
            }
            previous = pair.hash
        }
    }
}

import PharosIndex
import PharosRouting
import PharosVectors

/// Buckets inside the shard: searches that answer for some buckets only, and what a bucket
/// move needs (read a bucket's live entries as stored, write entries already encoded, drop
/// a bucket). An entry's bucket is its key hash modulo the cluster's bucket count; segment
/// files keep each position's hash in their key index, the growing segment beside each
/// entry, so filtering and enumerating read no keys.
extension Shard {
    /// One stored entry of a bucket, as a move carries it: codes as stored, never re-encoded.
    public struct BucketEntry: Sendable, Equatable {
        /// The key.
        public var key: String
        /// Its key hash (`KeyHash.of`), the order of a bucket read.
        public var hash: UInt64
        /// Its list, codes and metadata.
        public var stored: StoredEntry

        /// An entry.
        public init(key: String, hash: UInt64, stored: StoredEntry) {
            self.key = key
            self.hash = hash
            self.stored = stored
        }
    }

    /// `search` over the entries of `buckets` only (nil: every entry); with `probes`, each
    /// query scans those lists (a coordinator's `assign`) instead of finding its own.
    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters = SearchParameters(), buckets: BucketSet?,
                       probes: ProbeAssignment? = nil) throws -> [[Hit]] {
        try search(queries, k: k, parameters: parameters, filter: buckets.flatMap { $0.isFull ? nil : $0 }, probes: probes)
    }

    /// Up to `limit` live entries of `buckets` that come after `cursor` in (hash, key) order,
    /// in that order. A read is stateless: the next one starts after the last entry returned,
    /// so a move resumes wherever it stopped, across restarts of either side. An entry written
    /// after the read began may or may not be returned (moves send writes to both sides).
    public func bucketEntries(in buckets: BucketSet, after cursor: (hash: UInt64, key: String)?, limit: Int) throws -> [BucketEntry] {
        guard limit > 0 else { return [] }
        return try lock.withReadLock {
            // Each source gives its smallest hashes from the cursor's on, without decoding a key
            // (`want` of them and the ties of the last). A source that gave that many may hold
            // more past its last hash, so only entries up to the lowest such last hash are
            // certain to be all there; a page is taken from those, and `want` doubles until a
            // full page is certain or no source has more.
            let sources = entrySources
            var want = limit + 1
            while true {
                var candidates: [(hash: UInt64, source: Int, entry: Int64)] = []
                var bound = UInt64.max
                for (s, source) in sources.enumerated() {
                    let got = try source.liveEntries(in: buckets, fromHash: cursor?.hash ?? 0, limit: want)
                    if got.count >= want, let last = got.map(\.hash).max() { bound = Swift.min(bound, last) }
                    candidates += got.map { ($0.hash, s, $0.entry) }
                }
                var found: [(hash: UInt64, key: String, source: Int, entry: Int64)] = []
                for c in candidates where c.hash <= bound {
                    let key = try sources[c.source].key(ofEntry: c.entry)
                    if let cursor, (c.hash, key) <= (cursor.hash, cursor.key) { continue }
                    found.append((c.hash, key, c.source, c.entry))
                }
                guard found.count >= limit || bound == .max else {
                    want *= 2
                    continue
                }
                found.sort { ($0.hash, $0.key) < ($1.hash, $1.key) }
                return try found.prefix(limit).map { item in
                    let source = sources[item.source]
                    return BucketEntry(key: item.key, hash: item.hash,
                                       stored: try storedEntry(at: try source.location(ofEntry: item.entry), in: source))
                }
            }
        }
    }

    /// Live entries per bucket (`buckets` of them), for placement decisions.
    public func entriesPerBucket(buckets: Int) throws -> [Int] {
        let all = BucketSet.all(count: buckets)
        return try lock.withReadLock {
            var counts = [Int](repeating: 0, count: all.count)
            for source in entrySources {
                for (_, hash) in try source.liveEntries(in: all) { counts[Int(hash % UInt64(all.count))] += 1 }
            }
            return counts
        }
    }

    /// Refuses entries this shard's trained state cannot have made: a list out of range, code
    /// or refine lengths of another layout, 4-bit codes above 15, refine codes that decode to
    /// infinities or NaNs; and keys or metadata over the limits.
    public func validate(encoded entries: [BucketEntry]) throws {
        try Shard.validate(keys: entries.map(\.key))
        let layout = index.layout, lists = index.listCount
        for (i, e) in entries.enumerated() {
            let s = e.stored
            guard s.list >= 0, s.list < lists else {
                throw StorageError.invalidInput(field: "entry \(i) (\(e.key.debugDescription))", problem: "list \(s.list), expected 0..<\(lists)")
            }
            guard s.code.count == layout.subquantizers, s.refine.count == layout.refineBytes else {
                throw StorageError.invalidInput(field: "entry \(i) (\(e.key.debugDescription))",
                                                problem: "\(s.code.count) code and \(s.refine.count) refine bytes, the trained state makes \(layout.subquantizers) and \(layout.refineBytes)")
            }
            guard s.metadata.count <= StorageLimits.maximumMetadataBytes else {
                throw StorageError.invalidInput(field: "entry \(i) metadata", problem: "\(s.metadata.count) bytes, at most \(StorageLimits.maximumMetadataBytes)")
            }
            if layout.bits == 4, let wide = s.code.firstIndex(where: { $0 > 15 }) {
                throw StorageError.invalidInput(field: "entry \(i) code", problem: "byte \(wide) is \(s.code[wide]); 4-bit codes are 0...15")
            }
            guard index.refineCodeIsFinite(s.refine) else {
                throw StorageError.invalidInput(field: "entry \(i) refine code", problem: "decodes to an infinity or NaN")
            }
        }
    }

    /// Inserts or replaces entries already encoded with this shard's trained state (a bucket
    /// move's stream, or rows a coordinator encoded once for all copies); durable on return.
    /// Returns how many replaced a stored entry. Nothing is stored when it throws.
    @discardableResult
    public func upsert(encoded entries: [BucketEntry]) throws -> Int {
        try checkOpen()
        try validate(encoded: entries)
        let keys = entries.map(\.key)
        let batch = EncodedEntries(lists: entries.map { Int32($0.stored.list) }, codes: entries.flatMap(\.stored.code),
                                   refine: entries.flatMap(\.stored.refine), layout: index.layout)
        let record = try WriteAheadLog.prepare(.upsert(keys: keys, entries: batch, metadata: entries.map(\.stored.metadata)))
        return try commit(PreparedUpsert(record: record, count: entries.count))
    }

    /// Deletes every live entry of `buckets` (a bucket that moved away); durable on return.
    /// Returns how many were deleted.
    @discardableResult
    public func deleteEntries(in buckets: BucketSet) throws -> Int {
        // One pass: nothing writes to a bucket being dropped (the map sends its writes elsewhere).
        let keys = try lock.withReadLock {
            try entrySources.flatMap { source in try source.liveEntries(in: buckets).map { try source.key(ofEntry: $0.entry) } }
        }
        // In records of 1,024 keys: each is applied under the write lock, which searches wait for.
        var deleted = 0
        for start in stride(from: 0, to: keys.count, by: 1024) {
            deleted += try delete(keys: Array(keys[start ..< Swift.min(keys.count, start + 1024)]))
        }
        return deleted
    }

    /// The codes and metadata at `location` of `source` (caller holds the read lock).
    func storedEntry(at location: EntryLocation, in source: any EntrySource) throws -> StoredEntry {
        let layout = index.layout
        let (code, refine) = try source.withList(location.list) { view -> ([UInt8], [UInt8]) in
            var code = [UInt8](repeating: 0, count: layout.subquantizers)
            code.withUnsafeMutableBufferPointer { layout.load(at: location.offset, from: view.codes!, into: $0.baseAddress!) }
            let refine = layout.refineBytes > 0
                ? Array(UnsafeBufferPointer(start: view.refine! + location.offset * layout.refineBytes, count: layout.refineBytes)) : []
            return (code, refine)
        }
        return StoredEntry(list: location.list, code: code, refine: refine, metadata: try source.metadata(ofEntry: location.entry))
    }
}

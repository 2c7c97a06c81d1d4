import Foundation
import PharosIndex
import PharosKernels
import PharosRouting
import PharosVectors

/// Reads: search across every segment, entries and vectors by key, statistics.
extension Shard {
    /// The sources a search scans, newest first: growing, sealing, then the segment files.
    var entrySources: [any EntrySource] { [growing] + (sealing.map { [$0] } ?? []) + sealed }

    /// The `k` best entries for each query row, across all segments, deleted entries skipped.
    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters = SearchParameters()) throws -> [[Hit]] {
        try search(queries, k: k, parameters: parameters, filter: nil)
    }

    /// `search`, passing over entries outside `filter` when there is one.
    func search(_ queries: Matrix, k: Int, parameters: SearchParameters, filter: BucketSet?, probes: ProbeAssignment? = nil) throws -> [[Hit]] {
        guard queries.rows > 0 else { return [] }
        return try lock.withReadLock {
            let sources = entrySources
            let scanned: [any InvertedListSource] = filter.map { f in sources.map { BucketFilteredSource($0, buckets: f) } } ?? sources
            // A damaged list fails the search where it is read (the segment's error names the file and list).
            let result = try index.search(queries, k: k, parameters: parameters, sources: scanned, probes: probes)
            // Keys are resolved in parallel too: a key read may decompress a block.
            var hits = [[Hit]](repeating: [], count: queries.rows)
            var failures = [StorageError?](repeating: nil, count: queries.rows)
            hits.withSendablePointer { out in
                failures.withSendablePointer { failed in
                    Parallel.forEachChunk(count: queries.rows, chunkSize: 64, threads: parameters.threads) { chunk in
                        do {
                            // Keys are resolved source by source (one lookup of each source, not one per hit).
                            var keys = [String](repeating: "", count: chunk.count * k)
                            try keys.withUnsafeMutableBufferPointer { keys in
                                try result.forEachSource(in: chunk, sourceCount: sources.count) { s, positions in
                                    let source = sources[s]
                                    for i in positions { keys[i - chunk.lowerBound * k] = try source.key(ofEntry: result.result.ids[i]) }
                                }
                            }
                            for q in chunk {
                                out.pointer[q] = (q * k ..< (q + 1) * k).compactMap { i in
                                    result.sources[i] < 0 ? nil : Hit(key: keys[i - chunk.lowerBound * k], score: result.result.scores[i])
                                }
                            }
                        } catch {
                            for q in chunk { failed.pointer[q] = error as? StorageError ?? .corrupt(path: self.directory, block: "keys", problem: "\(error)") }
                        }
                    }
                }
            }
            if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
            return hits
        }
    }

    /// The stored codes and metadata of `key`, or nil when absent.
    public func entry(forKey key: String) throws -> StoredEntry? {
        try lock.withReadLock {
            // A key is live in at most one place; the newest places are the likeliest.
            for source in [growing] + (sealing.map { [$0] } ?? []) + sealed.reversed() as [any EntrySource] {
                guard let location = try source.location(ofKey: key) else { continue }
                return try storedEntry(at: location, in: source)
            }
            return nil
        }
    }

    /// The stored approximation of `key`'s vector (refine codes when present), or nil.
    public func vector(forKey key: String) throws -> [Float]? {
        guard let entry = try entry(forKey: key) else { return nil }
        return try vector(of: entry)
    }

    /// The stored approximation of `entry`'s vector (for a caller that already holds the
    /// entry: no second lookup, and no window for the key to change in between).
    public func vector(of entry: StoredEntry) throws -> [Float] {
        try index.reconstruct(list: entry.list, code: entry.code, refine: entry.refine)
    }

    /// The version (CRC32C of the `TRAINED` file) of the trained state entries are encoded with.
    public var trainedStateVersion: UInt64 { trainedVersion }

    /// The trained-state version of a `TRAINED` file's bytes.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        pharos_crc32c(0, bytes.baseAddress, bytes.count)
    }

    /// Log records written and fsyncs made since the shard was opened.
    public var logCounts: (records: Int, syncs: Int) { wal.counts }

    /// Counts describing the shard now.
    public var statistics: Statistics {
        lock.withReadLock {
            let memory = [growing, sealing].compactMap { $0 }
            return Statistics(segments: sealed.count, sealedEntries: sealed.reduce(0) { $0 + $1.entries },
                              memoryEntries: memory.reduce(0) { $0 + $1.count },
                              liveEntries: sealed.reduce(0) { $0 + $1.liveEntries } + memory.reduce(0) { $0 + $1.liveCount })
        }
    }
}

extension Shard {
    /// Bytes of log files on disk (records not yet sealed into segments, plus the header of
    /// each file): what a restart replays.
    public var logBytes: Int {
        let directory = logPath
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasSuffix(WriteAheadLog.fileSuffix) }.reduce(0) { total, name in
            var info = stat()
            return total + (stat(directory + "/" + name, &info) == 0 ? Int(info.st_size) : 0)
        }
    }

    /// Whether the compaction policy asks for a merge now (the backlog operators watch).
    public var compactionPending: Bool { compactionPlan(force: false) != nil }
}

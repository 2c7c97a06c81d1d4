#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosIndex

/// The end of a bucket move on its target: the streamed entries, held in memory while they
/// came, written as one new segment file at once, instead of entry by entry through the log,
/// the growing segment and a later seal. No write lock is held per page (searches never wait
/// for a move's pages), and the entries are written once, not three times.
extension Shard {
    /// Stores `entries` (of buckets this shard receives, encoded with its trained state, keys
    /// unique, none of them live here) as a new segment file; durable on return. Returns how
    /// many were stored. When it throws before the new segment is in place nothing is stored;
    /// when it throws after (the manifest could not be written), the entries are searchable
    /// and become durable with the next manifest written: a move that failed starts again
    /// with a drop of the buckets, so neither way leaves a key twice.
    ///
    /// Log records written before the call must never be replayed over the new segment (the
    /// drop that began the copy deleted these keys): the growing segment is sealed first, and
    /// a new log file started even when it is empty, so the manifest that names the new
    /// segment also covers every such record. Records after it (client writes, which the
    /// caller left out of `entries`) replay on top, as they should.
    @discardableResult
    public func importEntries(_ entries: [BucketEntry]) throws -> Int {
        try checkOpen()
        guard !entries.isEmpty else { return 0 }
        try validate(encoded: entries)
        guard Set(entries.map(\.key)).count == entries.count else {
            throw StorageError.invalidInput(field: "entries", problem: "a key appears twice in one import")
        }
        // Under the read lock, which searches share: an import adds keys, it never replaces one
        // (the move's drop removed the bucket's entries, and the caller left out the keys
        // clients wrote since). Keys written concurrently with the import are the caller's to
        // leave out, as a move's target does.
        try lock.withReadLock {
            for entry in entries where try isLive(entry.key) {
                throw StorageError.invalidInput(field: "entry \(entry.key.debugDescription)", problem: "is already stored here; an import adds new keys only")
            }
        }
        return try maintenanceLock.withLock {
            try sealHoldingLock(coveringLog: true)
            try makeRoomForSegment()
            let layout = index.layout
            var byList = [[Int]](repeating: [], count: index.listCount)
            for (i, entry) in entries.enumerated() { byList[entry.stored.list].append(i) }
            let id = manifest.nextSegmentID
            manifest.nextSegmentID += 1
            let path = segmentsPath + "/" + Segment.fileName(id)
            let writer = SegmentWriter(path: path, segmentID: id, trainedVersion: trainedVersion, layout: layout,
                                       listCount: index.listCount, faults: options.faults)
            _ = try writer.write(entries: entries.count) { l in
                var content = SegmentWriter.ListContent()
                let members = byList[l]
                content.codes.reserveCapacity(members.count * layout.subquantizers)
                content.refine.reserveCapacity(members.count * layout.refineBytes)
                for i in members {
                    let stored = entries[i].stored
                    content.codes += stored.code
                    content.refine += stored.refine
                    content.keys.append(entries[i].key)
                    content.metadata.append(stored.metadata)
                }
                return content
            }
            options.events?(.importSegmentWritten)
            let segment = try Segment(path: path, id: id, trainedVersion: trainedVersion, layout: layout,
                                      lists: index.listCount, deletions: nil)
            lock.withWriteLock { sealed.append(segment) }
            try persist()
            return entries.count
        }
    }

    /// Whether `key` has a live version here (caller holds the lock).
    private func isLive(_ key: String) throws -> Bool {
        if growing.find(key) != nil || sealing?.find(key) != nil { return true }
        for segment in sealed where try segment.find(key) != nil { return true }
        return false
    }

    /// Merges the smaller half of the segments when their count reached the bound the manifest
    /// and the scan labels keep (`maintenanceLock` held), whatever the compaction policy says.
    func makeRoomForSegment() throws {
        let current = lock.withReadLock { sealed }
        if current.count >= StorageLimits.maximumSegments {
            try merge(Array(current.sorted { $0.liveEntries < $1.liveEntries }.prefix(current.count / 2)))
        }
    }
}

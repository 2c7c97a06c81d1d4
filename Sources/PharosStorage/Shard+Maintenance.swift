#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosIndex

/// Sealing, compaction and manifest replacement. Each runs under `maintenanceLock`, so they
/// are serial; the shard's lock is held only to freeze and to swap, never while writing files.
extension Shard {
    /// Writes the growing segment (if it holds anything) to a segment file and makes it part
    /// of the manifest; the log files it covered are then deleted. Searches and writes go on
    /// meanwhile. After a failure (e.g. disk full) the entries stay searchable in memory and
    /// durable in the log; the next call retries.
    public func seal() throws {
        try maintenanceLock.withLock { try sealHoldingLock(coveringLog: false) }
    }

    /// `seal` with `maintenanceLock` held. With `coveringLog`, an empty growing segment is
    /// frozen too (a new log file started, no segment file written), so that the next
    /// manifest's `logStart` is past every record logged so far, deletes included (they add
    /// nothing to the growing segment, and a plain seal with nothing to write leaves them to
    /// be replayed).
    func sealHoldingLock(coveringLog: Bool) throws {
        if coveringLog, lock.withReadLock({ sealing != nil }) {
            // A seal a failure left half done goes first; then the freeze below covers the rest.
            try sealHoldingLock(coveringLog: false)
        }
        if !coveringLog, lock.withReadLock({ sealing == nil && growing.count == 0 }) { return }
        if lock.withReadLock({ sealing == nil }) {
            // Freeze: every record applied so far is in log files older than the new one.
            let newFile = try wal.rotate {
                lock.withWriteLock {
                    sealing = growing
                    sealingSkip = growing.deletedOrdinals()
                    growing = GrowingSegment(lists: index.listCount, layout: index.layout)
                }
            }
            sealingLogStart = growingLogStart
            sealingLogStartLSN = growingLogStartLSN
            growingLogStart = newFile.sequence
            growingLogStartLSN = newFile.firstLSN
            options.events?(.sealFrozen)
        }
        guard let frozen = lock.withReadLock({ sealing }) else { return }
        if frozen.count == 0 {
            // Frozen only to cover the log: nothing to write.
            lock.withWriteLock { sealing = nil }
            sealingSkip = []
            try persist()
            return
        }
        let started = DispatchTime.now().uptimeNanoseconds
        try makeRoomForSegment()
        let id = manifest.nextSegmentID
        manifest.nextSegmentID += 1
        var order: [Int] = []
        let path = segmentsPath + "/" + Segment.fileName(id)
        let writer = SegmentWriter(path: path, segmentID: id, trainedVersion: trainedVersion, layout: index.layout,
                                   listCount: index.listCount, faults: options.faults)
        _ = try writer.write(entries: frozen.count - sealingSkip.count) { l in
            frozen.content(ofList: l, skipping: sealingSkip, ordinals: &order)
        }
        options.events?(.sealSegmentWritten)
        let segment = try Segment(path: path, id: id, trainedVersion: trainedVersion, layout: index.layout,
                                  lists: index.listCount, deletions: nil)
        lock.withWriteLock {
            // Deletions that reached the frozen segment while it was being written.
            for (position, ordinal) in order.enumerated() where frozen.isDeleted(ordinal) {
                segment.deletions.delete(position)
            }
            sealed.append(segment)
            sealing = nil
        }
        sealingSkip = []
        try persist()
        options.observe?(.seal(nanoseconds: DispatchTime.now().uptimeNanoseconds &- started))
    }

    /// Merges segment files: those the policy picks (many small ones, or ones with many
    /// deletions), or all of them when `force`. Returns whether anything was merged.
    @discardableResult
    public func compact(force: Bool = false) throws -> Bool {
        try maintenanceLock.withLock {
            guard let chosen = compactionPlan(force: force) else { return false }
            try merge(chosen)
            return true
        }
    }

    /// Merges `chosen` into one new segment and persists the result (`maintenanceLock` held).
    func merge(_ chosen: [Segment]) throws {
        let started = DispatchTime.now().uptimeNanoseconds
        let snapshots = lock.withReadLock { chosen.map { $0.deletions.snapshot() } }
        let live = zip(chosen, snapshots).reduce(0) { total, pair in
            total + pair.0.entries - pair.1.reduce(0) { $0 + $1.nonzeroBitCount }
        }
        let id = manifest.nextSegmentID
        manifest.nextSegmentID += 1
        let path = segmentsPath + "/" + Segment.fileName(id)
        let writer = SegmentWriter(path: path, segmentID: id, trainedVersion: trainedVersion, layout: index.layout,
                                   listCount: index.listCount, faults: options.faults)
        // origins[i] = (source, old position) of new position i.
        var origins: [(source: Int32, position: Int32)] = []
        origins.reserveCapacity(live)
        _ = try writer.write(entries: live) { l in
            var content = SegmentWriter.ListContent()
            for (s, source) in chosen.enumerated() {
                var positions: [Int] = []
                try source.appendEntries(ofList: l, skipping: snapshots[s], to: &content, positions: &positions)
                origins += positions.map { (Int32(s), Int32($0)) }
            }
            return content
        }
        options.events?(.compactionSegmentWritten)
        let merged = try Segment(path: path, id: id, trainedVersion: trainedVersion, layout: index.layout,
                                 lists: index.listCount, deletions: nil)
        lock.withWriteLock {
            for (position, origin) in origins.enumerated() where chosen[Int(origin.source)].deletions.isDeleted(Int(origin.position)) {
                merged.deletions.delete(position)
            }
            let ids = Set(chosen.map(\.id))
            sealed = sealed.filter { !ids.contains($0.id) } + [merged]
        }
        retiredSegments += chosen
        try persist()
        options.observe?(.compaction(nanoseconds: DispatchTime.now().uptimeNanoseconds &- started))
    }

    /// The segments to merge now, or nil when the policy asks for nothing.
    func compactionPlan(force: Bool) -> [Segment]? {
        let segments = lock.withReadLock { sealed }
        if force { return segments.count > 1 || segments.contains { $0.deletions.deletedCount > 0 } ? segments : nil }
        let heavy = segments.filter {
            $0.entries > 0 && Double($0.deletions.deletedCount) >= options.compactionDeletedFraction * Double($0.entries)
        }
        var chosen = Set(heavy.map(\.id))
        if segments.count > options.compactionSegmentTrigger {
            // Size-tiered: the two smallest, then the next smallest while it is at most twice
            // what is chosen so far, so an entry is rewritten O(log n) times, not at every merge.
            let bySize = segments.sorted { $0.liveEntries < $1.liveEntries }
            var total = 0
            for (i, s) in bySize.enumerated() {
                if i >= 2 && s.liveEntries > 2 * total { break }
                chosen.insert(s.id)
                total += s.liveEntries
            }
        }
        guard !chosen.isEmpty else { return nil }
        return segments.filter { chosen.contains($0.id) }
    }

    /// Makes the in-memory segment list durable: new deletion bitmaps, then the manifest,
    /// then removal of what it no longer names (log files, old bitmaps, merged segments).
    func persist() throws {
        let (segments, snapshots) = lock.withReadLock {
            (sealed, sealed.map { $0.deletions.deletedCount > 0 ? $0.deletions.snapshot() : nil })
        }
        precondition(segments.count <= StorageLimits.maximumSegments, "\(segments.count) segments exceed the bound sealing keeps")
        var next = manifest
        let stillSealing = lock.withReadLock { sealing != nil }
        next.logStart = stillSealing ? sealingLogStart : growingLogStart
        next.logStartLSN = stillSealing ? sealingLogStartLSN : growingLogStartLSN
        let previous = Dictionary(manifest.segments.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        next.segments = []
        for (segment, words) in zip(segments, snapshots) {
            var entry = previous[segment.id]
                ?? Manifest.SegmentEntry(id: segment.id, entries: segment.entries, deletionGeneration: 0, deleted: 0)
            // Bits are only ever set, so an unchanged count means an unchanged bitmap.
            if let words, case let deleted = words.reduce(0, { $0 + $1.nonzeroBitCount }), deleted != entry.deleted {
                entry.deletionGeneration += 1
                entry.deleted = deleted
                try DeletionBitmap.write(words, segment: segment.id, entries: segment.entries,
                                         to: segmentsPath + "/" + DeletionBitmap.fileName(segment: segment.id, generation: entry.deletionGeneration),
                                         faults: options.faults)
            }
            next.segments.append(entry)
        }
        options.events?(.deletionsWritten)
        try next.write(directory: directory, faults: options.faults)
        manifest = next
        options.events?(.manifestWritten)
        for segment in retiredSegments { segment.isObsolete = true }
        retiredSegments = []
        try wal.removeFiles(before: next.logStart)
        _ = try removeUnreferencedFiles(manifest: next, keepingLogFrom: next.logStart, atOpen: false)
        options.events?(.filesRemoved)
    }

    /// Deletes files in `segments/` the manifest does not name (unfinished seals and
    /// compactions, superseded bitmaps, temporary files) and log files before `logStart`.
    /// While the shard runs (`atOpen == false`) segment files are left alone: a merged-away
    /// segment may still be mapped by a running search, and unlinks itself when released.
    func removeUnreferencedFiles(manifest: Manifest, keepingLogFrom logStart: UInt64, atOpen: Bool) throws -> [String] {
        var keep = Set<String>()
        for s in manifest.segments {
            keep.insert(Segment.fileName(s.id))
            if s.deletionGeneration > 0 { keep.insert(DeletionBitmap.fileName(segment: s.id, generation: s.deletionGeneration)) }
        }
        var removed: [String] = []
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: segmentsPath) } catch {
            throw StorageError.io(path: segmentsPath, operation: "list", reason: "\(error)")
        }
        for name in names where !keep.contains(name) {
            if !atOpen && name.hasSuffix(".seg") { continue }
            unlink(segmentsPath + "/" + name)
            removed.append(Shard.segmentDirectory + "/" + name)
        }
        for sequence in try WriteAheadLog.sequences(in: logPath) where sequence < logStart {
            unlink(WriteAheadLog.path(logPath, sequence))
            removed.append(Shard.logDirectory + "/" + String(format: "%016llx", sequence) + WriteAheadLog.fileSuffix)
        }
        return removed
    }
}

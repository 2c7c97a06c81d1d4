#if canImport(Glibc)
import Glibc
#endif
import PharosObservability
import PharosStorage

/// A shard node's series on the admin port, and what `/readyz` says of it.
public enum ShardMetrics {
    /// A storage observer feeding the fsync, seal and compaction histograms of `metrics`
    /// (`Shard.Options.observe`).
    public static func storageObserver(_ metrics: MetricsRegistry) -> @Sendable (Shard.StorageObservation) -> Void {
        let fsync = metrics.histogram("pharos_shard_log_fsync_seconds", buckets: MetricsRegistry.maintenanceBuckets,
                                      help: "Duration of one log group commit: the write and its fsync.")
        let fsyncBytes = metrics.counter("pharos_shard_log_written_bytes_total", help: "Bytes appended to the log.")
        let seal = metrics.histogram("pharos_shard_seal_seconds", buckets: MetricsRegistry.maintenanceBuckets,
                                     help: "Duration of sealing the in-memory segment into a segment file.")
        let compaction = metrics.histogram("pharos_shard_compaction_seconds", buckets: MetricsRegistry.maintenanceBuckets,
                                           help: "Duration of merging segment files.")
        return { observation in
            switch observation {
            case let .logSync(nanoseconds, bytes):
                fsync.recordNanoseconds(Int64(clamping: nanoseconds))
                fsyncBytes.increment(by: Int64(bytes))
            case let .seal(nanoseconds): seal.recordNanoseconds(Int64(clamping: nanoseconds))
            case let .compaction(nanoseconds): compaction.recordNanoseconds(Int64(clamping: nanoseconds))
            }
        }
    }

    /// Registers the gauges read from `service` at each scrape: entries, segments, log bytes,
    /// maintenance backlog and failures, the map epoch.
    public static func register(_ service: ShardService, in metrics: MetricsRegistry) {
        let live = metrics.gauge("pharos_shard_entries", labels: [("state", "live")], help: "Entries stored, by state (live, or deleted and not yet compacted away).")
        let deleted = metrics.gauge("pharos_shard_entries", labels: [("state", "deleted")], help: "Entries stored, by state (live, or deleted and not yet compacted away).")
        let unsealed = metrics.gauge("pharos_shard_unsealed_entries", help: "Entries in memory (and in the log) not yet sealed into a segment file.")
        let segments = metrics.gauge("pharos_shard_segments", help: "Sealed segment files.")
        let logBytes = metrics.gauge("pharos_shard_log_bytes", help: "Bytes of log files on disk (replayed at restart).")
        let compactionPending = metrics.gauge("pharos_shard_compaction_pending", help: "1 when the compaction policy asks for a merge now.")
        let failures = metrics.gauge("pharos_shard_maintenance_failures", help: "Seal, compaction or manifest failures since start (retried with backoff).")
        let trained = metrics.gauge("pharos_shard_trained", help: "1 when the node holds a trained state (it can store and search).")
        let epoch = metrics.gauge("pharos_shard_map_epoch", help: "The newest cluster-map epoch this node has seen.")
        let diskFree = metrics.gauge("pharos_shard_disk_available_bytes", help: "Bytes available to this process on the data directory's file system.")
        let diskSize = metrics.gauge("pharos_shard_disk_size_bytes", help: "Size of the data directory's file system.")
        let directory = service.configuration.dataDirectory
        metrics.onScrape { [weak service] in
            guard let service else { return }
            epoch.set(Double(service.mapEpoch.value))
            var fileSystem = statvfs()
            if statvfs(directory, &fileSystem) == 0 {
                diskFree.set(Double(fileSystem.f_bavail) * Double(fileSystem.f_frsize))
                diskSize.set(Double(fileSystem.f_blocks) * Double(fileSystem.f_frsize))
            }
            guard let shard = service.currentShard else {
                trained.set(0.0)
                return
            }
            trained.set(1.0)
            let statistics = shard.statistics
            live.set(Double(statistics.liveEntries))
            deleted.set(Double(statistics.sealedEntries + statistics.memoryEntries - statistics.liveEntries))
            unsealed.set(Double(statistics.memoryEntries))
            segments.set(Double(statistics.segments))
            logBytes.set(Double(shard.logBytes))
            compactionPending.set(shard.compactionPending ? 1.0 : 0.0)
            failures.set(Double(shard.maintenanceFailureCount))
        }
    }

    /// Ready when the node holds a trained state: its log was replayed at open (the service
    /// exists only after that), and it can store and search. An untrained node is alive but
    /// waits for the coordinator to push a trained state.
    public static func readiness(of service: ShardService) -> AdminServer.Readiness {
        service.currentShard == nil ? .notReady("no trained state yet (the coordinator pushes one when the collection is trained)") : .ready
    }
}

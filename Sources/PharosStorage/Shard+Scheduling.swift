import Foundation

/// Background work: seal and compaction scheduled after writes, with backoff after failures.
extension Shard {
    func scheduleMaintenanceIfNeeded() {
        guard options.automaticMaintenance else { return }
        let needed = lock.withReadLock { growing.count >= options.sealThresholdEntries || sealing != nil }
            || compactionPlan(force: false) != nil
        guard needed else { return }
        let schedule = scheduleLock.withLock { () -> Bool in
            guard !maintenanceScheduled, !isClosed else { return false }
            if let retryAt = maintenanceRetryAt, ContinuousClock.now < retryAt { return false }
            maintenanceScheduled = true
            return true
        }
        guard schedule else { return }
        maintenanceQueue.async { [self] in
            scheduleLock.withLock { maintenanceScheduled = false }
            do {
                if lock.withReadLock({ growing.count >= options.sealThresholdEntries || sealing != nil }) { try seal() }
                if compactionPlan(force: false) != nil { try compact() }
                let recovered = scheduleLock.withLock { () -> Int in
                    defer { maintenanceFailures = 0; maintenanceRetryAt = nil }
                    return maintenanceFailures
                }
                if recovered > 0 { options.log("background maintenance succeeded again after \(recovered) failed attempts") }
            } catch {
                // Each attempt rewrites a whole segment: back off instead of retrying on every
                // write, and say so once per run of failures, not once per attempt.
                let (failures, delay) = scheduleLock.withLock { () -> (Int, Duration) in
                    maintenanceFailures += 1
                    var delay = options.maintenanceRetryDelay
                    for _ in 1..<min(maintenanceFailures, 30) where delay < options.maintenanceRetryLimit { delay *= 2 }
                    delay = min(delay, options.maintenanceRetryLimit)
                    maintenanceRetryAt = ContinuousClock.now + delay
                    return (maintenanceFailures, delay)
                }
                if failures == 1 {
                    options.log("background maintenance failed: \(error). Writes go on in memory and the log; retrying after \(delay), backing off up to \(options.maintenanceRetryLimit) (further failures are not logged until it succeeds)")
                }
            }
        }
    }

    /// Background maintenance failures in a row (0 once it succeeds again).
    public var maintenanceFailureCount: Int { scheduleLock.withLock { maintenanceFailures } }
}

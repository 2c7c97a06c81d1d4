import Foundation

/// Background work: seal and compaction scheduled after writes, with backoff after failures.
extension Shard {
    func scheduleMaintenanceIfNeeded() {
        guard options.automaticMaintenance else { return }
        scheduleIdleSeal()
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

    /// Notes a write and, when no idleness check is pending, schedules one `idleSealDelay`
    /// from now.
    private func scheduleIdleSeal() {
        guard let delay = options.idleSealDelay else { return }
        let schedule = scheduleLock.withLock { () -> Bool in
            lastWriteAt = ContinuousClock.now
            guard !idleSealScheduled, !isClosed else { return false }
            idleSealScheduled = true
            return true
        }
        if schedule { checkIdle(after: delay) }
    }

    /// After `wait`, seals the growing segment if no write came for `idleSealDelay`, or waits
    /// again until that long after the latest write.
    private func checkIdle(after wait: Duration) {
        guard let delay = options.idleSealDelay else { return }
        let nanoseconds = Int(Swift.max(0, wait.components.seconds * 1_000_000_000 + wait.components.attoseconds / 1_000_000_000))
        // Weak: a closed shard must not be kept alive by a pending check.
        maintenanceQueue.asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { [weak self] in
            guard let self else { return }
            let remaining = self.scheduleLock.withLock { () -> Duration? in
                if self.isClosed { return nil }
                let idle = ContinuousClock.now - self.lastWriteAt
                if idle < delay { return delay - idle }
                self.idleSealScheduled = false
                return .zero
            }
            guard let remaining else { return }
            if remaining > .zero { return self.checkIdle(after: remaining) }
            guard self.lock.withReadLock({ self.growing.count > 0 && self.sealing == nil }) else { return }
            do { try self.seal() } catch {
                self.options.log("sealing after writes paused failed: \(error); the entries stay in memory and the log")
            }
        }
    }
}

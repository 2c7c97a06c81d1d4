import Foundation
import PharosRouting
import PharosWire

/// The buckets a node is receiving as a move's target, and the keys of them that clients wrote
/// or deleted on this node since: a streamed copy of such a key is older than the client's
/// write and is left out. Kept here, on the target, rather than in a coordinator, so that the
/// rule holds whichever coordinator a client's write came through.
///
/// Each receiving bucket belongs to one copy run (named by the coordinator that began it): a
/// page of another run (a coordinator that lost the mover role and did not know yet) is
/// refused, as is every page once a client write noted here failed to apply (the key is noted,
/// so the stream would leave it out, yet it is not stored). In memory only: a restarted node
/// receives nothing, and a move's next page is refused, so the move starts again.
final class ReceivingBuckets: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSLock()
    private var bucketCount = 0
    private struct Receiving {
        var run: String
        var written: Set<String> = []
        var failed = false
    }
    private var buckets: [Int: Receiving] = [:]

    /// Starts receiving `set` for copy run `run` (anew: keys noted before are forgotten).
    func begin(_ set: BucketSet, run: String) {
        lock.withLock {
            if bucketCount != set.count {
                bucketCount = set.count
                buckets = [:]
            }
            for b in set.members { buckets[b] = Receiving(run: run) }
        }
    }

    /// Stops receiving the buckets of `set` that run `run` receives.
    func finish(_ set: BucketSet, run: String) {
        lock.withLock {
            guard bucketCount == set.count else { return }
            for b in set.members where buckets[b]?.run == run { buckets[b] = nil }
        }
    }

    /// Notes client writes of `keys` (before they are applied).
    func noteWritten(_ keys: [String]) {
        lock.withLock {
            guard !buckets.isEmpty else { return }
            for key in keys {
                let b = KeyHash.bucket(of: key, buckets: bucketCount)
                buckets[b]?.written.insert(key)
            }
        }
    }

    /// A client write of `keys`, noted, failed to apply: their buckets' copies must start again.
    func writeFailed(_ keys: [String]) {
        lock.withLock {
            guard !buckets.isEmpty else { return }
            for key in keys { buckets[KeyHash.bucket(of: key, buckets: bucketCount)]?.failed = true }
        }
    }

    /// Runs `apply` with the entries of `page` to store (those whose keys clients have not
    /// written meanwhile), holding the lock so that no client write is noted between the
    /// choice and the store. An entry of a bucket not received by run `run`, or whose copy a
    /// failed client write spoiled, is refused.
    func filtering<R>(_ page: [MovedEntry], run: String, apply: ([MovedEntry]) throws -> R) throws -> R {
        try lock.withLock {
            var kept: [MovedEntry] = []
            kept.reserveCapacity(page.count)
            for entry in page {
                let b = KeyHash.bucket(of: entry.key, buckets: bucketCount)
                guard bucketCount > 0, let receiving = buckets[b], receiving.run == run else {
                    throw WireError(.invalidArgument, "BucketWrite: this node is not receiving the bucket of \(entry.key.debugDescription) for copy run \(run.debugDescription) (restarted, or another run began since): start the copy again")
                }
                guard !receiving.failed else {
                    throw WireError(.unavailable, "BucketWrite: a client write to the bucket of \(entry.key.debugDescription) failed here during the copy: start the copy again")
                }
                if !receiving.written.contains(entry.key) { kept.append(entry) }
            }
            return try apply(kept)
        }
    }
}

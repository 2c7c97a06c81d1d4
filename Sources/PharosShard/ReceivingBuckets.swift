import Foundation
import PharosRouting
import PharosWire

/// The buckets a node is receiving as a move's target, and the keys of them that clients wrote
/// or deleted on this node since: a streamed copy of such a key is older than the client's
/// write and is left out. Kept here, on the target, rather than in a coordinator, so that the
/// rule holds whichever coordinator a client's write came through. In memory only: a restarted
/// node receives nothing, and a move's next page is refused, so the move starts again.
final class ReceivingBuckets: @unchecked Sendable {
    // @unchecked: every field is guarded by `lock`.
    private let lock = NSLock()
    private var bucketCount = 0
    private var written: [Int: Set<String>] = [:]

    /// Starts receiving `buckets` (anew: keys noted before are forgotten).
    func begin(_ buckets: BucketSet) {
        lock.withLock {
            if bucketCount != buckets.count {
                bucketCount = buckets.count
                written = [:]
            }
            for b in buckets.members { written[b] = [] }
        }
    }

    /// Stops receiving `buckets`.
    func finish(_ buckets: BucketSet) {
        lock.withLock {
            guard bucketCount == buckets.count else { return }
            for b in buckets.members { written[b] = nil }
        }
    }

    /// Notes client writes of `keys` (before they are applied).
    func noteWritten(_ keys: [String]) {
        lock.withLock {
            guard !written.isEmpty else { return }
            for key in keys {
                let b = KeyHash.bucket(of: key, buckets: bucketCount)
                if written[b] != nil { written[b]!.insert(key) }
            }
        }
    }

    /// Runs `apply` with the entries of `page` to store (those whose keys clients have not
    /// written meanwhile), holding the lock so that no client write is noted between the
    /// choice and the store. An entry of a bucket not being received is refused.
    func filtering<R>(_ page: [MovedEntry], apply: ([MovedEntry]) throws -> R) throws -> R {
        try lock.withLock {
            var kept: [MovedEntry] = []
            kept.reserveCapacity(page.count)
            for entry in page {
                let b = KeyHash.bucket(of: entry.key, buckets: bucketCount)
                guard bucketCount > 0, let keys = written[b] else {
                    throw WireError(.invalidArgument, "BucketWrite: this node is not receiving the bucket of \(entry.key.debugDescription) (restarted since the copy began?): start the copy again")
                }
                if !keys.contains(entry.key) { kept.append(entry) }
            }
            return try apply(kept)
        }
    }
}

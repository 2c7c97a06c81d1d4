import Foundation
import PharosRouting
import PharosWire

/// The buckets a node is receiving as a move's target: the keys of them that clients wrote or
/// deleted on this node since (a streamed copy of such a key is older than the client's write
/// and is left out), and the streamed entries held until the copy's last page, when they are
/// stored at once as one segment (`Shard.importEntries`). Kept here, on the target, rather
/// than in a coordinator, so that the rule holds whichever coordinator a client's write came
/// through.
///
/// Each receiving bucket belongs to one copy run (named by the coordinator that began it): a
/// page of another run (a coordinator that lost the mover role and did not know yet) is
/// refused, as is every page once a client write noted here failed to apply (the key is noted,
/// so the stream would leave it out, yet it is not stored). In memory only: a restarted node
/// receives nothing (what it held is gone with it), and a move's next page is refused, so the
/// move starts again.
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
    /// Streamed entries not stored yet, by run, and when each run last sent a page.
    private var held: [String: [MovedEntry]] = [:]
    private var heldBytes: [String: Int] = [:]
    private var lastPage: [String: ContinuousClock.Instant] = [:]

    /// A run holding more than this stores what it holds as a segment before its last page:
    /// memory stays bounded whatever the bucket's size (64 MB: a few segments per million
    /// entries of 512-D codes).
    static let heldBytesPerRun = 64 << 20
    /// Entries of a run that sent nothing for this long are let go (its coordinator gave the
    /// copy up; a copy's pages come within the write deadline of each other).
    static let abandonedAfter: Duration = .seconds(600)

    /// Starts receiving `set` for copy run `run` (anew: keys noted and entries held before for
    /// these buckets are forgotten).
    func begin(_ set: BucketSet, run: String) {
        lock.withLock {
            if bucketCount != set.count {
                bucketCount = set.count
                buckets = [:]
                held = [:]
                heldBytes = [:]
                lastPage = [:]
            }
            for b in set.members { buckets[b] = Receiving(run: run) }
            for (other, entries) in held {
                let kept = entries.filter { !set.contains(KeyHash.bucket(of: $0.key, buckets: bucketCount)) }
                if kept.count != entries.count { keep(kept, for: other) }
            }
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

    /// Holds the entries of `page` that clients have not written meanwhile, for run `run`;
    /// returns how many. When the run then holds more than `heldBytesPerRun`, or with
    /// `finishing` (the copy's last page: receiving those buckets ends), `store` is given
    /// what the run holds (still without the keys clients wrote), under the lock, so that no
    /// client write is noted between that choice and the store. An entry of a bucket not
    /// received by run `run`, or whose copy a failed client write spoiled, refuses the page.
    /// `check` vets the page's codes once its buckets are known to be received.
    func receive(_ page: [MovedEntry], run: String, finishing: BucketSet?, check: ([MovedEntry]) throws -> Void,
                 store: ([MovedEntry]) throws -> Void) throws -> Int {
        try lock.withLock {
            let now = ContinuousClock.now
            for (other, at) in lastPage where other != run && now - at > Self.abandonedAfter { letGo(other) }
            if let finishing {
                // Even an empty last page must come from the run receiving every bucket it
                // finishes: a node restarted since (or a run let go) holds none of the copy,
                // and a copy finished there would flip the buckets to a node without them.
                guard finishing.count == bucketCount else {
                    throw WireError(.invalidArgument, "BucketWrite: this node is not receiving buckets of a \(finishing.count)-bucket map for copy run \(run.debugDescription) (restarted, or another run began since): start the copy again")
                }
                for b in finishing.members {
                    guard let receiving = buckets[b], receiving.run == run else {
                        throw WireError(.invalidArgument, "BucketWrite: this node is not receiving bucket \(b) for copy run \(run.debugDescription) (restarted, or another run began since): start the copy again")
                    }
                    guard !receiving.failed else {
                        throw WireError(.unavailable, "BucketWrite: a client write to bucket \(b) failed here during the copy: start the copy again")
                    }
                }
            }
            var kept: [MovedEntry] = []
            kept.reserveCapacity(page.count)
            for entry in page {
                let receiving = try receivingBucket(of: entry.key, run: run)
                if !receiving.written.contains(entry.key) { kept.append(entry) }
            }
            try check(page)
            if !kept.isEmpty {
                held[run, default: []].append(contentsOf: kept)
                heldBytes[run, default: 0] += Self.bytes(of: kept)
            }
            lastPage[run] = now
            if finishing != nil || (heldBytes[run] ?? 0) > Self.heldBytesPerRun {
                let entries = held[run] ?? []
                // Checked again: clients may have written some keys since their page came.
                var fresh: [MovedEntry] = []
                fresh.reserveCapacity(entries.count)
                for entry in entries where !(try receivingBucket(of: entry.key, run: run).written.contains(entry.key)) {
                    fresh.append(entry)
                }
                try store(fresh)
                keep([], for: run)
            }
            if let finishing {
                for b in finishing.members where buckets[b]?.run == run { buckets[b] = nil }
                if !buckets.values.contains(where: { $0.run == run }) { letGo(run) }
            }
            return kept.count
        }
    }

    /// The receiving state of `key`'s bucket for run `run` (lock held); throws when the bucket
    /// is not received by that run or its copy was spoiled.
    private func receivingBucket(of key: String, run: String) throws -> Receiving {
        let b = bucketCount > 0 ? KeyHash.bucket(of: key, buckets: bucketCount) : -1
        guard let receiving = buckets[b], receiving.run == run else {
            throw WireError(.invalidArgument, "BucketWrite: this node is not receiving the bucket of \(key.debugDescription) for copy run \(run.debugDescription) (restarted, or another run began since): start the copy again")
        }
        guard !receiving.failed else {
            throw WireError(.unavailable, "BucketWrite: a client write to the bucket of \(key.debugDescription) failed here during the copy: start the copy again")
        }
        return receiving
    }

    /// Replaces what run `run` holds (lock held).
    private func keep(_ entries: [MovedEntry], for run: String) {
        held[run] = entries.isEmpty ? nil : entries
        heldBytes[run] = entries.isEmpty ? nil : Self.bytes(of: entries)
    }

    /// Memory `entries` take, about.
    private static func bytes(of entries: [MovedEntry]) -> Int {
        entries.reduce(0) { $0 + $1.key.utf8.count + $1.code.count + $1.refine.count + $1.metadata.count + 64 }
    }

    /// Forgets run `run`: its held entries, and its buckets, marked failed if it still had any
    /// (lock held).
    private func letGo(_ run: String) {
        keep([], for: run)
        lastPage[run] = nil
        for (b, receiving) in buckets where receiving.run == run { buckets[b]?.failed = true }
    }
}

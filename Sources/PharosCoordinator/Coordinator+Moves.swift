import Foundation
import NIOCore
import PharosRouting
import PharosWire
import Synchronization

/// Guards one copy in progress against its own stream: keys written by clients since the
/// copy began are never overwritten by the (older) streamed version, nor a delete undone.
final class MoveGuard: Sendable {
    /// The node the bucket is copied to.
    let target: String
    /// Held while a streamed page is written to the target, while writers mark keys, and
    /// while the bucket flips.
    let gate = AsyncGate()
    /// Keys clients wrote or deleted in the bucket since the copy began.
    let written = Mutex<Set<String>>([])
    /// Client writes of the bucket sent and not yet answered (the flip waits for them).
    let pending = Mutex(0)
    /// Set when a client write did not reach the target: the copy is abandoned.
    let failed = Mutex(false)

    init(target: String) { self.target = target }
}

/// Bucket moves: the unit of every scaling operation. A move streams a bucket's live entries
/// (codes as stored) from a serving copy to the target while writes go to both, flips the
/// bucket to the target in a new epoch, then drops the source's copy once no request of the
/// old epoch is running.
extension Coordinator {
    /// Entries per streamed page.
    static let movePageEntries = 1024

    /// Marks `keys` written in every copy in progress of their buckets (before the write is
    /// sent, so a page streamed after this leaves them out).
    /// Returns the guards marked: the caller reports the write's outcome to each (`pending`,
    /// and `failed` when the target did not take it).
    func markWritten(_ keys: [String], routing: Routing) async -> [MoveGuard] {
        let copying = routing.state.moves.filter { $0.phase == .copying }
        guard !copying.isEmpty else { return [] }
        let guards = moveGuards.withLock { $0 }
        var marked: [MoveGuard] = []
        for move in copying {
            guard let moveGuard = guards[MoveKey(move)] else { continue }
            let inBucket = keys.filter { routing.bucket(of: $0) == move.bucket }
            guard !inBucket.isEmpty else { continue }
            await moveGuard.gate.run {
                moveGuard.written.withLock { $0.formUnion(inBucket) }
                moveGuard.pending.withLock { $0 += 1 }
            }
            marked.append(moveGuard)
        }
        return marked
    }

    /// Runs `move` to its end (or throws, leaving the map without it).
    func run(_ move: ClusterState.Move, rateBytesPerSecond: Double) async throws {
        let key = MoveKey(move)
        let moveGuard = MoveGuard(target: move.target)
        moveGuards.withLock { $0[key] = moveGuard }
        defer {
            moveGuards.withLock { $0[key] = nil }
            moveProgress.withLock { $0.copied[key] = nil }
        }
        let mask = BucketMask(count: routing.state.buckets, bits: BucketSet(count: routing.state.buckets, buckets: [move.bucket]).mask)
        do {
            guard !routing.state.replicas[move.bucket].contains(move.target) else {
                throw WireError(.invalidArgument, "\(move.target) already serves bucket \(move.bucket)")
            }
            // A partial copy left by an earlier attempt goes first (the target serves nothing of it).
            _ = try await call(move.target, .bucketDrop(mask), within: options.writeDeadline)
            let started = try changeMap("copy bucket \(move.bucket) to \(move.target)") { state in
                guard !state.moves.contains(where: { $0.bucket == move.bucket && $0.target == move.target }) else { return }
                guard !state.replicas[move.bucket].contains(move.target) else {
                    throw WireError(.invalidArgument, "\(move.target) already serves bucket \(move.bucket)")
                }
                state.moves.append(move)
            }
            // Writes routed before the target was added must land before the stream reads.
            guard await drain(before: started.epoch, limit: options.writeDeadline) else {
                throw WireError(.deadlineExceeded, "writes of an older map epoch still running; the copy starts again later")
            }
            let (entries, bytes) = try await stream(move, mask: mask, guard: moveGuard, rateBytesPerSecond: rateBytesPerSecond)
            // The flip holds the gate: no client write of the bucket is between its mark and
            // its answer, and every one so far reached the target.
            let flipped = try await moveGuard.gate.run { () throws -> ClusterState in
                try await waitForWrites(moveGuard)
                return try changeMap("bucket \(move.bucket) flipped to \(move.target)") { state in
                    guard state.moves.contains(where: { $0.bucket == move.bucket && $0.target == move.target && $0.phase == .copying }),
                          state.node(move.target)?.state == .active else {
                        throw WireError(.unavailable, "the copy of bucket \(move.bucket) to \(move.target) was abandoned meanwhile")
                    }
                    state.replicas[move.bucket].removeAll { $0 == move.target }
                    if let source = move.source, let at = state.replicas[move.bucket].firstIndex(of: source) {
                        state.replicas[move.bucket][at] = move.target
                    } else {
                        state.replicas[move.bucket].append(move.target)
                    }
                    if let i = state.moves.firstIndex(where: { $0.bucket == move.bucket && $0.target == move.target }) {
                        if move.source != nil { state.moves[i].phase = .dropping } else { state.moves.remove(at: i) }
                    }
                }
            }
            if let dropping = flipped.moves.first(where: { $0.bucket == move.bucket && $0.target == move.target && $0.phase == .dropping }) {
                try await finishDrop(dropping, after: flipped.epoch)
            }
            moveProgress.withLock {
                $0.done += 1
                $0.entriesMoved += entries
                $0.bytesMoved += bytes
            }
        } catch {
            // Abandon the copy: the target's partial entries serve nothing and go at the next attempt.
            _ = try? changeMap("copy of bucket \(move.bucket) to \(move.target) abandoned") { state in
                state.moves.removeAll { $0.bucket == move.bucket && $0.target == move.target && $0.phase == .copying }
            }
            moveProgress.withLock { $0.lastProblem = "bucket \(move.bucket) to \(move.target): \(error)" }
            throw error
        }
    }

    /// Waits (holding the move's gate) until every client write of the bucket marked so far
    /// was answered; throws when one did not reach the target, or they take too long.
    private func waitForWrites(_ moveGuard: MoveGuard) async throws {
        let end = ContinuousClock.now + options.writeDeadline
        while moveGuard.pending.withLock({ $0 }) > 0 {
            guard ContinuousClock.now < end else { throw WireError(.deadlineExceeded, "client writes of the bucket still running at the flip") }
            try await Task.sleep(for: .milliseconds(2))
        }
        if moveGuard.failed.withLock({ $0 }) { throw WireError(.unavailable, "a client write did not reach \(moveGuard.target)") }
    }

    /// Drops the source's copy of a flipped move once no request of an older epoch runs (a
    /// late one is refused by the source's epoch check, which the drop raises).
    func finishDrop(_ move: ClusterState.Move, after epoch: UInt64) async throws {
        _ = await drain(before: epoch, limit: options.writeDeadline)
        if let source = move.source, routing.state.node(source).map({ $0.state != .down }) ?? false {
            let mask = BucketMask(count: routing.state.buckets, bits: BucketSet(count: routing.state.buckets, buckets: [move.bucket]).mask)
            _ = try await call(source, .bucketDrop(mask), within: options.writeDeadline)
        }
        try changeMap("bucket \(move.bucket) dropped from \(move.source ?? "-")") { state in
            state.moves.removeAll { $0.bucket == move.bucket && $0.target == move.target && $0.phase == .dropping }
        }
    }

    /// Streams the bucket's live entries from a serving copy to the target, page by page,
    /// leaving out keys clients wrote meanwhile; throttled to `rateBytesPerSecond` (0: not).
    private func stream(_ move: ClusterState.Move, mask: BucketMask, guard moveGuard: MoveGuard,
                        rateBytesPerSecond: Double) async throws -> (entries: UInt64, bytes: UInt64) {
        let key = MoveKey(move)
        let start = ContinuousClock.now
        var cursor: (hash: UInt64, key: String)?
        var bytes: UInt64 = 0, entries: UInt64 = 0
        // Bounded: a bucket holds at most every key of the cluster, a page is 1,024 of them.
        for _ in 0..<(Int(UInt32.max) / Self.movePageEntries) {
            if moveGuard.failed.withLock({ $0 }) { throw WireError(.unavailable, "a client write did not reach \(move.target)") }
            let source = try readableCopy(of: move)
            let reply = try await call(source, .bucketRead(BucketReadRequest(buckets: mask, after: cursor, limit: Self.movePageEntries)),
                                       within: options.writeDeadline)
            guard case let .bucketEntries(page) = reply else { throw WireError(.internalError, "\(source) answered BucketRead with \(reply.name)") }
            if let last = page.last { cursor = (KeyHash.of(last.key), last.key) }
            let pageBytes = page.reduce(0) { $0 + $1.key.utf8.count + $1.code.count + $1.refine.count + $1.metadata.count }
            try await moveGuard.gate.run {
                let written = moveGuard.written.withLock { $0 }
                let fresh = page.filter { !written.contains($0.key) }
                if !fresh.isEmpty { _ = try await call(move.target, .bucketWrite(fresh), within: options.writeDeadline) }
            }
            bytes += UInt64(pageBytes)
            entries += UInt64(page.count)
            moveProgress.withLock { $0.copied[key] = (entries, bytes) }
            if rateBytesPerSecond > 0 {
                let due = Duration.seconds(Double(bytes) / rateBytesPerSecond)
                let elapsed = ContinuousClock.now - start
                if due > elapsed { try await Task.sleep(for: due - elapsed) }
            }
            if page.count < Self.movePageEntries { return (entries, bytes) }
        }
        throw WireError(.internalError, "bucket \(move.bucket) did not end after \(entries) entries")
    }

    /// The node a move reads from: its source while it serves, else any serving copy.
    private func readableCopy(of move: ClusterState.Move) throws -> String {
        let routing = self.routing
        if let source = move.source, routing.state.replicas[move.bucket].contains(source),
           routing.state.node(source)?.state != .down {
            return source
        }
        guard let reader = routing.readers[move.bucket].first else {
            throw WireError(.unavailable, "bucket \(move.bucket) has no serving copy to read from")
        }
        return routing.name(reader)
    }

    /// Calls node `name` (by the current routing, stamped with its epoch).
    func call(_ name: String, _ message: WireMessage, within timeout: Duration) async throws -> WireMessage {
        let routing = self.routing
        guard let index = routing.state.nodes.firstIndex(where: { $0.name == name }) else {
            throw WireError(.invalidArgument, "no node named \(name.debugDescription)")
        }
        return try await routing.links[index].call(message, timeout: timeout, epoch: routing.state.epoch)
    }
}

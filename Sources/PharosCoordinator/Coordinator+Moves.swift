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
    /// Entries per streamed page. The target holds pages and stores them as one segment at the
    /// copy's end, so a page no longer takes its write lock (when it did, pages of 4,096 made
    /// search p99 during a throttled rebalance 21.9 ms); but this coordinator decodes each page
    /// on an event loop that also merges searches, and pages of 4,096 still made it 14.5 ms
    /// against 8.5 ms with 1,024 (Benchmarks/RESULTS.md).
    static let movePageEntries = 1024

    /// Marks `keys` written in every copy in progress of their buckets (before the write is
    /// sent, so a page streamed after this leaves them out).
    /// Returns the guards marked: the caller reports the write's outcome to each (`pending`,
    /// and `failed` when the target did not take it).
    ///
    /// All the guards a write touches are taken together (in one global order) before any is
    /// marked: a write that held one move's `pending` while waiting for another's gate could
    /// wait forever on a flip that waits for it.
    func markWritten(_ keys: [String], buckets: [Int], routing: Routing) async -> [MoveGuard] {
        let copying = routing.state.moves.filter { $0.phase == .copying }
        guard !copying.isEmpty else { return [] }
        let guards = moveGuards.withLock { $0 }
        // Keys by bucket once (a move group holds up to 64 buckets, a write up to 100,000 keys).
        var keysOf: [Int: [String]] = [:]
        for (key, b) in zip(keys, buckets) { keysOf[b, default: []].append(key) }
        var touched: [ObjectIdentifier: (guard: MoveGuard, keys: [String])] = [:]
        for move in copying {
            guard let inBucket = keysOf[move.bucket], let moveGuard = guards[MoveKey(move)] else { continue }
            touched[ObjectIdentifier(moveGuard), default: (moveGuard, [])].keys += inBucket
        }
        let ordered = touched.sorted { $0.key < $1.key }.map(\.value)
        await Self.holding(ordered.map(\.guard.gate)) {
            for (moveGuard, keys) in ordered {
                moveGuard.written.withLock { $0.formUnion(keys) }
                moveGuard.pending.withLock { $0 += 1 }
            }
        }
        return ordered.map(\.guard)
    }

    /// Runs `body` holding every gate of `gates`, taken in the order given.
    private static func holding(_ gates: [AsyncGate], _ body: () -> Void) async {
        guard let first = gates.first else { return body() }
        await first.run { await holding(Array(gates.dropFirst()), body) }
    }

    /// Runs `moves` (buckets going from one source, or none, to one target) to their end as
    /// one: one drop at the target, one epoch to start, one stream over all their buckets, one
    /// epoch to flip, one drop at the source. Or throws, leaving the map without them. Moving
    /// buckets in groups keeps the per-move costs (epochs kept durably, drains, fsyncs of the
    /// drops) off each small bucket.
    func run(_ moves: [ClusterState.Move], rateBytesPerSecond: Double) async throws {
        guard let first = moves.first else { return }
        let target = first.target, source = first.source
        precondition(moves.allSatisfy { $0.target == target && $0.source == source }, "a move group shares its source and target")
        let buckets = BucketSet(count: routing.state.buckets, buckets: moves.map(\.bucket))
        let mask = BucketMask(count: buckets.count, bits: buckets.mask)
        let keys = moves.map(MoveKey.init)
        let moveGuard = MoveGuard(target: target)
        moveGuards.withLock { guards in for key in keys { guards[key] = moveGuard } }
        defer {
            moveGuards.withLock { guards in for key in keys { guards[key] = nil } }
            moveProgress.withLock { $0.copied[keys[0]] = nil }
        }
        let name = moves.count == 1 ? "bucket \(first.bucket)" : "\(moves.count) buckets (\(first.bucket)...)"
        let owner = "\(moverIdentity) \(UUID().uuidString.prefix(8))"
        let moves = moves.map { m in var m = m; m.owner = owner; return m }
        func isMine(_ m: ClusterState.Move) -> Bool { m.target == target && buckets.contains(m.bucket) }
        func isThisRun(_ m: ClusterState.Move) -> Bool { isMine(m) && m.owner == owner }
        do {
            if let served = moves.first(where: { routing.state.replicas[$0.bucket].contains(target) }) {
                throw WireError(.invalidArgument, "\(target) already serves bucket \(served.bucket)")
            }
            // Partial copies left by an earlier attempt go first (the target serves nothing of
            // them), and the target starts receiving: from then on it notes the keys clients
            // write to these buckets, through any coordinator, and keeps streamed pages off them.
            guard !routing.state.moves.contains(where: { $0.target == target && buckets.contains($0.bucket) }) else {
                throw WireError(.unavailable, "another copy of \(name) to \(target) is in the map")
            }
            guard runsMovesNow else { throw WireError(.unavailable, "this coordinator no longer runs the moves") }
            _ = try await call(target, .bucketDrop(mask, receive: true, run: owner), within: options.writeDeadline)
            let started = try await changeMap("copy \(name) to \(target)") { state in
                for move in moves where !state.moves.contains(where: { $0.bucket == move.bucket && $0.target == target }) {
                    guard !state.replicas[move.bucket].contains(target) else {
                        throw WireError(.invalidArgument, "\(target) already serves bucket \(move.bucket)")
                    }
                    state.moves.append(move)
                }
            }
            // Writes routed before the target was added must land before the stream reads.
            guard await drain(before: started.epoch, limit: options.writeDeadline) else {
                throw WireError(.deadlineExceeded, "writes of an older map epoch still running; the copy starts again later")
            }
            let (entries, bytes) = try await stream(moves, mask: mask, guard: moveGuard, rateBytesPerSecond: rateBytesPerSecond)
            // The flip holds the gate: no client write of the buckets is between its mark and
            // its answer, and every one so far reached the target.
            let flipped = try await moveGuard.gate.run { () throws -> ClusterState in
                try await waitForWrites(moveGuard)
                guard runsMovesNow else { throw WireError(.unavailable, "this coordinator no longer runs the moves") }
                return try await changeMap("\(name) flipped to \(target)") { state in
                    let copying = state.moves.filter { isThisRun($0) && $0.phase == .copying }.count
                    guard copying == moves.count, state.node(target)?.state == .active else {
                        throw WireError(.unavailable, "the copy of \(name) to \(target) was abandoned meanwhile")
                    }
                    for move in moves {
                        state.replicas[move.bucket].removeAll { $0 == target }
                        if let source, let at = state.replicas[move.bucket].firstIndex(of: source) {
                            state.replicas[move.bucket][at] = target
                        } else {
                            state.replicas[move.bucket].append(target)
                        }
                    }
                    if source != nil {
                        for i in state.moves.indices where isMine(state.moves[i]) { state.moves[i].phase = .dropping }
                    } else {
                        state.moves.removeAll(where: isMine)
                    }
                }
            }
            let dropping = flipped.moves.filter { isMine($0) && $0.phase == .dropping }
            if !dropping.isEmpty { try await finishDrop(dropping, after: flipped.epoch) }
            moveProgress.withLock {
                $0.done += UInt64(moves.count)
                $0.entriesMoved += entries
                $0.bytesMoved += bytes
            }
        } catch {
            // Abandon the copies: the target's partial entries serve nothing and go at the next attempt.
            _ = try? await changeMap("copy of \(name) to \(target) abandoned") { state in
                state.moves.removeAll { isThisRun($0) && $0.phase == .copying }
            }
            sweepOwed.withLock { $0 = true }   // the target may keep client writes of the buckets
            moveProgress.withLock { $0.lastProblem = "\(name) to \(target): \(error)" }
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

    /// Drops the sources' copies of flipped moves once no request of an older epoch runs (a
    /// late one is refused by the source's epoch check, which the drop raises): one drop per source.
    func finishDrop(_ moves: [ClusterState.Move], after epoch: UInt64) async throws {
        _ = await drain(before: epoch, limit: options.writeDeadline)
        // The map as it is now (another coordinator may have changed it meanwhile): only moves
        // still dropping, from sources that neither serve those buckets again nor receive them.
        try? await refreshMap()
        let state = routing.state
        let moves = moves.filter { m in
            guard let source = m.source else { return false }
            return state.moves.contains { $0.bucket == m.bucket && $0.target == m.target && $0.phase == .dropping }
                && !state.replicas[m.bucket].contains(source)
                && !state.moves.contains { $0.bucket == m.bucket && $0.target == source }
        }
        guard !moves.isEmpty else { return }
        let count = state.buckets
        for (source, group) in Dictionary(grouping: moves, by: { $0.source ?? "" }) where !source.isEmpty {
            if routing.state.node(source).map({ $0.state != .down }) ?? false {
                let buckets = BucketSet(count: count, buckets: group.map(\.bucket))
                _ = try await call(source, .bucketDrop(BucketMask(count: count, bits: buckets.mask)), within: options.writeDeadline)
            }
        }
        let done = Set(moves.map(MoveKey.init))
        try await changeMap("\(moves.count) buckets dropped from their old nodes") { state in
            state.moves.removeAll { $0.phase == .dropping && done.contains(MoveKey($0)) }
        }
    }

    /// Streams the bucket's live entries from a serving copy to the target, page by page,
    /// leaving out keys clients wrote meanwhile; throttled to `rateBytesPerSecond` (0: not).
    /// The next page is read from the source while the current one is written to the target.
    private func stream(_ moves: [ClusterState.Move], mask: BucketMask, guard moveGuard: MoveGuard,
                        rateBytesPerSecond: Double) async throws -> (entries: UInt64, bytes: UInt64) {
        let move = moves[0]
        let key = MoveKey(move)
        let start = ContinuousClock.now
        var bytes: UInt64 = 0, entries: UInt64 = 0
        @Sendable func read(after cursor: (hash: UInt64, key: String)?) async throws -> [MovedEntry] {
            let source = try readableCopy(of: moves)
            let reply = try await call(source, .bucketRead(BucketReadRequest(buckets: mask, after: cursor, limit: Self.movePageEntries)),
                                       within: options.writeDeadline)
            guard case let .bucketEntries(page) = reply else { throw WireError(.internalError, "\(source) answered BucketRead with \(reply.name)") }
            return page
        }
        var next: Task<[MovedEntry], any Error>? = Task { try await read(after: nil) }
        defer { next?.cancel() }
        // Bounded: a bucket holds at most every key of the cluster, a page is 1,024 of them.
        for _ in 0..<(Int(UInt32.max) / Self.movePageEntries) {
            if moveGuard.failed.withLock({ $0 }) { throw WireError(.unavailable, "a client write did not reach \(move.target)") }
            // Another coordinator may have taken the moves over (and restarted this copy).
            guard runsMovesNow, routing.state.moves.contains(where: { $0 == move }) else {
                throw WireError(.unavailable, "the copy of bucket \(move.bucket) to \(move.target) is no longer this coordinator's")
            }
            guard let reading = next else { break }
            let page = try await reading.value
            next = nil
            if page.count == Self.movePageEntries, let last = page.last {
                let cursor = (hash: KeyHash.of(last.key), key: last.key)
                next = Task { try await read(after: cursor) }
            }
            let pageBytes = page.reduce(0) { $0 + $1.key.utf8.count + $1.code.count + $1.refine.count + $1.metadata.count }
            // The last page (shorter than a full one) finishes the copy: the target stores
            // everything it holds before it answers.
            let last = page.count < Self.movePageEntries
            try await moveGuard.gate.run {
                let written = moveGuard.written.withLock { $0 }
                let fresh = page.filter { !written.contains($0.key) }
                if !fresh.isEmpty || last {
                    _ = try await call(move.target, .bucketWrite(fresh, finishing: last ? mask : .everything, run: move.owner),
                                       within: options.writeDeadline)
                }
            }
            bytes += UInt64(pageBytes)
            entries += UInt64(page.count)
            moveProgress.withLock { $0.copied[key] = (entries, bytes) }
            if rateBytesPerSecond > 0 {
                let due = Duration.seconds(Double(bytes) / rateBytesPerSecond)
                let elapsed = ContinuousClock.now - start
                if due > elapsed { try await Task.sleep(for: due - elapsed) }
            }
            if last { return (entries, bytes) }
        }
        throw WireError(.internalError, "bucket \(move.bucket) did not end after \(entries) entries")
    }

    /// The node a move group reads from: its source while it serves every bucket, else a
    /// node serving them all (a new copy's group is planned from buckets one node holds).
    private func readableCopy(of moves: [ClusterState.Move]) throws -> String {
        let routing = self.routing
        if let source = moves[0].source, routing.state.node(source)?.state != .down,
           moves.allSatisfy({ routing.state.replicas[$0.bucket].contains(source) }) {
            return source
        }
        let common = moves.dropFirst().reduce(Set(routing.readers[moves[0].bucket])) { $0.intersection(routing.readers[$1.bucket]) }
        guard let reader = routing.readers[moves[0].bucket].first(where: common.contains) else {
            throw WireError(.unavailable, "no serving node holds every bucket of the copy to \(moves[0].target) (bucket \(moves[0].bucket)...)")
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

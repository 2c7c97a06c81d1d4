import Foundation
import NIOCore
import PharosIndex
import PharosVectors
import PharosWire

extension Coordinator {
    /// Upserts `request`'s rows, prepared in the collection's space, on every copy of their
    /// buckets; durable on each copy written when it returns. Returns rows written and replaced.
    ///
    /// With copies, each row is encoded once here (with the trained state the coordinator
    /// keeps) and its codes go to every copy that speaks protocol version 3, instead of each
    /// copy encoding the vector again: on a machine shared by copies, encoding is most of a
    /// write's work. A shard whose trained state differs refuses the codes; the write is then
    /// sent again as vectors.
    func upsert(_ request: UpsertRequest) async throws -> (written: Int, replaced: Int) {
        guard request.encoded.isEmpty, request.trainedVersion == 0 else {
            throw WireError(.invalidArgument, "Upsert.encoded and trained_version are for a coordinator's requests to its shards: send vectors")
        }
        let space = self.space, d = space.dimension
        guard request.dimension == space.inputDimension else {
            throw WireError(.invalidArgument, "vectors: dimension \(request.dimension), the collection takes \(space.inputDimension)-D vectors")
        }
        guard request.vectors.count == request.keys.count * request.dimension else {
            throw WireError(.invalidArgument, "vectors: \(request.vectors.count) floats for \(request.keys.count) keys of \(request.dimension)")
        }
        guard request.metadata.isEmpty || request.metadata.count == request.keys.count else {
            throw WireError(.invalidArgument, "metadata: \(request.metadata.count) values for \(request.keys.count) keys")
        }
        let all: [Float]
        do {
            all = try space.prepare(Matrix(rows: request.keys.count, columns: request.dimension, values: request.vectors)).values
        } catch {
            throw WireError(.invalidArgument, "vectors: \(error)")
        }
        let timeout = request.deadlineMilliseconds > 0 ? .milliseconds(request.deadlineMilliseconds) : options.writeDeadline
        let deadline = ContinuousClock.now + timeout
        let encoded = await encodedOnce(Matrix(rows: request.keys.count, columns: d, values: all))
        func write(encoding: Bool) async throws -> [WireMessage] {
            let remaining = deadline - ContinuousClock.now
            return try await replicatedWrite(request.keys, within: remaining) { rows, link in
                let keys = rows.map { request.keys[$0] }, metadata = request.metadata.isEmpty ? [] : rows.map { request.metadata[$0] }
                if encoding, let (codes, version) = encoded, link.connectedVersion >= Hello.encodedUpsertVersion {
                    return .upsert(UpsertRequest(keys: keys, vectors: [], dimension: 0, metadata: metadata, deadlineMilliseconds: Self.forwardable(remaining),
                                                 encoded: rows.map { codes[$0] }, trainedVersion: version))
                }
                var vectors: [Float] = []
                vectors.reserveCapacity(rows.count * d)
                for r in rows { vectors += all[r * d ..< (r + 1) * d] }
                return .upsert(UpsertRequest(keys: keys, vectors: vectors, dimension: d, metadata: metadata, deadlineMilliseconds: Self.forwardable(remaining)))
            }
        }
        let replies: [WireMessage]
        do {
            replies = try await write(encoding: encoded != nil)
        } catch let error as WireError where encoded != nil && error.code == .invalidArgument
                    && (error.message.contains("Upsert.trained_version is") || error.message.contains("Upsert.dimension is 0")) {
            // A shard of another trained state (or a version-2 shard reached on a connection
            // made after the message was built) refused the codes. Upserts are idempotent: the
            // copies that took the codes take the vectors again (and count those rows as
            // replaced). This trained state is not used for encoding again.
            if let (_, version) = encoded { encodingRefused.withLock { $0 = version } }
            logger.warning("a shard refused the coordinator's codes: sent as vectors, and writes are no longer encoded here",
                           metadata: ["reason": "\(error.message)"])
            replies = try await write(encoding: false)
        }
        let replaced = replies.reduce(0) { sum, reply in
            if case let .upsertResult(_, r) = reply { return sum + r }
            return sum
        }
        return (request.keys.count, replaced)
    }

    /// The rows' codes and the trained state's version, when this write goes to several
    /// copies of which some speak protocol version 3 and the coordinator holds a trained state
    /// no shard refused; encoded on a thread of its own (a batch of 100,000 rows at 4,096 lists
    /// is seconds of work, which must not hold one of the few threads every task shares).
    private func encodedOnce(_ vectors: Matrix) async -> ([EncodedRow], UInt64)? {
        let routing = self.routing
        guard options.encodesWrites, routing.state.replication > 1, let assigner = probeAssigner.withLock({ $0 }),
              encodingRefused.withLock({ $0 }) != assigner.version,
              routing.links.contains(where: { $0.connectedVersion >= Hello.encodedUpsertVersion }) else { return nil }
        let rows: [EncodedRow]? = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: assigner.encodedRows(vectors)) }.start()
        }
        return rows.map { ($0, assigner.version) }
    }

    /// Deletes `keys` on every copy of their buckets; returns how many were present.
    func delete(_ keys: [String]) async throws -> Int {
        let replies = try await replicatedWrite(keys, within: options.writeDeadline) { rows, _ in .delete(keys: rows.map { keys[$0] }) }
        return replies.reduce(0) { sum, reply in
            if case let .deleteResult(n) = reply { return sum + n }
            return sum
        }
    }

    /// Sends `message(rows, link)` to every node that writes the rows' buckets (each serving copy,
    /// and the target of a copy in progress) and returns the replies of the first copies
    /// (one per row, so counts are not multiplied by the replication).
    ///
    /// Each bucket needs `minimumWriteCopies` serving copies to take the write. A copy that
    /// cannot be reached, misses the deadline or has lost its trained state does not fail the
    /// write while that holds: it is marked down first (durably, in a new epoch, checked against
    /// the map as it is then), so it no longer serves those buckets and is filled again by
    /// moves when it returns. A node that answers `STALE_MAP` (a map change raced the write) is
    /// asked again with the current map, up to three times. A move whose target did not take
    /// its part is abandoned, so the target's copy is rebuilt from the start.
    func replicatedWrite(_ keys: [String], within timeout: Duration,
                         _ message: @escaping ([Int], ShardLink) -> WireMessage) async throws -> [WireMessage] {
        let deadline = ContinuousClock.now + timeout
        for attempt in 1...3 {
            let routing = enter()
            defer { leave(routing.state.epoch) }
            let last = attempt == 3 || ContinuousClock.now + .milliseconds(1) >= deadline
            switch try await writeOnce(keys, routing: routing, within: deadline - ContinuousClock.now, finalAttempt: last, message) {
            case let .done(replies): return replies
            case let .stale(error) where attempt < 3 && ContinuousClock.now < deadline:
                logger.info("write raced a map change; sent again", metadata: ["epoch": "\(routing.state.epoch)", "reason": "\(error.message)"])
                try? await refreshMap()   // the map another coordinator changed (a no-op with one)
            case let .stale(error): throw WireError(.unavailable, "the cluster map kept changing under the write: \(error.message)")
            }
        }
        throw WireError(.internalError, "unreachable")
    }

    private enum WriteAttempt {
        case done([WireMessage])
        case stale(WireError)
    }

    private func writeOnce(_ keys: [String], routing: Routing, within timeout: Duration, finalAttempt: Bool,
                           _ message: ([Int], ShardLink) -> WireMessage) async throws -> WriteAttempt {
        // Each key's bucket, hashed once for the whole write.
        let bucketOf = keys.map { routing.bucket(of: $0) }
        let (groups, unplaced) = routing.writeGroups(buckets: bucketOf)
        if let row = unplaced.first {
            throw WireError(.unavailable, "bucket \(bucketOf[row]) of key \(keys[row].debugDescription) has no copy up to write it to")
        }
        let guards = await markWritten(keys, buckets: bucketOf, routing: routing)
        // Each node gets its rows as first copy and as other copy in separate messages.
        var requests: [(Int, WireMessage)] = [], first: [Bool] = [], rowsOf: [[Int]] = []
        for (node, rows) in groups.sorted(by: { $0.key < $1.key }) {
            let primary = rows.filter { routing.writers[bucketOf[$0]].first == node }
            let others = rows.filter { routing.writers[bucketOf[$0]].first != node }
            for (part, isFirst) in [(primary, true), (others, false)] where !part.isEmpty {
                requests.append((node, message(part, routing.links[node])))
                first.append(isFirst)
                rowsOf.append(part)
            }
        }
        let outcomes = try await fanOutInOrder(requests, routing: routing, within: timeout)
        var replies: [WireMessage] = [], lost: [Int: WireError] = [:], refused: [(Int, WireError)] = [], stale: WireError?
        var took: [Int: Set<String>] = [:]
        for (i, outcome) in outcomes.enumerated() {
            let node = requests[i].0
            switch outcome {
            case let .success(reply):
                if first[i] { replies.append(reply) }
                for row in rowsOf[i] { took[bucketOf[row], default: []].insert(routing.name(node)) }
            case let .failure(error) where error.code == .staleMap:
                stale = error
            case let .failure(error) where [.unavailable, .deadlineExceeded, .notReady].contains(error.code):
                lost[node] = error
            case let .failure(error):
                refused.append((node, error))
            }
        }
        // A move whose target missed its part cannot be trusted to hold the bucket (the stream
        // leaves the key out). A write answered STALE_MAP is sent again, marked again, unless
        // this was the last try: then it failed, and the copy too.
        let failedTargets = Set(lost.keys.map { routing.name($0) } + refused.map { routing.name($0.0) })
        for moveGuard in guards {
            if failedTargets.contains(moveGuard.target) || (stale != nil && finalAttempt) { moveGuard.failed.withLock { $0 = true } }
            moveGuard.pending.withLock { $0 -= 1 }
        }
        if !refused.isEmpty {
            let code = Set(refused.map(\.1.code)).count == 1 ? refused[0].1.code : .unavailable
            throw WireError(code, refused.map { "\(routing.name($0.0)): \($0.1.message)" }.joined(separator: "; "))
        }
        if let stale { return .stale(stale) }
        // Every bucket written needs its minimum of serving copies that took it.
        let touched = Set(bucketOf)
        let short = touched.filter { b in (took[b] ?? []).filter { routing.state.replicas[b].contains($0) }.count < options.minimumWriteCopies }
        let named = lost.sorted { $0.key < $1.key }.map { "\(routing.name($0.key)): \($0.value.message)" }.joined(separator: "; ")
        guard short.isEmpty else {
            throw WireError(.unavailable, "\(short.count) buckets were written on fewer than \(options.minimumWriteCopies) copies" + (named.isEmpty ? "" : ": \(named)"))
        }
        // Every node that missed its part goes down: a serving copy, or a copy's target (which
        // may have flipped to serving meanwhile; the check in `markDown` sees the map as it is).
        let lostCopies = Set(lost.keys)
        guard !lostCopies.isEmpty else { return .done(replies) }
        do {
            try await markDown(lostCopies, routing: routing, because: named,
                         acknowledged: Dictionary(uniqueKeysWithValues: touched.map { ($0, took[$0] ?? []) }))
        } catch {
            throw WireError(.unavailable, "\(named); and marking those nodes down failed: \(error)")
        }
        // Counts of rows whose first copy was lost are not known; the rows are written.
        return .done(replies)
    }

    /// `fanOut`, awaited, outcomes in request order (a node may have two requests).
    private func fanOutInOrder(_ requests: [(Int, WireMessage)], routing: Routing, within timeout: Duration) async throws -> [ShardOutcome] {
        let loop = group.next()
        let epoch = routing.state.epoch
        let futures = requests.map { node, message in routing.links[node].send(message, timeout: timeout, epoch: epoch, on: loop) }
        return try await EventLoopFuture.whenAllComplete(futures, on: loop).get().map { $0.mapError { Coordinator.wireError($0) } }
    }

    /// The stored entries of `keys` (in order; `found` false for absent ones), each asked of
    /// one node serving its bucket; keys whose node fails are asked of their other copies.
    func fetch(_ keys: [String], within timeout: Duration, on loop: any EventLoop) -> EventLoopFuture<[FetchedEntry]> {
        let deadline = NIODeadline.now() + timeout.timeAmount
        return tracked(on: loop) { routing in
            self.fetchRound(keys, rows: Array(keys.indices), failed: [], found: [:], routing: routing, deadline: deadline, on: loop)
                .map { byKey in keys.map { byKey[$0] ?? FetchedEntry(key: $0, found: false) } }
        }
    }

    /// One round of `fetch`: `rows` asked of their first reader not in `failed`; the rows of
    /// nodes that fail go to the next round, until no copy is left (then the error is theirs).
    private func fetchRound(_ keys: [String], rows: [Int], failed: Set<Int>, found: [String: FetchedEntry], routing: Routing,
                            deadline: NIODeadline, on loop: any EventLoop) -> EventLoopFuture<[String: FetchedEntry]> {
        var groups: [Int: [Int]] = [:]
        for row in rows {
            guard let node = routing.readers[routing.bucket(of: keys[row])].first(where: { !failed.contains($0) }) else {
                return loop.makeFailedFuture(WireError(.unavailable, "no node serving key \(keys[row].debugDescription) answers"))
            }
            groups[node, default: []].append(row)
        }
        let asked = groups
        let parts = asked.sorted { $0.key < $1.key }.map { ($0.key, WireMessage.fetch(keys: $0.value.map { keys[$0] })) }
        return fanOut(parts, routing: routing, within: deadline.remaining, on: loop).flatMap { outcomes in
            var found = found, retry: [Int] = [], failed = failed, errors: [(Int, WireError)] = []
            for (node, outcome) in outcomes {
                switch outcome {
                case let .success(.fetchResult(entries)): for e in entries { found[e.key] = e }
                case let .failure(error) where [.unavailable, .deadlineExceeded, .staleMap].contains(error.code):
                    failed.insert(node)
                    retry += asked[node] ?? []
                    errors.append((node, error))
                case let .failure(error): return loop.makeFailedFuture(error)
                case let .success(other): return loop.makeFailedFuture(WireError(.internalError, "\(routing.name(node)) answered Fetch with \(other.name)"))
                }
            }
            guard !retry.isEmpty else { return loop.makeSucceededFuture(found) }
            let noCopyLeft = retry.contains { row in !routing.readers[routing.bucket(of: keys[row])].contains { !failed.contains($0) } }
            if noCopyLeft || deadline.remaining <= .zero {
                return loop.makeFailedFuture(WireError(.unavailable, errors.map { "\(routing.name($0.0)): \($0.1.message)" }.joined(separator: "; ")))
            }
            return self.fetchRound(keys, rows: retry, failed: failed, found: found, routing: routing, deadline: deadline, on: loop)
        }
    }

    /// A deadline as a shard request carries it: in whole milliseconds, within the protocol's
    /// limit (a coordinator's own longer wait must not make every shard refuse the request).
    static func forwardable(_ span: Duration) -> Int {
        Swift.min(Swift.max(0, span.wholeMilliseconds), RequestLimits().maximumDeadlineMilliseconds)
    }
}

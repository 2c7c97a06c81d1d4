import NIOCore
import PharosIndex
import PharosVectors
import PharosWire

extension Coordinator {
    /// Upserts `request`'s rows, prepared in the collection's space, on every copy of their
    /// buckets; durable on each copy written when it returns. Returns rows written and replaced.
    func upsert(_ request: UpsertRequest) async throws -> (written: Int, replaced: Int) {
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
        let replies = try await replicatedWrite(request.keys, within: timeout) { rows in
            var vectors: [Float] = []
            vectors.reserveCapacity(rows.count * d)
            for r in rows { vectors += all[r * d ..< (r + 1) * d] }
            return .upsert(UpsertRequest(keys: rows.map { request.keys[$0] }, vectors: vectors, dimension: d,
                                         metadata: request.metadata.isEmpty ? [] : rows.map { request.metadata[$0] },
                                         deadlineMilliseconds: Self.forwardable(timeout)))
        }
        let replaced = replies.reduce(0) { sum, reply in
            if case let .upsertResult(_, r) = reply { return sum + r }
            return sum
        }
        return (request.keys.count, replaced)
    }

    /// Deletes `keys` on every copy of their buckets; returns how many were present.
    func delete(_ keys: [String]) async throws -> Int {
        let replies = try await replicatedWrite(keys, within: options.writeDeadline) { rows in .delete(keys: rows.map { keys[$0] }) }
        return replies.reduce(0) { sum, reply in
            if case let .deleteResult(n) = reply { return sum + n }
            return sum
        }
    }

    /// Sends `message(rows)` to every node that writes the rows' buckets (each serving copy,
    /// and the target of a copy in progress) and returns the replies of the first copies
    /// (one per row, so counts are not multiplied by the replication).
    ///
    /// A node that cannot be reached (or misses the deadline) does not fail the write while
    /// every bucket it was to write got at least `minimumWriteCopies` acknowledgements from
    /// serving copies: it is marked down first (durably, in a new epoch: it no longer serves
    /// those buckets and is filled again by moves when it returns), then the write is
    /// acknowledged. Otherwise the write fails, naming the nodes.
    func replicatedWrite(_ keys: [String], within timeout: Duration,
                         _ message: @escaping ([Int]) -> WireMessage) async throws -> [WireMessage] {
        let routing = self.routing
        let epoch = routing.state.epoch
        inFlight.withLock { $0[epoch, default: 0] += 1 }
        defer {
            inFlight.withLock { counts in
                counts[epoch, default: 1] -= 1
                if counts[epoch] == 0 { counts[epoch] = nil }
            }
        }
        let (groups, unplaced) = routing.writeGroups(keys)
        if let row = unplaced.first {
            throw WireError(.unavailable, "bucket \(routing.bucket(of: keys[row])) of key \(keys[row].debugDescription) has no node to write it to")
        }
        await markWritten(keys, routing: routing)
        // Each node gets its rows as first copy and as other copy in separate messages.
        var requests: [(Int, WireMessage)] = [], first: [Bool] = [], rowsOf: [[Int]] = []
        for (node, rows) in groups.sorted(by: { $0.key < $1.key }) {
            let primary = rows.filter { routing.writers[routing.bucket(of: keys[$0])].first == node }
            let others = rows.filter { routing.writers[routing.bucket(of: keys[$0])].first != node }
            for (part, isFirst) in [(primary, true), (others, false)] where !part.isEmpty {
                requests.append((node, message(part)))
                first.append(isFirst)
                rowsOf.append(part)
            }
        }
        let outcomes = try await fanOutInOrder(requests, routing: routing, within: timeout)
        var replies: [WireMessage] = [], lost: [Int: WireError] = [:], refused: [(Int, WireError)] = []
        var acknowledged = [Int](repeating: 0, count: routing.state.buckets)
        for (i, outcome) in outcomes.enumerated() {
            let node = requests[i].0
            switch outcome {
            case let .success(reply):
                if first[i] { replies.append(reply) }
                for row in rowsOf[i] {
                    let b = routing.bucket(of: keys[row])
                    if routing.state.replicas[b].contains(routing.name(node)) { acknowledged[b] += 1 }
                }
            case let .failure(error) where [.unavailable, .deadlineExceeded, .staleMap].contains(error.code):
                lost[node] = error
            case let .failure(error):
                refused.append((node, error))
            }
        }
        if !refused.isEmpty {
            let code = Set(refused.map(\.1.code)).count == 1 ? refused[0].1.code : .unavailable
            throw WireError(code, refused.map { "\(routing.name($0.0)): \($0.1.message)" }.joined(separator: "; "))
        }
        guard !lost.isEmpty else { return replies }
        // Every bucket the lost nodes were to write needs enough acknowledgements elsewhere.
        var short: Set<Int> = []
        for (i, request) in requests.enumerated() where lost[request.0] != nil {
            for row in rowsOf[i] {
                let b = routing.bucket(of: keys[row])
                if acknowledged[b] < Swift.min(options.minimumWriteCopies, routing.state.replicas[b].count) { short.insert(b) }
            }
        }
        let named = lost.sorted { $0.key < $1.key }.map { "\(routing.name($0.key)): \($0.value.message)" }.joined(separator: "; ")
        guard short.isEmpty else {
            throw WireError(.unavailable, "\(short.count) buckets were written on too few nodes: \(named)")
        }
        do { try markDown(Set(lost.keys), routing: routing, because: named) } catch {
            throw WireError(.unavailable, "\(named); and marking those nodes down failed: \(error)")
        }
        // Counts of rows whose first copy was lost are not known; the rows are written.
        return replies
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

import NIOCore
import PharosIndex
import PharosVectors
import PharosWire

extension Coordinator {
    /// Upserts `request`'s rows, prepared in the collection's space, on their shards; durable
    /// on every shard involved when it returns. Returns rows written and replaced.
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
        let parts = split(request.keys).map { shard, rows -> (Int, WireMessage) in
            var vectors: [Float] = []
            vectors.reserveCapacity(rows.count * d)
            for r in rows { vectors += all[r * d ..< (r + 1) * d] }
            return (shard, .upsert(UpsertRequest(keys: rows.map { request.keys[$0] }, vectors: vectors, dimension: d,
                                                 metadata: request.metadata.isEmpty ? [] : rows.map { request.metadata[$0] },
                                                 deadlineMilliseconds: Self.forwardable(timeout))))
        }
        var written = 0, replaced = 0
        for (_, reply) in try await allOrNothing(parts, within: timeout) {
            if case let .upsertResult(n, r) = reply {
                written += n
                replaced += r
            }
        }
        return (written, replaced)
    }

    /// Deletes `keys` on their shards; returns how many were present.
    func delete(_ keys: [String]) async throws -> Int {
        var deleted = 0
        let parts = split(keys).map { ($0.key, WireMessage.delete(keys: $0.value.map { keys[$0] })) }
        for (_, reply) in try await allOrNothing(parts, within: options.writeDeadline) {
            if case let .deleteResult(n) = reply { deleted += n }
        }
        return deleted
    }

    /// The stored entries of `keys` (in order; `found` false for absent ones), each asked of its shard.
    func fetch(_ keys: [String], within timeout: Duration, on loop: any EventLoop) -> EventLoopFuture<[FetchedEntry]> {
        let parts = split(keys).map { ($0.key, WireMessage.fetch(keys: $0.value.map { keys[$0] })) }
        return allOrNothing(parts, within: timeout, on: loop).map { replies in
            var byKey: [String: FetchedEntry] = [:]
            for (_, reply) in replies {
                if case let .fetchResult(entries) = reply { for e in entries { byKey[e.key] = e } }
            }
            return keys.map { byKey[$0] ?? FetchedEntry(key: $0, found: false) }
        }
    }

    /// A deadline as a shard request carries it: in whole milliseconds, within the protocol's
    /// limit (a coordinator's own longer wait must not make every shard refuse the request).
    static func forwardable(_ span: Duration) -> Int {
        Swift.min(Swift.max(0, span.wholeMilliseconds), RequestLimits().maximumDeadlineMilliseconds)
    }
}

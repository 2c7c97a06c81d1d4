/// The protocol's limits on one request, checked by `WireServer` before any service sees the
/// request, so shards and the coordinator enforce the same rules and no request that breaks
/// them reaches storage or the index. Every refusal is `invalidArgument` naming the field,
/// the row where there is one, the value found and what is allowed.
///
/// What depends on the collection (the dimension a node takes) is checked by the services.
public struct RequestLimits: Sendable, Equatable {
    /// Queries (vector rows plus query keys) in one `Search`.
    public var maximumQueries = 10_000
    /// Results per query (a whole evaluation ranking fits; `maximumResults` bounds a request).
    public var maximumK = 65536
    /// Inverted lists probed per query.
    public var maximumNprobe = 65536
    /// Refine factor.
    public var maximumRefineFactor = 256
    /// `k x refine_factor`: candidates re-ranked per query, for requests of at most
    /// `deepQueries` queries (a deep evaluation ranking).
    public var maximumShortlist = 65536
    /// `k x refine_factor` for requests of more queries: a shard keeps one heap of this many
    /// candidates per query of a chunk of 128, so a wide request stays as bounded as a deep one.
    public var maximumWideShortlist = 16384
    /// Queries a request may have and still use `maximumShortlist`.
    public var deepQueries = 32
    /// `queries x k`: hits one `Search` may ask for (each is a key and a score in memory
    /// and in the reply, which must also fit a frame).
    public var maximumResults = 1 << 20
    /// `queries x k x dimension` with `with_vectors` (and for an expansion's first round,
    /// `queries x top_n x dimension`): floats of vectors one reply may carry (64 MiB).
    public var maximumResultFloats = 1 << 24
    /// `queries x shortlist^2` of a re-ranked search: the coordinator's work for it (a dense
    /// graph per query; 16 queries at the longest shortlist, 400 at the default 200).
    public var maximumRerankWork = 1 << 24
    /// Rows of one `Upsert`, keys of one `Delete`.
    public var maximumKeys = 100_000
    /// Keys of one `Fetch` (each answered with its vector: the reply must fit a frame).
    public var maximumFetchKeys = 10_000
    /// The largest magnitude of a vector component: squares of larger ones overflow the
    /// distances (scores of infinity, or no hits at all).
    public var maximumMagnitude: Float = 1e15
    /// Bytes of one key (UTF-8, no NUL: the decoder refuses those).
    public var maximumKeyBytes = 1024
    /// Bytes of one entry's metadata.
    public var maximumMetadataBytes = 65536
    /// Floats per vector.
    public var maximumDimension = 65536
    /// A request's deadline.
    public var maximumDeadlineMilliseconds = 600_000

    /// The protocol's limits (as documented in `Protocols/README.md`).
    public init() {}

    /// Throws `invalidArgument` when `message` breaks a limit or is inconsistent in itself.
    public func validate(_ message: WireMessage) throws {
        switch message {
        case let .hello(hello):
            guard hello.agreedVersion != nil else {
                throw WireError(.unsupported, "Hello: the peer speaks protocol versions \(hello.versions.lowerBound)...\(hello.versions.upperBound), this node \(Hello.oldestVersion)...\(Hello.currentVersion)")
            }
        case let .search(search): try validate(search)
        case let .upsert(upsert): try validate(upsert)
        case let .delete(keys): try validate(keys: keys, field: "Delete.keys")
        case let .fetch(keys):
            guard keys.count <= maximumFetchKeys else { throw invalid("Fetch has \(keys.count) keys, at most \(maximumFetchKeys)") }
            try validate(keys: keys, field: "Fetch.keys")
        case let .trainedState(indexFile, _):
            guard !indexFile.isEmpty else { throw invalid("TrainedState.index_file is empty: push the trained, empty index (a PHAROSIX file)") }
        case .bucketRead, .bucketWrite, .bucketDrop, .bucketCounts, .addNode, .removeNode, .rebalance:
            try validateCluster(message)
        default:
            break
        }
    }

    func invalid(_ text: String) -> WireError { WireError(.invalidArgument, text) }

    /// The largest `k x refine_factor` a request of `queries` queries may ask for.
    public func shortlistLimit(queries: Int) -> Int { queries <= deepQueries ? maximumShortlist : maximumWideShortlist }

    /// What makes the re-ranking of `s` (`queries` queries whose vectors have `dimension`
    /// floats; 0 when not known yet) too large to serve, or nil. A coordinator asks again with
    /// the collection's dimension, for queries by key.
    public func rerankProblem(_ s: SearchRequest, queries: Int, dimension: Int) -> String? {
        guard case let .diffusion(shortlist, _, _, _) = s.rerank else { return nil }
        // The shortlist round asks each shard for that many hits with their vectors.
        let limit = shortlistLimit(queries: queries)
        if shortlist * s.effectiveRefineFactor > limit {
            return "Search.rerank.shortlist x refine_factor is \(shortlist) x \(s.effectiveRefineFactor) = \(shortlist * s.effectiveRefineFactor), at most \(limit) for \(queries) queries"
        }
        if queries * shortlist > maximumResults {
            return "Search.rerank's shortlist round asks for \(queries) x \(shortlist) = \(queries * shortlist) hits, at most \(maximumResults): split it"
        }
        if queries * shortlist * shortlist > maximumRerankWork {
            return "Search.rerank: \(queries) queries x shortlist \(shortlist) squared = \(queries * shortlist * shortlist), at most \(maximumRerankWork) (the graph is dense): split it or shorten the shortlist"
        }
        if dimension > 0, queries * shortlist * dimension > maximumResultFloats {
            return "Search.rerank's shortlist round would carry \(queries) x \(shortlist) vectors of \(dimension) floats, at most \(maximumResultFloats) floats: split it"
        }
        return nil
    }

    private func validate(_ s: SearchRequest) throws {
        let rows = try vectorRows(s.vectors, dimension: s.dimension, field: "Search.vectors")
        let queries = rows + s.queryKeys.count
        guard queries >= 1 else {
            throw invalid("Search has no query: give vectors (with dimension) or query_keys")
        }
        guard queries <= maximumQueries else {
            throw invalid("Search has \(queries) queries, at most \(maximumQueries)")
        }
        try validate(keys: s.queryKeys, field: "Search.query_keys")
        guard (1...maximumK).contains(s.k) else { throw invalid("Search.k is \(s.k), allowed 1...\(maximumK)") }
        guard s.nprobe <= maximumNprobe else {
            throw invalid("Search.nprobe is \(s.nprobe), allowed 1...\(maximumNprobe) (0 = the default, \(SearchRequest.defaultNprobe))")
        }
        guard s.refineFactor <= maximumRefineFactor else {
            throw invalid("Search.refine_factor is \(s.refineFactor), allowed 1...\(maximumRefineFactor) (0 = the default, \(SearchRequest.defaultRefineFactor))")
        }
        let shortlistLimit = shortlistLimit(queries: queries)
        guard s.k * s.effectiveRefineFactor <= shortlistLimit else {
            throw invalid("Search.k x refine_factor is \(s.k) x \(s.effectiveRefineFactor) = \(s.k * s.effectiveRefineFactor), at most \(shortlistLimit) for \(queries) queries")
        }
        guard queries * s.k <= maximumResults else {
            throw invalid("Search asks for \(queries) queries x k \(s.k) = \(queries * s.k) results, at most \(maximumResults): split it")
        }
        if s.withVectors, s.dimension > 0, queries * s.k * s.dimension > maximumResultFloats {
            throw invalid("Search with_vectors asks for \(queries) x \(s.k) hits of \(s.dimension) floats, at most \(maximumResultFloats) floats: split it")
        }
        guard s.deadlineMilliseconds <= maximumDeadlineMilliseconds else {
            throw invalid("Search.deadline_ms is \(s.deadlineMilliseconds), at most \(maximumDeadlineMilliseconds) (0 = the server's default)")
        }
        if s.buckets != .everything { try validate(s.buckets, field: "Search", allowEmpty: true) }
        if !s.probeLists.isEmpty || !s.probeBiases.isEmpty {
            // Each query names the same number of lists, at most nprobe; the shard checks them
            // against its index (how many lists it has).
            guard s.probeBiases.count == s.probeLists.count else {
                throw invalid("Search has \(s.probeLists.count) probe_lists and \(s.probeBiases.count) probe_biases: one bias per list")
            }
            guard s.probeLists.count % queries == 0, (1...s.effectiveNprobe).contains(s.probeLists.count / queries) else {
                throw invalid("Search.probe_lists has \(s.probeLists.count) lists for \(queries) queries: expected the same number for each, 1...nprobe (\(s.effectiveNprobe))")
            }
            if let bad = s.probeBiases.firstIndex(where: { !$0.isFinite }) {
                throw invalid("Search.probe_biases[\(bad)] is \(s.probeBiases[bad]): expected a finite number")
            }
        }
        switch s.expansion {
        case .none: break
        case let .averageQE(n), let .alphaQE(n, _):
            guard (1...maximumK).contains(n) else { throw invalid("Search.expansion.top_n is \(n), allowed 1...\(maximumK)") }
            // The first round asks each shard for the top n with the request's refine factor
            // and the hits' vectors.
            guard n * s.effectiveRefineFactor <= shortlistLimit else {
                throw invalid("Search.expansion.top_n x refine_factor is \(n) x \(s.effectiveRefineFactor) = \(n * s.effectiveRefineFactor), at most \(shortlistLimit) for \(queries) queries")
            }
            if s.dimension > 0, queries * n * s.dimension > maximumResultFloats {
                throw invalid("Search.expansion's first round would carry \(queries) x \(n) vectors of \(s.dimension) floats, at most \(maximumResultFloats) floats: split it")
            }
            if case let .alphaQE(_, alpha) = s.expansion, !(alpha.isFinite && alpha >= 0 && alpha <= 100) {
                throw invalid("Search.expansion.alpha is \(alpha), allowed 0...100")
            }
        }
        if let problem = s.rerank.problem(k: s.k) ?? rerankProblem(s, queries: queries, dimension: s.dimension) { throw invalid(problem) }
    }

    private func validate(_ u: UpsertRequest) throws {
        let rows = u.keys.count
        guard rows <= maximumKeys else { throw invalid("Upsert has \(rows) rows, at most \(maximumKeys)") }
        guard rows > 0 || u.vectors.isEmpty else { throw invalid("Upsert has \(u.vectors.count) floats but no keys") }
        try validate(keys: u.keys, field: "Upsert.keys")
        if !u.encoded.isEmpty || u.trainedVersion != 0 {
            guard u.vectors.isEmpty, u.dimension == 0 else {
                throw invalid("Upsert carries encoded rows and \(u.vectors.count) floats of dimension \(u.dimension): send one or the other")
            }
            guard u.encoded.count == rows else { throw invalid("Upsert.encoded has \(u.encoded.count) rows for \(rows) keys") }
            guard u.trainedVersion != 0 else { throw invalid("Upsert.encoded needs the trained_version that made it") }
            for (i, row) in u.encoded.enumerated() {
                guard !row.code.isEmpty, row.code.count <= maximumDimension, row.refine.count <= 4 * maximumDimension else {
                    throw invalid("Upsert.encoded[\(i)] has \(row.code.count) code and \(row.refine.count) refine bytes")
                }
            }
        } else if rows > 0 {
            guard (1...maximumDimension).contains(u.dimension) else {
                throw invalid("Upsert.dimension is \(u.dimension), allowed 1...\(maximumDimension)")
            }
            guard u.vectors.count == rows * u.dimension else {
                throw invalid("Upsert.vectors has \(u.vectors.count) floats, expected \(rows) keys x \(u.dimension) = \(rows * u.dimension)")
            }
        }
        try checkFinite(u.vectors, dimension: u.dimension, field: "Upsert.vectors")
        guard u.metadata.isEmpty || u.metadata.count == rows else {
            throw invalid("Upsert.metadata has \(u.metadata.count) values for \(rows) keys: give none or one per key")
        }
        guard u.deadlineMilliseconds <= maximumDeadlineMilliseconds else {
            throw invalid("Upsert.deadline_ms is \(u.deadlineMilliseconds), at most \(maximumDeadlineMilliseconds) (0 = the server's default)")
        }
        if let row = u.metadata.firstIndex(where: { $0.count > maximumMetadataBytes }) {
            throw invalid("Upsert.metadata[\(row)] is \(u.metadata[row].count) bytes, at most \(maximumMetadataBytes)")
        }
        var firstRow: [String: Int] = [:]
        firstRow.reserveCapacity(rows)
        for (row, key) in u.keys.enumerated() {
            if let earlier = firstRow.updateValue(row, forKey: key) {
                throw invalid("Upsert.keys[\(row)] repeats key \(key.debugDescription) of row \(earlier): a key may appear once per batch")
            }
        }
    }

    func validate(keys: [String], field: String) throws {
        guard keys.count <= maximumKeys else { throw invalid("\(field) has \(keys.count) keys, at most \(maximumKeys)") }
        for (i, key) in keys.enumerated() {
            let bytes = key.utf8.count
            guard bytes >= 1 else { throw invalid("\(field)[\(i)] is empty") }
            guard bytes <= maximumKeyBytes else { throw invalid("\(field)[\(i)] is \(bytes) bytes, at most \(maximumKeyBytes)") }
        }
    }

    /// Rows of a row-major vector field.
    private func vectorRows(_ vectors: [Float], dimension: Int, field: String) throws -> Int {
        if vectors.isEmpty { return 0 }
        guard (1...maximumDimension).contains(dimension) else {
            throw invalid("\(field) has \(vectors.count) floats but dimension is \(dimension), allowed 1...\(maximumDimension)")
        }
        guard vectors.count % dimension == 0 else {
            throw invalid("\(field) has \(vectors.count) floats, not a whole number of \(dimension)-D rows")
        }
        try checkFinite(vectors, dimension: dimension, field: field)
        return vectors.count / dimension
    }

    private func checkFinite(_ vectors: [Float], dimension: Int, field: String) throws {
        let limit = maximumMagnitude
        guard let bad = vectors.firstIndex(where: { !(abs($0) <= limit) }) else { return }
        let d = Swift.max(1, dimension)
        throw invalid("\(field) row \(bad / d) component \(bad % d) is \(vectors[bad]): values must be finite, within ±\(limit)")
    }
}

extension SearchRequest {
    /// The nprobe used when a request leaves it 0 (the CLI's default too).
    public static let defaultNprobe = 16
    /// The refine factor used when a request leaves it 0.
    public static let defaultRefineFactor = 4

    /// `nprobe`, with 0 meaning `defaultNprobe`.
    public var effectiveNprobe: Int { nprobe == 0 ? SearchRequest.defaultNprobe : nprobe }
    /// `refineFactor`, with 0 meaning `defaultRefineFactor`.
    public var effectiveRefineFactor: Int { refineFactor == 0 ? SearchRequest.defaultRefineFactor : refineFactor }
}

import PharosVectors

/// What a storage layer needs of an inverted-file index, so that it depends on this contract
/// and not on one index class: encode without storing, search lists it holds itself (its
/// segments) as one index, and reconstruct an entry from its stored codes.
public protocol InvertedFileIndex: VectorIndex {
    /// How an entry's codes are laid out in a list (segments store lists in this layout).
    var layout: CodeLayout { get }
    /// Number of inverted lists.
    var listCount: Int { get }
    /// Each row's list, PQ code and refine code, without storing them.
    func encodeEntries(_ vectors: Matrix, threads: Int) throws -> EncodedEntries
    /// One top-k over lists held in `sources`, hits named by (source, entry identity); with
    /// `probes`, the lists each query scans are those (found by `assign`, perhaps in another
    /// process) instead of a coarse search of its own.
    func search(_ queries: Matrix, k: Int, parameters: SearchParameters,
                sources: [any InvertedListSource], probes: ProbeAssignment?) throws -> SourcedSearchResult
    /// Each query's `nprobe` nearest lists and their coarse distances: the first stage of a
    /// search, exactly as `search` computes it, for handing to searches elsewhere.
    func assign(_ queries: Matrix, nprobe: Int) throws -> ProbeAssignment
    /// The approximation of an entry from its list and stored (unpacked) codes.
    func reconstruct(list: Int, code: [UInt8], refine: [UInt8]) throws -> [Float]
    /// Whether a refine code of the layout's length decodes to finite values only (codes sent
    /// already encoded are checked with it: a NaN there would poison every score it enters).
    func refineCodeIsFinite(_ refine: [UInt8]) -> Bool
}

extension IVFPQIndex: InvertedFileIndex {
    public var listCount: Int { configuration.lists }

    public func refineCodeIsFinite(_ refine: [UInt8]) -> Bool {
        refineCodec?.isFinite(refine) ?? true
    }
}

extension InvertedFileIndex {
    /// One top-k over lists held in `sources`, each query's lists found by a coarse search.
    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters,
                       sources: [any InvertedListSource]) throws -> SourcedSearchResult {
        try search(queries, k: k, parameters: parameters, sources: sources, probes: nil)
    }
}

/// Each query's inverted lists to scan, best first, with their coarse distances (the bias
/// every code distance of the list starts from): a search's first stage, computed once by a
/// coordinator that holds the trained state and handed to every shard, which then scans only.
public struct ProbeAssignment: Sendable, Equatable {
    /// Lists per query.
    public let perQuery: Int
    /// `queries x perQuery` list numbers, best first per query.
    public let lists: [Int32]
    /// The coarse distance of each entry of `lists`.
    public let biases: [Float]

    /// An assignment of `perQuery` lists to each query; the counts must agree.
    public init(perQuery: Int, lists: [Int32], biases: [Float]) throws {
        guard perQuery >= 1, lists.count % perQuery == 0, biases.count == lists.count else {
            throw IndexError.invalidParameter(name: "probes", value: "\(lists.count) lists and \(biases.count) biases, \(perQuery) per query",
                                              allowed: "one bias per list, the same number of lists (at least 1) per query")
        }
        self.perQuery = perQuery
        self.lists = lists
        self.biases = biases
    }

    /// Queries assigned.
    public var queryCount: Int { lists.count / perQuery }
}

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
    /// One top-k over lists held in `sources`, hits named by (source, entry identity).
    func search(_ queries: Matrix, k: Int, parameters: SearchParameters,
                sources: [any InvertedListSource]) throws -> SourcedSearchResult
    /// The approximation of an entry from its list and stored (unpacked) codes.
    func reconstruct(list: Int, code: [UInt8], refine: [UInt8]) throws -> [Float]
}

extension IVFPQIndex: InvertedFileIndex {
    public var listCount: Int { configuration.lists }
}

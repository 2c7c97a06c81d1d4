import PharosKernels

/// A read-only view of one inverted list, handed out only inside `InvertedListSource.withList`
/// and valid only until that closure returns (owners change lists only under their write
/// lock; scans hold the read lock). Never store one.
public struct InvertedListView {
    /// Entries in the list (deleted ones included).
    public var count: Int
    /// PQ codes in the owner's `CodeLayout`; nil when `count == 0`.
    public var codes: UnsafePointer<UInt8>?
    /// Refine codes, `refineBytes` per entry; nil without refinement.
    public var refine: UnsafePointer<UInt8>?
    /// Deleted entries: bit `deletedBase + i` set means entry i is skipped; nil when none.
    public var deleted: UnsafePointer<UInt64>?
    /// Bits readable at `deleted` (whole words). A bit at or past it is clear: a bitmap that
    /// has not grown as far as entries appended later must never be read past its end.
    public var deletedBits: Int
    /// The bit of entry 0 in `deleted`.
    public var deletedBase: Int
    /// Entries the search must pass over although they are live (a shard answering for some
    /// of its buckets only): bit `excludedBase + i` set means entry i is skipped; nil when none.
    public var excluded: UnsafePointer<UInt64>?
    /// Bits readable at `excluded`; a bit at or past it is clear.
    public var excludedBits: Int = 0
    /// The bit of entry 0 in `excluded`.
    public var excludedBase: Int = 0

    /// Creates a view.
    public init(count: Int, codes: UnsafePointer<UInt8>?, refine: UnsafePointer<UInt8>?,
                deleted: UnsafePointer<UInt64>? = nil, deletedBits: Int = 0, deletedBase: Int = 0) {
        self.count = count
        self.codes = codes
        self.refine = refine
        self.deleted = deleted
        self.deletedBits = deleted == nil ? 0 : deletedBits
        self.deletedBase = deletedBase
    }

    /// An empty list.
    public static var empty: InvertedListView { InvertedListView(count: 0, codes: nil, refine: nil) }

    /// The kernels' skip mask for entries from `offset` on.
    public func skipMask(from offset: Int = 0) -> PharosSkipMask {
        PharosSkipMask(words: deleted, bits: deletedBits, base: deletedBase + offset,
                       excluded: excluded, excluded_bits: excluded == nil ? 0 : excludedBits, excluded_base: excludedBase + offset)
    }

    /// The same view with the entries set in `excluded` (bit `base + i` for entry i) passed over too.
    public func excluding(_ excluded: UnsafePointer<UInt64>?, bits: Int, base: Int) -> InvertedListView {
        var view = self
        view.excluded = excluded
        view.excludedBits = excluded == nil ? 0 : bits
        view.excludedBase = base
        return view
    }

    /// Whether entry `offset` is marked deleted (false past the bitmap's end).
    public func isDeleted(_ offset: Int) -> Bool {
        let bit = deletedBase + offset
        guard let deleted, bit < deletedBits else { return false }
        return deleted[bit >> 6] >> UInt64(bit & 63) & 1 == 1
    }
}

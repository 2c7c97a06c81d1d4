/// A set of the cluster's virtual buckets: which buckets a shard answers a search for, or
/// holds. Stored as a bitmap of `count` bits (bit b set: bucket b is in the set), which is
/// also how it travels on the wire (`bucket_mask`, `ceil(count / 8)` bytes, bucket b in bit
/// `b % 8` of byte `b / 8`).
public struct BucketSet: Hashable, Sendable, CustomStringConvertible {
    /// The cluster's bucket count (every bucket number is below it).
    public let count: Int
    private var words: [UInt64]

    /// The empty set of `count` buckets.
    public init(count: Int) {
        self.count = Swift.max(1, count)
        words = [UInt64](repeating: 0, count: (self.count + 63) / 64)
    }

    /// The set holding `buckets` (numbers outside `0..<count` are ignored).
    public init<S: Sequence>(count: Int, buckets: S) where S.Element == Int {
        self.init(count: count)
        for b in buckets { insert(b) }
    }

    /// Every bucket.
    public static func all(count: Int) -> BucketSet {
        BucketSet(count: count, buckets: 0..<Swift.max(1, count))
    }

    /// A set from its wire bitmap; nil when `mask` does not have exactly `ceil(count / 8)`
    /// bytes, a bit is set at or past `count`, or `count` is not positive.
    public init?(count: Int, mask: [UInt8]) {
        guard count > 0, mask.count == (count + 7) / 8 else { return nil }
        self.init(count: count)
        for (i, byte) in mask.enumerated() where byte != 0 {
            for bit in 0..<8 where byte >> UInt8(bit) & 1 == 1 {
                let b = i * 8 + bit
                guard b < count else { return nil }
                words[b >> 6] |= 1 << UInt64(b & 63)
            }
        }
    }

    /// The wire bitmap.
    public var mask: [UInt8] {
        (0..<(count + 7) / 8).map { i in UInt8(truncatingIfNeeded: words[i >> 3] >> UInt64((i & 7) * 8)) }
    }

    /// Whether bucket `bucket` is in the set (false outside `0..<count`).
    public func contains(_ bucket: Int) -> Bool {
        bucket >= 0 && bucket < count && words[bucket >> 6] >> UInt64(bucket & 63) & 1 == 1
    }

    /// Whether the key whose hash is `hash` routes to a bucket of the set.
    public func contains(hash: UInt64) -> Bool { contains(Int(hash % UInt64(count))) }

    /// Adds `bucket` (ignored outside `0..<count`).
    public mutating func insert(_ bucket: Int) {
        guard bucket >= 0, bucket < count else { return }
        words[bucket >> 6] |= 1 << UInt64(bucket & 63)
    }

    /// Removes `bucket`.
    public mutating func remove(_ bucket: Int) {
        guard bucket >= 0, bucket < count else { return }
        words[bucket >> 6] &= ~(1 << UInt64(bucket & 63))
    }

    /// Buckets in the set.
    public var cardinality: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    /// Whether every bucket is in the set.
    public var isFull: Bool { cardinality == count }

    /// The buckets in the set, ascending.
    public var members: [Int] { (0..<count).filter(contains) }

    public var description: String { "\(cardinality) of \(count) buckets" }
}

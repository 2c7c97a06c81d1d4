/// Limits of the elastic cluster's messages: bucket masks, bucket pages, node administration.
extension RequestLimits {
    /// Virtual buckets of a cluster (`bucket_count`).
    public static let maximumBuckets = 1 << 20
    /// Entries of one `BucketRead` page or `BucketWrite`.
    public static let maximumBucketPage = 4096
    /// Bytes of a node name.
    public static let maximumNodeNameBytes = 128
    /// The highest replication factor.
    public static let maximumReplication = 8
    /// Moves one rebalance may run at once.
    public static let maximumConcurrentMoves = 64

    func validateCluster(_ message: WireMessage) throws {
        switch message {
        case let .bucketRead(r):
            try validate(r.buckets, field: "BucketRead", allowEmpty: false)
            guard (1...Self.maximumBucketPage).contains(r.limit) else {
                throw invalid("BucketRead.limit is \(r.limit), allowed 1...\(Self.maximumBucketPage)")
            }
            if let after = r.after { try validate(keys: [after.key], field: "BucketRead.after_key") }
        case let .bucketWrite(entries, finishing, run):
            if finishing != .everything { try validate(finishing, field: "BucketWrite.finish", allowEmpty: false) }
            guard run.utf8.count <= Self.maximumNodeNameBytes else { throw invalid("BucketWrite.run is over \(Self.maximumNodeNameBytes) bytes") }
            guard entries.count <= Self.maximumBucketPage else {
                throw invalid("BucketWrite has \(entries.count) entries, at most \(Self.maximumBucketPage)")
            }
            try validate(keys: entries.map(\.key), field: "BucketWrite.entries.key")
            var seen = Set<String>()
            for (i, e) in entries.enumerated() {
                guard seen.insert(e.key).inserted else { throw invalid("BucketWrite.entries[\(i)] repeats key \(e.key.debugDescription)") }
                guard e.metadata.count <= maximumMetadataBytes else {
                    throw invalid("BucketWrite.entries[\(i)].metadata is \(e.metadata.count) bytes, at most \(maximumMetadataBytes)")
                }
                guard !e.code.isEmpty, e.code.count <= maximumDimension, e.refine.count <= 4 * maximumDimension else {
                    throw invalid("BucketWrite.entries[\(i)] has \(e.code.count) code and \(e.refine.count) refine bytes")
                }
            }
        case let .bucketDrop(mask, _, run):
            try validate(mask, field: "BucketDrop", allowEmpty: false)
            guard run.utf8.count <= Self.maximumNodeNameBytes else { throw invalid("BucketDrop.run is over \(Self.maximumNodeNameBytes) bytes") }
        case let .bucketCounts(count):
            guard (1...Self.maximumBuckets).contains(count) else {
                throw invalid("BucketCounts.bucket_count is \(count), allowed 1...\(Self.maximumBuckets)")
            }
        case let .addNode(node):
            try validate(nodeName: node.name, field: "AddNode.name")
            guard !node.host.isEmpty, node.host.utf8.count <= 255 else { throw invalid("AddNode.host is \(node.host.debugDescription): give a host name or address") }
            guard (1...65535).contains(node.port) else { throw invalid("AddNode.port is \(node.port), allowed 1...65535") }
            guard node.zone.utf8.count <= Self.maximumNodeNameBytes else { throw invalid("AddNode.zone is over \(Self.maximumNodeNameBytes) bytes") }
        case let .removeNode(name):
            try validate(nodeName: name, field: "RemoveNode.name")
        case let .rebalance(r):
            guard r.replication <= Self.maximumReplication else {
                throw invalid("Rebalance.replication is \(r.replication), allowed 1...\(Self.maximumReplication) (0 = keep)")
            }
            guard r.maximumConcurrentMoves <= Self.maximumConcurrentMoves else {
                throw invalid("Rebalance.max_concurrent_moves is \(r.maximumConcurrentMoves), allowed 1...\(Self.maximumConcurrentMoves) (0 = 1)")
            }
            guard r.rateMegabytes.isFinite, r.rateMegabytes >= 0 else {
                throw invalid("Rebalance.rate_mb is \(r.rateMegabytes), expected a finite value >= 0 (0 = unthrottled)")
            }
        default:
            break
        }
    }

    /// A bucket mask: `ceil(count / 8)` bytes, no bit at or past `count`; with `allowEmpty`
    /// a count of 0 and no bytes (every entry) is accepted too.
    func validate(_ mask: BucketMask, field: String, allowEmpty: Bool) throws {
        if mask.count == 0 && mask.bits.isEmpty && allowEmpty { return }
        guard (1...Self.maximumBuckets).contains(mask.count) else {
            throw invalid("\(field).bucket_count is \(mask.count), allowed 1...\(Self.maximumBuckets)")
        }
        let bytes = (mask.count + 7) / 8
        guard mask.bits.count == bytes else {
            throw invalid("\(field).bucket_mask has \(mask.bits.count) bytes, expected \(bytes) for \(mask.count) buckets")
        }
        if mask.count % 8 != 0, mask.bits[bytes - 1] >> UInt8(mask.count % 8) != 0 {
            throw invalid("\(field).bucket_mask sets a bucket at or past bucket_count \(mask.count)")
        }
    }

    private func validate(nodeName: String, field: String) throws {
        guard !nodeName.isEmpty, nodeName.utf8.count <= Self.maximumNodeNameBytes else {
            throw invalid("\(field) is \(nodeName.debugDescription): give 1...\(Self.maximumNodeNameBytes) bytes")
        }
        guard nodeName.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw invalid("\(field) is \(nodeName.debugDescription): letters, digits, '-', '_' and '.' only")
        }
    }
}

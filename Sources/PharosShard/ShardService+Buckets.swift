import PharosRouting
import PharosStorage
import PharosWire

/// The bucket messages a coordinator sends while it moves buckets between nodes.
extension ShardService {
    /// The set a wire mask names; nil for `.everything`. The server checked the mask's shape
    /// against `RequestLimits`, so a mask that still does not parse is refused here, not trusted.
    static func bucketSet(_ mask: BucketMask) throws -> BucketSet? {
        if mask == .everything { return nil }
        guard let set = BucketSet(count: mask.count, mask: mask.bits) else {
            throw WireError(.invalidArgument, "bucket_mask of \(mask.bits.count) bytes does not describe \(mask.count) buckets")
        }
        return set
    }

    func bucketReply(to message: WireMessage) throws -> WireMessage {
        let shard = try ready()
        switch message {
        case let .bucketRead(request):
            guard let buckets = try Self.bucketSet(request.buckets) else { throw WireError(.invalidArgument, "BucketRead names no buckets") }
            let entries = try shard.bucketEntries(in: buckets, after: request.after, limit: request.limit)
            return .bucketEntries(entries.map { e in
                MovedEntry(key: e.key, list: e.stored.list, code: e.stored.code, refine: e.stored.refine, metadata: e.stored.metadata)
            })
        case let .bucketWrite(entries, finishing, run):
            func stored(_ e: MovedEntry) -> Shard.BucketEntry {
                Shard.BucketEntry(key: e.key, hash: KeyHash.of(e.key), stored: Shard.StoredEntry(list: e.list, code: e.code, refine: e.refine, metadata: e.metadata))
            }
            // Checked as they come (a bad page is refused at once), held until the copy's last
            // page, then stored as one segment: no log record, no write lock per page.
            let written = try receiving.receive(entries, run: run, finishing: try Self.bucketSet(finishing),
                                                check: { try shard.validate(encoded: $0.map(stored)) },
                                                store: { try shard.importEntries($0.map(stored)) })
            return .upsertResult(written: written, replaced: 0)
        case let .bucketDrop(mask, receive, run):
            guard let buckets = try Self.bucketSet(mask) else { throw WireError(.invalidArgument, "BucketDrop names no buckets") }
            // A coordinator starts a copy with this, before any client write of the buckets is
            // sent here (the move enters the map after it): the drop takes only a partial copy
            // left by an earlier attempt.
            if receive { receiving.begin(buckets, run: run) }
            return .deleteResult(deleted: try shard.deleteEntries(in: buckets))
        case let .bucketCounts(count):
            return .bucketCountsResult(try shard.entriesPerBucket(buckets: count).map { UInt64($0) })
        default:
            throw WireError(.internalError, "\(message.name) is not a bucket message")
        }
    }
}

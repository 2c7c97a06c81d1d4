import PharosIndex
import PharosRouting

/// Where a stored entry lies in its source: its identity there (`InvertedListSource.entryID`),
/// its list and its offset in the list.
struct EntryLocation: Sendable, Equatable {
    /// The entry's identity in its source (a growing segment's ordinal, a segment's position).
    var entry: Int64
    /// Its inverted list.
    var list: Int
    /// Its offset in the list.
    var offset: Int
}

/// A storage source of entries (the growing segment, a segment being sealed, a segment
/// file): the engine scans its lists, and it answers for its own entries' identities.
///
/// An entry is named by (source, identity) and nothing else: the key, metadata and (with
/// buckets) the bucket are attributes the source looks up by identity, so the engine's
/// internal labels never reach storage and storage never type-switches on its sources.
protocol EntrySource: InvertedListSource {
    /// The key of entry `entry`.
    func key(ofEntry entry: Int64) throws -> String
    /// The metadata bytes of entry `entry`.
    func metadata(ofEntry entry: Int64) throws -> [UInt8]
    /// Where the live version of `key` lies, if this source holds it.
    func location(ofKey key: String) throws -> EntryLocation?
    /// The list and offset of entry `entry`.
    func location(ofEntry entry: Int64) throws -> EntryLocation
    /// `withList`, with the entries of buckets outside `buckets` passed over by the scan.
    func withList<R>(_ list: Int, keeping buckets: BucketSet, _ body: (InvertedListView) throws -> R) throws -> R
    /// The live entries whose keys route to a bucket of `buckets`: identity and key hash
    /// (read from where the source keeps it, no key decoded).
    func liveEntries(in buckets: BucketSet) throws -> [(entry: Int64, hash: UInt64)]
    /// The live entries of `buckets` with a key hash of at least `hash`, the smallest hashes
    /// first: at least `limit` of them when there are that many, and every one that shares
    /// the hash of the last (so a page boundary never splits a hash). Unordered otherwise.
    func liveEntries(in buckets: BucketSet, fromHash hash: UInt64, limit: Int) throws -> [(entry: Int64, hash: UInt64)]
}

extension EntrySource {
    /// By filtering every live entry of the buckets (sources whose hashes are not sorted).
    func liveEntries(in buckets: BucketSet, fromHash hash: UInt64, limit: Int) throws -> [(entry: Int64, hash: UInt64)] {
        let all = try liveEntries(in: buckets).filter { $0.hash >= hash }.sorted { $0.hash < $1.hash }
        guard all.count > limit else { return all }
        var end = limit
        while end < all.count, all[end].hash == all[limit - 1].hash { end += 1 }
        return Array(all[..<end])
    }
}

/// A source seen through a bucket filter: what a shard scans when a search names the buckets
/// it answers for (with replicas, every bucket is counted by exactly one node).
final class BucketFilteredSource: InvertedListSource, @unchecked Sendable {
    // @unchecked: as its source (read under the shard's read lock).
    let source: any EntrySource
    let buckets: BucketSet

    init(_ source: any EntrySource, buckets: BucketSet) {
        self.source = source
        self.buckets = buckets
    }

    func withList<R>(_ list: Int, _ body: (InvertedListView) throws -> R) throws -> R {
        try source.withList(list, keeping: buckets, body)
    }

    func entryCount(ofList list: Int) -> Int { source.entryCount(ofList: list) }

    func entryID(list: Int, offset: Int) -> Int64 { source.entryID(list: list, offset: offset) }
}

/// A bitmap in a fixed allocation (pointers into it stay valid while it is referenced).
final class BitmapWords: @unchecked Sendable {
    // @unchecked: filled once before it is shared, read-only after.
    let words: UnsafeMutablePointer<UInt64>
    let count: Int

    init(bits: Int) {
        count = Swift.max(1, (bits + 63) / 64)
        words = .allocate(capacity: count)
        words.initialize(repeating: 0, count: count)
    }

    deinit { words.deallocate() }

    func set(_ bit: Int) { words[bit >> 6] |= 1 << UInt64(bit & 63) }

    var bits: Int { count * 64 }
}

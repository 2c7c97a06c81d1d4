import PharosIndex

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
}

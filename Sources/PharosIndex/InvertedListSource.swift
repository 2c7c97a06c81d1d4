/// Anything `IVFPQIndex` can scan: its own in-memory lists, or a shard's segments, the way
/// faiss's `InvertedLists` (with `OnDiskInvertedLists` behind it) carries each entry's id.
///
/// Access is scoped: a list's bytes are seen only inside `withList`, and a list whose bytes
/// are damaged is an error there, where it is read. Each entry has an identity the source
/// gives (`entryID`); search results name entries by (source, identity), so an owner resolves
/// its own hits without knowing how the engine labels them internally.
public protocol InvertedListSource: AnyObject, Sendable {
    /// Calls `body` with a view of list `list`, valid only during the call. Throws when the
    /// list cannot be read (a checksum mismatch names the file and list).
    func withList<R>(_ list: Int, _ body: (InvertedListView) throws -> R) throws -> R
    /// Entries in list `list`, deleted ones included (cheap: no list bytes are read).
    func entryCount(ofList list: Int) -> Int
    /// The identity of entry `offset` of list `list`: what search results report for it.
    func entryID(list: Int, offset: Int) -> Int64
}

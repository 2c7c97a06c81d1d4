import PharosIndex

/// One logical write, as the write-ahead log stores it: keys with their encoded entries, or
/// keys to delete. Replay re-applies records in log order; both kinds are idempotent in
/// effect (an upsert replaces whatever the key holds, a delete of an absent key does nothing).
enum LogRecord: Equatable {
    /// Replace-or-insert `keys[i]` with row i of `entries` and `metadata[i]`.
    case upsert(keys: [String], entries: EncodedEntries, metadata: [[UInt8]])
    /// Delete `keys` (absent keys are ignored).
    case delete(keys: [String])

    private static let upsertTag: UInt32 = 1
    private static let deleteTag: UInt32 = 2

    /// Serialised payload (before compression).
    func encoded() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case let .upsert(keys, entries, metadata):
            w.write(LogRecord.upsertTag)
            w.write(keys.count)
            for key in keys { w.write(key) }
            w.write(entries.lists.map { Int64($0) })
            w.write(entries.codes)
            w.write(entries.refine)
            for m in metadata { w.write(m) }
        case let .delete(keys):
            w.write(LogRecord.deleteTag)
            w.write(keys.count)
            for key in keys { w.write(key) }
        }
        return w.bytes
    }

    /// Parses a payload written by `encoded` for an index with `layout` and `lists` lists.
    static func decode(_ bytes: [UInt8], layout: CodeLayout, lists: Int, path: String, tag: String) throws -> LogRecord {
        var r = ByteReader(bytes: bytes[...], path: path, tag: tag)
        let kind = try r.readUInt32()
        let count = try r.readInt("key count", in: 0...StorageLimits.maximumBatchRows)
        var keys: [String] = []
        keys.reserveCapacity(count)
        for _ in 0..<count { keys.append(try r.readString()) }
        switch kind {
        case upsertTag:
            let rawLists = try r.readInt64s("lists", expected: count)
            guard rawLists.allSatisfy({ $0 >= 0 && $0 < lists }) else {
                throw StorageError.corrupt(path: path, block: tag, problem: "an entry names a list outside 0..<\(lists)")
            }
            let codes = try r.readBytes("codes", expected: count * layout.subquantizers)
            let refine = try r.readBytes("refine codes", expected: count * layout.refineBytes)
            var metadata: [[UInt8]] = []
            metadata.reserveCapacity(count)
            for _ in 0..<count { metadata.append(try r.readBytes("metadata")) }
            try r.expectEnd()
            return .upsert(keys: keys, entries: EncodedEntries(lists: rawLists.map { Int32($0) }, codes: codes, refine: refine, layout: layout),
                           metadata: metadata)
        case deleteTag:
            try r.expectEnd()
            return .delete(keys: keys)
        default:
            throw StorageError.corrupt(path: path, block: tag, problem: "unknown record kind \(kind)")
        }
    }
}

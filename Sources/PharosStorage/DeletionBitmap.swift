import PharosIndex

/// The deleted entries of one sealed segment, one bit per entry position.
///
/// Segment files never change, so deletions after sealing live here: in memory for scans
/// (its words are handed to the kernels as a skip mask), and on disk as
/// `segments/<id>.<generation>.del` (a `ChecksummedFile`, magic `PHDELETE`) written at each
/// manifest change that follows new deletions.
final class DeletionBitmap: @unchecked Sendable {
    // @unchecked: bits change only under the shard's write lock; scans read them under its
    // read lock.
    static let magic = "PHDELETE"
    static let formatVersion: UInt32 = 1

    /// Number of entries covered.
    let entries: Int
    /// Words of the bitmap (fixed size, so pointers into it stay valid).
    let words: UnsafeMutablePointer<UInt64>
    let wordCount: Int
    /// Bits set.
    private(set) var deletedCount = 0

    init(entries: Int) {
        self.entries = entries
        wordCount = Swift.max(1, (entries + 63) / 64)
        words = .allocate(capacity: wordCount)
        words.initialize(repeating: 0, count: wordCount)
    }

    deinit { words.deallocate() }

    func isDeleted(_ position: Int) -> Bool {
        words[position >> 6] >> UInt64(position & 63) & 1 == 1
    }

    /// Sets the bit of `position`; returns false when it was already set.
    @discardableResult
    func delete(_ position: Int) -> Bool {
        precondition(position >= 0 && position < entries, "position \(position) outside a segment of \(entries)")
        let bit = UInt64(1) << UInt64(position & 63)
        guard words[position >> 6] & bit == 0 else { return false }
        words[position >> 6] |= bit
        deletedCount += 1
        return true
    }

    /// A copy of the words (a snapshot for writing or comparing later).
    func snapshot() -> [UInt64] { Array(UnsafeBufferPointer(start: words, count: wordCount)) }

    /// File name of generation `generation` of segment `id`'s bitmap.
    static func fileName(segment id: UInt64, generation: UInt64) -> String {
        Segment.baseName(id) + ".\(generation).del"
    }

    /// Writes `words` (a snapshot) for segment `id` atomically to `path`.
    static func write(_ words: [UInt64], segment id: UInt64, entries: Int, to path: String, faults: StorageFaults) throws {
        var w = ByteWriter()
        w.write(Int64(bitPattern: id))
        w.write(entries)
        w.write(words.map { Int64(bitPattern: $0) })
        try ChecksummedFile.write(path, magic: magic, version: formatVersion, payload: w.bytes, faults: faults)
    }

    /// Reads the bitmap of segment `id` (with `entries` entries, `deleted` of them deleted
    /// as the manifest says) from `path`.
    static func read(_ path: String, segment id: UInt64, entries: Int, deleted: Int) throws -> DeletionBitmap {
        let (_, payload) = try ChecksummedFile.read(path, magic: magic, versions: formatVersion...formatVersion)
        var r = ByteReader(bytes: payload[...], path: path, tag: "deletion bitmap")
        let storedID = UInt64(bitPattern: try r.readInt64())
        let storedEntries = try r.readInt("entries", in: 0...Int.max / 2)
        guard storedID == id, storedEntries == entries else {
            throw StorageError.corrupt(path: path, block: "header", problem: "describes segment \(storedID) of \(storedEntries) entries, expected segment \(id) of \(entries)")
        }
        let bitmap = DeletionBitmap(entries: entries)
        let stored = try r.readInt64s("words", expected: bitmap.wordCount)
        try r.expectEnd()
        for (i, word) in stored.enumerated() {
            var w = UInt64(bitPattern: word)
            while w != 0 {
                let bit = w.trailingZeroBitCount
                w &= w - 1
                let position = i * 64 + bit
                guard position < entries else {
                    throw StorageError.corrupt(path: path, block: "words", problem: "bit \(position) set beyond \(entries) entries")
                }
                bitmap.delete(position)
            }
        }
        guard bitmap.deletedCount == deleted else {
            throw StorageError.corrupt(path: path, block: "words", problem: "\(bitmap.deletedCount) entries marked, the manifest says \(deleted)")
        }
        return bitmap
    }
}

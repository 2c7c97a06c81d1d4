import PharosIndex

/// The shard's root of truth: which segment files (and which deletion bitmaps) make up the
/// shard, which trained state they were encoded with, and where log replay starts.
///
/// Stored as `MANIFEST` (a `ChecksummedFile` with magic `PHMANIFS`), replaced atomically.
struct Manifest: Equatable {
    static let fileName = "MANIFEST"
    static let magic = "PHMANIFS"
    /// 2 adds `logStartLSN`; version 1 files are still read (their LSN is unknown, 0).
    static let formatVersion: UInt32 = 2

    /// One live segment.
    struct SegmentEntry: Equatable {
        /// Segment id (its file is `segments/<id>.seg`).
        var id: UInt64
        /// Entries in the file.
        var entries: Int
        /// Generation of its deletion bitmap file, 0 when nothing is deleted.
        var deletionGeneration: UInt64
        /// Entries that bitmap marks deleted (checked against it on open).
        var deleted: Int
    }

    /// CRC32C of the trained-state file this shard's codes were made with.
    var trainedVersion: UInt64
    /// Id the next new segment gets.
    var nextSegmentID: UInt64
    /// First log file whose records are not in any segment: replay starts there.
    var logStart: UInt64
    /// The LSN of the first record in log file `logStart` (0 when not known): replay checks
    /// that the log holds every record from it on.
    var logStartLSN: UInt64 = 0
    /// Live segments, oldest first.
    var segments: [SegmentEntry]

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.write(Int64(bitPattern: trainedVersion))
        w.write(Int64(bitPattern: nextSegmentID))
        w.write(Int64(bitPattern: logStart))
        w.write(Int64(bitPattern: logStartLSN))
        w.write(segments.count)
        for s in segments {
            w.write(Int64(bitPattern: s.id))
            w.write(s.entries)
            w.write(Int64(bitPattern: s.deletionGeneration))
            w.write(s.deleted)
        }
        return w.bytes
    }

    static func read(directory: String) throws -> Manifest {
        let path = directory + "/" + fileName
        return try decode(try ChecksummedFile.read(path, magic: magic, versions: 1...formatVersion), path: path)
    }

    /// The manifest in `bytes`, read earlier from `path` (a snapshot reads it once).
    static func decode(_ bytes: [UInt8], path: String) throws -> Manifest {
        try decode(try ChecksummedFile.decode(bytes, path: path, magic: magic, versions: 1...formatVersion), path: path)
    }

    private static func decode(_ file: (version: UInt32, payload: [UInt8]), path: String) throws -> Manifest {
        let (version, payload) = file
        var r = ByteReader(bytes: payload[...], path: path, tag: "manifest")
        let trained = UInt64(bitPattern: try r.readInt64())
        let next = UInt64(bitPattern: try r.readInt64())
        let logStart = UInt64(bitPattern: try r.readInt64())
        let logStartLSN = version >= 2 ? UInt64(bitPattern: try r.readInt64()) : 0
        let count = try r.readInt("segment count", in: 0...StorageLimits.maximumSegments)
        var segments: [SegmentEntry] = []
        for i in 0..<count {
            let id = UInt64(bitPattern: try r.readInt64())
            guard id < next else { throw StorageError.corrupt(path: path, block: "segment \(i)", problem: "id \(id) is not below the next id \(next)") }
            let entries = try r.readInt("segment \(id) entries", in: 0...Int(UInt32.max) * 256)
            let generation = UInt64(bitPattern: try r.readInt64())
            let deleted = try r.readInt("segment \(id) deleted entries", in: 0...entries)
            guard (generation == 0) == (deleted == 0) else {
                throw StorageError.corrupt(path: path, block: "segment \(i)", problem: "bitmap generation \(generation) with \(deleted) deleted entries")
            }
            segments.append(SegmentEntry(id: id, entries: entries, deletionGeneration: generation, deleted: deleted))
        }
        try r.expectEnd()
        return Manifest(trainedVersion: trained, nextSegmentID: next, logStart: logStart, logStartLSN: logStartLSN, segments: segments)
    }

    func write(directory: String, faults: StorageFaults) throws {
        try ChecksummedFile.write(directory + "/" + Manifest.fileName, magic: Manifest.magic,
                                  version: Manifest.formatVersion, payload: encoded(), faults: faults)
    }
}

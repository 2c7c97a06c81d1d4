import Foundation
import PharosIndex
import PharosVectors
import Testing
@testable import PharosStorage

/// Damaged files give errors naming the file and block (or a documented repair), never a
/// crash or silently different results.
@Suite struct CorruptionTests {
    /// A shard with one segment (some entries deleted) and unsealed records in the log.
    static func makeShard(_ dir: String) throws -> [[Shard.Hit]] {
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8x4fs,RefineSQ8"), options: Fixture.manualOptions)
        try shard.upsert(keys: Fixture.keys(0..<300), vectors: Fixture.vectors(0..<300), metadata: (0..<300).map { [UInt8($0 % 200)] })
        try shard.seal()
        try shard.delete(keys: ["img-3", "img-4"])
        try shard.upsert(keys: Fixture.keys(300..<350), vectors: Fixture.vectors(300..<350))
        try shard.seal()   // persists the deletion bitmap of the first segment
        try shard.upsert(keys: Fixture.keys(350..<400), vectors: Fixture.vectors(350..<400))
        let hits = try shard.search(Fixture.vectors(0..<5, stream: 2), k: 20, parameters: SearchParameters(nprobe: 4))
        shard.close()
        return hits
    }

    static func file(_ dir: String, _ suffix: String) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/segments").filter { $0.hasSuffix(suffix) }.sorted()
        return dir + "/segments/" + names[0]
    }

    static func flip(_ path: String, at offset: Int) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(offset))
        let byte = try handle.read(upToCount: 1)![0]
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: [byte ^ 0x5a])
        try handle.close()
    }

    static func truncate(_ path: String, to length: Int) {
        #expect(Foundation.truncate(path, off_t(length)) == 0)
    }

    static func size(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int) ?? 0
    }

    /// Every byte a checksum covers, flipped, fails verification naming the segment file;
    /// a flipped padding byte changes no result.
    @Test func everyFlippedSegmentByteIsCaughtOrHarmless() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        let pristine = try Self.makeShard(dir)
        let path = try Self.file(dir, ".seg")
        let header = try Segment(path: path, id: 1, trainedVersion: try Shard.fileChecksum(dir + "/TRAINED"),
                                 layout: CodeLayout(subquantizers: 8, bits: 4, refineBytes: 16), lists: 4, deletions: nil).header
        var covered: [Range<Int>] = [0 ..< SegmentHeader.prefixBytes + header.encoded().count - SegmentHeader.prefixBytes]
        for l in header.lists {
            covered.append(l.codesOffset ..< l.codesOffset + header.layout.codeBytes(count: l.count))
            covered.append(l.refineOffset ..< l.refineOffset + l.count * header.refineBytes)
        }
        for b in header.keyBlocks + header.metadataBlocks { covered.append(b.offset ..< b.offset + b.storedBytes) }
        covered.append(header.keyIndexOffset ..< header.keyIndexOffset + header.entries * 16)
        let size = Self.size(path)
        var caught = 0, harmless = 0
        for offset in stride(from: 0, to: size, by: 5) {
            try Self.flip(path, at: offset)
            defer { try? Self.flip(path, at: offset) }
            if covered.contains(where: { $0.contains(offset) }) {
                do {
                    _ = try ShardVerifier.verify(dir)
                    Issue.record("flipped byte \(offset) of \(size) was not detected")
                } catch let error as StorageError {
                    #expect(error.description.contains(path), "\(error)")
                    caught += 1
                }
            } else {
                let shard = try Shard.open(at: dir, options: Fixture.manualOptions)
                #expect(try shard.search(Fixture.vectors(0..<5, stream: 2), k: 20, parameters: SearchParameters(nprobe: 4)) == pristine)
                shard.close()
                harmless += 1
            }
        }
        #expect(caught > 500)
        #expect(harmless > 0)
    }

    /// Damage that opening does not read is caught on first use, naming the block.
    @Test func lazyChecksFailTheReadThatTouchesDamage() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        _ = try Self.makeShard(dir)
        let path = try Self.file(dir, ".seg")
        let trained = try Shard.fileChecksum(dir + "/TRAINED")
        let segment = try Segment(path: path, id: 1, trainedVersion: trained, layout: CodeLayout(subquantizers: 8, bits: 4, refineBytes: 16),
                                  lists: 4, deletions: nil)
        let header = segment.header
        let list = header.lists.firstIndex { $0.count > 0 }!
        let victim = try segment.key(at: header.lists[list].first)   // an entry of the list damaged below
        let queries = Fixture.vectors(0..<3, stream: 2)

        try Self.flip(path, at: header.lists[list].codesOffset + 3)
        var shard = try Shard.open(at: dir, options: Fixture.manualOptions)   // opening reads headers only
        // Every read of the damaged list fails where it reads it, the second as the first, and
        // so does a key lookup that needs its codes: no damage is parked for later.
        for _ in 0..<2 {
            #expect { try shard.search(queries, k: 5, parameters: SearchParameters(nprobe: 4)) } throws: {
                "\($0)".contains("\(path): list \(list): CRC32C mismatch")
            }
        }
        #expect { try shard.entry(forKey: victim) } throws: { "\($0)".contains("\(path): list \(list): CRC32C mismatch") }
        shard.close()
        try Self.flip(path, at: header.lists[list].codesOffset + 3)

        try Self.flip(path, at: header.metadataBlocks[0].offset + 2)
        shard = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(throws: StorageError.self) { try shard.entry(forKey: "img-10") }
        #expect { try shard.entry(forKey: "img-10") } throws: { "\($0)".contains("\(path): metadata block 0: CRC32C mismatch") }
        shard.close()
        try Self.flip(path, at: header.metadataBlocks[0].offset + 2)

        try Self.flip(path, at: header.keyBlocks[0].offset + 2)
        shard = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect { try shard.search(queries, k: 300, parameters: SearchParameters(nprobe: 4)) } throws: {
            "\($0)".contains("\(path): key block 0: CRC32C mismatch")
        }
        shard.close()
    }

    @Test func truncatedOrMissingFilesAreNamed() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        _ = try Self.makeShard(dir)
        let saved = dir + "-saved"
        defer { Fixture.cleanup(saved) }
        try FileManager.default.copyItem(atPath: dir, toPath: saved)
        func restore() throws {
            try FileManager.default.removeItem(atPath: dir)
            try FileManager.default.copyItem(atPath: saved, toPath: dir)
        }
        let files = [try Self.file(dir, ".seg"), try Self.file(dir, ".del"), dir + "/MANIFEST", dir + "/TRAINED"]
        for path in files {
            for length in [0, 10, Self.size(path) / 2, Self.size(path) - 1] {
                Self.truncate(path, to: length)
                #expect { try Shard.open(at: dir, options: Fixture.manualOptions) } throws: { "\($0)".contains(path) }
                #expect { try ShardVerifier.verify(dir) } throws: { "\($0)".contains(path) }
                try restore()
            }
        }
        try FileManager.default.removeItem(atPath: dir + "/MANIFEST")
        #expect { try Shard.open(at: dir, options: Fixture.manualOptions) } throws: {
            "\($0)".contains("MANIFEST is missing") && "\($0)".contains("restore it from a backup")
        }
        try restore()
        #expect(try Shard.open(at: dir, options: Fixture.manualOptions).statistics.liveEntries == 398)
    }

    /// A torn log tail (a crash mid-append) is cut back to the last whole record and
    /// reported; damage in an older log file, with newer ones after it, is an error.
    @Test func tornLogTailIsCutAndOlderLogDamageIsAnError() throws {
        let dir = Fixture.directory()
        defer { Fixture.cleanup(dir) }
        _ = try Self.makeShard(dir)
        let logs = try WriteAheadLog.sequences(in: dir + "/wal").map { WriteAheadLog.path(dir + "/wal", $0) }
        let last = logs.last { Self.size($0) > 0 }!
        let whole = Self.size(last)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: last))
        try handle.seekToEnd()
        try handle.write(contentsOf: [UInt8](repeating: 0xab, count: 37))   // a torn frame
        try handle.close()
        #expect(try ShardVerifier.verify(dir).repairable.contains { $0.contains("torn tail") })
        var shard = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(shard.recovery.truncatedTails.count == 1)
        #expect(shard.recovery.truncatedTails[0].contains("cut 37 bytes"))
        #expect(Self.size(last) == whole)
        #expect(shard.statistics.liveEntries == 398)
        try shard.upsert(keys: ["late"], vectors: Fixture.vectors(500..<501))   // goes to a newer log file
        shard.close()

        // Now `last` is followed by a newer file: a flipped byte in one of its records is an
        // error, and so is one in its header.
        let inRecord = WriteAheadLog.fileHeaderBytes + 30
        try Self.flip(last, at: inRecord)
        #expect { try Shard.open(at: dir, options: Fixture.manualOptions) } throws: {
            "\($0)".contains(last) && "\($0)".contains("newer log files follow")
        }
        try Self.flip(last, at: inRecord)
        try Self.flip(last, at: 12)
        #expect { try Shard.open(at: dir, options: Fixture.manualOptions) } throws: {
            "\($0)".contains(last) && "\($0)".contains("header")
        }
        try Self.flip(last, at: 12)
        shard = try Shard.open(at: dir, options: Fixture.manualOptions)
        #expect(shard.statistics.liveEntries == 399)
    }
}

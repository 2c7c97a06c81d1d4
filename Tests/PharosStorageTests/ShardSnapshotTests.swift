#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosIndex
@testable import PharosStorage
import PharosVectors
import Testing

/// Backups from outside: a snapshot taken while a writer and a compaction run restores into a
/// new directory holding every entry acknowledged before it began, byte for byte, and no
/// deleted one; a damaged or foreign archive is refused with nothing left behind.
@Suite struct ShardSnapshotTests {
    @Test func aSnapshotTakenWhileServingRestoresEveryAcknowledgedEntry() async throws {
        let dir = Fixture.directory(), restored = Fixture.directory("restored"), archive = Fixture.directory("archive") + ".tar"
        defer { for p in [dir, restored, archive] { Fixture.cleanup(p) } }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF8,PQ8x4fs,RefineSQ8"), options: Fixture.manualOptions)
        let base = Fixture.vectors(0..<900)
        let keys = Fixture.keys(0..<900)
        // Three sealed segments (so compaction has work), then a tail only in the log, and deletes in both.
        for part in 0..<3 {
            let rows = part * 200 ..< part * 200 + 200
            try shard.upsert(keys: Array(keys[rows]), vectors: base.rows(rows), metadata: rows.map { [UInt8($0 % 251)] })
            try shard.seal()
        }
        try shard.upsert(keys: Array(keys[600..<900]), vectors: base.rows(600..<900), metadata: (600..<900).map { [UInt8($0 % 251)] })
        let deleted = Array(keys[0..<20]) + Array(keys[650..<660])
        _ = try shard.delete(keys: deleted)
        let before = try keys.map { try shard.entry(forKey: $0) }

        // A writer keeps going and a compaction merges the segments while the snapshot is taken.
        let late = Fixture.vectors(0..<2000, stream: 3)
        let writer = Task.detached {
            var written = 0
            for start in stride(from: 0, to: 2000, by: 50) where !Task.isCancelled {
                _ = try shard.upsert(keys: Fixture.keys(start..<start + 50, prefix: "late"), vectors: late.rows(start..<start + 50))
                written = start + 50
            }
            return written
        }
        let compaction = Task.detached { try shard.compact(force: true) }
        let summary = try ShardSnapshot.write(shard: dir, to: archive)
        writer.cancel()
        _ = try await writer.value
        _ = try await compaction.value
        #expect(summary.logFiles >= 1 && summary.files >= 4)

        let restoredSummary = try ShardSnapshot.restore(from: archive, into: restored)
        #expect(restoredSummary.files == summary.files && restoredSummary.bytes == summary.bytes)
        let copy = try Shard.open(at: restored, options: Fixture.manualOptions)
        for (i, key) in keys.enumerated() {
            #expect(try copy.entry(forKey: key) == before[i], "\(key)")
        }
        for key in deleted { #expect(try copy.entry(forKey: key) == nil) }
        // What the writer added during the snapshot may or may not be in it, but what is, is exact.
        for start in stride(from: 0, to: 2000, by: 97) {
            let key = "late-\(start)"
            if let entry = try copy.entry(forKey: key) { #expect(entry == (try shard.entry(forKey: key))) }
        }
        let hits = try copy.search(base.rows(100..<140), k: 1, parameters: SearchParameters(nprobe: 8))
        #expect((0..<40).filter { hits[$0].first?.key == keys[100 + $0] }.count >= 36)
        copy.close()
        shard.close()
    }

    @Test func aDamagedOrForeignArchiveIsRefusedAndNothingIsLeft() throws {
        let dir = Fixture.directory(), archive = Fixture.directory("archive") + ".tar", target = Fixture.directory("target")
        defer { for p in [dir, archive, target] { Fixture.cleanup(p) } }
        let shard = try Shard.create(at: dir, trainedIndex: try Fixture.trained("IVF4,PQ8"), options: Fixture.manualOptions)
        try shard.upsert(keys: Fixture.keys(0..<300), vectors: Fixture.vectors(0..<300))
        try shard.seal()
        try shard.upsert(keys: Fixture.keys(300..<400), vectors: Fixture.vectors(300..<400))
        _ = try ShardSnapshot.write(shard: dir, to: archive)
        let original = try Data(contentsOf: URL(fileURLWithPath: archive))

        func refusal(_ bytes: Data) -> String? {
            try? bytes.write(to: URL(fileURLWithPath: archive))
            defer { Fixture.cleanup(target) }
            do {
                _ = try ShardSnapshot.restore(from: archive, into: target)
                return nil
            } catch {
                #expect(!FileManager.default.fileExists(atPath: target), "a refused restore left \(target)")
                return "\(error)"
            }
        }
        #expect(refusal(original) == nil)   // the intact archive restores
        // A byte flipped in the middle (inside a segment's data), not only at the tail.
        var flipped = original
        flipped[original.count / 2] ^= 0x40
        let damage = refusal(flipped)
        #expect(damage?.contains("do not match the index") == true || damage?.contains("checksum") == true, "\(damage ?? "restored")")
        #expect(refusal(original.prefix(original.count - 2048))?.contains("cut short") == true)
        #expect(refusal(Data(count: 4096))?.contains("SNAPSHOT") == true)
        // An archive naming a path outside the shard's files is refused before anything is written.
        let evil = Data(SnapshotArchive.header(name: "../evil", size: 4) + Array("evil".utf8) + [UInt8](repeating: 0, count: 508))
        #expect(refusal(evil + original)?.contains("not a file of a shard") == true)
        #expect(!FileManager.default.fileExists(atPath: (target as NSString).deletingLastPathComponent + "/evil"))
        // The target must be new (or empty): a restore never mixes with an existing shard.
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: target + "/MANIFEST", contents: Data([1]))
        #expect(throws: StorageError.self) { _ = try ShardSnapshot.restore(from: archive, into: target) }
        shard.close()
    }
}

import Foundation
import PharosCluster
import PharosDescriptors
import PharosVectors
import PharosWire
import Synchronization
import Testing

/// `pharos ingest --images` as a library, against a recording stand-in for the cluster: a run
/// the cluster stops resumes after exactly the batches it acknowledged, nothing sent twice;
/// busy answers are retried; the journal survives a torn tail and reports damage in its middle.
@Suite struct PhotoIngestionTests {
    /// A folder of distinct small JPEGs and one file that is not a photo.
    static func photoFolder(count: Int) throws -> String {
        let root = NSTemporaryDirectory() + "pharos-ingest-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        for i in 0..<count {
            var rng = SplitMix64(seed: UInt64(7 + i))
            let base = Float(rng.next() % 200)
            let values = (0..<(3 * 48 * 64)).map { j in base + Float((j * (i + 3)) % 50) }
            let bytes = try ImageLoader.encodeJPEG(FeatureMap(channels: 3, height: 48, width: 64, values: values))
            try Data(bytes).write(to: URL(fileURLWithPath: root + String(format: "/sub/p%02d.jpg", i)))
        }
        try Data("text".utf8).write(to: URL(fileURLWithPath: root + "/readme.jpg"))
        return root
    }

    static func ingestion(batch: Int, inFlight: Int) throws -> PhotoIngestion {
        let extractor = try DescriptorExtractor(network: try EfficientNetLite0(), configuration: .init(pooling: .gem, maximumSide: 48))
        return PhotoIngestion(extractor: extractor, threads: 2, batch: batch, inFlight: inFlight, retryPause: 0.01)
    }

    /// What the stand-in cluster received.
    final class Received: Sendable {
        let batches = Mutex<[[String]]>([])
        let calls = Atomic<Int>(0)
        var keys: [String] { batches.withLock { $0.flatMap { $0 } } }
    }

    @Test func aStoppedIngestionResumesAfterTheAcknowledgedBatches() async throws {
        let folder = try Self.photoFolder(count: 11)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let photos = try PhotoList.scan(folder: folder)
        let journalPath = folder + "/state/photos.journal", errors = folder + "/state/photos.errors.tsv"
        let ingestion = try Self.ingestion(batch: 3, inFlight: 1)
        let settings = ["pooling": "gem", "images": folder]

        // The cluster acknowledges two batches, then refuses the third.
        let first = Received()
        let journal = try IngestJournal(path: journalPath, settings: settings, restart: false)
        await #expect(throws: PhotoIngestion.BatchRefused.self) {
            _ = try await ingestion.run(photos: photos, journal: journal, errors: errors, upsert: { keys, vectors, dimension in
                #expect(vectors.count == keys.count * dimension && dimension == 1280)
                guard first.calls.wrappingAdd(1, ordering: .relaxed).newValue <= 2 else { throw WireError(.invalidArgument, "refused") }
                first.batches.withLock { $0.append(keys) }
                return 0
            })
        }
        journal.close()
        // Groups form in the order photos finish, so a batch holds up to 3 (fewer when it had
        // the unreadable file).
        #expect(first.batches.withLock { $0.count == 2 && $0.allSatisfy { (2...3).contains($0.count) } })

        // The rerun sends exactly the rest: nothing twice, nothing missing.
        let second = Received()
        let reopened = try IngestJournal(path: journalPath, settings: settings, restart: false)
        #expect(reopened.done == Set(first.keys) && reopened.damagedLines.isEmpty)
        let summary = try await ingestion.run(photos: photos, journal: reopened, errors: errors, upsert: { keys, _, _ in
            second.batches.withLock { $0.append(keys) }
            return 0
        })
        reopened.close()
        #expect(summary == PhotoIngestion.Summary(photos: 12, resumed: first.keys.count, sent: 11 - first.keys.count, replaced: 0, skipped: 1))
        #expect(Set(first.keys).isDisjoint(with: second.keys))
        #expect((first.keys + second.keys).sorted() == photos.map(\.key).filter { $0 != "readme.jpg" })
        let skipped = try String(contentsOfFile: errors, encoding: .utf8)
        #expect(skipped.hasPrefix(folder + "/readme.jpg\t") && skipped.contains("not a JPEG or PNG"))
        #expect(second.batches.withLock { $0.allSatisfy { (1...3).contains($0.count) } })
    }

    @Test func busyAnswersAreRetriedAndOtherSettingsRefused() async throws {
        let folder = try Self.photoFolder(count: 4)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let photos = try PhotoList.scan(folder: folder)
        let journalPath = folder + "/photos.journal"
        let received = Received()
        let journal = try IngestJournal(path: journalPath, settings: ["max_side": "48"], restart: false)
        let reports = Mutex<[String]>([])
        let summary = try await Self.ingestion(batch: 2, inFlight: 2).run(
            photos: photos, journal: journal, errors: folder + "/errors.tsv",
            upsert: { keys, _, _ in
                // Every batch is refused twice as OVERLOADED before it is taken.
                let call = received.calls.wrappingAdd(1, ordering: .relaxed).newValue
                if call <= 4 { throw WireError(.overloaded, "busy") }
                received.batches.withLock { $0.append(keys) }
                return 1
            }, report: { text in reports.withLock { $0.append(text) } })
        journal.close()
        #expect(summary.sent == 4 && summary.replaced == received.batches.withLock(\.count) && summary.skipped == 1)
        #expect(received.keys.sorted() == photos.map(\.key).filter { $0 != "readme.jpg" })
        #expect(reports.withLock { $0.filter { $0.contains("overloaded") && $0.contains("trying again") }.count } == 4)

        #expect { try IngestJournal(path: journalPath, settings: ["max_side": "96"], restart: false) } throws: {
            "\($0)".contains("max_side: 48 before, 96 now")
        }
        let restarted = try IngestJournal(path: journalPath, settings: ["max_side": "96"], restart: true)
        #expect(restarted.done.isEmpty)
        restarted.close()
    }

    @Test func descriptorFilesNeverStandInForTheJournal() async throws {
        // Descriptors an extract wrote for the same photos, then a first ingestion with a fresh
        // journal: every photo goes to the cluster, and the files gain no second row.
        let folder = try Self.photoFolder(count: 5)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let photos = try PhotoList.scan(folder: folder)
        let ingestion = try Self.ingestion(batch: 2, inFlight: 2)
        let settings = ["max_side": "48"]
        let extraction = PhotoExtraction(extractor: ingestion.extractor, threads: 2, groupSize: 2)
        let extracted = try await extraction.run(photos: photos, prefix: folder + "/desc/gem", format: "npy", settings: settings)
        #expect(extracted.count == 5)
        let files = try ExtractionFiles(prefix: folder + "/desc/gem", format: "npy", dimension: 1280, settings: settings, local: false, restart: false)
        let journal = try IngestJournal(path: folder + "/photos.journal", settings: settings, restart: false)
        // One run at a time: a second holder of the journal or the files is refused.
        #expect { try IngestJournal(path: folder + "/photos.journal", settings: settings, restart: false) } throws: {
            "\($0)".contains("another pharos ingest is using the journal")
        }
        #expect { try ExtractionFiles(prefix: folder + "/desc/gem", format: "npy", dimension: 1280, settings: settings, local: false, restart: false) } throws: {
            "\($0)".contains("another run is writing")
        }
        let received = Received()
        let summary = try await ingestion.run(photos: photos, journal: journal, errors: folder + "/errors.tsv", descriptors: files,
                                              upsert: { keys, _, _ in received.batches.withLock { $0.append(keys) }; return 0 })
        journal.close()
        files.close()
        #expect(summary.sent == 5 && summary.resumed == 0)
        #expect(received.keys.sorted() == photos.map(\.key).filter { $0 != "readme.jpg" })
        #expect(try String(contentsOfFile: folder + "/desc/gem.keys", encoding: .utf8).split(separator: "\n").count == 5)
        #expect(try VectorFileReader(path: folder + "/desc/gem.npy").count == 5)
    }

    @Test func theJournalSurvivesATornTailAndNamesDamageInItsMiddle() throws {
        let path = NSTemporaryDirectory() + "pharos-journal-\(UUID().uuidString.prefix(8)).journal"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let journal = try IngestJournal(path: path, settings: ["a": "1"], restart: false)
        try journal.record(["k1", "k2"])
        try journal.record(["k3"])
        try journal.record(["k4", "line\nbreak \"quoted\""])
        journal.close()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes += Array("0badc0de [\"half".utf8)   // a kill in the middle of a line
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let reopened = try IngestJournal(path: path, settings: ["a": "1"], restart: false)
        #expect(reopened.done == ["k1", "k2", "k3", "k4", "line\nbreak \"quoted\""] && reopened.damagedLines.isEmpty)
        reopened.close()
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)).last == UInt8(ascii: "\n"))

        // A flipped byte in the second record: that batch is ingested again, the others stand.
        var damaged = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let lines = damaged.indices.filter { damaged[$0] == UInt8(ascii: "\n") }
        damaged[lines[1] + 12] ^= 0x20
        try Data(damaged).write(to: URL(fileURLWithPath: path))
        let again = try IngestJournal(path: path, settings: ["a": "1"], restart: false)
        #expect(again.done == ["k1", "k2", "k4", "line\nbreak \"quoted\""] && again.damagedLines == [3])
        again.close()

        // A damaged first line: not taken for a journal of these settings.
        damaged[3] ^= 0x01
        try Data(damaged).write(to: URL(fileURLWithPath: path))
        #expect { try IngestJournal(path: path, settings: ["a": "1"], restart: false) } throws: { "\($0)".contains("first line is damaged") }
    }
}

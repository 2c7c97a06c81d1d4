import Foundation
import PharosIndex
import PharosVectors
import Testing
@testable import PharosDescriptors

/// `pharos extract` as a resumable job: a run stopped after some groups (and killed in the
/// middle of writing one) goes on where it stopped, and its files end up the same as an
/// uninterrupted run's; bad photos are listed, a truncated JPEG as truncated.
@Suite struct PhotoExtractionTests {
    /// A folder of `count` small distinct JPEGs (`p00.jpg`, ... in two subfolders), a JPEG cut
    /// inside its compressed data and a text file named like a photo.
    static func photoFolder(count: Int) throws -> String {
        let root = NSTemporaryDirectory() + "pharos-photos-\(UUID().uuidString.prefix(8))"
        for sub in ["a", "b"] { try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true) }
        for i in 0..<count {
            var rng = SplitMix64(seed: UInt64(100 + i))
            // Smooth blobs rather than noise, so the network sees something photo-like.
            let (h, w) = (72, 96)
            let centres = (0..<4).map { _ in (Float(rng.next() % UInt64(w)), Float(rng.next() % UInt64(h)), Float(rng.next() % 255)) }
            var values = [Float](repeating: 0, count: 3 * h * w)
            for c in 0..<3 {
                for y in 0..<h {
                    for x in 0..<w {
                        let v = centres.enumerated().reduce(Float(40 * c)) { sum, item in
                            let (cx, cy, level) = item.element
                            let d = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)) / 300
                            return sum + level * exp(-d) * Float((item.offset + c) % 3 + 1) / 3
                        }
                        values[c * h * w + y * w + x] = min(255, v)
                    }
                }
            }
            let bytes = try ImageLoader.encodeJPEG(FeatureMap(channels: 3, height: h, width: w, values: values))
            try Data(bytes).write(to: URL(fileURLWithPath: root + String(format: "/%@/p%02d.jpg", i % 2 == 0 ? "a" : "b", i)))
            if i == 0 { try Data(bytes.prefix(bytes.count * 6 / 10)).write(to: URL(fileURLWithPath: root + "/b/cut.jpg")) }
        }
        try Data("not a photo".utf8).write(to: URL(fileURLWithPath: root + "/a/notes.jpg"))
        return root
    }

    static func extraction(groupSize: Int = 3) throws -> PhotoExtraction {
        let extractor = try DescriptorExtractor(network: try EfficientNetLite0Tests.network.get(), configuration: .init(pooling: .gem, maximumSide: 64))
        return PhotoExtraction(extractor: extractor, threads: 2, groupSize: groupSize)
    }

    static let settings = ["pooling": "gem", "max_side": "64"]

    /// Rows of a descriptor file by key.
    static func rowsByKey(_ prefix: String) throws -> [String: [Float]] {
        let matrix = try VectorFileReader(path: prefix + ".npy").readAll()   // strict: no trailing bytes
        let keys = try String(contentsOfFile: prefix + ".keys", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(keys.count == matrix.rows, "\(keys.count) keys for \(matrix.rows) rows")
        return Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, Array(matrix.values[$0 * matrix.columns ..< ($0 + 1) * matrix.columns])) })
    }

    @Test func aStoppedExtractionResumesAndEndsAsAnUninterruptedOne() async throws {
        let folder = try Self.photoFolder(count: 10)
        let out = NSTemporaryDirectory() + "pharos-extract-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder); try? FileManager.default.removeItem(atPath: out) }
        let photos = try PhotoList.scan(folder: folder)
        #expect(photos.count == 12 && photos.map(\.key) == photos.map(\.key).sorted())
        let extraction = try Self.extraction()

        let whole = try await extraction.run(photos: photos, prefix: out + "/whole", format: "npy", settings: Self.settings)
        #expect(whole.count == 10 && whole.described == 10 && whole.skipped == 2 && whole.resumed == 0)
        let errors = try String(contentsOfFile: whole.errors, encoding: .utf8).split(separator: "\n").sorted()
        #expect(errors.count == 2)
        #expect(errors[0].hasPrefix(folder + "/a/notes.jpg\t") && errors[0].contains("not a JPEG or PNG"))
        #expect(errors[1].hasPrefix(folder + "/b/cut.jpg\t") && errors[1].contains("truncated"), "\(errors[1])")

        // A run that stopped after the photos of its first groups, then was killed while writing
        // the next: rows past the keys and a torn key line.
        let first = try await extraction.run(photos: Array(photos.prefix(5)), prefix: out + "/resumed", format: "npy", settings: Self.settings)
        #expect(first.count == 4 && first.skipped == 1)
        let npy = try FileHandle(forWritingTo: URL(fileURLWithPath: out + "/resumed.npy"))
        try npy.seekToEnd()
        try npy.write(contentsOf: Data(repeating: 0x41, count: 1280 * 4 + 100))
        try npy.close()
        let keys = try FileHandle(forWritingTo: URL(fileURLWithPath: out + "/resumed.keys"))
        try keys.seekToEnd()
        try keys.write(contentsOf: Data("b/p0".utf8))
        try keys.close()

        var reported: [String] = []
        let second = try await extraction.run(photos: photos, prefix: out + "/resumed", format: "npy", settings: Self.settings,
                                              report: { reported.append($0) })
        #expect(second.resumed == 4 && second.count == 10 && second.described == 6 && second.skipped == 2)
        #expect(reported.contains { $0.contains("resuming") })
        // Every key once, each with the descriptor the uninterrupted run computed.
        let a = try Self.rowsByKey(out + "/whole"), b = try Self.rowsByKey(out + "/resumed")
        #expect(a.keys.sorted() == b.keys.sorted() && a.count == 10)
        for (key, row) in a { #expect(b[key] == row, "\(key) differs after resuming") }

        // Nothing left to do: a third run describes nothing.
        let third = try await extraction.run(photos: photos, prefix: out + "/resumed", format: "npy", settings: Self.settings)
        #expect(third.described == 0 && third.count == 10)
    }

    @Test func localFeaturesResumeInStepWithTheKeys() async throws {
        let folder = try Self.photoFolder(count: 6)
        let out = NSTemporaryDirectory() + "pharos-extract-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder); try? FileManager.default.removeItem(atPath: out) }
        let photos = try PhotoList.scan(folder: folder)
        var configuration = DescriptorExtractor.Configuration(pooling: .gem, maximumSide: 64)
        configuration.local = .init(maximumKeypoints: 25)
        let extractor = try DescriptorExtractor(network: try EfficientNetLite0Tests.network.get(), configuration: configuration)
        let extraction = PhotoExtraction(extractor: extractor, threads: 2, groupSize: 3)
        _ = try await extraction.run(photos: Array(photos.prefix(4)), prefix: out + "/x", format: "npy", settings: Self.settings)
        // A kill in the middle of the next group's local record.
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: out + "/x.local"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([9, 0, 0, 0]) + Data("b/p99.jpg".utf8) + Data([0xFF, 0xFF]))
        try handle.close()
        let second = try await extraction.run(photos: photos, prefix: out + "/x", format: "npy", settings: Self.settings)
        #expect(second.count == 6 && second.resumed == 3)
        let keys = try String(contentsOfFile: out + "/x.keys", encoding: .utf8).split(separator: "\n").map(String.init)
        let local = try LocalFeatureFile.read(out + "/x.local")
        #expect(local.map(\.key) == keys && local.allSatisfy { $0.features.dimension == 40 && (1...25).contains($0.features.keypoints.count) })
    }

    @Test func otherSettingsAreRefusedAndRestartStartsOver() async throws {
        let folder = try Self.photoFolder(count: 4)
        let out = NSTemporaryDirectory() + "pharos-extract-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: folder); try? FileManager.default.removeItem(atPath: out) }
        let photos = try PhotoList.scan(folder: folder)
        let extraction = try Self.extraction()
        _ = try await extraction.run(photos: photos, prefix: out + "/x", format: "fvecs", settings: Self.settings)
        var other = Self.settings
        other["max_side"] = "128"
        await #expect { _ = try await extraction.run(photos: photos, prefix: out + "/x", format: "fvecs", settings: other) } throws: {
            "\($0)".contains("max_side: 64 before, 128 now")
        }
        let again = try await extraction.run(photos: photos, prefix: out + "/x", format: "fvecs", settings: other, restart: true)
        #expect(again.described == 4 && again.resumed == 0 && again.count == 4)
        #expect(try VectorFileReader(path: out + "/x.fvecs").count == 4)
        // Files written by something else are not appended to.
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: out + "/y.keys"))
        await #expect { _ = try await extraction.run(photos: photos, prefix: out + "/y", format: "npy", settings: Self.settings) } throws: {
            "\($0)".contains("has no") && "\($0)".contains("--restart")
        }
    }

    @Test func partsSplitTheListDisjointlyAndEvenly() throws {
        let keys = (0..<3000).map { "photos/\($0 / 100)/img-\($0).jpg" }
        var seen = Set<String>()
        for index in 1...3 {
            let part = PhotoPart(index: index, count: 3)
            let mine = keys.filter(part.contains)
            #expect(mine.count > 850 && mine.count < 1150, "part \(part) holds \(mine.count) of 3000")
            #expect(seen.isDisjoint(with: mine))
            seen.formUnion(mine)
        }
        #expect(seen.count == keys.count)
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", "-1/2"] {
            #expect(throws: DescriptorError.self) { try PhotoPart(parsing: bad) }
        }
        #expect(try PhotoPart(parsing: "2/3") == PhotoPart(index: 2, count: 3))
    }

    @Test func aListFileNamesPhotosRelativeToTheFolder() throws {
        let folder = try Self.photoFolder(count: 3)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let list = folder + "/list.txt"
        try Data("# chosen photos\nb/p01.jpg\n\na/p00.jpg\r\n".utf8).write(to: URL(fileURLWithPath: list))
        let photos = try PhotoList.read(listFile: list, root: folder)
        #expect(photos == [Photo(key: "a/p00.jpg", path: folder + "/a/p00.jpg"), Photo(key: "b/p01.jpg", path: folder + "/b/p01.jpg")])
        // An absolute path under the folder is keyed relative to it, as a scan keys it.
        try Data("\(folder)/b/p01.jpg\n".utf8).write(to: URL(fileURLWithPath: list))
        #expect(try PhotoList.read(listFile: list, root: folder) == [Photo(key: "b/p01.jpg", path: folder + "/b/p01.jpg")])
        try Data("a/p00.jpg\na/p00.jpg\n".utf8).write(to: URL(fileURLWithPath: list))
        #expect { try PhotoList.read(listFile: list, root: folder) } throws: { "\($0)".contains("listed twice") }
        #expect(PhotoList.unusableKey("a\nb.jpg") != nil && PhotoList.unusableKey("a b.jpg") == nil)
    }
}

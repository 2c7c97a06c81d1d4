import Foundation
import PharosIndex
import PharosTestSupport
import PharosVectors
import Testing
@testable import PharosDescriptors

@Suite struct DescriptorExtractorTests {
    static func referenceImage() throws -> FeatureMap {
        FeatureMap(channels: 3, height: 67, width: 83, values: try Fixture.matrix("image").values)
    }

    @Test func globalDescriptorsAtOneAndThreeScales() throws {
        let network = try EfficientNetLite0Tests.network.get()
        let single = try DescriptorExtractor(network: network, configuration: .init(pooling: .gem))
        let one = try single.describe(image: try Self.referenceImage())
        #expect(one.global.count == 1280 && one.local == nil)
        #expect(abs(VectorMath.dot(one.global, one.global) - 1) < 1e-4)
        // The final descriptor matches PyTorch's map pooled the same way (GeM, float64).
        let e = Fixture.relativeErrors(one.global, try Fixture.matrix("final-gem").values)
        #expect(e.norm < 1e-3 && e.max < 1e-3, "GeM descriptor: relative error \(e)")

        let multi = try DescriptorExtractor(network: network, configuration: .init(pooling: .gem, multiscale: true))
        let three = try multi.describe(image: try Self.referenceImage())
        #expect(three.global.count == 1280 && three.global != one.global)
        #expect(VectorMath.dot(three.global, one.global) > 0.7)   // the same (tiny) image, seen at other scales

        // Too small for the network: refused with the reason.
        #expect { try single.describe(image: FeatureMap(channels: 3, height: 20, width: 200)) } throws: { "\($0)".contains("at least 32") }
    }

    /// Queries of the revisited protocol are described cropped to their box (pixels of the
    /// original image): the same as describing the crop as an image of its own; a box reaching
    /// past the image is clipped to it, one that leaves nothing is refused naming the file.
    @Test func aQueryIsDescribedCroppedToItsBox() throws {
        let network = try EfficientNetLite0Tests.network.get()
        let extractor = try DescriptorExtractor(network: network, configuration: .init(pooling: .gem))
        let image = try Self.referenceImage()
        let path = NSTemporaryDirectory() + "pharos-query-\(UUID().uuidString.prefix(8)).jpg"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data(ImageLoader.encodeJPEG(image, quality: 95)).write(to: URL(fileURLWithPath: path))
        let loaded = try ImageLoader.load(path: path)
        // Rounded as the reference's crop rounds (halves to even): x 10..<60, y 6..<50.
        let crop = try extractor.describe(path: path, box: [10.4, 5.6, 60.2, 50.5])
        let expected = try extractor.describe(image: loaded.cropped(top: 6, left: 10, height: 44, width: 50))
        let same = crop.global == expected.global
        #expect(same)
        #expect(VectorMath.dot(crop.global, try extractor.describe(path: path).global) < 0.9999, "the crop is not the whole image")
        let clipped = try extractor.describe(path: path, box: [40, -20, 500, 300])
        let clippedSame = clipped.global == (try extractor.describe(image: loaded.cropped(top: 0, left: 40, height: 67, width: 43))).global
        #expect(clippedSame)
        #expect { try extractor.describe(path: path, box: [90, 0, 120, 40]) } throws: { "\($0)".contains(path) && "\($0)".contains("leaves nothing") }
        #expect { try extractor.describe(path: path, box: [0, 0, .nan, 40]) } throws: { "\($0)".contains("crop box") }
        let whole = try extractor.describe(path: path, box: [-1e300, -1e300, 1e300, 1e300]).global == (try extractor.describe(image: loaded)).global
        #expect(whole, "a box past every side is the whole image")
    }

    @Test func whiteningMustFitThePooledDimension() throws {
        let network = try EfficientNetLite0Tests.network.get()
        var rng = SplitMix64(seed: 1)
        let small = try Whitening.learnPCA(Matrix(rows: 50, columns: 8, values: (0..<400).map { _ in rng.nextGaussian() }))
        #expect(throws: DescriptorError.self) { try DescriptorExtractor(network: network, configuration: .init(whitening: small)) }
    }

    @Test func localFeaturesLieInsideTheImageAndSurviveTheirFile() throws {
        let network = try EfficientNetLite0Tests.network.get()
        var configuration = DescriptorExtractor.Configuration()
        configuration.local = .init(maximumKeypoints: 25)
        let description = try DescriptorExtractor(network: network, configuration: configuration).describe(image: try Self.referenceImage())
        let local = try #require(description.local)
        #expect(local.keypoints.count == 25 && local.dimension == 112)
        #expect(zip(local.keypoints, local.keypoints.dropFirst()).allSatisfy { $0.score >= $1.score })
        for k in local.keypoints {
            #expect(k.x > 0 && k.x < 83 && k.y > 0 && k.y < 67, "keypoint \(k) outside the 83 x 67 image")
            #expect(k.scale > 100)   // block 10's receptive field spans most of the image
        }
        // Receptive-field geometry: stride 16; with SAME padding the first centre is near the origin.
        let field = network.intermediateReceptiveField(height: 64, width: 64)
        #expect(field.step == 16 && field.row == field.column && field.row > 0 && field.row < 16)

        let pca = try Whitening.learnPCA(Matrix(rows: 25, columns: 112, values: local.descriptors), outputDimension: 10, power: 0)
        let reduced = try local.projected(by: pca)
        #expect(reduced.dimension == 10 && reduced.keypoints == local.keypoints)
        let path = NSTemporaryDirectory() + "pharos-local-\(UUID().uuidString.prefix(8)).local"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let file = try LocalFeatureFile(writingTo: path)
        try file.append(key: "a.jpg", reduced)
        try file.append(key: "empty.jpg", LocalFeatures(keypoints: [], descriptors: [], dimension: 10))
        try file.finish()
        let back = try LocalFeatureFile.read(path)
        #expect(back.map(\.key) == ["a.jpg", "empty.jpg"])
        #expect(back[0].features.keypoints == reduced.keypoints)
        #expect(Fixture.relativeErrors(back[0].features.descriptors, reduced.descriptors).max < 1e-3)   // float16
        // A flipped byte is caught by the checksum, naming the image.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[40] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect { try LocalFeatureFile.read(path) } throws: { "\($0)".contains("image 0") }
        // Cut anywhere in a record (a write killed midway): an error naming the image, never a trap.
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        for cut in [13, 16, 18, 20, 23, 24, 30, whole.count - 1] {   // (12: the header alone, no image: valid)
            try whole.prefix(cut).write(to: URL(fileURLWithPath: path))
            #expect(throws: (any Error).self, "cut at \(cut)") { try LocalFeatureFile.read(path) }
        }
        try Data("PHXLOCAL".utf8 + [1, 0, 0, 0] + [UInt8](repeating: 0, count: 12)).write(to: URL(fileURLWithPath: path))
        #expect { try LocalFeatureFile.read(path) } throws: { "\($0)".contains("runs past the end") }
    }

    /// The labelled photo set in small (3 wallpapers in 4 views each, plus the distractors):
    /// built, described, and ranked; views of one wallpaper find each other.
    @Test func labelledPhotoSetEndToEnd() async throws {
        guard FileManager.default.fileExists(atPath: "/usr/share/wallpapers") else {
            Issue.record("plasma-workspace-wallpapers is not installed: run Scripts/install-deps.sh"); return
        }
        let dir = NSTemporaryDirectory() + "pharos-photoset-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let pharos = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pharos").path
        var (status, output) = try await ProcessRunner.run(pharos, ["data", "photos", "--out", dir, "--wallpaper-limit", "3", "--views", "3", "--side", "320"])
        #expect(status == 0, "\(output)")
        (status, output) = try await ProcessRunner.run(pharos, [
            "extract", "--images", dir + "/images", "--out", dir + "/gem", "--max-side", "256", "--weights", EfficientNetLite0.defaultWeightsPath])
        #expect(status == 0, "\(output)")
        (status, output) = try await ProcessRunner.run(pharos, [
            "eval", "--ground-truth", dir + "/labels.json", "--database", dir + "/gem.npy", "--database-keys", dir + "/gem.keys"])
        #expect(status == 0, "\(output)")
        let mAP = Double(output.split(separator: " ").drop { $0 != "mAP" }.dropFirst().first ?? "") ?? 0
        #expect(mAP > 0.8, "\(output)")
    }

    /// `pharos extract` over a folder with a corrupt photo: the photo is reported by path and
    /// skipped, the others are written with their relative paths as keys.
    @Test func extractCommandSkipsCorruptPhotos() async throws {
        let dir = NSTemporaryDirectory() + "pharos-extract-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/photos/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let jpeg = try ImageLoader.encodeJPEG(try Self.referenceImage(), quality: 92)
        try Data(jpeg).write(to: URL(fileURLWithPath: dir + "/photos/a.jpg"))
        try Data(jpeg).write(to: URL(fileURLWithPath: dir + "/photos/sub/b.jpg"))
        try Data(jpeg.prefix(300)).write(to: URL(fileURLWithPath: dir + "/photos/broken.jpg"))
        let pharos = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pharos").path
        let (status, output) = try await ProcessRunner.run(pharos, [
            "extract", "--images", dir + "/photos", "--out", dir + "/out/x", "--local", "--threads", "1",
            "--weights", EfficientNetLite0.defaultWeightsPath])
        #expect(status == 0, "\(output)")
        #expect(output.contains("skipped \(dir)/photos/broken.jpg"))
        let rows = try VectorFileReader(path: dir + "/out/x.npy").readAll()
        #expect(rows.rows == 2 && rows.columns == 1280)
        #expect(try String(contentsOfFile: dir + "/out/x.keys", encoding: .utf8) == "a.jpg\nsub/b.jpg\n")
        let local = try LocalFeatureFile.read(dir + "/out/x.local")
        #expect(local.map(\.key) == ["a.jpg", "sub/b.jpg"] && local[0].features.dimension == 40)
        #expect(FileManager.default.fileExists(atPath: dir + "/out/x.local-pca.phxw"))
    }
}

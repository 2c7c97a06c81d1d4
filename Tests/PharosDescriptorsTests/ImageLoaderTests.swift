import Foundation
import PharosVectors
import Testing
@testable import PharosDescriptors

@Suite struct ImageLoaderTests {
    static func fixturePath(_ name: String) throws -> String {
        try #require(Bundle.module.path(forResource: name, ofType: nil, inDirectory: "Fixtures"))
    }

    @Test func decodesPNGAndJPEG() throws {
        let expected = try Fixture.matrix("tiny").values
        let png = try ImageLoader.load(path: try Self.fixturePath("tiny.png"))
        #expect((png.channels, png.height, png.width) == (3, 30, 40))
        // PNG is lossless: the opaque left half is exact. The half-transparent right half is
        // composited onto white (libpng does it in linear light): between the colour and white.
        for c in 0..<3 {
            for y in 0..<30 {
                for x in 0..<40 {
                    let (got, colour) = (png[c, y, x], Float(expected[(c * 30 + y) * 40 + x]))
                    if x < 20 { #expect(got == colour) } else { #expect(got >= min(colour, 255) - 1 && got <= 255) }
                }
            }
        }
        let jpeg = try ImageLoader.load(path: try Self.fixturePath("tiny.jpg"))
        #expect((jpeg.channels, jpeg.height, jpeg.width) == (3, 30, 40))
        // JPEG: as Pillow's libjpeg-turbo decodes the same file, up to IDCT rounding.
        let pillow = try Fixture.matrix("tiny-jpeg").values
        #expect(zip(jpeg.values, pillow).allSatisfy { abs($0 - $1) <= 2 })
    }

    @Test func maximumSideShrinksWithAntialiasing() throws {
        let small = try ImageLoader.load(path: try Self.fixturePath("tiny.png"), maximumSide: 20)
        #expect((small.height, small.width) == (15, 20))
        // A one-pixel checkerboard halved becomes flat grey, not an alias of the pattern.
        let board = FeatureMap(channels: 1, height: 16, width: 16, values: (0..<256).map { Float(($0 / 16 + $0 % 16) % 2 * 255) })
        let half = ImageResampler.resize(board, height: 8, width: 8)
        #expect(half.values.allSatisfy { abs($0 - 127.5) < 20 })
        // Same size: unchanged; constant stays constant.
        #expect(ImageResampler.resize(board, height: 16, width: 16) == board)
        let flat = ImageResampler.resize(FeatureMap(channels: 2, height: 9, width: 7, values: [Float](repeating: 42, count: 126)), height: 4, width: 5)
        #expect(flat.values.allSatisfy { abs($0 - 42) < 1e-4 })
    }

    @Test func badFilesAreReportedByPath() throws {
        let dir = NSTemporaryDirectory() + "pharos-images-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: try Self.fixturePath("tiny.jpg")))
        let png = try Data(contentsOf: URL(fileURLWithPath: try Self.fixturePath("tiny.png")))
        let cases: [(String, Data, String)] = [
            ("text.jpg", Data("hello".utf8), "not a JPEG or PNG"),
            ("empty.png", Data(), "empty file"),
            ("cut.jpg", jpeg.prefix(20), "JPEG"),
            ("cut.png", png.prefix(60), "PNG"),
        ]
        for (name, bytes, problem) in cases {
            let path = dir + "/" + name
            try bytes.write(to: URL(fileURLWithPath: path))
            #expect { try ImageLoader.load(path: path) } throws: { "\($0)".contains(path) && "\($0)".contains(problem) }
        }
        #expect { try ImageLoader.load(path: dir + "/missing.jpg") } throws: { "\($0)".contains("missing.jpg") }

        // Cut inside the compressed data, after a valid header: libjpeg would pad the rest with
        // grey and warn; the loader refuses it, saying it is truncated. Whole, it decodes.
        var rng = SplitMix64(seed: 7)
        let photo = FeatureMap(channels: 3, height: 96, width: 128, values: (0..<(3 * 96 * 128)).map { _ in Float(rng.next() % 256) })
        let whole = try ImageLoader.encodeJPEG(photo)
        let cut = dir + "/cut-in-scan.jpg"
        try Data(whole.prefix(whole.count * 6 / 10)).write(to: URL(fileURLWithPath: cut))
        #expect { try ImageLoader.load(path: cut) } throws: { "\($0)".contains(cut) && "\($0)".contains("truncated") }
        #expect(try ImageLoader.decode(whole, path: "whole.jpg").width == 128)
    }
}

import Foundation
import PharosVectors
import Testing
@testable import PharosDescriptors

/// Reference numbers made once by PyTorch on the same weights (Scripts/make-descriptor-fixtures.py).
enum Fixture {
    static func matrix(_ name: String) throws -> Matrix {
        guard let path = Bundle.module.path(forResource: name, ofType: "npy", inDirectory: "Fixtures") else {
            throw DescriptorError.badInput("fixture \(name).npy is missing")
        }
        return try VectorFileReader(path: path).readAll()
    }

    /// (||a - b|| / ||b||, max |a - b| / max |b|).
    static func relativeErrors(_ a: [Float], _ b: [Float]) -> (norm: Double, max: Double) {
        precondition(a.count == b.count)
        var diff = 0.0, ref = 0.0, maxDiff = 0.0, maxRef = 0.0
        for i in a.indices {
            let d = Double(a[i] - b[i])
            diff += d * d
            ref += Double(b[i]) * Double(b[i])
            maxDiff = max(maxDiff, abs(d))
            maxRef = max(maxRef, abs(Double(b[i])))
        }
        return ((diff / max(ref, 1e-30)).squareRoot(), maxDiff / max(maxRef, 1e-30))
    }
}

@Suite struct EfficientNetLite0Tests {
    static let network: Result<EfficientNetLite0, any Error> = Result { try EfficientNetLite0() }

    /// The forward pass matches PyTorch on the same weights and image (odd size: 67 x 83, so
    /// the asymmetric SAME padding of every stride-2 layer is exercised) within 1e-3.
    @Test func matchesPyTorchOnTheReferenceImage() throws {
        let network = try Self.network.get()
        let image = try Fixture.matrix("image")
        let input = EfficientNetLite0.normalizedInput(FeatureMap(channels: 3, height: 67, width: 83, values: image.values))
        let (final, intermediate) = try network.forward(input)
        #expect((final.channels, final.height, final.width) == (1280, 3, 3))
        let expectedFinal = try Fixture.matrix("final")
        let e1 = Fixture.relativeErrors(final.values, expectedFinal.values)
        #expect(e1.norm < 1e-3 && e1.max < 1e-3, "final map: relative error \(e1)")

        let mid = try #require(intermediate)
        #expect((mid.channels, mid.height, mid.width) == (112, 5, 6))
        let e2 = Fixture.relativeErrors(mid.values, try Fixture.matrix("intermediate").values)
        #expect(e2.norm < 1e-3 && e2.max < 1e-3, "intermediate map: relative error \(e2)")
        #expect(try network.intermediate(input) == mid)   // the early-exit path computes the same map
    }

    @Test func samePaddingPutsTheExtraPixelAfter() {
        #expect(EfficientNetLite0.samePadding(67, kernel: 3, stride: 2) == (34, 1))
        #expect(EfficientNetLite0.samePadding(68, kernel: 3, stride: 2) == (34, 0))
        #expect(EfficientNetLite0.samePadding(34, kernel: 5, stride: 2) == (17, 1))
        #expect(EfficientNetLite0.samePadding(17, kernel: 5, stride: 1) == (17, 2))
    }

    @Test func refusesInputsItCannotUse() throws {
        let network = try Self.network.get()
        #expect(throws: DescriptorError.self) { try network.forward(FeatureMap(channels: 1, height: 64, width: 64)) }
        #expect(throws: DescriptorError.self) { try network.forward(FeatureMap(channels: 3, height: 16, width: 64)) }
    }

    @Test func checkpointErrorsNameTheFileAndTheProblem() throws {
        #expect { try TorchCheckpoint(bytes: [0x50, 0x4B, 0x03, 0x04, 0, 0], path: "new.pth") } throws: { "\($0)".contains("zip-format") }
        #expect { try TorchCheckpoint(bytes: [0x80, 0x02, 0x4B, 0x05, 0x2E], path: "x.pth") } throws: { "\($0)".contains("x.pth") && "\($0)".contains("magic") }
        let weights = try Data(contentsOf: URL(fileURLWithPath: EfficientNetLite0.defaultWeightsPath))
        #expect { try TorchCheckpoint(bytes: Array(weights.prefix(50_000)), path: "cut.pth") } throws: { "\($0)".contains("cut.pth") }
        let checkpoint = try TorchCheckpoint(bytes: Array(weights), path: "whole.pth")
        #expect(checkpoint.keys.count == 296)
        // Strides honoured: the stem's weight is stored (1, 32, 288, 96)-strided.
        #expect(try checkpoint.tensor("_conv_stem.weight").shape == [32, 3, 3, 3])
    }
}

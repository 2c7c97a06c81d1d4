#if canImport(Glibc)
import Glibc
#endif
import PharosIndex
import PharosKernels
import PharosVectors

/// One local feature's location: the centre and size of its receptive field, in pixels of the
/// image as extracted (after shrinking to the maximum side), and its keypoint score.
public struct Keypoint: Sendable, Equatable {
    /// Column of the receptive field's centre.
    public var x: Float
    /// Row of the receptive field's centre.
    public var y: Float
    /// Receptive-field side (the feature's scale).
    public var scale: Float
    /// Activation strength (the feature vector's L2 norm before normalisation).
    public var score: Float
}

/// An image's local features: keypoints and one L2-normalised descriptor each.
public struct LocalFeatures: Sendable, Equatable {
    /// The keypoints, best score first.
    public var keypoints: [Keypoint]
    /// `keypoints.count x dimension` values.
    public var descriptors: [Float]
    /// Descriptor dimension (40 after the PCA, 112 without).
    public var dimension: Int

    /// The compact block stored per image: `u32 count, u32 dimension, count x (x, y, scale, score)
    /// as float32, count x dimension descriptors as float16`, all little-endian.
    public func serialized() -> [UInt8] {
        var w = ByteWriter()
        w.write(UInt32(keypoints.count))
        w.write(UInt32(dimension))
        var bytes = w.bytes
        for k in keypoints {
            for v in [k.x, k.y, k.scale, k.score] { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        }
        var half = [UInt16](repeating: 0, count: descriptors.count)
        if !descriptors.isEmpty { pharos_f32_to_f16(descriptors, descriptors.count, &half) }
        half.withUnsafeBytes { bytes += $0 }
        return bytes
    }

    /// Reads a block written by `serialized`; errors name `source`.
    public init(bytes: ArraySlice<UInt8>, source: String) throws {
        var r = ByteReader(bytes: bytes, path: source, tag: "local features")
        let count = Int(try r.readUInt32()), dimension = Int(try r.readUInt32())
        guard count <= 100_000, (1...4096).contains(dimension) || count == 0,
              bytes.count == 8 + count * 16 + count * dimension * 2 else {
            throw IndexError.corruptFile(path: source, problem: "local features block: \(count) keypoints of \(dimension) dimensions do not fit \(bytes.count) bytes")
        }
        var keypoints: [Keypoint] = []
        let base = bytes.startIndex + 8
        bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                let v = (0..<4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8 + i * 16 + $0 * 4, as: UInt32.self))) }
                keypoints.append(Keypoint(x: v[0], y: v[1], scale: v[2], score: v[3]))
            }
        }
        var half = [UInt16](repeating: 0, count: count * dimension)
        half.withUnsafeMutableBytes { $0.copyBytes(from: bytes[(base + count * 16)...]) }
        var descriptors = [Float](repeating: 0, count: count * dimension)
        if !half.isEmpty { pharos_f16_to_f32(half, half.count, &descriptors) }
        self.init(keypoints: keypoints, descriptors: descriptors, dimension: dimension)
    }

    /// Features from their parts.
    public init(keypoints: [Keypoint], descriptors: [Float], dimension: Int) {
        precondition(descriptors.count == keypoints.count * dimension, "descriptor count")
        self.keypoints = keypoints
        self.descriptors = descriptors
        self.dimension = dimension
    }
}

/// DELF-style local features (Noh et al. 2017) from the intermediate map (112 channels, stride
/// 16) over an image pyramid: every map cell is a candidate whose keypoint score is its
/// activation strength (the L2 norm of its feature vector: these weights ship no attention
/// head, so this stands in for DELF's learned attention); the best N over all scales are kept
/// with their receptive fields' centres and sizes; descriptors are L2-normalised, reduced by
/// PCA (40 dimensions by default) and L2-normalised again.
public struct LocalFeatureExtractor: Sendable {
    /// What to keep.
    public struct Configuration: Sendable {
        /// Keypoints kept per image.
        public var maximumKeypoints = 1000
        /// The PCA of the descriptors (112 -> 40, learned with power 0); nil keeps 112 dimensions.
        public var pca: Whitening?

        /// Defaults: 1000 keypoints, no PCA.
        public init(maximumKeypoints: Int = 1000, pca: Whitening? = nil) {
            self.maximumKeypoints = maximumKeypoints
            self.pca = pca
        }
    }

    /// Descriptor dimension of the DELF paper.
    public static let pcaDimension = 40

    /// The configuration.
    public let configuration: Configuration

    /// An extractor.
    public init(configuration: Configuration) {
        self.configuration = configuration
    }

    /// Picks the best keypoints of a pyramid of intermediate maps, each with the size of the
    /// scaled input it came from; locations are mapped back to the `imageHeight x imageWidth`
    /// image per axis.
    func select(_ pyramid: [(map: FeatureMap, height: Int, width: Int)], imageHeight: Int, imageWidth: Int,
                network: EfficientNetLite0) throws -> LocalFeatures {
        var candidates: [(score: Float, keypoint: Keypoint, vector: [Float])] = []
        for (map, height, width) in pyramid {
            let (rowOrigin, colOrigin, step, size) = network.intermediateReceptiveField(height: height, width: width)
            let (toRow, toColumn) = (Double(imageHeight) / Double(height), Double(imageWidth) / Double(width))
            for y in 0..<map.height {
                for x in 0..<map.width {
                    var vector = [Float](repeating: 0, count: map.channels)
                    var norm: Float = 0
                    for c in 0..<map.channels {
                        let v = map[c, y, x]
                        vector[c] = v
                        norm += v * v
                    }
                    norm = norm.squareRoot()
                    guard norm > 0 else { continue }
                    for c in vector.indices { vector[c] /= norm }
                    let keypoint = Keypoint(
                        x: Float((colOrigin + Double(x) * step) * toColumn), y: Float((rowOrigin + Double(y) * step) * toRow),
                        scale: Float(size * (toRow + toColumn) / 2), score: norm)
                    candidates.append((norm, keypoint, vector))
                }
            }
        }
        candidates.sort { $0.score > $1.score }
        let kept = candidates.prefix(configuration.maximumKeypoints)
        let features = LocalFeatures(keypoints: kept.map(\.keypoint), descriptors: kept.flatMap(\.vector),
                                     dimension: pyramid.first?.map.channels ?? EfficientNetLite0.intermediateChannels)
        return try configuration.pca.map { try features.projected(by: $0) } ?? features
    }
}

extension EfficientNetLite0 {
    /// Geometry of the intermediate map for an input of `height x width`: the centre of cell
    /// (0, 0) in input pixels (row, column), the step between cells, and the receptive-field
    /// side, composed through every layer up to block 10 with its SAME padding.
    public func intermediateReceptiveField(height: Int, width: Int) -> (row: Double, column: Double, step: Double, size: Double) {
        // 1x1 convolutions change nothing: the stem and the depthwise layers decide.
        let layers = [(stem.kernel, stem.stride)] + blocks[...Self.intermediateBlock].map { ($0.depthwise.kernel, $0.depthwise.stride) }
        var (rowStart, colStart, jump, size) = (0.5, 0.5, 1.0, 1.0)
        var (h, w) = (height, width)
        for (k, s) in layers {
            let (oh, top) = Self.samePadding(h, kernel: k, stride: s)
            let (ow, left) = Self.samePadding(w, kernel: k, stride: s)
            rowStart += (Double(k - 1) / 2 - Double(top)) * jump
            colStart += (Double(k - 1) / 2 - Double(left)) * jump
            size += Double(k - 1) * jump
            jump *= Double(s)
            (h, w) = (oh, ow)
        }
        return (rowStart, colStart, jump, size)
    }
}

extension LocalFeatures {
    /// The descriptors reduced by a PCA (and L2-normalised again); keypoints unchanged.
    public func projected(by pca: Whitening) throws -> LocalFeatures {
        guard pca.inputDimension == dimension else {
            throw DescriptorError.invalidParameter(name: "local PCA", value: "\(pca.inputDimension)-D input", allowed: "\(dimension)-D")
        }
        guard !keypoints.isEmpty else { return LocalFeatures(keypoints: [], descriptors: [], dimension: pca.outputDimension) }
        let reduced = try pca.descriptorSpace.prepare(Matrix(rows: keypoints.count, columns: dimension, values: descriptors))
        return LocalFeatures(keypoints: keypoints, descriptors: reduced.values, dimension: pca.outputDimension)
    }
}

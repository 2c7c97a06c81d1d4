import Foundation
import PharosIndex
import PharosVectors

/// Photos to global descriptors (and optionally local features): decode, bring the longer side
/// to `maximumSide`, run the CNN at one or three scales, pool, combine the scales, whiten.
public struct DescriptorExtractor: Sendable {
    /// What to extract and how.
    public struct Configuration: Sendable {
        /// Pooling of the final feature map.
        public var pooling: PoolingMethod = .gem
        /// Pooling parameters (GeM p, R-MAC levels, region whitening).
        public var poolingOptions = GlobalPooling.Options()
        /// Extract at scales 1, 1/sqrt(2), 1/2 and combine (GeM-style mean, p = GeM's p for GeM
        /// pooling, else 1).
        public var multiscale = false
        /// Longer image side the network sees at scale 1; larger images are shrunk (never grown).
        public var maximumSide = 512
        /// Applied to the pooled (combined) descriptor; its input dimension must be 1280.
        public var whitening: Whitening?
        /// Local features, when wanted.
        public var local: LocalFeatureExtractor.Configuration?

        /// The defaults: GeM, single scale, 1024 pixels, no whitening, no local features.
        public init(pooling: PoolingMethod = .gem, multiscale: Bool = false, maximumSide: Int = 512, whitening: Whitening? = nil) {
            self.pooling = pooling
            self.multiscale = multiscale
            self.maximumSide = maximumSide
            self.whitening = whitening
        }
    }

    /// One image's output.
    public struct Description: Sendable {
        /// The global descriptor: L2-normalised, 1280-D or the whitening's output dimension.
        public var global: [Float]
        /// Local features, when configured.
        public var local: LocalFeatures?
    }

    /// The scales of multi-scale extraction.
    public static let multiscaleFactors: [Double] = [1, 1 / 2.0.squareRoot(), 0.5]

    /// The network.
    public let network: EfficientNetLite0
    /// The configuration.
    public let configuration: Configuration

    /// An extractor; checks that the configuration's parts fit together.
    public init(network: EfficientNetLite0, configuration: Configuration) throws {
        guard (EfficientNetLite0.minimumSide...EfficientNetLite0.maximumSide).contains(configuration.maximumSide) else {
            throw DescriptorError.invalidParameter(name: "maximum side", value: "\(configuration.maximumSide)",
                                                   allowed: "\(EfficientNetLite0.minimumSide)...\(EfficientNetLite0.maximumSide)")
        }
        let pooledDimension = Self.pooledDimension(configuration)
        if let whitening = configuration.whitening, whitening.inputDimension != pooledDimension {
            throw DescriptorError.invalidParameter(name: "whitening", value: "\(whitening.inputDimension)-D input",
                                                   allowed: "\(pooledDimension)-D (the pooled descriptor)")
        }
        self.network = network
        self.configuration = configuration
    }

    /// The dimension of the global descriptors this extractor produces.
    public var dimension: Int { configuration.whitening?.outputDimension ?? Self.pooledDimension(configuration) }

    /// The dimension of a pooled descriptor, before the whitening: the network's channels, or
    /// the region whitening's output for R-MAC with one.
    private static func pooledDimension(_ configuration: Configuration) -> Int {
        let channels = EfficientNetLite0.finalChannels
        return configuration.pooling == .rmac ? configuration.poolingOptions.regionWhitening?.outputDimension ?? channels : channels
    }

    /// Describes the image file at `path`.
    public func describe(path: String) throws -> Description {
        try describe(image: ImageLoader.load(path: path, maximumSide: configuration.maximumSide))
    }

    /// Describes the region `box` (x1, y1, x2, y2 in pixels of the original image) of the image
    /// file at `path`, as the revisited Oxford/Paris protocol describes its queries: the image is
    /// decoded at full size, the box rounded to whole pixels and clipped to the image, the crop
    /// then shrunk to `maximumSide` like any image.
    public func describe(path: String, box: [Double]) throws -> Description {
        guard box.count == 4, box.allSatisfy(\.isFinite) else {
            throw DescriptorError.invalidParameter(name: "crop box", value: "\(box)", allowed: "4 finite numbers x1, y1, x2, y2")
        }
        let image = try ImageLoader.load(path: path)
        // Clamped as doubles first: Int() of a huge coordinate would trap.
        // Halves to even, as the reference code's crop (Python's round) does.
        func pixel(_ value: Double, within side: Int) -> Int {
            Int(Swift.max(0, Swift.min(value.rounded(.toNearestOrEven), Double(side))))
        }
        let (x1, y1) = (pixel(box[0], within: image.width), pixel(box[1], within: image.height))
        let (x2, y2) = (pixel(box[2], within: image.width), pixel(box[3], within: image.height))
        guard x2 > x1, y2 > y1 else {
            throw DescriptorError.badInput("\(path): crop box \(box) leaves nothing of the \(image.width) x \(image.height) image")
        }
        return try describe(image: image.cropped(top: y1, left: x1, height: y2 - y1, width: x2 - x1))
    }

    /// Describes an RGB image (3 planes, values 0...255); it is first shrunk to `maximumSide`.
    public func describe(image: FeatureMap) throws -> Description {
        var image = image
        if Swift.max(image.height, image.width) > configuration.maximumSide {
            image = ImageResampler.resize(image, longerSide: configuration.maximumSide)
        }
        let factors = configuration.multiscale || configuration.local != nil ? Self.multiscaleFactors : [1]
        var pooled: [[Float]] = []
        var intermediates: [(map: FeatureMap, height: Int, width: Int)] = []
        for (i, factor) in factors.enumerated() {
            let scaled = factor == 1 ? image : ImageResampler.resize(
                image, height: Int((Double(image.height) * factor).rounded()), width: Int((Double(image.width) * factor).rounded()))
            guard Swift.min(scaled.height, scaled.width) >= EfficientNetLite0.minimumSide else {
                if i == 0 {
                    throw DescriptorError.badInput("image of \(image.width) x \(image.height): the shorter side must be at least \(EfficientNetLite0.minimumSide) pixels")
                }
                continue
            }
            let input = EfficientNetLite0.normalizedInput(scaled)
            if i == 0 || configuration.multiscale {
                let (final, intermediate) = try network.forward(input, intermediate: configuration.local != nil)
                pooled.append(try GlobalPooling.pool(final, configuration.pooling, options: configuration.poolingOptions))
                if let intermediate { intermediates.append((intermediate, scaled.height, scaled.width)) }
            } else {
                // A pyramid level for local features only.
                intermediates.append((try network.intermediate(input), scaled.height, scaled.width))
            }
        }
        var global = Self.combine(pooled, power: configuration.pooling == .gem ? configuration.poolingOptions.gemPower : 1)
        // The whitening's space: whitened, then L2-normalised (the pooled input already is).
        if let whitening = configuration.whitening { global = try whitening.descriptorSpace.prepare(global) }
        var local: LocalFeatures?
        if let localConfiguration = configuration.local {
            local = try LocalFeatureExtractor(configuration: localConfiguration)
                .select(intermediates, imageHeight: image.height, imageWidth: image.width, network: network)
        }
        return Description(global: global, local: local)
    }

    /// Scales combined by a generalised mean, `(mean v^p)^(1/p)`, then L2 (plain mean when any
    /// value is negative, as after region whitening).
    static func combine(_ descriptors: [[Float]], power: Float) -> [Float] {
        guard descriptors.count > 1 else { return descriptors[0] }
        let p = descriptors.allSatisfy { $0.allSatisfy { $0 >= 0 } } ? Double(power) : 1
        var out = [Float](repeating: 0, count: descriptors[0].count)
        for i in out.indices {
            let mean = descriptors.reduce(0.0) { $0 + pow(Double($1[i]), p) } / Double(descriptors.count)
            out[i] = Float(p == 1 ? mean : pow(mean, 1 / p))
        }
        return VectorMath.normalized(out)
    }
}

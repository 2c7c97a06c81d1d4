import Foundation
import PharosIndex
import PharosVectors

/// How a feature map becomes one global descriptor.
public enum PoolingMethod: String, CaseIterable, Sendable {
    /// Maximum activation per channel (Tolias et al. 2016; Razavian et al. 2016).
    case mac
    /// Sum (average) pooling (Babenko and Lempitsky 2015).
    case spoc
    /// Generalised mean, `(mean x^p)^(1/p)` (Radenović et al. 2018).
    case gem
    /// Cross-dimensional weighting: spatial weights from summed activations, channel weights
    /// from sparsity (Kalantidis et al. 2016).
    case crow
    /// Regional MAC: MAC of square regions at several scales, each L2-normalised (and optionally
    /// whitened), summed (Tolias et al. 2016).
    case rmac
}

/// Global pooling of feature maps; every descriptor comes back L2-normalised.
public enum GlobalPooling {
    /// Parameters of the pooling methods.
    public struct Options: Sendable {
        /// GeM's power p (1 is SPoC, large p approaches MAC).
        public var gemPower: Float = 3
        /// R-MAC's number of region scales.
        public var rmacLevels = 3
        /// Applied to each R-MAC region vector before the sum (per-region whitening).
        public var regionWhitening: Whitening?
        /// Defaults: GeM p = 3, R-MAC L = 3, no region whitening.
        public init(gemPower: Float = 3, rmacLevels: Int = 3, regionWhitening: Whitening? = nil) {
            self.gemPower = gemPower
            self.rmacLevels = rmacLevels
            self.regionWhitening = regionWhitening
        }
    }

    /// The descriptor of `map` by `method`: `map.channels` values (or the region whitening's
    /// output dimension for whitened R-MAC), L2-normalised.
    public static func pool(_ map: FeatureMap, _ method: PoolingMethod, options: Options = Options()) throws -> [Float] {
        guard map.channels > 0, map.height > 0, map.width > 0 else { throw DescriptorError.badInput("pooling an empty feature map") }
        guard options.gemPower >= 1, options.gemPower <= 64 else {
            throw DescriptorError.invalidParameter(name: "GeM power", value: "\(options.gemPower)", allowed: "1...64")
        }
        guard (1...8).contains(options.rmacLevels) else {
            throw DescriptorError.invalidParameter(name: "R-MAC levels", value: "\(options.rmacLevels)", allowed: "1...8")
        }
        let v: [Float] = switch method {
        case .mac: regionMax(map, top: 0, left: 0, height: map.height, width: map.width)
        case .spoc: (0..<map.channels).map { c in mean(map, channel: c) }
        case .gem: gem(map, power: options.gemPower)
        case .crow: crow(map)
        case .rmac: try rmac(map, levels: options.rmacLevels, whitening: options.regionWhitening)
        }
        return VectorMath.normalized(v)
    }

    private static func mean(_ map: FeatureMap, channel c: Int) -> Float {
        var sum = 0.0
        for i in c * map.planeSize ..< (c + 1) * map.planeSize { sum += Double(map.values[i]) }
        return Float(sum / Double(map.planeSize))
    }

    static func regionMax(_ map: FeatureMap, top: Int, left: Int, height: Int, width: Int) -> [Float] {
        (0..<map.channels).map { c in
            var best = -Float.infinity
            for y in top ..< top + height {
                let row = (c * map.height + y) * map.width
                for x in left ..< left + width { best = Swift.max(best, map.values[row + x]) }
            }
            return best
        }
    }

    private static func gem(_ map: FeatureMap, power p: Float) -> [Float] {
        let epsilon: Float = 1e-6   // clamps negatives and zeros, as the reference GeM does
        return (0..<map.channels).map { c in
            var sum = 0.0
            for i in c * map.planeSize ..< (c + 1) * map.planeSize {
                sum += pow(Double(Swift.max(map.values[i], epsilon)), Double(p))
            }
            return Float(pow(sum / Double(map.planeSize), 1 / Double(p)))
        }
    }

    /// CroW with the paper's defaults a = 2, b = 2.
    private static func crow(_ map: FeatureMap) -> [Float] {
        let plane = map.planeSize
        var spatial = [Double](repeating: 0, count: plane)
        for c in 0..<map.channels { for i in 0..<plane { spatial[i] += Double(map.values[c * plane + i]) } }
        let norm = spatial.reduce(0) { $0 + $1 * $1 }.squareRoot()
        if norm > 0 { spatial = spatial.map { Swift.max($0 / norm, 0).squareRoot() } }
        let nonZero = (0..<map.channels).map { c in
            Double((0..<plane).count { map.values[c * plane + $0] > 0 }) / Double(plane)
        }
        let total = nonZero.reduce(0, +)
        return (0..<map.channels).map { c in
            guard nonZero[c] > 0 else { return 0 }
            var sum = 0.0
            for i in 0..<plane { sum += Double(map.values[c * plane + i]) * spatial[i] }
            return Float(sum * log(total / nonZero[c]))
        }
    }

    /// One R-MAC region: top-left corner and size, in map cells.
    public struct Region: Equatable, Sendable {
        /// First row.
        public var top: Int
        /// First column.
        public var left: Int
        /// Rows.
        public var height: Int
        /// Columns.
        public var width: Int
    }

    /// The regions R-MAC pools: the whole map, then at level l = 1...levels squares of side
    /// `floor(2 min(h, w) / (l + 1))`, spread evenly, with as many positions along the longer
    /// side as gives neighbours about 40% overlap (Tolias et al. 2016, as in the reference code).
    public static func rmacRegions(height h: Int, width w: Int, levels: Int) -> [Region] {
        let side = Double(Swift.min(h, w))
        let overlap = 0.4
        let steps = [2.0, 3, 4, 5, 6, 7]
        var best = 0, bestError = Double.infinity
        for (i, s) in steps.enumerated() {
            let b = (Double(Swift.max(h, w)) - side) / (s - 1)
            let error = abs((side * side - side * b) / (side * side) - overlap)
            if error < bestError { (best, bestError) = (i, error) }
        }
        let (extraW, extraH) = h < w ? (best + 1, 0) : (h > w ? (0, best + 1) : (0, 0))
        var regions = [Region(top: 0, left: 0, height: h, width: w)]
        for level in 1...levels {
            let wl = Int((2 * side / Double(level + 1)).rounded(.down))
            guard wl > 0 else { continue }
            let wl2 = (Double(wl) / 2 - 1).rounded(.down)
            func starts(_ length: Int, _ count: Int) -> [Int] {
                let b = count > 1 ? Double(length - wl) / Double(count - 1) : 0
                return (0..<count).map { Int((wl2 + Double($0) * b).rounded(.down) - wl2) }
            }
            for top in starts(h, level + extraH) {
                for left in starts(w, level + extraW) { regions.append(Region(top: top, left: left, height: wl, width: wl)) }
            }
        }
        return regions
    }

    private static func rmac(_ map: FeatureMap, levels: Int, whitening: Whitening?) throws -> [Float] {
        if let whitening, whitening.inputDimension != map.channels {
            throw DescriptorError.badInput("region whitening takes \(whitening.inputDimension)-D vectors, the map has \(map.channels) channels")
        }
        var sum = [Float](repeating: 0, count: whitening?.outputDimension ?? map.channels)
        let regionSpace = whitening?.descriptorSpace
        for r in rmacRegions(height: map.height, width: map.width, levels: levels) {
            var v = VectorMath.normalized(regionMax(map, top: r.top, left: r.left, height: r.height, width: r.width))
            if let regionSpace { v = try regionSpace.prepare(v) }
            for i in sum.indices { sum[i] += v[i] }
        }
        return sum
    }
}

/// Resizes feature maps (images as float planes) with a separable triangle filter whose support
/// widens with the reduction factor, so downscaling averages every source pixel it covers
/// instead of skipping pixels (antialiasing, as PIL's resize with BILINEAR does).
public enum ImageResampler {
    /// One output position's source span and normalised weights.
    struct Taps {
        var start: [Int] = []
        var weights: [[Float]] = []
    }

    static func taps(from inSize: Int, to outSize: Int) -> Taps {
        let scale = Double(inSize) / Double(outSize)
        let widen = Swift.max(scale, 1)
        var taps = Taps()
        for i in 0..<outSize {
            let center = (Double(i) + 0.5) * scale
            let lo = Swift.max(0, Int((center - widen).rounded(.down)))
            let hi = Swift.min(inSize, Int((center + widen).rounded(.up)))
            var weights = (lo..<hi).map { j in Swift.max(0, 1 - abs((Double(j) + 0.5 - center) / widen)) }
            let total = weights.reduce(0, +)
            if total > 0 { weights = weights.map { $0 / total } } else { weights = [1] + [Double](repeating: 0, count: hi - lo - 1) }
            taps.start.append(lo)
            taps.weights.append(weights.map(Float.init))
        }
        return taps
    }

    /// `map` resized to `height x width` (each at least 1).
    public static func resize(_ map: FeatureMap, height: Int, width: Int) -> FeatureMap {
        precondition(height > 0 && width > 0, "resize to \(width) x \(height)")
        if height == map.height && width == map.width { return map }
        let horizontal = taps(from: map.width, to: width), vertical = taps(from: map.height, to: height)
        var out = FeatureMap(channels: map.channels, height: height, width: width)
        var rows = [Float](repeating: 0, count: map.height * width)
        for c in 0..<map.channels {
            let plane = c * map.height * map.width
            // Horizontal pass: every source row to the new width.
            for y in 0..<map.height {
                let source = plane + y * map.width
                for x in 0..<width {
                    var sum: Float = 0
                    for (t, w) in horizontal.weights[x].enumerated() { sum += w * map.values[source + horizontal.start[x] + t] }
                    rows[y * width + x] = sum
                }
            }
            // Vertical pass.
            let target = c * height * width
            for y in 0..<height {
                for x in 0..<width { out.values[target + y * width + x] = 0 }
                for (t, w) in vertical.weights[y].enumerated() {
                    let source = (vertical.start[y] + t) * width
                    for x in 0..<width { out.values[target + y * width + x] += w * rows[source + x] }
                }
            }
        }
        return out
    }

    /// `map` scaled so its longer side is `side` (aspect ratio kept, each side at least 1).
    public static func resize(_ map: FeatureMap, longerSide side: Int) -> FeatureMap {
        let longer = Swift.max(map.height, map.width)
        let scale = Double(side) / Double(longer)
        return resize(map, height: Swift.max(1, Int((Double(map.height) * scale).rounded())),
                      width: Swift.max(1, Int((Double(map.width) * scale).rounded())))
    }
}

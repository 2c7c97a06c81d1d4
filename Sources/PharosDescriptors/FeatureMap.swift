/// A stack of 2-D activation maps: `channels x height x width` floats, channel-major (a CNN's
/// output for one image, or an image itself as 3 planes).
public struct FeatureMap: Sendable, Equatable {
    /// Number of planes.
    public let channels: Int
    /// Rows per plane.
    public let height: Int
    /// Columns per plane.
    public let width: Int
    /// `channels * height * width` values: plane after plane, row after row.
    public var values: [Float]

    /// A map from its values.
    public init(channels: Int, height: Int, width: Int, values: [Float]) {
        precondition(channels >= 0 && height >= 0 && width >= 0 && values.count == channels * height * width,
                     "feature map of \(channels) x \(height) x \(width) given \(values.count) values")
        self.channels = channels
        self.height = height
        self.width = width
        self.values = values
    }

    /// A map of zeros.
    public init(channels: Int, height: Int, width: Int) {
        self.init(channels: channels, height: height, width: width, values: [Float](repeating: 0, count: channels * height * width))
    }

    /// A map whose values the caller writes before reading any (skips zero-filling maps of
    /// tens of megabytes that a convolution overwrites at once).
    init(uninitializedChannels channels: Int, height: Int, width: Int) {
        precondition(channels >= 0 && height >= 0 && width >= 0, "feature map of \(channels) x \(height) x \(width)")
        self.channels = channels
        self.height = height
        self.width = width
        self.values = [Float](unsafeUninitializedCapacity: channels * height * width) { _, count in count = channels * height * width }
    }

    /// Values per plane.
    public var planeSize: Int { height * width }

    /// The value of channel `c` at row `y`, column `x`.
    @inline(__always) public subscript(c: Int, y: Int, x: Int) -> Float {
        values[(c * height + y) * width + x]
    }
}

extension FeatureMap {
    /// The `height x width` window at (`top`, `left`) of every plane.
    public func cropped(top: Int, left: Int, height h: Int, width w: Int) -> FeatureMap {
        precondition(top >= 0 && left >= 0 && h > 0 && w > 0 && top + h <= height && left + w <= width, "crop outside the map")
        var out = FeatureMap(channels: channels, height: h, width: w)
        for c in 0..<channels {
            for y in 0..<h {
                let source = (c * height + top + y) * width + left
                out.values.replaceSubrange((c * h + y) * w ..< (c * h + y + 1) * w, with: values[source ..< source + w])
            }
        }
        return out
    }

    /// Pixel values scaled by `brightness`, then spread by `contrast` around mid-grey (128).
    public func adjusted(brightness: Float, contrast: Float) -> FeatureMap {
        var out = self
        for i in out.values.indices { out.values[i] = (values[i] * brightness - 128) * contrast + 128 }
        return out
    }
}

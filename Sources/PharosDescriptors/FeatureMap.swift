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

    /// Values per plane.
    public var planeSize: Int { height * width }

    /// The value of channel `c` at row `y`, column `x`.
    @inline(__always) public subscript(c: Int, y: Int, x: Int) -> Float {
        values[(c * height + y) * width + x]
    }
}

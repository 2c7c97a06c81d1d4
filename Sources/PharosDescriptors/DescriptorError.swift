/// A problem with an image or a descriptor request; the message names what and where.
public enum DescriptorError: Error, CustomStringConvertible, Equatable {
    /// An input the extractor cannot use (wrong channel count, size out of range, ...).
    case badInput(String)
    /// An image file that cannot be decoded: its path and why.
    case unreadableImage(path: String, reason: String)
    /// A parameter out of its range.
    case invalidParameter(name: String, value: String, allowed: String)

    public var description: String {
        switch self {
        case let .badInput(message): message
        case let .unreadableImage(path, reason): "\(path): \(reason)"
        case let .invalidParameter(name, value, allowed): "\(name) = \(value) is out of range: allowed \(allowed)"
        }
    }
}

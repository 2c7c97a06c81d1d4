/// Limits every connection enforces.
public struct WireLimits: Sendable, Equatable {
    /// Largest frame payload accepted; a larger length prefix is refused before any
    /// allocation and the connection is closed (its framing cannot be trusted).
    public var maximumFrameBytes: Int

    /// The default limits (64 MiB frames).
    public init(maximumFrameBytes: Int = 64 << 20) {
        precondition(maximumFrameBytes > 0 && maximumFrameBytes <= Int(UInt32.max), "frame limit out of range")
        self.maximumFrameBytes = maximumFrameBytes
    }
}

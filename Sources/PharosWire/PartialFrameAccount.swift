import NIOCore

/// One connection's share of the server's budget for frames still arriving: the decoder
/// reserves through it, the handler asks it whether a frame is half-sent.
final class PartialFrameAccount: FrameBudget, @unchecked Sendable {
    // @unchecked: used from the connection's event loop only.
    private let server: WireServer
    /// Bytes of a partial frame reserved now.
    private(set) var held = 0

    init(server: WireServer) { self.server = server }

    func reserveFrame(bytes: Int) -> Bool {
        guard server.reserveFrame(bytes: bytes) else { return false }
        held += bytes
        return true
    }

    func releaseFrame(bytes: Int) {
        server.releaseFrame(bytes: bytes)
        held -= bytes
    }
}

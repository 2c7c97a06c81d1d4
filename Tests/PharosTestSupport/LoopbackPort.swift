import Foundation
import Synchronization

/// Loopback ports for tests that bind the same port again (a node stopped and restarted at
/// its address). They are taken below the kernel's ephemeral range: a port the kernel handed
/// out for `bind(0)` can be handed out again, to an outgoing connection of any test, while
/// its node is down, and the restart then fails with EADDRINUSE (it did in CI once). Ports
/// below the range are given to nobody who does not ask for them by number.
public enum LoopbackPort {
    /// The next port of this process's run, offset by its PID so that two test processes at
    /// once start far apart.
    private static let next = Mutex<Int?>(nil)

    /// The lowest ephemeral port (`ip_local_port_range`; Linux's default when unreadable).
    static var ephemeralLow: Int {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        return text.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } ?? 32768
    }

    /// `count` consecutive ports, each free to bind now, below the ephemeral range.
    /// Each call returns ports no earlier call of this process returned.
    public static func reserve(count: Int = 1) -> Int {
        let top = max(2048, ephemeralLow)
        let bottom = max(1024, top - 16384)
        let span = top - bottom - count
        return next.withLock { cursor in
            var candidate = cursor ?? bottom + Int(getpid()) * 97 % span
            for _ in 0..<(span / max(1, count)) {
                if candidate + count > top { candidate = bottom }
                let block = candidate
                candidate += count
                if (0..<count).allSatisfy({ isFree(block + $0) }) {
                    cursor = candidate
                    return block
                }
            }
            preconditionFailure("no \(count) free loopback ports below \(top)")
        }
    }

    /// Whether `port` can be bound on 127.0.0.1 now (as the servers bind: SO_REUSEADDR, so a
    /// connection of an earlier run in TIME_WAIT does not count).
    public static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

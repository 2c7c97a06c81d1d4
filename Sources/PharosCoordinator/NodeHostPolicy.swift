/// Which hosts a coordinator may be told to connect to (`AddNode`): an unauthenticated
/// request must not make it open connections anywhere. By default: loopback, and the hosts
/// the map's nodes already live on; more are allowed by name (`--allow-node-host`).
public struct NodeHostPolicy: Sendable, Equatable, CustomStringConvertible {
    /// Hosts allowed besides loopback and the map's own.
    public var extraHosts: Set<String>
    /// Any host at all (`--allow-node-host '*'`).
    public var anyHost: Bool

    /// A policy.
    public init(extraHosts: Set<String> = [], anyHost: Bool = false) {
        self.extraHosts = extraHosts
        self.anyHost = anyHost
    }

    /// Loopback and the map's hosts only.
    public static let knownAndLoopback = NodeHostPolicy()

    static let loopback: Set<String> = ["127.0.0.1", "::1", "localhost"]

    /// Whether `host` is allowed, given the hosts of the map's nodes.
    public func allows(_ host: String, known: [String]) -> Bool {
        anyHost || Self.loopback.contains(host) || (host.hasPrefix("127.") && host.allSatisfy { $0.isNumber || $0 == "." })
            || extraHosts.contains(host) || known.contains(host)
    }

    public var description: String {
        anyHost ? "any host" : "loopback, the map's hosts" + (extraHosts.isEmpty ? "" : " and " + extraHosts.sorted().joined(separator: ", "))
    }
}

import ArgumentParser
import Logging
import PharosWire

/// The options every server process takes (`pharos-shard serve`, `pharos-coordinator`): where
/// to listen, how large a frame may be, how much to log. Port and request limits differ by
/// program and stay with each command.
public struct ServerOptions: ParsableArguments {
    @Option(help: "Address to listen on.") public var host: String = "127.0.0.1"
    @Option(help: "Largest frame accepted, in MiB.") public var maxFrameMB: Int = 64
    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.") public var logLevel: String = "info"
    @Option(help: "Requests of one connection served at once (default: 8 for the coordinator, whose clients each have their own connection; 64 for a shard, whose main client is the coordinator's one connection); a connection at its limit is not read until one finishes.")
    public var maxRequestsPerConnection: Int?

    /// Options with their defaults (ArgumentParser fills them from the command line).
    public init() {}

    public func validate() throws {
        guard (1...4095).contains(maxFrameMB) else { throw ValidationError("--max-frame-mb \(maxFrameMB): expected 1...4095") }
        if let perConnection = maxRequestsPerConnection, !(1...4096).contains(perConnection) {
            throw ValidationError("--max-requests-per-connection \(perConnection): expected 1...4096")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level \(logLevel): expected trace, debug, info, notice, warning, error or critical")
        }
    }

    /// A logger at the chosen level.
    public func logger(label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return logger
    }

    /// Server limits with the chosen frame size and per-connection bound (`perConnection`
    /// unless the flag says otherwise).
    public func limits(maximumRequestsInFlight: Int, perConnection: Int) -> WireServer.Limits {
        .init(maximumRequestsInFlight: maximumRequestsInFlight, wire: WireLimits(maximumFrameBytes: maxFrameMB << 20),
              maximumRequestsPerConnection: maxRequestsPerConnection ?? perConnection)
    }
}

import ArgumentParser
import Logging
import PharosObservability
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
    @Option(help: "Log format: text, or json (one object per line, for log collectors).") public var logFormat: String = "text"
    @Option(help: "Address of the admin HTTP port (/metrics, /livez, /readyz). It has no authentication: keep it on loopback or a private network.")
    public var adminHost: String = "127.0.0.1"
    @Option(help: "Admin HTTP port (default: the serving port + 1000; 0 picks a free one, printed as 'admin on HOST:PORT').")
    public var adminPort: Int?
    @Flag(help: "Serve no admin HTTP port.") public var noAdmin = false
    @Option(help: "Tokens file (lines of ROLE TOKEN; roles read, write, admin): every request but Hello must carry a token with the role it needs. Without it, anyone who reaches the port may do anything.")
    public var tokens: String?
    @Option(help: "TLS: this server's certificate chain (PEM); with --tls-key, every connection (wire and admin port) is TLS.")
    public var tlsCertificate: String?
    @Option(help: "TLS: the private key of --tls-certificate (PEM).") public var tlsKey: String?
    @Option(help: "TLS: require client certificates signed by this CA (PEM): mutual TLS.") public var tlsClientCa: String?

    /// Options with their defaults (ArgumentParser fills them from the command line).
    public init() {}

    public func validate() throws {
        guard (1...4095).contains(maxFrameMB) else { throw ValidationError("--max-frame-mb \(maxFrameMB): expected 1...4095") }
        if let perConnection = maxRequestsPerConnection, !(1...4096).contains(perConnection) {
            throw ValidationError("--max-requests-per-connection \(perConnection): expected 1...4096")
        }
        guard ["text", "json"].contains(logFormat) else { throw ValidationError("--log-format \(logFormat): expected text or json") }
        if let adminPort, !(0...65535).contains(adminPort) { throw ValidationError("--admin-port \(adminPort): expected 0...65535") }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level \(logLevel): expected trace, debug, info, notice, warning, error or critical")
        }
    }

    /// A logger at the chosen level. The process's logging is bootstrapped first (so call this
    /// once, at start): text or one JSON object per line on standard error, each line written
    /// while serving a request carrying its id (`request`).
    public func logger(label: String) -> Logger {
        if logFormat == "json" {
            LoggingSystem.bootstrap({ JSONLogHandler(label: $0, metadataProvider: $1) }, metadataProvider: RequestContext.metadataProvider)
        } else {
            LoggingSystem.bootstrap({ StreamLogHandler.standardError(label: $0, metadataProvider: $1) },
                                    metadataProvider: RequestContext.metadataProvider)
        }
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return logger
    }

    /// The tokens requests must carry (`--tokens`), or nil when none were given.
    public func accessTokens() throws -> AccessTokens? {
        guard let tokens else { return nil }
        do { return try AccessTokens.load(tokens) } catch let error as WireError { throw ValidationError("--tokens \(error.message)") }
    }

    /// The server's TLS configuration, or nil without `--tls-certificate`.
    public func serverTLS() throws -> WireTLS? {
        switch (tlsCertificate, tlsKey) {
        case (nil, nil):
            if tlsClientCa != nil { throw ValidationError("--tls-client-ca needs --tls-certificate and --tls-key") }
            return nil
        case let (certificate?, key?):
            do { return try WireTLS.server(certificate: certificate, key: key, clientCA: tlsClientCa) } catch let error as WireError {
                throw ValidationError(error.message)
            }
        default: throw ValidationError("--tls-certificate and --tls-key go together")
        }
    }

    /// Where the admin port listens for a server listening on `port`, or nil with `--no-admin`.
    /// The default is `port + 1000` (or a free port when `port` is 0, or when that would pass 65535).
    public func adminAddress(servingPort port: Int) -> (host: String, port: Int)? {
        if noAdmin { return nil }
        if let adminPort { return (adminHost, adminPort) }
        return (adminHost, port == 0 || port + 1000 > 65535 ? 0 : port + 1000)
    }

    /// Server limits with the chosen frame size and per-connection bound (`perConnection`
    /// unless the flag says otherwise).
    public func limits(maximumRequestsInFlight: Int, perConnection: Int) -> WireServer.Limits {
        .init(maximumRequestsInFlight: maximumRequestsInFlight, wire: WireLimits(maximumFrameBytes: maxFrameMB << 20),
              maximumRequestsPerConnection: maxRequestsPerConnection ?? perConnection)
    }
}

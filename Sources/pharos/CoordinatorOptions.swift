import ArgumentParser
import Foundation
import NIOPosix
import PharosCommandLine
import PharosWire

/// The coordinator address option shared by the client commands.
struct CoordinatorOptions: ParsableArguments {
    @Option(help: "Coordinator address, HOST:PORT.") var coordinator: String = "127.0.0.1:7700"
    @Option(help: "File holding the token to present, for a coordinator started with --tokens (default: $PHAROS_TOKEN_FILE, if set).")
    var tokenFile: String?
    @Option(help: "TLS: verify the coordinator against this CA (PEM); the connection is TLS when given.") var tlsCa: String?
    @Option(help: "TLS: the client certificate to present (PEM), for a coordinator that requires one.") var tlsCertificate: String?
    @Option(help: "TLS: the private key of --tls-certificate (PEM).") var tlsKey: String?

    /// The TLS configuration, or nil (plain TCP) without `--tls-ca`.
    func tls() throws -> WireTLS? {
        guard let tlsCa else {
            if tlsCertificate != nil || tlsKey != nil { throw ValidationError("--tls-certificate and --tls-key need --tls-ca") }
            return nil
        }
        do { return try WireTLS.client(ca: tlsCa, certificate: tlsCertificate, key: tlsKey) } catch let error as WireError {
            throw ValidationError(error.message)
        }
    }

    /// The token to present: from `--token-file`, else `$PHAROS_TOKEN_FILE`, else none.
    func token() throws -> String {
        guard let path = tokenFile ?? ProcessInfo.processInfo.environment["PHAROS_TOKEN_FILE"], !path.isEmpty else { return "" }
        do { return try AccessTokens.readToken(path) } catch let error as WireError { throw ValidationError(error.message) }
    }

    /// The coordinator's host and port.
    func address() throws -> (host: String, port: Int) {
        let parts = coordinator.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--coordinator \(coordinator): expected HOST:PORT") }
        return (String(parts[0]), port)
    }

    /// Connects, runs `body` with the client, closes.
    func withClient<T: Sendable>(_ body: @escaping @Sendable (WireClient) async throws -> T) throws -> T {
        let (host, port) = try address()
        let token = try token(), tls = try tls()
        return try runBlocking {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = try await WireClient.connect(host: host, port: port, group: group, token: token, tls: tls)
            do {
                let result = try await body(client)
                await client.close()
                try? await group.shutdownGracefully()
                return result
            } catch {
                await client.close()
                try? await group.shutdownGracefully()
                throw error
            }
        }
    }
}

import ArgumentParser
import NIOPosix
import PharosCommandLine
import PharosWire

/// The coordinator address option shared by the client commands.
struct CoordinatorOptions: ParsableArguments {
    @Option(help: "Coordinator address, HOST:PORT.") var coordinator: String = "127.0.0.1:7700"

    /// The coordinator's host and port.
    func address() throws -> (host: String, port: Int) {
        let parts = coordinator.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]) else { throw ValidationError("--coordinator \(coordinator): expected HOST:PORT") }
        return (String(parts[0]), port)
    }

    /// Connects, runs `body` with the client, closes.
    func withClient<T: Sendable>(_ body: @escaping @Sendable (WireClient) async throws -> T) throws -> T {
        let (host, port) = try address()
        return try runBlocking {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            let client = try await WireClient.connect(host: host, port: port, group: group)
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

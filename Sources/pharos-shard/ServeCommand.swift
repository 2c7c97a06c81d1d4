import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOPosix
import PharosCommandLine
import PharosObservability
import PharosShard
import PharosStorage
import PharosWire

/// `pharos-shard serve`: the shard node. Serves one data directory over TCP until SIGTERM or
/// SIGINT, then stops gracefully (running requests finish, files are closed).
struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve", abstract: "Serve a shard directory over the wire protocol (Protocols/README.md).")

    @Option(help: "The shard's data directory (created when a trained state is pushed).") var data: String
    @Option(help: "Port to listen on (0 picks a free one; the chosen port is printed).") var port: Int = 7701
    @Option(help: "Threads one search may use.") var searchThreads: Int = 1
    @Option(help: "Requests served at once; more are answered 'overloaded'.") var maxRequests: Int = 64
    @Option(help: "Node name reported in Hello.") var name: String = "shard"
    @Option(help: "Seal what is in memory once writes have paused this many seconds (0: never for idleness).") var idleSeal: Int = 30
    @OptionGroup var server: ServerOptions

    func validate() throws {
        guard (0...86_400).contains(idleSeal) else { throw ValidationError("--idle-seal \(idleSeal): expected 0...86400 seconds") }
    }

    func run() throws {
        let logger = self.server.logger(label: "pharos.shard")
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        var storage = Shard.Options()
        storage.idleSealDelay = idleSeal > 0 ? .seconds(idleSeal) : nil
        let storageLogger = logger
        storage.log = { storageLogger.warning("\($0)") }
        let metrics = MetricsRegistry()
        metrics.bootstrapMetricsSystem()
        BuildInfo.register(in: metrics, program: "pharos-shard")
        ProcessMemory.register(in: metrics)
        storage.observe = ShardMetrics.storageObserver(metrics)
        let service = try ShardService(configuration: .init(dataDirectory: data, storage: storage, searchThreads: searchThreads, nodeName: name))
        ShardMetrics.register(service, in: metrics)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let tls = try server.serverTLS()
        let wireServer = WireServer(service: service, group: group, limits: server.limits(maximumRequestsInFlight: maxRequests, perConnection: 64),
                                    logger: logger, metrics: WireMetrics(registry: metrics), access: try server.accessTokens(), tls: tls)
        let admin = server.adminAddress(servingPort: port).map { address in
            WireServer.AdminEndpoint(server: AdminServer(metrics: metrics, group: group, logger: logger, secure: tls?.serverSetup) {
                ShardMetrics.readiness(of: service)
            },
                                     host: address.host, port: address.port)
        }
        wireServer.serveUntilSignalled(host: server.host, port: port, group: group, program: "pharos-shard", admin: admin)
    }
}

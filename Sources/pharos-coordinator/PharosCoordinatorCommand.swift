import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOPosix
import PharosCommandLine
import PharosCoordinator
import PharosObservability
import PharosVectors
import PharosWire

/// `pharos-coordinator`: routes, fans out, merges and expands; clients speak the wire
/// protocol to it (Protocols/README.md). Stops gracefully on SIGTERM or SIGINT.
@main
struct PharosCoordinatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pharos-coordinator", abstract: "Pharos coordinator: one endpoint in front of the shard nodes of a cluster file.",
        version: BuildInfo.versionLine(program: "pharos-coordinator"))

    /// One OpenBLAS thread (the coordinator finds interactive queries' lists with BLAS on its
    /// event loop: worker threads would only add wake-ups), set before the library loads.
    static func main() {
        OpenBLASThreads.pinBeforeLoad()
        Self.main(nil)
    }

    @Option(help: "The cluster file (JSON: collection, buckets, shards, optional assignment).") var cluster: String
    @Option(help: "Port to listen on (0 picks a free one; the chosen port is printed).") var port: Int = 7700
    @Option(help: "Requests served at once; more are answered 'overloaded'.") var maxRequests: Int = 256
    @Option(help: "Deadline of searches that give none, in milliseconds.") var deadline: Int = 5000
    @Option(help: "Deadline of writes, fetches and administration that give none, in milliseconds.") var writeDeadline: Int = 60_000
    @Option(help: "Folder for what the coordinator keeps (the cluster map and its epochs, the trained state, the whitening); created if missing.") var state: String?
    @Option(help: "A host AddNode may name besides loopback and the map's own hosts (repeatable; '*' allows any).") var allowNodeHost: [String] = []
    @Option(help: "Copies that must acknowledge a write when others are unreachable (those are marked down).") var minimumWriteCopies: Int = 1
    @Option(help: "This coordinator's zone label: reads prefer copies on nodes of the same zone (add-shard --zone).") var zone: String = ""
    @Option(help: "Keep the cluster map in etcd (HOST:PORT of its members, comma-separated), shared by several coordinators; the one holding the mover lease runs bucket moves.") var etcd: String?
    @Option(help: "With --etcd: the key prefix of this cluster.") var etcdPrefix: String = "/pharos/default"
    @Option(help: "With --etcd: this coordinator's name, unique among the cluster's coordinators (default: the host name and port).") var name: String?
    @Option(help: "Event-loop threads. One keeps a search's fan-out, merge and reply on one thread (no cross-thread hops).") var eventLoops: Int = 1
    @Option(help: "File holding the token to present to shard nodes started with --tokens (one of their admin tokens).") var shardTokenFile: String?
    @Option(help: "TLS to shard nodes: verify them against this CA (PEM).") var shardTlsCa: String?
    @Option(help: "TLS to shard nodes: the client certificate to present (PEM), for shards started with --tls-client-ca.") var shardTlsCertificate: String?
    @Option(help: "TLS to shard nodes: the private key of --shard-tls-certificate (PEM).") var shardTlsKey: String?
    @Flag(help: "Let every shard find each query's lists itself, instead of this coordinator finding them once (with the kept trained state) and sending them along (for comparison).")
    var shardsFindLists = false
    @Flag(help: "Let every copy encode the vectors of a write itself, instead of this coordinator encoding them once and sending the codes (for comparison).")
    var shardsEncodeWrites = false
    @OptionGroup var server: ServerOptions

    func validate() throws {
        let most = RequestLimits().maximumDeadlineMilliseconds
        for (flag, value) in [("--deadline", deadline), ("--write-deadline", writeDeadline)] where !(1...most).contains(value) {
            throw ValidationError("\(flag) \(value): expected 1...\(most) milliseconds")
        }
        guard (1...8).contains(minimumWriteCopies) else { throw ValidationError("--minimum-write-copies \(minimumWriteCopies): expected 1...8") }
    }

    func run() throws {
        let logger = self.server.logger(label: "pharos.coordinator")
        let map = try ClusterMap.load(cluster)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, eventLoops))
        var options = Coordinator.Options(searchDeadline: .milliseconds(deadline), writeDeadline: .milliseconds(writeDeadline),
                                          stateDirectory: state)
        options.nodeHosts = NodeHostPolicy(extraHosts: Set(allowNodeHost.filter { $0 != "*" }), anyHost: allowNodeHost.contains("*"))
        options.minimumWriteCopies = minimumWriteCopies
        options.zone = zone
        options.assignsProbes = !shardsFindLists
        options.encodesWrites = !shardsEncodeWrites
        if let shardTokenFile {
            do { options.shardToken = try AccessTokens.readToken(shardTokenFile) } catch let error as WireError {
                throw ValidationError("--shard-token-file \(error.message)")
            }
        }
        if let shardTlsCa {
            do { options.shardTLS = try WireTLS.client(ca: shardTlsCa, certificate: shardTlsCertificate, key: shardTlsKey) } catch let error as WireError {
                throw ValidationError("--shard-tls-*: \(error.message)")
            }
        } else if shardTlsCertificate != nil || shardTlsKey != nil {
            throw ValidationError("--shard-tls-certificate and --shard-tls-key need --shard-tls-ca")
        }
        let metrics = MetricsRegistry()
        metrics.bootstrapMetricsSystem()
        BuildInfo.register(in: metrics, program: "pharos-coordinator")
        ProcessMemory.register(in: metrics)
        options.metrics = metrics
        if let etcd {
            let endpoints = try EtcdClient.endpoints(etcd)
            options.etcd = EtcdSettings(endpoints: endpoints, prefix: etcdPrefix, name: name ?? "\(ProcessInfo.processInfo.hostName):\(port)")
        }
        let settings = options
        let coordinator = try runBlocking { try await Coordinator.connect(map: map, group: group, options: settings, logger: logger) }
        let tls = try server.serverTLS()
        let wireServer = WireServer(service: coordinator, group: group, limits: server.limits(maximumRequestsInFlight: maxRequests, perConnection: 8),
                                    logger: logger, metrics: WireMetrics(registry: metrics), access: try server.accessTokens(), tls: tls)
        let admin = server.adminAddress(servingPort: port).map { address in
            WireServer.AdminEndpoint(server: AdminServer(metrics: metrics, group: group, logger: logger, secure: tls?.serverSetup) {
                coordinator.readiness
            },
                                     host: address.host, port: address.port)
        }
        wireServer.serveUntilSignalled(host: server.host, port: port, group: group, program: "pharos-coordinator", admin: admin) {
            await coordinator.reloadMap()
        }
    }
}

import ArgumentParser
import Foundation
import PharosCluster
import PharosCommandLine
import PharosIndex

/// `pharos cluster up`: the embedded default cluster on loopback: N shard processes and a
/// coordinator, data under one folder, supervised (a dead one is restarted), stopped cleanly by
/// Ctrl-C (or SIGTERM).
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "Run a local cluster; add, remove and rebalance shard nodes.",
                                                    subcommands: [Up.self, AddShard.self, RemoveShard.self, Rebalance.self])

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start N shard nodes and a coordinator on loopback and keep them running; Ctrl-C stops them all cleanly.",
            discussion: """
                A shard or the coordinator that dies is restarted (after 0.5 s, doubling to 30 s while \
                it keeps dying) and the others keep serving. An existing --data folder keeps its \
                cluster.json: flags that disagree with it are an error naming both values.
                """)

        @Option(help: "Number of shard nodes (default 3).") var shards: Int?
        @Option(help: "Folder for the cluster file and every shard's data.") var data: String = "data/cluster"
        @Option(help: "Coordinator port; shard i listens on port + 1 + i (default 7700). Each process serves its admin HTTP port (/metrics, /livez, /readyz) at its port + 1000.") var port: Int?
        @Option(help: "Vector dimension of the collection (required for a new folder).") var dimension: Int?
        @Option(help: "Similarity: l2 or ip (default l2).") var metric: Metric?
        @Option(help: "Index configuration (factory string; default IVF256,PQ32x4fs,RefineSQ8).") var factory: String?
        @Option(help: "Virtual buckets keys hash into (default 4096).") var buckets: Int?
        @Flag(help: "L2-normalise vectors (for inner-product descriptor collections).") var normalize = false
        @Option(help: "Copies of each bucket, on different shards (default 1; at most the shard count).") var replication: Int?

        func run() throws {
            let cluster: LocalCluster
            do {
                cluster = try LocalCluster(data: data, settings: .init(shards: shards, port: port, dimension: dimension, metric: metric,
                                                                     factory: factory, buckets: buckets, normalize: normalize,
                                                                     replication: replication))
            } catch let error as LocalCluster.SettingsError {
                throw UsageError(error.description)
            }
            let (map, port) = (cluster.map, cluster.port)

            let binaries = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            let supervisor = Supervisor()
            // Ctrl-C / SIGTERM stop everything; a child's death only restarts that child.
            let stop = DispatchSemaphore(value: 0)
            var sources: [any DispatchSourceSignal] = []
            for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler {
                    if signalNumber == SIGHUP {
                        printError("SIGHUP ignored: the cluster keeps running (Ctrl-C or SIGTERM stops it)")
                    } else {
                        stop.signal()
                    }
                }
                source.resume()
                sources.append(source)
            }
            do { try cluster.start(under: supervisor, binaries: binaries) } catch { throw ValidationError("\(error)") }
            // Unbuffered: scripts wait for this line while the command keeps running.
            FileHandle.standardOutput.write(Data("cluster ready: coordinator 127.0.0.1:\(port), \(map.shards.count) shards, data under \(data) (Ctrl-C stops it)\n".utf8))
            stop.wait()
            withExtendedLifetime(sources) {}
            printError("stopping the cluster...")
            supervisor.stopAll()
            FileHandle.standardOutput.write(Data("cluster stopped\n".utf8))
        }
    }
}

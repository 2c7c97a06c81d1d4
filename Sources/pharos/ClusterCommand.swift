import ArgumentParser
import Foundation
import PharosCommandLine
import PharosCoordinator
import PharosVectors

/// `pharos cluster up`: the embedded default cluster on loopback: N shard processes and a
/// coordinator, data under one folder, supervised (a dead one is restarted), stopped cleanly by
/// Ctrl-C (or SIGTERM).
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "Run a local cluster.", subcommands: [Up.self])

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
        @Option(help: "Coordinator port; shard i listens on port + 1 + i (default 7700).") var port: Int?
        @Option(help: "Vector dimension of the collection (required for a new folder).") var dimension: Int?
        @Option(help: "Similarity: l2 or ip (default l2).") var metric: String?
        @Option(help: "Index configuration (factory string; default IVF256,PQ32x4fs,RefineSQ8).") var factory: String?
        @Option(help: "Virtual buckets keys hash into (default 4096).") var buckets: Int?
        @Flag(help: "L2-normalise vectors (for inner-product descriptor collections).") var normalize = false

        /// The cluster of a new folder, from the flags and their defaults.
        func newMap() throws -> ClusterMap {
            guard let dimension else { throw UsageError("--dimension is required for a new cluster (no \(data)/cluster.json yet)") }
            let shards = self.shards ?? 3, port = self.port ?? 7700
            guard (1...64).contains(shards) else { throw UsageError("--shards \(shards): expected 1...64") }
            guard (1...(65535 - 64)).contains(port) else { throw UsageError("--port \(port): expected 1...\(65535 - 64)") }
            return ClusterMap(collection: .init(dimension: dimension, metric: metric ?? "l2", factory: factory ?? "IVF256,PQ32x4fs,RefineSQ8",
                                                normalize: normalize ? true : nil),
                              buckets: buckets ?? 4096,
                              shards: (0..<shards).map { .init(name: "shard-\($0)", host: "127.0.0.1", port: port + 1 + $0) })
        }

        /// Flags given for an existing cluster must agree with its file.
        func checkAgainst(_ map: ClusterMap, file: String) throws {
            var conflicts: [String] = []
            func compare<T: Equatable>(_ flag: String, _ given: T?, _ stored: T) {
                if let given, given != stored { conflicts.append("--\(flag) \(given), but the file says \(stored)") }
            }
            compare("dimension", dimension, map.collection.dimension)
            compare("metric", metric, map.collection.metric)
            compare("factory", factory, map.collection.factory)
            compare("buckets", buckets, map.buckets)
            compare("shards", shards, map.shards.count)
            compare("port", port, (map.shards.first?.port ?? 1) - 1)
            if normalize && map.collection.normalize != true { conflicts.append("--normalize, but the file does not normalise") }
            guard conflicts.isEmpty else {
                throw UsageError("\(file) already describes this cluster: \(conflicts.joined(separator: "; ")). Leave those flags out to use it, or use another --data folder.")
            }
        }

        func run() throws {
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            let clusterFile = data + "/cluster.json"
            let map: ClusterMap
            if FileManager.default.fileExists(atPath: clusterFile) {
                map = try ClusterMap.load(clusterFile)
                try checkAgainst(map, file: clusterFile)
            } else {
                map = try newMap()
                do { try map.validate(path: "the flags") } catch let error as ClusterMapError { throw UsageError(error.description) }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try FileIO.writeAtomically(Array(try encoder.encode(map)), to: clusterFile)
            }
            let port = (map.shards.first?.port ?? 7701) - 1

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
            do {
                for shard in map.shards {
                    try supervisor.start(.init(name: shard.name, binary: binaries.appendingPathComponent("pharos-shard"),
                                               arguments: ["serve", "--data", "\(data)/\(shard.name)", "--port", "\(shard.port)", "--name", shard.name]))
                }
                try supervisor.start(.init(name: "coordinator", binary: binaries.appendingPathComponent("pharos-coordinator"),
                                           arguments: ["--cluster", clusterFile, "--port", "\(port)", "--state", "\(data)/coordinator"]))
            } catch {
                supervisor.stopAll()
                throw ValidationError("\(error)")
            }
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

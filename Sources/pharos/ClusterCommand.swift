import ArgumentParser
import Foundation
import PharosCommandLine
import PharosCoordinator

/// `pharos cluster up`: the embedded default cluster on loopback: N shard processes and a
/// coordinator, data under one folder, stopped cleanly by Ctrl-C (or SIGTERM).
struct ClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cluster", abstract: "Run a local cluster.", subcommands: [Up.self])

    struct Up: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start N shard nodes and a coordinator on loopback; Ctrl-C stops them all cleanly.")

        @Option(help: "Number of shard nodes.") var shards: Int = 3
        @Option(help: "Folder for the cluster file and every shard's data.") var data: String = "data/cluster"
        @Option(help: "Coordinator port; shard i listens on port + 1 + i.") var port: Int = 7700
        @Option(help: "Vector dimension of the collection.") var dimension: Int
        @Option(help: "Similarity: l2 or ip.") var metric: String = "l2"
        @Option(help: "Index configuration (factory string).") var factory: String = "IVF256,PQ32x4fs,RefineSQ8"
        @Option(help: "Virtual buckets keys hash into.") var buckets: Int = 4096
        @Flag(help: "L2-normalise vectors (for inner-product descriptor collections).") var normalize = false

        func run() throws {
            guard (1...64).contains(shards) else { throw ValidationError("--shards \(shards): expected 1...64") }
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            let map = ClusterMap(collection: .init(dimension: dimension, metric: metric, factory: factory, normalize: normalize ? true : nil),
                                 buckets: buckets,
                                 shards: (0..<shards).map { .init(name: "shard-\($0)", host: "127.0.0.1", port: port + 1 + $0) })
            try map.validate()
            let clusterFile = data + "/cluster.json"
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(map).write(to: URL(fileURLWithPath: clusterFile), options: .atomic)

            let binaries = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
            var children: [(name: String, process: Process)] = []
            func stopAll() {
                for child in children where child.process.isRunning { kill(child.process.processIdentifier, SIGTERM) }
                for child in children { child.process.waitUntilExit() }
            }
            func launch(_ name: String, _ binary: String, _ arguments: [String]) throws {
                let process = Process()
                process.executableURL = binaries.appendingPathComponent(binary)
                process.arguments = arguments
                let out = Pipe()
                process.standardOutput = out
                try process.run()
                children.append((name, process))
                // Wait for its "listening on" line.
                let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
                guard line.contains("listening on") else {
                    stopAll()
                    throw ValidationError("\(name) did not start: \(line.isEmpty ? "it exited (see its messages above)" : line)")
                }
                printError("\(name): \(line.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            for shard in map.shards {
                try launch(shard.name, "pharos-shard", ["serve", "--data", "\(data)/\(shard.name)", "--port", "\(shard.port)", "--name", shard.name])
            }
            try launch("coordinator", "pharos-coordinator", ["--cluster", clusterFile, "--port", "\(port)", "--state", "\(data)/coordinator"])
            // Unbuffered: scripts wait for this line while the command keeps running.
            FileHandle.standardOutput.write(Data("cluster ready: coordinator 127.0.0.1:\(port), \(shards) shards, data under \(data) (Ctrl-C stops it)\n".utf8))

            // Stop on Ctrl-C / SIGTERM, or when any child dies.
            let stop = DispatchSemaphore(value: 0)
            var sources: [any DispatchSourceSignal] = []
            for signalNumber in [SIGINT, SIGTERM] {
                signal(signalNumber, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
                source.setEventHandler { stop.signal() }
                source.resume()
                sources.append(source)
            }
            for child in children {
                child.process.terminationHandler = { _ in stop.signal() }
            }
            // A child that died before its handler was set would never call it.
            if children.contains(where: { !$0.process.isRunning }) { stop.signal() }
            stop.wait()
            withExtendedLifetime(sources) {}
            printError("stopping the cluster...")
            stopAll()
            for child in children where child.process.terminationStatus != 0 {
                printError("\(child.name) exited with status \(child.process.terminationStatus)")
            }
            FileHandle.standardOutput.write(Data("cluster stopped\n".utf8))
        }
    }
}

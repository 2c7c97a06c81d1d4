import Foundation
import Logging
import PharosIndex
import PharosObservability
import PharosWire
import Synchronization
import Testing

/// Log lines written while serving a request carry its id, also those written in event-loop
/// callbacks after the request's task-local context is gone (a search's merge).
@Suite(.serialized) struct RequestLogTests {
    /// Every line logged, with the metadata its provider added at the time.
    final class RecordedLines: Sendable {
        let lines = Mutex<[(message: String, metadata: Logger.Metadata)]>([])
        var all: [(message: String, metadata: Logger.Metadata)] { lines.withLock { $0 } }
    }

    struct RecordingHandler: LogHandler {
        let recorded: RecordedLines
        var metadataProvider: Logger.MetadataProvider?
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata explicit: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            let merged = metadata.merging(metadataProvider?.get() ?? [:]) { $1 }.merging(explicit ?? [:]) { $1 }
            recorded.lines.withLock { $0.append((message.description, merged)) }
        }
    }

    @Test func aPartialSearchLogsTheRequestsID() async throws {
        let recorded = RecordedLines()
        let cluster = TestCluster()
        // The provider is the one `--log-format` installs in every server process.
        cluster.coordinatorLogger = Logger(label: "pharos.coordinator") { _ in
            RecordingHandler(recorded: recorded, metadataProvider: RequestContext.metadataProvider)
        }
        do {
            try await cluster.start(factory: "IVF8,PQ8")
            let trained = try ClusterTests.trained("IVF8,PQ8")
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(trained)))
            _ = try await cluster.client.call(.upsert(UpsertRequest(keys: (0..<200).map { "k\($0)" },
                                                                    vectors: ClusterTests.data.vectors(0..<200, stream: 0).values,
                                                                    dimension: TestCluster.dimension)))
            await cluster.shardServers[1].stop(grace: 1)
            let query = ClusterTests.data.vectors(0..<1, stream: 2).values
            // Requests 1 and 2 were the push and the upsert; each connection numbers its own.
            guard case let .searchResult(partial) = try await cluster.client.call(.search(SearchRequest(
                vectors: query, dimension: TestCluster.dimension, k: 5, nprobe: 8, deadlineMilliseconds: 2000))) else {
                Issue.record("no search result"); await cluster.stop(); return
            }
            #expect(partial.partial)
            let line = recorded.all.first { $0.message == "partial search" }
            #expect(line != nil, "no 'partial search' line: \(recorded.all.map(\.message))")
            #expect(line?.metadata["request"] == "3", "the line carries \(line?.metadata ?? [:])")
            // Lines outside any request carry none.
            #expect(recorded.all.filter { $0.message == "cluster map changed" }.allSatisfy { $0.metadata["request"] == nil })
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}

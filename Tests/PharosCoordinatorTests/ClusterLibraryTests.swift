import Foundation
import PharosCluster
import PharosCoordinator
import PharosIndex
import PharosVectors
import PharosWire
import Testing

/// What `pharos cluster up`, `pharos ingest` and `pharos search` do, reached as libraries:
/// no processes, no parsing of printed lines.
@Suite(.serialized) struct ClusterLibraryTests {
    static func folder() -> String { NSTemporaryDirectory() + "pharos-library-\(UUID().uuidString.prefix(8))" }

    @Test func aLocalClusterKeepsItsFileAndRefusesSettingsThatDisagree() throws {
        let data = Self.folder()
        defer { try? FileManager.default.removeItem(atPath: data) }
        #expect { try LocalCluster(data: data, settings: .init()) } throws: { "\($0)".contains("--dimension is required") }
        let made = try LocalCluster(data: data, settings: .init(shards: 2, port: 7800, dimension: 32, metric: .innerProduct, normalize: true))
        #expect(made.map.shards.map(\.port) == [7801, 7802] && made.port == 7800)
        #expect(made.map.collection == .init(dimension: 32, metric: .innerProduct, factory: "IVF256,PQ32x4fs,RefineSQ8", normalize: true))

        // The folder's file wins: no settings reuse it, agreeing ones are fine, others are named.
        #expect(try LocalCluster(data: data, settings: .init()).map == made.map)
        #expect(try LocalCluster(data: data, settings: .init(shards: 2, metric: .innerProduct)).map == made.map)
        #expect { try LocalCluster(data: data, settings: .init(shards: 3, dimension: 48)) } throws: { error in
            let text = "\(error)"
            return error is LocalCluster.SettingsError && text.contains("--dimension 48, but the file says 32") && text.contains("--shards 3, but the file says 2")
        }
        // The file is the map's JSON (metric by its name, normalize only when set).
        let file = try String(contentsOfFile: made.clusterFile, encoding: .utf8)
        #expect(file.contains("\"metric\" : \"ip\"") && file.contains("\"normalize\" : true"))
    }

    /// A vector file in through the coordinator with a checkpoint: a rerun resumes after the
    /// acknowledged batches and sends nothing twice; a checkpoint of another input is refused.
    @Test func ingestionCheckpointsAndResumes() async throws {
        let factory = "IVF8,PQ8x4fs,RefineFlat"
        let work = Self.folder()
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let rows = ClusterTests.data.vectors(0..<1200, stream: 0)
        let writer = try VectorFileWriter(path: work + "/x.fvecs", dimension: rows.columns)
        try writer.write(rows)
        try writer.finish()
        try await TestCluster.with(factory: factory) { cluster in
            _ = try await cluster.client.call(.trainedState(indexFile: IndexFactory.encoded(try ClusterTests.trained(factory))))
            let checkpoint = work + "/x.checkpoint"
            let ingestion = VectorIngestion(vectors: work + "/x.fvecs", keys: nil, keyPrefix: "row-", batch: 500, inFlight: 2, checkpoint: checkpoint)
            let first = try await ingestion.run(through: cluster.client)
            #expect(first == .init(sent: 1200, replaced: 0, resumedAfterBatches: 0))
            #expect(try ingestion.startingPoint(rows: 1200).acknowledgedBatches == 3)
            let again = try await ingestion.run(through: cluster.client)
            #expect(again == .init(sent: 0, replaced: 0, resumedAfterBatches: 3))
            #expect(try await cluster.client.call(.stats).statsLiveEntries == 1200)

            // Another batch size is another run: its checkpoint does not apply.
            let other = VectorIngestion(vectors: work + "/x.fvecs", keys: nil, batch: 400, checkpoint: checkpoint)
            await #expect { try await other.run(through: cluster.client) } throws: { "\($0)".contains("belongs to") }

            // Searching through the library: every row is its own nearest neighbour, recall is measured by key.
            let search = ClusterSearch(k: 10, nprobe: 8, batch: 4)
            let run = try await search.run(through: cluster.client, vectors: rows.rows(0..<20), keys: [])
            #expect(run.hits.count == 20 && run.latencies.count == 5 && run.partialAnswers == 0)
            #expect(run.hits.enumerated().allSatisfy { $0.element.keys.first == "row-\($0.offset)" })
        }
    }
}

extension WireMessage {
    /// Live entries of a `StatsResult` (-1 for anything else).
    var statsLiveEntries: Int { if case let .statsResult(s) = self { Int(s.liveEntries) } else { -1 } }
}

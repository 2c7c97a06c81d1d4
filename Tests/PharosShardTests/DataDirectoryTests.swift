import Foundation
import PharosStorage
import PharosWire
import Testing
@testable import PharosShard

/// What a shard node does with the directory it is given.
@Suite struct DataDirectoryTests {
    static func directory() -> String { NSTemporaryDirectory() + "pharos-datadir-\(UUID().uuidString.prefix(8))" }

    static func configuration(_ dir: String) -> ShardService.Configuration {
        var storage = Shard.Options()
        storage.automaticMaintenance = false
        storage.log = { _ in }
        return .init(dataDirectory: dir, storage: storage)
    }

    /// The lock is taken from the first moment, not only once a trained state exists.
    @Test func twoNodesCannotServeOneUntrainedDirectory() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try ShardService(configuration: Self.configuration(dir))
        #expect { try ShardService(configuration: Self.configuration(dir)) } throws: { "\($0)".contains("already open") }
        // The first one still takes a trained state, in the directory it holds.
        let reply = first.handle(.trainedState(indexFile: try TestNode.trainedState()))
        guard case .trainedStateAck = reply else { Issue.record("\(reply)"); return }
        #expect { try ShardService(configuration: Self.configuration(dir)) } throws: { "\($0)".contains("already open") }
        first.close()
        let again = try ShardService(configuration: Self.configuration(dir))
        #expect(again.currentShard != nil)
        again.close()
    }

    /// A directory with segments and logs but no MANIFEST is refused, naming what is there,
    /// instead of being served as a new, empty node.
    @Test func aDirectoryWithoutItsManifestIsRefused() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let node = try ShardService(configuration: Self.configuration(dir))
        _ = node.handle(.trainedState(indexFile: try TestNode.trainedState()))
        _ = node.handle(.upsert(UpsertRequest(keys: ["a"], vectors: [Float](repeating: 1, count: 16), dimension: 16)))
        node.close()
        try FileManager.default.removeItem(atPath: dir + "/MANIFEST")
        #expect { try ShardService(configuration: Self.configuration(dir)) } throws: {
            "\($0)".contains("no MANIFEST") && "\($0)".contains("TRAINED") && "\($0)".contains("wal")
        }
    }

    /// A create cut short (killed, or a full disk) leaves the directory marked; the next
    /// start finishes emptying it instead of refusing a directory without MANIFEST forever.
    @Test func aCreateCutShortIsCleanedUpAtTheNextStart() throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/wal", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/TRAINED", contents: Data([1, 2, 3]))
        FileManager.default.createFile(atPath: dir + "/" + Shard.dropMarkerName, contents: Data())
        let node = try ShardService(configuration: Self.configuration(dir))
        defer { node.close() }
        #expect(node.currentShard == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0 != Shard.lockFileName }.isEmpty)
        guard case .trainedStateAck = node.handle(.trainedState(indexFile: try TestNode.trainedState())) else {
            Issue.record("the cleaned directory does not take a trained state"); return
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/" + Shard.dropMarkerName))
    }
}

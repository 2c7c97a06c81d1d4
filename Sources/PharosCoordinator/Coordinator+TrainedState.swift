import Foundation
import PharosDurability
import PharosIndex
import PharosWire

/// Training and dropping the collection: the trained state every shard encodes with, and the
/// whitening the coordinator keeps.
extension Coordinator {
    /// Pushes a checked trained state to every shard; keeps its whitening once they all took it.
    func pushTrainedState(_ file: [UInt8], _ whiteningFile: [UInt8]) async throws -> WireMessage {
        let (pushed, loaded) = try checkedTrainedState(file)
        let whitening = try whiteningFile.isEmpty ? nil : acceptable(whiteningFile)
        try await checkNotRetraining(version: pushed, whitening: whitening)
        var version: UInt64?
        let routing = self.routing
        let active = routing.state.nodes.indices.filter { routing.state.nodes[$0].state != .down }
        for (i, reply) in try await allOrNothing(active.map { ($0, .trainedState(indexFile: file)) }, routing: routing,
                                                 within: options.writeDeadline, on: group.next()).get() {
            guard case let .trainedStateAck(v) = reply else { continue }
            if let version, version != v {
                throw WireError(.internalError, "\(routing.name(i)) acknowledged trained state \(v), others \(version)")
            }
            version = v
        }
        try keepTrainedState(file, loaded: loaded, version: pushed)
        if let whitening { try keep(whitening) }
        return .trainedStateAck(version: version ?? 0)
    }

    /// A pushed trained state must be the cluster file's collection: its factory, dimension
    /// and metric, trained and empty. Returns its version (as shards compute it).
    private func checkedTrainedState(_ bytes: [UInt8]) throws -> (version: UInt64, index: any VectorIndex) {
        let loaded: any VectorIndex
        do { loaded = try IndexFactory.load(bytes: bytes, name: "pushed trained state") } catch {
            throw WireError(.invalidArgument, "\(error)")
        }
        let expected = canonicalFactory
        guard loaded.factoryString == expected else {
            throw WireError(.invalidArgument, "TrainedState is a \(loaded.factoryString) index; the cluster file's collection is \(expected)")
        }
        guard loaded.dimension == map.collection.dimension, loaded.metric == map.collection.metric else {
            throw WireError(.invalidArgument, "TrainedState is \(loaded.dimension)-D \(loaded.metric.rawValue); the collection is \(map.collection.dimension)-D \(map.collection.metric.rawValue)")
        }
        guard loaded.isTrained, loaded.count == 0 else {
            throw WireError(.invalidArgument, loaded.isTrained ? "TrainedState holds \(loaded.count) vectors; push a trained, empty index" : "TrainedState is not trained")
        }
        return (IndexFactory.trainedStateVersion(loaded), loaded)
    }

    /// A trained collection keeps its trained state and whitening: the same ones again are
    /// acknowledged (a retried push, or a shard that missed it), anything else refused until
    /// the collection is dropped (`Drop`, `pharos train --replace`).
    private func checkNotRetraining(version: UInt64, whitening: Whitening?) async throws {
        var trainedVersions = Set<UInt64>()
        var stored: UInt64 = 0
        let routing = self.routing
        for (i, outcome) in try await fanOut(routing.state.nodes.indices.map { ($0, .stats) }, routing: routing, within: options.searchDeadline,
                                             on: group.next()).get() {
            switch outcome {
            case let .success(.statsResult(s)):
                trainedVersions.insert(s.trainedVersion)
                stored += s.liveEntries
            case let .failure(error) where error.code == .notReady: continue
            case let .failure(error):
                throw WireError(error.code == .unavailable ? .unavailable : error.code,
                                "cannot tell whether \(routing.name(i)) is trained, so no trained state is pushed: \(error.message)")
            case let .success(other):
                throw WireError(.internalError, "\(routing.name(i)) answered Stats with \(other.name)")
            }
        }
        let replace = "drop the collection first (pharos train --replace)"
        if let current = trainedVersions.first(where: { $0 != version }) {
            throw WireError(.invalidArgument, "the collection is already trained (trained state \(current)); refusing trained state \(version): \(replace)")
        }
        // A whitening may still change while nothing is stored (say, keeping it failed after
        // the shards took the state): no vector is in the old space yet.
        guard !trainedVersions.isEmpty, stored > 0 else { return }
        if self.whitening != whitening {
            throw WireError(.invalidArgument, self.whitening == nil
                ? "the collection is trained without a whitening and holds unwhitened vectors; refusing to add one: \(replace)"
                : "the collection is trained with a whitening and holds whitened vectors; refusing to change or remove it: \(replace)")
        }
    }

    /// Drops every entry, the trained state and the whitening.
    func drop(confirm: String) async throws -> UInt64 {
        let factory = canonicalFactory
        guard confirm == factory || confirm == map.collection.factory else {
            throw WireError(.invalidArgument, "Drop.confirm is \(confirm.debugDescription): to drop this collection give its factory, \(factory.debugDescription)")
        }
        var dropped: UInt64 = 0
        // With copies every node's count includes them: the collection's count is taken first.
        let copies = routing.state.replication > 1
        let counted = copies ? try? await statistics().liveEntries : nil
        for (_, reply) in try await everyNode(.drop(confirm: factory), within: options.writeDeadline) {
            if case let .dropResult(n) = reply { dropped += n }
        }
        if let counted { dropped = counted }
        keptTrainedState.withLock { $0 = nil }
        probeAssigner.withLock { $0 = nil }
        if let stateDirectory = options.stateDirectory {
            for name in [Self.whiteningFileName, Self.trainedStateFileName] {
                let path = stateDirectory + "/" + name
                guard FileManager.default.fileExists(atPath: path) else { continue }
                do { try FileManager.default.removeItem(atPath: path) } catch {
                    throw WireError(.storage, "removing \(path): \(error)")
                }
            }
        }
        installedSpace.withLock { $0 = (try? $0.with(whitening: nil)) ?? $0 }
        logger.warning("collection dropped", metadata: ["entries": "\(dropped)"])
        return dropped
    }

    /// Keeps the trained state (to give nodes that join later), in the state folder when there is one.
    private func keepTrainedState(_ file: [UInt8], loaded: any VectorIndex, version: UInt64) throws {
        if keptTrainedState.withLock({ $0 == file }) { return }
        if let stateDirectory = options.stateDirectory {
            do { try FileIO.writeAtomically(file, to: stateDirectory + "/" + Self.trainedStateFileName) } catch {
                throw WireError(.storage, "keeping the trained state: \(error)")
            }
        }
        keptTrainedState.withLock { $0 = file }
        // The index just checked serves as the assigner's (not loaded a second time).
        probeAssigner.withLock { $0 = ProbeAssigner(index: loaded, version: version) }
    }

    // MARK: Whitening

    /// A pushed whitening, checked against the collection and against the one already kept.
    private func acceptable(_ bytes: [UInt8]) throws -> Whitening {
        guard options.stateDirectory != nil else {
            throw WireError(.invalidArgument, "this coordinator has no state folder (--state) to keep a whitening in")
        }
        let whitening: Whitening
        do { whitening = try Whitening(bytes: bytes, source: "pushed whitening") } catch {
            throw WireError(.invalidArgument, "\(error)")
        }
        _ = try Self.space(of: map, whitening: whitening, source: "pushed whitening")
        if let current = self.whitening, current != whitening {
            throw WireError(.invalidArgument, "the collection already has a different whitening: the stored vectors are in its space (a new whitening is a new collection)")
        }
        return whitening
    }

    /// Makes `whitening` durable in the state folder, then applies it to new requests.
    private func keep(_ whitening: Whitening) throws {
        guard let stateDirectory = options.stateDirectory, self.whitening != whitening else { return }
        do { try whitening.save(stateDirectory + "/" + Self.whiteningFileName) } catch {
            throw WireError(.storage, "keeping the whitening: \(error)")
        }
        let space = try Self.space(of: map, whitening: whitening, source: "pushed whitening")
        installedSpace.withLock { $0 = space }
        logger.info("whitening installed", metadata: ["input": "\(whitening.inputDimension)", "output": "\(whitening.outputDimension)"])
    }

}

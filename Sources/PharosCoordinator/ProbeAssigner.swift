import PharosIndex
import PharosVectors
import PharosWire

/// The first stage of a search done once, in the coordinator: each query's nearest inverted
/// lists, found with the trained state the shards hold and sent with the request, so that
/// shards only scan. Without it every shard repeats the same coarse search (at 4096 lists of
/// 512 dimensions, a pass over 8 MB of centroids per query per shard: most of a shard's time
/// for one interactive query).
struct ProbeAssigner: Sendable {
    /// The trained state's version, as shards compute it: a shard holding another version
    /// ignores the lists and finds its own.
    let version: UInt64
    private let index: any InvertedFileIndex

    /// An assigner for a trained state file; nil when it is not an inverted-file index (no
    /// lists to assign) or cannot be read (then shards find their own lists, as before).
    init?(trainedState bytes: [UInt8]) {
        guard let loaded = try? IndexFactory.load(bytes: bytes, name: "kept trained state") else { return nil }
        self.init(index: loaded, version: IndexFactory.trainedStateVersion(loaded))
    }

    /// An assigner for a loaded trained state of version `version` (as `trainedStateVersion`
    /// gives it); nil when it is not a trained inverted-file index.
    init?(index loaded: any VectorIndex, version: UInt64) {
        guard let index = loaded as? any InvertedFileIndex, loaded.isTrained else { return nil }
        // Only the coarse stage runs here: the scan's precomputed tables would be dead weight.
        (index as? IVFPQIndex)?.releaseScanTables()
        self.index = index
        self.version = version
    }

    /// `request` with each of `queries`' lists (min(nprobe, lists) per query) and their
    /// coarse distances, or unchanged when they cannot be found (the shards then find them).
    func assigning(_ request: SearchRequest, queries: [[Float]]) -> SearchRequest {
        guard !queries.isEmpty, let dimension = queries.first?.count, dimension == index.dimension else { return request }
        let matrix = Matrix(rows: queries.count, columns: dimension, values: queries.flatMap { $0 })
        // Lists a shard would refuse (a query whose distances overflow leaves a slot unfilled)
        // are not sent: the shards then find their own, as they did before.
        guard let probes = try? index.assign(matrix, nprobe: request.effectiveNprobe),
              probes.lists.allSatisfy({ $0 >= 0 }), probes.biases.allSatisfy(\.isFinite) else { return request }
        var assigned = request
        assigned.probeLists = probes.lists.map { UInt32(truncatingIfNeeded: $0) }
        assigned.probeBiases = probes.biases
        assigned.probeTrainedVersion = version
        return assigned
    }
}

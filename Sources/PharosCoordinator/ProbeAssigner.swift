import PharosIndex
import PharosVectors
import PharosWire

/// The coordinator's copy of the trained state the shards hold, for work done once in the
/// coordinator instead of on every shard: the first stage of a search (each query's nearest
/// inverted lists, sent with the request, so that shards only scan), and the codes of rows
/// written to several copies. Without it every shard repeats the same coarse search (at 4096 lists of
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

    /// The rows' codes as every shard holding this trained state would make them, for a
    /// write going to several copies (encoded once here instead of once per copy); nil when
    /// this index cannot encode them.
    func encodedRows(_ vectors: Matrix) -> [EncodedRow]? {
        guard vectors.columns == index.dimension, let entries = try? index.encodeEntries(vectors, threads: 1) else { return nil }
        var rows: [EncodedRow] = []
        rows.reserveCapacity(entries.count)
        entries.forEachEntry { _, list, code, refine in
            rows.append(EncodedRow(list: list, code: Array(UnsafeBufferPointer(start: code, count: entries.layout.subquantizers)),
                                   refine: refine.map { Array(UnsafeBufferPointer(start: $0, count: entries.layout.refineBytes)) } ?? []))
        }
        return rows
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

import PharosKernels
import PharosVectors

/// Exact search over uncompressed vectors, through BLAS: the reference every approximate
/// index is measured against (factory string `Flat`).
public final class FlatIndex: VectorIndex, @unchecked Sendable {
    // @unchecked: all mutable state is guarded by `lock` (searches read, add writes).
    public let dimension: Int
    public let metric: Metric
    public var factoryString: String { "Flat" }
    public var isTrained: Bool { true }
    public var count: Int { lock.withReadLock { rows } }
    /// Vector bytes, plus the cached norm (L2) and the id once ids are explicit.
    public var bytesPerVector: Int {
        lock.withReadLock { dimension * 4 + (metric == .l2 ? 4 : 0) + (ids.isEmpty ? 0 : 8) }
    }

    private let lock = ReadWriteLock()
    private var vectors: [Float] = []
    private var norms: [Float] = []
    private var rows = 0
    /// Explicit ids by row; empty while ids are implicit (every id equals its row, as
    /// `add(ids: nil)` makes), which spares 8 bytes per vector and the id checks.
    private var ids: [Int64] = []
    /// id -> row; nil while every id equals its row (ids 0, 1, 2, ... as `add(ids: nil)` makes),
    /// which spares the map's memory and insert cost in the common case.
    private var rowOfID: [Int64: Int]?

    /// Queries per work chunk, and database rows per BLAS block: fixed so that results do not
    /// depend on the thread count, sized so a block of scores stays in L2.
    static let queryChunk = 128
    static let databaseBlock = 4096

    /// An empty exact index.
    public init(dimension: Int, metric: Metric) {
        precondition(dimension > 0, "dimension must be positive")
        self.dimension = dimension
        self.metric = metric
    }

    public func train(_ sample: Matrix, threads: Int) throws {
        try validate(sample)
    }

    public func add(_ vectors: Matrix, ids newIDs: [Int64]?, threads: Int) throws {
        try validate(vectors)
        try lock.withWriteLock {
            let first = rows
            if let newIDs, newIDs.count != vectors.rows {
                throw IndexError.idCountMismatch(vectors: vectors.rows, ids: newIDs.count)
            }
            let implicit = rowOfID == nil
                && (newIDs?.enumerated().allSatisfy { $0.element == Int64(first + $0.offset) } ?? true)
            if !implicit {
                let assigned = newIDs ?? (0..<Int64(vectors.rows)).map { Int64(first) + $0 }
                if rowOfID == nil { ids = (0..<Int64(first)).map { $0 } }
                var map = rowOfID ?? Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($0.element, $0.offset) })
                for (offset, id) in assigned.enumerated() {
                    guard map[id] == nil else {
                        // Leave the index as it was: nothing of this batch is stored.
                        if rowOfID != nil { for undo in assigned[..<offset] { map[undo] = nil } }
                        throw IndexError.duplicateID(id)
                    }
                    map[id] = first + offset
                }
                rowOfID = map
                ids += assigned
            }
            rows += vectors.rows
            self.vectors += vectors.values
            if metric == .l2 { norms += VectorMath.squaredNorms(vectors, threads: threads) }
        }
    }

    public func search(_ queries: Matrix, k: Int, parameters: SearchParameters) throws -> SearchResult {
        try validate(queries)
        try parameters.validate(k: k)
        return lock.withReadLock { searchLocked(queries, k: k, threads: parameters.threads) }
    }

    /// Exact search without taking the lock (callers hold it).
    func searchLocked(_ queries: Matrix, k: Int, threads: Int) -> SearchResult {
        var result = SearchResult(queryCount: queries.rows, k: k, metric: metric)
        let n = rows, d = dimension, metric = self.metric, implicitIDs = ids.isEmpty
        guard queries.rows > 0 else { return result }
        result.ids.withSendablePointer { outIDs in result.scores.withSendablePointer { outScores in
        vectors.withUnsafeBufferPointer { base in
            norms.withUnsafeBufferPointer { normsBuffer in
                self.ids.withUnsafeBufferPointer { idsBuffer in
                    queries.values.withUnsafeBufferPointer { q in
                        let basePtr = SendablePointer(readOnly: base.baseAddress ?? UnsafePointer(bitPattern: 8)!)
                        let normPtr = SendablePointer(readOnly: normsBuffer.baseAddress ?? UnsafePointer(bitPattern: 8)!)
                        let idPtr = SendablePointer(readOnly: idsBuffer.baseAddress ?? UnsafePointer(bitPattern: 8)!)
                        let qPtr = SendablePointer(readOnly: q.baseAddress!)
                        Parallel.forEachChunk(count: queries.rows, chunkSize: FlatIndex.queryChunk, threads: threads) { chunk in
                            let block = FlatIndex.databaseBlock
                            var scores = [Float](repeating: 0, count: chunk.count * block)
                            var heaps = (0..<chunk.count).map { _ in ResultHeap(capacity: k) }
                            var start = 0
                            while start < n {
                                let rows = Swift.min(block, n - start)
                                scores.withUnsafeMutableBufferPointer { s in
                                    // distance = -q.x (ip) or |x|^2 - 2 q.x (l2; |q|^2 added at the end)
                                    BLAS.gemmABt(m: chunk.count, n: rows, k: d, alpha: metric == .l2 ? -2 : -1,
                                                 a: qPtr.pointer + chunk.lowerBound * d, lda: d,
                                                 b: basePtr.pointer + start * d, ldb: d,
                                                 c: s.baseAddress!, ldc: rows)
                                    for qi in 0..<chunk.count {
                                        let row = s.baseAddress! + qi * rows
                                        if metric == .l2 {
                                            let nb = normPtr.pointer + start
                                            for j in 0..<rows { row[j] += nb[j] }
                                        }
                                        heaps[qi].withHeap {
                                            pharos_heap_push_many($0, row, rows, implicitIDs ? nil : idPtr.pointer + start, Int64(start), PharosSkipMask())
                                        }
                                    }
                                }
                                start += rows
                            }
                            for qi in 0..<chunk.count {
                                let q = chunk.lowerBound + qi
                                let qNorm = metric == .l2 ? pharos_dot(qPtr.pointer + q * d, qPtr.pointer + q * d, d) : 0
                                let (dist, found) = heaps[qi].sorted()
                                for (r, (dv, id)) in zip(dist, found).enumerated() {
                                    outIDs.pointer[q * k + r] = id
                                    outScores.pointer[q * k + r] = metric == .l2 ? Swift.max(0, dv + qNorm) : -dv
                                }
                            }
                        }
                    }
                }
            }
        }
        } }
        return result
    }

    public func reconstruct(_ id: Int64) throws -> [Float] {
        try lock.withReadLock {
            let row: Int
            if let map = rowOfID {
                guard let found = map[id] else { throw IndexError.unknownID(id) }
                row = found
            } else {
                guard id >= 0, id < Int64(rows) else { throw IndexError.unknownID(id) }
                row = Int(id)
            }
            return Array(vectors[row * dimension ..< (row + 1) * dimension])
        }
    }

    public func encode(into writer: inout IndexFileWriter) {
        lock.withReadLock {
            writer.section("FLAT") { w in
                w.write(ids.isEmpty ? (0..<Int64(rows)).map { $0 } : ids)
                w.write(vectors)
            }
        }
    }

    /// Restores the contents written by `encode`.
    func decode(from reader: inout IndexFileReader) throws {
        var s = try reader.section("FLAT")
        let storedIDs = try s.readInt64s("ids")
        let storedVectors = try s.readFloats("vectors", expected: storedIDs.count * dimension)
        try s.expectEnd()
        let matrix = Matrix(rows: storedIDs.count, columns: dimension, values: storedVectors)
        try add(matrix, ids: storedIDs, threads: 1)
    }
}

import PharosKernels
import PharosVectors

/// Lloyd's k-means with BLAS assignment, as faiss trains its quantizers.
///
/// Deterministic under `seed` for any thread count: the sample and the initial centroids come
/// from the seeded generator, assignment is per point, and centroid sums are accumulated in
/// point order (threads split the columns, not the points).
public struct KMeans: Sendable {
    /// Settings of one training run.
    public struct Configuration: Sendable {
        /// Number of centroids.
        public var clusters: Int
        /// Lloyd iterations.
        public var iterations: Int = 25
        /// Training points are capped at `clusters * maximumPointsPerCentroid` (a random sample).
        public var maximumPointsPerCentroid: Int = 256
        /// Seed of the sample, the initialisation and empty-cluster repair.
        public var seed: UInt64 = 1234
        /// Initialisation: k-means++ costs k passes over the data, so it is used only for
        /// small problems; otherwise distinct random points, as faiss does.
        public var usePlusPlus: Bool = false
        /// Worker threads.
        public var threads: Int = Parallel.defaultThreads
        /// Centroids scaled to unit norm after every update (faiss's `spherical`, which its IVF
        /// sets for inner product): the nearest centroid by L2 is then the one of largest
        /// inner product, so the lists a vector is stored in are the lists a query probes.
        public var spherical: Bool = false

        /// A configuration for `clusters` centroids with faiss's defaults.
        public init(clusters: Int) { self.clusters = clusters }
    }

    /// Trained centroids, `clusters x dimension`.
    public let centroids: Matrix
    /// Mean squared distance of the training points to their centroid after the last iteration.
    public let objective: Float

    /// Points per assignment block: fixed, so results do not depend on the thread count.
    static let assignBlock = 1024

    /// Trains on `data`. Needs at least `clusters` points.
    public init(training data: Matrix, configuration c: Configuration) throws {
        guard c.clusters >= 1 else {
            throw IndexError.invalidParameter(name: "clusters", value: "\(c.clusters)", allowed: ">= 1")
        }
        guard data.rows >= c.clusters else {
            throw IndexError.notEnoughTrainingData(needed: c.clusters, found: data.rows, what: "k-means with \(c.clusters) clusters")
        }
        var rng = SplitMix64(seed: c.seed)
        let cap = c.clusters * c.maximumPointsPerCentroid
        let points = data.rows > cap ? data.gathering(rows: rng.sample(cap, from: data.rows)) : data
        let n = points.rows, d = points.columns, k = c.clusters

        var centroids = c.usePlusPlus
            ? KMeans.plusPlusInit(points, k: k, rng: &rng, threads: c.threads)
            : points.gathering(rows: rng.sample(k, from: n).shuffledDeterministically(&rng))
        if c.spherical { VectorMath.normalizeRows(&centroids) }
        var assignment = [Int32](repeating: 0, count: n)
        var distances = [Float](repeating: 0, count: n)
        var objective: Float = 0
        for _ in 0..<Swift.max(1, c.iterations) {
            KMeans.assign(points, centroids: centroids, threads: c.threads, assignment: &assignment, distances: &distances)
            objective = distances.reduce(0, +) / Float(n)
            centroids = KMeans.update(points, assignment: assignment, k: k, d: d, threads: c.threads)
            KMeans.repairEmpty(&centroids, assignment: assignment, rng: &rng)
            if c.spherical { VectorMath.normalizeRows(&centroids) }
        }
        self.centroids = centroids
        self.objective = objective
    }

    /// Nearest centroid (squared L2) of every row of `data`.
    public static func assign(_ data: Matrix, centroids: Matrix, threads: Int,
                              assignment: inout [Int32], distances: inout [Float]) {
        precondition(data.columns == centroids.columns, "k-means dimension mismatch")
        let n = data.rows, d = data.columns, k = centroids.rows
        if assignment.count != n { assignment = [Int32](repeating: 0, count: n) }
        if distances.count != n { distances = [Float](repeating: 0, count: n) }
        let centroidNorms = VectorMath.squaredNorms(centroids)
        guard n > 0 else { return }
        assignment.withSendablePointer { outA in distances.withSendablePointer { outD in
        data.values.withUnsafeBufferPointer { x in
            centroids.values.withUnsafeBufferPointer { cen in
                centroidNorms.withUnsafeBufferPointer { cn in
                    let xp = SendablePointer(readOnly: x.baseAddress!)
                    let cp = SendablePointer(readOnly: cen.baseAddress!)
                    let np = SendablePointer(readOnly: cn.baseAddress!)
                    Parallel.forEachChunk(count: n, chunkSize: assignBlock, threads: threads) { chunk in
                        var dots = [Float](repeating: 0, count: chunk.count * k)
                        dots.withUnsafeMutableBufferPointer { s in
                            BLAS.gemmABt(m: chunk.count, n: k, k: d, alpha: -2, a: xp.pointer + chunk.lowerBound * d, lda: d,
                                         b: cp.pointer, ldb: d, c: s.baseAddress!, ldc: k)
                            for i in 0..<chunk.count {
                                var bestD = Float.infinity
                                let best = pharos_argmin_sum(s.baseAddress! + i * k, np.pointer, k, &bestD)
                                let p = chunk.lowerBound + i
                                let xn = pharos_dot(xp.pointer + p * d, xp.pointer + p * d, d)
                                outA.pointer[p] = Int32(best)
                                outD.pointer[p] = Swift.max(0, bestD + xn)
                            }
                        }
                    }
                }
            }
        }
        } }
    }

    /// Centroid = mean of its points, accumulated in double precision in point order.
    static func update(_ points: Matrix, assignment: [Int32], k: Int, d: Int, threads: Int) -> Matrix {
        var sums = [Double](repeating: 0, count: k * d)
        var counts = [Int](repeating: 0, count: k)
        for a in assignment { counts[Int(a)] += 1 }
        let columnBlock = 64
        sums.withSendablePointer { sumPtr in
        points.values.withUnsafeBufferPointer { x in
            assignment.withUnsafeBufferPointer { a in
                let xp = SendablePointer(readOnly: x.baseAddress!)
                let ap = SendablePointer(readOnly: a.baseAddress!)
                let n = points.rows
                Parallel.forEachChunk(count: d, chunkSize: columnBlock, threads: threads) { columns in
                    for p in 0..<n {
                        let c = Int(ap.pointer[p])
                        let src = xp.pointer + p * d
                        let dst = sumPtr.pointer + c * d
                        for j in columns { dst[j] += Double(src[j]) }
                    }
                }
            }
        }
        }
        var out = Matrix(rows: k, columns: d)
        for c in 0..<k where counts[c] > 0 {
            let inv = 1 / Double(counts[c])
            for j in 0..<d { out.values[c * d + j] = Float(sums[c * d + j] * inv) }
        }
        return out
    }

    /// An empty centroid takes a perturbed copy of a large cluster's centroid (chosen with
    /// probability proportional to size), which is then split between the two; faiss does the same.
    static func repairEmpty(_ centroids: inout Matrix, assignment: [Int32], rng: inout SplitMix64) {
        let k = centroids.rows, d = centroids.columns
        var counts = [Int](repeating: 0, count: k)
        for a in assignment { counts[Int(a)] += 1 }
        let n = assignment.count
        let epsilon: Float = 1.0 / 1024
        for empty in 0..<k where counts[empty] == 0 {
            var pick = 0
            while true {
                let r = Float(Double(rng.nextUnitFloat()) * Double(n - k) / Double(Swift.max(n, 1)))
                var acc: Float = 0
                pick = 0
                for c in 0..<k {
                    acc += Float(Swift.max(counts[c] - 1, 0)) / Float(Swift.max(n - k, 1))
                    if acc >= r { pick = c; break }
                }
                if counts[pick] > 1 || n <= k { break }
            }
            for j in 0..<d {
                let v = centroids.values[pick * d + j]
                if j % 2 == 0 {
                    centroids.values[empty * d + j] = v * (1 + epsilon)
                    centroids.values[pick * d + j] = v * (1 - epsilon)
                } else {
                    centroids.values[empty * d + j] = v * (1 - epsilon)
                    centroids.values[pick * d + j] = v * (1 + epsilon)
                }
            }
            counts[empty] = counts[pick] / 2
            counts[pick] -= counts[empty]
        }
    }

    /// k-means++ seeding: each next centroid drawn with probability proportional to the squared
    /// distance to the nearest chosen one.
    static func plusPlusInit(_ points: Matrix, k: Int, rng: inout SplitMix64, threads: Int) -> Matrix {
        let n = points.rows, d = points.columns
        var chosen = [Int(rng.next() % UInt64(n))]
        var nearest = [Float](repeating: .infinity, count: n)
        points.values.withUnsafeBufferPointer { x in
            while chosen.count < k {
                let last = x.baseAddress! + chosen.last! * d
                var total: Double = 0
                for i in 0..<n {
                    let dist = pharos_l2sq(x.baseAddress! + i * d, last, d)
                    if dist < nearest[i] { nearest[i] = dist }
                    total += Double(nearest[i])
                }
                var r = Double(rng.nextUnitFloat()) * total
                var next = n - 1
                for i in 0..<n {
                    r -= Double(nearest[i])
                    if r <= 0 { next = i; break }
                }
                chosen.append(next)
            }
        }
        return points.gathering(rows: chosen)
    }
}

extension Array {
    /// A Fisher-Yates shuffle driven by a seeded generator.
    func shuffledDeterministically(_ rng: inout SplitMix64) -> [Element] {
        var out = self
        if out.count > 1 {
            for i in stride(from: out.count - 1, to: 0, by: -1) {
                out.swapAt(i, Int(rng.next() % UInt64(i + 1)))
            }
        }
        return out
    }
}

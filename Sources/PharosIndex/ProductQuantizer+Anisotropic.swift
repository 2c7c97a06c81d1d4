import PharosKernels
import PharosVectors

/// Score-aware ("anisotropic") quantization for inner product, after Guo et al., ICML 2020,
/// "Accelerating Large-Scale Inference with Anisotropic Vector Quantization" (ScaNN's
/// `score_ah`).
///
/// Top-k by inner product cares most about the scores of queries that match a data point
/// well, and for those queries the part of the quantization error parallel to the point
/// moves the score far more than the orthogonal part. With `e` the error of a row `x`
/// (original vector minus its reconstruction, centroid included) and `u = x / |x|`, the loss is
///
///     |e|^2 + (eta - 1) (e . u)^2,    eta = (d - 1) T^2 / (|x|^2 - T^2)
///
/// (the paper's h_parallel / h_orthogonal for queries spread uniformly on the sphere whose
/// score with x exceeds the threshold T; the same formula as ScaNN's
/// `ComputeParallelCostMultiplier`). Codes are chosen by coordinate descent over the
/// sub-quantizers from the nearest codewords; codebooks by alternating that with an exact
/// per-codeword minimisation (a `dsub x dsub` linear system each), one subspace after another,
/// so every step lowers the loss. Every row is computed on its own and every sum runs in row
/// order: codes and codebooks are the same for every thread count and kernel level.
extension ProductQuantizer {
    /// The largest parallel weight excess (eta - 1) used: rows whose norm is at or just above
    /// the threshold would otherwise weigh without bound (the formula's pole at |x| = T).
    static let maximumParallelExcess: Float = 10_000

    /// Coordinate-descent sweeps over the sub-quantizers of one row, at most.
    static let maximumEncodingSweeps = 10

    /// The largest threshold T accepted (`_aq<T>`).
    public static let maximumAnisotropicThreshold: Float = 1e6

    /// The largest sub-vector dimension (d / m) trained with the anisotropic loss: its codebook
    /// step accumulates and solves a `dsub x dsub` system per codeword (256 x 32 x 32 doubles
    /// for 8 bits), where an unbounded `dsub` (PQ1 on 2048-D) would need gigabytes.
    public static let maximumAnisotropicSubDimension = 32

    /// The loss's weights of a set of rows: `excess[i] = eta_i - 1` and `inverseNorms[i] =
    /// 1 / |x_i|`, so that the unit direction is `u_i = x_i * inverseNorms[i]` (computed where it
    /// is used, one row at a time: a second copy of the rows would double a batch's memory).
    /// A zero row has both 0: plain PQ's loss.
    struct AnisotropicWeights {
        var excess: [Float]
        var inverseNorms: [Float]

        init(_ originals: Matrix, threshold: Float) {
            let n = originals.rows, d = originals.columns
            excess = [Float](repeating: 0, count: n)
            inverseNorms = [Float](repeating: 0, count: n)
            let t2 = Double(threshold) * Double(threshold)
            originals.values.withUnsafeBufferPointer { x in
                for i in 0..<n {
                    var norm2 = 0.0
                    for j in 0..<d { norm2 += Double(x[i * d + j]) * Double(x[i * d + j]) }
                    guard norm2 > 0, norm2.isFinite else { continue }
                    inverseNorms[i] = Float(1 / norm2.squareRoot())
                    let eta = norm2 > t2 ? Double(d - 1) * t2 / (norm2 - t2) : .infinity
                    excess[i] = Float(Swift.min(eta - 1, Double(ProductQuantizer.maximumParallelExcess)))
                }
            }
        }

        /// Writes row `i`'s unit direction (`d` floats) to `out`.
        @inline(__always)
        func direction(_ i: Int, originals x: UnsafePointer<Float>, dimension d: Int, into out: UnsafeMutablePointer<Float>) {
            let inverse = inverseNorms[i]
            for j in 0..<d { out[j] = x[i * d + j] * inverse }
        }
    }

    /// The anisotropic loss of `codes` for rows whose residuals are `residuals` (what the
    /// codes reconstruct) and whose vectors are `originals`, summed over rows, in double precision.
    static func anisotropicLoss(_ pq: ProductQuantizer, residuals: Matrix, originals: Matrix, codes: [UInt8], threshold: Float) -> Double {
        let d = pq.dimension, m = pq.subquantizers
        let weights = AnisotropicWeights(originals, threshold: threshold)
        var total = 0.0
        var decoded = [Float](repeating: 0, count: d)
        var u = [Float](repeating: 0, count: d)
        for i in 0..<residuals.rows {
            codes.withUnsafeBufferPointer { pq.decode($0.baseAddress! + i * m, into: &decoded) }
            originals.values.withUnsafeBufferPointer { weights.direction(i, originals: $0.baseAddress!, dimension: d, into: &u) }
            var squared = 0.0, parallel = 0.0
            for j in 0..<d {
                let e = Double(residuals.values[i * d + j]) - Double(decoded[j])
                squared += e * e
                parallel += e * Double(u[j])
            }
            total += squared + Double(weights.excess[i]) * parallel * parallel
        }
        return total
    }

    /// Squared norms of the codewords, summed in component order (the same on every level).
    private func orderedCodewordNorms() -> [Float] {
        let dsub = subDimension
        return (0..<(subquantizers * centroidsPerSubspace)).map { w in
            var sum: Float = 0
            for t in 0..<dsub { sum += codebooks[w * dsub + t] * codebooks[w * dsub + t] }
            return sum
        }
    }

    /// Codes of the rows whose residuals are `residuals` under the anisotropic loss of their
    /// original vectors `originals` (the same rows before the coarse centroid was subtracted).
    public func encodeAnisotropic(residuals: Matrix, originals: Matrix, threshold: Float, threads: Int) -> [UInt8] {
        encodeAnisotropic(residuals: residuals, originals: originals, weights: AnisotropicWeights(originals, threshold: threshold),
                          startingFrom: nil, threads: threads)
    }

    /// Coordinate descent per row from `start` (nil: the nearest codewords): each sweep gives
    /// every sub-quantizer, in turn, the codeword of least loss with the others fixed, until a
    /// sweep changes nothing or `maximumEncodingSweeps` ran.
    func encodeAnisotropic(residuals: Matrix, originals: Matrix, weights: AnisotropicWeights, startingFrom start: [UInt8]?,
                           threads: Int) -> [UInt8] {
        precondition(isTrained, "PQ used before training")
        precondition(residuals.columns == dimension && originals.columns == dimension && originals.rows == residuals.rows,
                     "PQ encoding dimension mismatch")
        let n = residuals.rows, m = subquantizers, ksub = centroidsPerSubspace, dsub = subDimension, d = dimension
        var codes = start ?? [UInt8](repeating: 0, count: n * m)
        guard n > 0 else { return codes }
        let norms = orderedCodewordNorms()
        let excess = weights.excess
        codes.withSendablePointer { out in
        residuals.values.withUnsafeBufferPointer { rb in
        originals.values.withUnsafeBufferPointer { xb in
        transposedCodebooks.withUnsafeBufferPointer { cb in
        norms.withUnsafeBufferPointer { nb in
            let rp = SendablePointer(readOnly: rb.baseAddress!), xp = SendablePointer(readOnly: xb.baseAddress!)
            let cp = SendablePointer(readOnly: cb.baseAddress!)
            let np = SendablePointer(readOnly: nb.baseAddress!)
            Parallel.forEachChunk(count: n, chunkSize: 512, threads: threads) { chunk in
                // Per row: distance[s * ksub + j] = |r_s - c_sj|^2 - |r_s|^2 (the same for every
                // codeword of s) and parallel[s * ksub + j] = the error's part along u from
                // subspace s with codeword j, (r_s - c_sj) . u_s.
                let distance = UnsafeMutablePointer<Float>.allocate(capacity: m * ksub)
                let parallel = UnsafeMutablePointer<Float>.allocate(capacity: m * ksub)
                let u = UnsafeMutablePointer<Float>.allocate(capacity: d)
                defer { distance.deallocate(); parallel.deallocate(); u.deallocate() }
                for i in chunk {
                    let r = rp.pointer + i * d, code = out.pointer + i * m
                    weights.direction(i, originals: xp.pointer, dimension: d, into: u)
                    pharos_pq_inner_product_table(r, cp.pointer, m, ksub, dsub, distance)
                    pharos_pq_inner_product_table(u, cp.pointer, m, ksub, dsub, parallel)
                    for s in 0..<m {
                        var along: Float = 0
                        for t in 0..<dsub { along += r[s * dsub + t] * u[s * dsub + t] }
                        for j in s * ksub ..< (s + 1) * ksub {
                            distance[j] = np.pointer[j] - 2 * distance[j]
                            parallel[j] = along - parallel[j]
                        }
                    }
                    let w = excess[i]
                    // Rows of zero weight (a zero vector) have plain PQ's loss: their nearest
                    // codewords, recomputed every round as the codebooks move.
                    if start == nil || w == 0 {
                        for s in 0..<m {
                            let row = distance + s * ksub
                            var best = 0
                            for j in 1..<ksub where row[j] < row[best] { best = j }
                            code[s] = UInt8(best)
                        }
                    }
                    guard w != 0 else { continue }
                    var along: Float = 0
                    for s in 0..<m { along += parallel[s * ksub + Int(code[s])] }
                    for _ in 0..<Self.maximumEncodingSweeps {
                        var changed = false
                        for s in 0..<m {
                            let distances = distance + s * ksub, parallels = parallel + s * ksub
                            let current = Int(code[s])
                            let rest = along - parallels[current]
                            var best = current
                            var bestLoss = distances[current] + w * (rest + parallels[current]) * (rest + parallels[current])
                            for j in 0..<ksub {
                                let p = rest + parallels[j]
                                let loss = distances[j] + w * p * p
                                if loss < bestLoss { best = j; bestLoss = loss }
                            }
                            if best != current { code[s] = UInt8(best); changed = true }
                            along = rest + parallels[best]
                        }
                        if !changed { break }
                    }
                }
            }
        }
        }
        }
        }
        }
        return codes
    }

    /// Trains codebooks for the anisotropic loss: plain k-means codebooks first, then `rounds`
    /// of (codes by coordinate descent from the previous ones, codebooks by exact
    /// minimisation); `originals` are the training rows before the coarse centroid was taken
    /// off (`residuals` are what the codes encode). `observe`, when given, sees the loss after
    /// every step (tests check that no step raises it).
    public mutating func trainAnisotropic(residuals: Matrix, originals: Matrix, threshold: Float, rounds: Int = 6,
                                          threads: Int) throws {
        try trainAnisotropic(residuals: residuals, originals: originals, threshold: threshold, rounds: rounds, threads: threads, observe: nil)
    }

    mutating func trainAnisotropic(residuals: Matrix, originals: Matrix, threshold: Float, rounds: Int, threads: Int,
                                   observe: ((ProductQuantizer, [UInt8]) -> Void)?) throws {
        precondition(residuals.rows == originals.rows && originals.columns == dimension, "anisotropic training shapes")
        try train(residuals, threads: threads)
        let weights = AnisotropicWeights(originals, threshold: threshold)
        var codes: [UInt8]?
        for _ in 0..<rounds {
            let next = encodeAnisotropic(residuals: residuals, originals: originals, weights: weights, startingFrom: codes, threads: threads)
            observe?(self, next)
            codes = next
            updateCodebooksAnisotropic(residuals: residuals, originals: originals, codes: next, weights: weights)
            observe?(self, next)
        }
    }

    /// One pass over the subspaces: each codeword becomes the minimiser of the loss over the
    /// rows that use it, the other subspaces fixed: (n I + sum w u_s u_s^T) c = sum (r_s + w a u_s)
    /// with a the row's error along u without subspace s's part, plus r_s . u_s. A codeword no
    /// row uses keeps its value.
    mutating func updateCodebooksAnisotropic(residuals: Matrix, originals: Matrix, codes: [UInt8], weights: AnisotropicWeights) {
        let n = residuals.rows, m = subquantizers, ksub = centroidsPerSubspace, dsub = subDimension, d = dimension
        var books = codebooks
        // The unit direction of row i, component c: as the encoder computes it (Float product).
        func u(_ i: Int, _ c: Int) -> Double { Double(originals.values[i * d + c] * weights.inverseNorms[i]) }
        // The error along u of every row, e . u, kept current as codewords change.
        var along = [Double](repeating: 0, count: n)
        for i in 0..<n {
            var sum = 0.0
            for s in 0..<m {
                let word = (s * ksub + Int(codes[i * m + s])) * dsub
                for t in 0..<dsub {
                    let c = s * dsub + t
                    sum += (Double(residuals.values[i * d + c]) - Double(books[word + t])) * u(i, c)
                }
            }
            along[i] = sum
        }
        var system = [Double](repeating: 0, count: ksub * dsub * dsub)
        var right = [Double](repeating: 0, count: ksub * dsub)
        var users = [Int](repeating: 0, count: ksub)
        var withoutSubspace = [Double](repeating: 0, count: n)
        var direction = [Double](repeating: 0, count: dsub)
        for s in 0..<m {
            for k in system.indices { system[k] = 0 }
            for k in right.indices { right[k] = 0 }
            for k in users.indices { users[k] = 0 }
            for i in 0..<n {
                let j = Int(codes[i * m + s]), word = (s * ksub + j) * dsub
                let w = Double(weights.excess[i])
                var codewordAlong = 0.0
                for t in 0..<dsub {
                    direction[t] = u(i, s * dsub + t)
                    codewordAlong += Double(books[word + t]) * direction[t]
                }
                let a = along[i] + codewordAlong   // rest of the error along u, plus r_s . u_s
                withoutSubspace[i] = a
                users[j] += 1
                for t in 0..<dsub {
                    right[j * dsub + t] += Double(residuals.values[i * d + s * dsub + t]) + w * a * direction[t]
                    for v in 0..<dsub { system[(j * dsub + t) * dsub + v] += w * direction[t] * direction[v] }
                }
            }
            for j in 0..<ksub where users[j] > 0 {
                for t in 0..<dsub { system[(j * dsub + t) * dsub + t] += Double(users[j]) }
                if let solution = Self.solveSymmetric(Array(system[j * dsub * dsub ..< (j + 1) * dsub * dsub]),
                                                      Array(right[j * dsub ..< (j + 1) * dsub]), size: dsub)?.map(Float.init),
                   solution.allSatisfy(\.isFinite) {
                    for t in 0..<dsub { books[(s * ksub + j) * dsub + t] = solution[t] }
                }
            }
            for i in 0..<n {
                let word = (s * ksub + Int(codes[i * m + s])) * dsub
                var codewordAlong = 0.0
                for t in 0..<dsub { codewordAlong += Double(books[word + t]) * u(i, s * dsub + t) }
                along[i] = withoutSubspace[i] - codewordAlong
            }
        }
        codebooks = books
    }

    /// Solves `a x = b` for a symmetric positive definite `size x size` matrix by Cholesky;
    /// nil when `a` is not positive definite (numerically).
    static func solveSymmetric(_ a: [Double], _ b: [Double], size: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: size * size)
        for i in 0..<size {
            for j in 0...i {
                var sum = a[i * size + j]
                for k in 0..<j { sum -= l[i * size + k] * l[j * size + k] }
                if i == j {
                    guard sum > 0 else { return nil }
                    l[i * size + i] = sum.squareRoot()
                } else {
                    l[i * size + j] = sum / l[j * size + j]
                }
            }
        }
        var y = b
        for i in 0..<size {
            for k in 0..<i { y[i] -= l[i * size + k] * y[k] }
            y[i] /= l[i * size + i]
        }
        for i in stride(from: size - 1, through: 0, by: -1) {
            for k in (i + 1)..<size { y[i] -= l[k * size + i] * y[k] }
            y[i] /= l[i * size + i]
        }
        return y
    }
}

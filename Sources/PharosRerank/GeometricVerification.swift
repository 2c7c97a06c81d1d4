import Foundation
import PharosVectors
import Synchronization

/// One photo's local features as verification reads them: keypoint positions (pixels of the
/// image as extracted) and one descriptor each, best-scored keypoint first.
public struct VerificationFeatures: Sendable, Equatable {
    /// Keypoint columns.
    public let x: [Float]
    /// Keypoint rows.
    public let y: [Float]
    /// `count x dimension` descriptor values (unit rows, as `pharos extract --local` writes them).
    public let descriptors: [Float]
    /// Descriptor dimension.
    public let dimension: Int
    /// Each descriptor's squared length (computed once: a photo is compared with many).
    let squaredNorms: [Float]

    /// Keypoints.
    public var count: Int { x.count }

    /// Features from their parts; nil when the sizes disagree (`x`, `y` and the descriptors'
    /// rows must be as many) or the dimension is not positive.
    public init?(x: [Float], y: [Float], descriptors: [Float], dimension: Int) {
        guard dimension > 0, x.count == y.count, descriptors.count == x.count * dimension else { return nil }
        self.x = x
        self.y = y
        self.descriptors = descriptors
        self.dimension = dimension
        squaredNorms = VectorMath.squaredNorms(Matrix(rows: x.count, columns: dimension, values: descriptors))
    }

    private init(x: [Float], y: [Float], descriptors: [Float], dimension: Int, squaredNorms: [Float]) {
        (self.x, self.y, self.descriptors, self.dimension, self.squaredNorms) = (x, y, descriptors, dimension, squaredNorms)
    }

    /// The first `count` keypoints (the best scored).
    public func prefix(_ count: Int) -> VerificationFeatures {
        guard count < self.count else { return self }
        let kept = Swift.max(0, count)
        return VerificationFeatures(x: Array(x.prefix(kept)), y: Array(y.prefix(kept)), descriptors: Array(descriptors.prefix(kept * dimension)),
                                    dimension: dimension, squaredNorms: Array(squaredNorms.prefix(kept)))
    }
}

/// Geometric verification of a shortlist (Noh et al., ICCV 2017, "Large-Scale Image Retrieval
/// with Attentive Deep Local Features"): a candidate photo shows the query's object when many of
/// their local features match under one plane transform.
///
/// - **Putative matches**: mutual nearest neighbours of the two photos' descriptors (one BLAS
///   product of their `maximumKeypoints` best), kept when the nearest is closer than `ratio`
///   times the second nearest (Lowe's test); each keypoint is in at most one match.
/// - **RANSAC**: minimal samples (2 matches for a similarity, 3 for an affine map) drawn by a
///   seeded generator; a model counts the matches it maps within `threshold` pixels; models
///   that mirror the image, scale areas by more than 25x or stretch one direction 8x more than
///   another are skipped; the draws stop at
///   `maximumIterations` or once `confidence` of having drawn one all-inlier sample is reached
///   at the best inlier ratio so far; the best model is refitted by least squares on its
///   inliers while that keeps at least as many.
/// - **Fusion**: candidates with at least `minimumInliers` inliers go first, by inliers (ties
///   in shortlist order); the others follow in shortlist order. The inlier count is the score.
///
/// Deterministic: the same features, parameters and seed give the same inliers and order,
/// whatever the thread count (each pair draws from its own generator of the seed).
public enum GeometricVerification {
    /// A putative match: a query keypoint and a candidate keypoint.
    public struct Match: Sendable, Equatable {
        /// The query keypoint's index.
        public var query: Int
        /// The candidate keypoint's index.
        public var candidate: Int
    }

    /// One pair's verification.
    public struct Result: Sendable, Equatable {
        /// The putative matches.
        public var matches: [Match]
        /// The matches the model maps within the threshold (none without a model).
        public var inliers: [Match]
        /// The fitted model, nil when no plausible one was found.
        public var transform: PlaneTransform?

    }

    /// Models scaling areas by more than this (or less than its inverse) are not two views of
    /// one object at the sizes photos are extracted (both at most `--max-side` pixels).
    static let maximumAreaRatio = 25.0
    /// Models stretching one direction more than this many times another are not either (a
    /// sample of nearly collinear points fits such a shear with any area ratio).
    static let maximumAnisotropy = 8.0

    /// Mutual nearest neighbours passing the ratio test, in query keypoint order.
    public static func matches(_ query: VerificationFeatures, _ candidate: VerificationFeatures, ratio: Float) -> [Match] {
        let (nq, nc, d) = (query.count, candidate.count, query.dimension)
        guard nq > 0, nc > 0, candidate.dimension == d else { return [] }
        // The products, into memory BLAS fills (no zeroing of a megabyte a pair first).
        let products = [Float](unsafeUninitializedCapacity: nq * nc) { buffer, initialized in
            query.descriptors.withUnsafeBufferPointer { q in
                candidate.descriptors.withUnsafeBufferPointer { c in
                    BLAS.gemmABt(m: nq, n: nc, k: d, a: q.baseAddress!, lda: d, b: c.baseAddress!, ldb: d, c: buffer.baseAddress!, ldc: nc)
                }
            }
            initialized = nq * nc
        }
        let qn = query.squaredNorms, cn = candidate.squaredNorms
        // Squared distances are |q|^2 + |c|^2 - 2 q.c: with s = q.c - |c|^2 / 2, a row's nearest
        // column has the largest s, a column's nearest row the largest s - |q|^2 / 2. One pass
        // over the products, 8 lanes at a time:
        // each query keypoint's largest and second-largest s and the first column holding the
        // largest, each candidate keypoint's first row holding its column's largest. This loop
        // is most of verification's time (a scalar version took 3x as long).
        var nearestQuery = [Int32](repeating: -1, count: nc)
        var nearest = [Int](repeating: -1, count: nq), first = [Float](repeating: .infinity, count: nq), second = [Float](repeating: .infinity, count: nq)
        let lanes = 8, vectorColumns = nc - nc % lanes
        var columnBest = [Float](repeating: -.infinity, count: nc)
        let halfNorms = cn.map { $0 / 2 }
        products.withUnsafeBufferPointer { products in
            halfNorms.withUnsafeBufferPointer { halfNorms in
                columnBest.withUnsafeMutableBufferPointer { columnBest in
                    nearestQuery.withUnsafeMutableBufferPointer { nearestQuery in
                        let half = UnsafeRawPointer(halfNorms.baseAddress!), best = UnsafeMutableRawPointer(columnBest.baseAddress!)
                        let rows = UnsafeMutableRawPointer(nearestQuery.baseAddress!)
                        let laneOffsets = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
                        for i in 0..<nq {
                            let row = UnsafeRawPointer(products.baseAddress! + i * nc)
                            var top = SIMD8<Float>(repeating: -.infinity), runnerUp = top
                            var topColumn = SIMD8<Int32>(repeating: -1)
                            let rowIndex = SIMD8<Int32>(repeating: Int32(i))
                            let halfRowNorm = SIMD8<Float>(repeating: qn[i] / 2)
                            var j = 0
                            while j < vectorColumns {
                                let offset = j * MemoryLayout<Float>.stride
                                let v = row.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                                    - half.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                                let better = v .> top
                                // runnerUp = max(runnerUp, min(top, v)), spelled with masks: the
                                // generic pointwiseMin/Max are calls, not instructions.
                                let lower = top.replacing(with: v, where: v .< top)
                                runnerUp.replace(with: lower, where: lower .> runnerUp)
                                top.replace(with: v, where: better)
                                topColumn.replace(with: laneOffsets &+ Int32(j), where: better)
                                // Down a column the row's |q|^2 differs: the nearest row has the
                                // largest s - |q|^2 / 2.
                                let columnScore = v - halfRowNorm
                                let columnTop = best.loadUnaligned(fromByteOffset: offset, as: SIMD8<Float>.self)
                                let columnBetter = columnScore .> columnTop
                                best.storeBytes(of: columnTop.replacing(with: columnScore, where: columnBetter), toByteOffset: offset, as: SIMD8<Float>.self)
                                let columnRow = rows.loadUnaligned(fromByteOffset: j * 4, as: SIMD8<Int32>.self)
                                rows.storeBytes(of: columnRow.replacing(with: rowIndex, where: columnBetter), toByteOffset: j * 4, as: SIMD8<Int32>.self)
                                j += lanes
                            }
                            // The lanes' winners: the largest (first column on ties), and the
                            // second largest among the other lanes' winners and every runner-up.
                            var bestValue = -Float.infinity, bestColumn = -1, bestLane = -1
                            for lane in 0..<lanes where topColumn[lane] >= 0 {
                                if top[lane] > bestValue || (top[lane] == bestValue && Int(topColumn[lane]) < bestColumn) {
                                    (bestValue, bestColumn, bestLane) = (top[lane], Int(topColumn[lane]), lane)
                                }
                            }
                            var nextValue = runnerUp.max()
                            for lane in 0..<lanes where lane != bestLane && topColumn[lane] >= 0 { nextValue = Swift.max(nextValue, top[lane]) }
                            for j in vectorColumns..<nc {
                                let v = products[i * nc + j] - halfNorms[j]
                                if v > bestValue {
                                    nextValue = Swift.max(nextValue, bestValue)
                                    (bestValue, bestColumn) = (v, j)
                                } else if v > nextValue {
                                    nextValue = v
                                }
                                if v - qn[i] / 2 > columnBest[j] {
                                    columnBest[j] = v - qn[i] / 2
                                    nearestQuery[j] = Int32(i)
                                }
                            }
                            first[i] = qn[i] - 2 * bestValue
                            second[i] = qn[i] - 2 * nextValue
                            nearest[i] = bestColumn
                        }
                    }
                }
            }
        }
        let squaredRatio = ratio * ratio
        var found: [Match] = []
        for i in 0..<nq {
            let j = nearest[i]
            guard j >= 0, nearestQuery[j] == Int32(i) else { continue }
            // With one candidate keypoint there is no second nearest: the test cannot reject.
            guard nc == 1 || Swift.max(0, first[i]) < squaredRatio * Swift.max(0, second[i]) else { continue }
            found.append(Match(query: i, candidate: j))
        }
        return found
    }

    /// Verifies one pair: putative matches, then RANSAC for `parameters.model`.
    ///
    /// With `fittingOnlyWhatCanVerify`, a pair with fewer putative matches than
    /// `parameters.minimumInliers` is not fitted (no model, no inliers): it cannot verify
    /// whatever RANSAC finds, and most shortlist candidates are such pairs (RANSAC then runs
    /// its full 1,000 draws for nothing).
    public static func verify(_ query: VerificationFeatures, _ candidate: VerificationFeatures, parameters: VerificationParameters,
                              fittingOnlyWhatCanVerify: Bool = false) -> Result {
        let q = query.prefix(parameters.maximumKeypoints), c = candidate.prefix(parameters.maximumKeypoints)
        let found = matches(q, c, ratio: parameters.ratio)
        if fittingOnlyWhatCanVerify, found.count < parameters.minimumInliers { return Result(matches: found, inliers: [], transform: nil) }
        let source = found.map { (Double(q.x[$0.query]), Double(q.y[$0.query])) }
        let target = found.map { (Double(c.x[$0.candidate]), Double(c.y[$0.candidate])) }
        guard let (transform, kept) = ransac(from: source, to: target, parameters: parameters) else {
            return Result(matches: found, inliers: [], transform: nil)
        }
        return Result(matches: found, inliers: kept.map { found[$0] }, transform: transform)
    }

    /// RANSAC over correspondences `source[i] -> target[i]`: the best plausible model and the
    /// indices of its inliers, nil when there are no more correspondences than a sample holds
    /// (any model fits those) or no sample gave a plausible model.
    public static func ransac(from source: [(Double, Double)], to target: [(Double, Double)],
                              parameters: VerificationParameters) -> (PlaneTransform, [Int])? {
        let n = source.count, s = parameters.model.sampleSize
        guard n == target.count, n > s else { return nil }
        let limit = Double(parameters.threshold) * Double(parameters.threshold)
        func fits(_ model: PlaneTransform, _ i: Int) -> Bool {
            let (x, y) = model.apply(source[i].0, source[i].1)
            let (dx, dy) = (x - target[i].0, y - target[i].1)
            return dx * dx + dy * dy <= limit
        }
        func inliers(of model: PlaneTransform) -> [Int] { (0..<n).filter { fits(model, $0) } }
        var generator = SplitMix64(seed: parameters.seed)
        var best: (model: PlaneTransform, inliers: [Int])?
        var needed = parameters.maximumIterations
        var iteration = 0
        while iteration < needed {
            iteration += 1
            // s distinct indices (s <= 3 < n + 1: a few draws; bounded all the same).
            var sample: [Int] = []
            for _ in 0..<64 where sample.count < s {
                let i = Int(generator.next() % UInt64(n))
                if !sample.contains(i) { sample.append(i) }
            }
            guard sample.count == s else { continue }
            let model: PlaneTransform? = switch parameters.model {
            case .similarity: PlaneTransform.similarity(through: source[sample[0]], source[sample[1]], to: target[sample[0]], target[sample[1]])
            case .affine: PlaneTransform.affine(through: sample.map { source[$0] }, to: sample.map { target[$0] })
            }
            guard let model, model.isPlausible(maximumAreaRatio: maximumAreaRatio, maximumAnisotropy: maximumAnisotropy) else { continue }
            // Counted first: the indices are gathered only for a better model (most draws are not).
            var count = 0
            for i in 0..<n where fits(model, i) { count += 1 }
            guard count > (best?.inliers.count ?? 0) else { continue }
            let found = inliers(of: model)
            best = (model, found)
            let ratio = Double(found.count) / Double(n)
            if ratio >= 1 {
                needed = iteration
            } else {
                let draws = log(1 - parameters.confidence) / log(1 - pow(ratio, Double(s)))
                if draws.isFinite { needed = Swift.min(parameters.maximumIterations, Swift.max(iteration, Int(draws.rounded(.up)))) }
            }
        }
        guard var kept = best else { return nil }
        // Least squares on the inliers, while the refitted model keeps at least as many.
        for _ in 0..<3 {
            guard let refit = PlaneTransform.leastSquares(parameters.model, from: kept.inliers.map { source[$0] }, to: kept.inliers.map { target[$0] }),
                  refit.isPlausible(maximumAreaRatio: maximumAreaRatio, maximumAnisotropy: maximumAnisotropy) else { break }
            let found = inliers(of: refit)
            guard found.count >= kept.inliers.count, found != kept.inliers || refit != kept.model else { break }
            kept = (refit, found)
        }
        return (kept.model, kept.inliers)
    }

    /// Re-orders a shortlist by verification against `query` (see the type's fusion rule):
    /// each candidate's shortlist position and inlier count, best first. A candidate without
    /// features (nil) has no inliers. Pairs are verified on up to `threads` threads.
    public static func rerank(query: VerificationFeatures, candidates: [VerificationFeatures?], parameters: VerificationParameters,
                              threads: Int = 1) -> [(index: Int, inliers: Int)] {
        let counts = inlierCounts(query: query, candidates: candidates, parameters: parameters, threads: threads)
        return order(inliers: counts, minimumInliers: parameters.minimumInliers)
    }

    /// Each candidate's inlier count against `query` (0 for one with fewer putative matches
    /// than `minimumInliers`: not fitted, it could not verify).
    public static func inlierCounts(query: VerificationFeatures, candidates: [VerificationFeatures?], parameters: VerificationParameters,
                                    threads: Int = 1) -> [Int] {
        let counts = Mutex([Int](repeating: 0, count: candidates.count))
        let workers = Swift.max(1, Swift.min(threads, candidates.count))
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: candidates.count, by: workers) {
                guard let candidate = candidates[i] else { continue }
                let n = verify(query, candidate, parameters: parameters, fittingOnlyWhatCanVerify: true).inliers.count
                counts.withLock { $0[i] = n }
            }
        }
        return counts.withLock { $0 }
    }

    /// The fusion rule: positions with at least `minimumInliers` first, by inliers (ties by
    /// position), then the rest by position.
    public static func order(inliers: [Int], minimumInliers: Int) -> [(index: Int, inliers: Int)] {
        let verified = inliers.indices.filter { inliers[$0] >= minimumInliers }
            .sorted { inliers[$0] != inliers[$1] ? inliers[$0] > inliers[$1] : $0 < $1 }
        let rest = inliers.indices.filter { inliers[$0] < minimumInliers }
        return (verified + rest).map { ($0, inliers[$0]) }
    }
}

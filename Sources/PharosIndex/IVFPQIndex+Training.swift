import PharosKernels
import PharosVectors

/// Training: the OPQ rotation, the coarse quantizer, the PQ codebooks of residuals, the
/// refine codec and the precomputed L2 tables.
extension IVFPQIndex {
    public func train(_ sample: Matrix, threads: Int) throws {
        try validate(sample)
        let c = configuration
        let needed = Swift.max(c.lists, pq.centroidsPerSubspace)
        guard sample.rows >= needed else {
            throw IndexError.notEnoughTrainingData(needed: needed, found: sample.rows, what: c.factoryString)
        }
        try lock.withWriteLock {
            var x = sample
            if let opq = c.opqSubquantizers {
                let r = try OPQRotation(training: sample, subquantizers: opq, bits: 8, threads: threads)
                rotation = r
                x = r.apply(sample)
            }
            if c.lists > 1 {
                var config = KMeans.Configuration(clusters: c.lists)
                config.iterations = 10  // faiss's default for coarse quantizers
                config.spherical = metric == .innerProduct   // as faiss's IVF: stored where probed
                config.threads = threads
                centroids = try KMeans(training: x, configuration: config).centroids
            }
            centroidNorms = VectorMath.squaredNorms(centroids)
            coarseCodes = CoarseCodes(centroids)
            // Codebooks learn residuals of (a sample of) the training set, as faiss does.
            var rng = SplitMix64(seed: 4321)
            let pqSample = x.rows > pq.centroidsPerSubspace * 256
                ? x.gathering(rows: rng.sample(pq.centroidsPerSubspace * 256, from: x.rows)) : x
            let residuals = residualsOf(pqSample, assignment: assign(pqSample, threads: threads))
            if let threshold = c.anisotropicThreshold {
                try pq.trainAnisotropic(residuals: residuals, originals: pqSample, threshold: threshold, threads: threads)
            } else {
                try pq.train(residuals, threads: threads)
            }
            refineCodec?.train(sample)
            buildL2Table()
            trained = true
        }
    }

    /// Frees the precomputed L2 scan tables (up to 256 MB) of an index used only for its coarse
    /// stage (`assign`); searches then compute each list's table as they go.
    public func releaseScanTables() {
        lock.withWriteLock { l2Table = [] }
    }

    func buildL2Table() {
        l2Table = []
        let ksub = pq.centroidsPerSubspace, m = pq.subquantizers
        guard metric == .l2, configuration.lists * m * ksub <= IVFPQIndex.maximumTableFloats else { return }
        var table = [Float](repeating: 0, count: configuration.lists * m * ksub)
        table.withUnsafeMutableBufferPointer { t in
            for l in 0..<configuration.lists { listTerms(l, into: t.baseAddress! + l * m * ksub) }
        }
        l2Table = table
    }

    /// `out[s * ksub + j] = |c_sj|^2 + 2 <centroid_l,s, c_sj>` for list `l`.
    func listTerms(_ l: Int, into out: UnsafeMutablePointer<Float>) {
        let ksub = pq.centroidsPerSubspace, m = pq.subquantizers, dsub = pq.subDimension
        pq.codebooks.withUnsafeBufferPointer { cb in
            centroids.values.withUnsafeBufferPointer { cen in
                let centroid = cen.baseAddress! + l * dimension
                for s in 0..<m {
                    for j in 0..<ksub {
                        let word = cb.baseAddress! + (s * ksub + j) * dsub
                        out[s * ksub + j] = pharos_dot(word, word, dsub) + 2 * pharos_dot(centroid + s * dsub, word, dsub)
                    }
                }
            }
        }
    }

    /// Coarse assignment of (already rotated) rows.
    func assign(_ x: Matrix, threads: Int) -> [Int32] {
        guard configuration.lists > 1 else { return [Int32](repeating: 0, count: x.rows) }
        var assignment = [Int32](), distances = [Float]()
        KMeans.assign(x, centroids: centroids, threads: threads, assignment: &assignment, distances: &distances)
        return assignment
    }

    func residualsOf(_ x: Matrix, assignment: [Int32]) -> Matrix {
        guard configuration.lists > 1 else { return x }
        var r = x
        let d = dimension
        for i in 0..<x.rows {
            let l = Int(assignment[i])
            for j in 0..<d { r.values[i * d + j] -= centroids.values[l * d + j] }
        }
        return r
    }
}

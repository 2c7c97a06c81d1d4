import PharosTestSupport
import PharosVectors
import Testing
@testable import PharosIndex

/// Score-aware quantization (`_aq<T>`): the loss it is trained for is lower than plain PQ's,
/// top-10 by inner product is found more often at the same code size, results do not depend
/// on threads or kernel level, and the factory token round-trips and refuses what it cannot do.
@Suite struct AnisotropicQuantizationTests {
    static let dimension = 32
    static let base = TestData.clustered(6000, dimension: dimension, normalized: true, stream: 0)
    static let queries = TestData.clustered(200, dimension: dimension, normalized: true, stream: 1)

    /// The paper's loss with its weights for threshold `threshold`, of `codes` over `data`.
    static func loss(_ pq: ProductQuantizer, _ data: Matrix, _ codes: [UInt8], threshold: Float) -> Double {
        ProductQuantizer.anisotropicLoss(pq, residuals: data, originals: data, codes: codes, threshold: threshold)
    }

    /// Every step of training (codes by coordinate descent, then codebooks by exact solves)
    /// lowers the loss or leaves it, also with residuals of a coarse quantizer and a zero row.
    @Test(arguments: [4, 8])
    func noTrainingStepRaisesTheLoss(bits: Int) throws {
        var originals = Self.base.rows(0..<2000)
        for j in 0..<Self.dimension { originals.values[7 * Self.dimension + j] = 0 }   // a zero row: plain PQ's loss
        var residuals = originals
        for i in 0..<residuals.rows { for j in 0..<Self.dimension { residuals.values[i * Self.dimension + j] -= 0.1 * Float(i % 3) } }
        var pq = try ProductQuantizer(dimension: Self.dimension, subquantizers: 8, bits: bits)
        var losses: [Double] = []
        try pq.trainAnisotropic(residuals: residuals, originals: originals, threshold: 0.5, rounds: 4, threads: 2) { trained, codes in
            losses.append(ProductQuantizer.anisotropicLoss(trained, residuals: residuals, originals: originals, codes: codes, threshold: 0.5))
        }
        #expect(losses.count == 8)
        for (before, after) in zip(losses, losses.dropFirst()) { #expect(after <= before * (1 + 1e-9), "\(losses)") }
        #expect(losses.last! < losses.first!)
    }

    @Test(arguments: [4, 8])
    func theLearnedCodesHaveALowerAnisotropicLossThanPlainPQ(bits: Int) throws {
        let threshold: Float = 0.5
        let train = Self.base.rows(0..<4096), heldOut = Self.base.rows(4096..<6000)
        var plain = try ProductQuantizer(dimension: Self.dimension, subquantizers: 8, bits: bits)
        try plain.train(train, threads: 2)
        var aware = plain
        try aware.trainAnisotropic(residuals: train, originals: train, threshold: threshold, threads: 2)
        #expect(aware.codebooks != plain.codebooks)
        let plainLoss = Self.loss(plain, heldOut, plain.encode(heldOut, threads: 2), threshold: threshold)
        // Codes alone (plain codebooks): coordinate descent from the nearest codewords never loses.
        let codesOnly = Self.loss(plain, heldOut, plain.encodeAnisotropic(residuals: heldOut, originals: heldOut, threshold: threshold, threads: 2),
                                  threshold: threshold)
        let both = Self.loss(aware, heldOut, aware.encodeAnisotropic(residuals: heldOut, originals: heldOut, threshold: threshold, threads: 2),
                             threshold: threshold)
        #expect(codesOnly < plainLoss)
        #expect(both < codesOnly, "plain \(plainLoss), codes only \(codesOnly), codes and codebooks \(both)")
        // What the loss stands for: the error of inner products with the points themselves,
        // the largest score each has (the parallel error), is smaller.
        func parallelError(_ pq: ProductQuantizer, _ codes: [UInt8]) -> Double {
            var total = 0.0
            var decoded = [Float](repeating: 0, count: Self.dimension)
            for i in 0..<heldOut.rows {
                codes.withUnsafeBufferPointer { pq.decode($0.baseAddress! + i * 8, into: &decoded) }
                let exact = VectorMath.dot(heldOut.row(i), heldOut.row(i)), approximate = VectorMath.dot(heldOut.row(i), decoded)
                total += Double(exact - approximate) * Double(exact - approximate)
            }
            return total
        }
        #expect(parallelError(aware, aware.encodeAnisotropic(residuals: heldOut, originals: heldOut, threshold: threshold, threads: 2))
                < parallelError(plain, plain.encode(heldOut, threads: 2)))
    }

    /// Recall@10 by inner product against the exact top 10, without re-ranking (over the
    /// first 3000 rows: the margin is wide, 0.29 -> 0.47 for 4 bits, 0.38 -> 0.56 for 8 bits
    /// over all 6000).
    static func recall(_ factory: String, nprobe: Int) throws -> Double {
        let base = Self.base.rows(0..<3000)
        let index = try IndexFactory.make(factory, dimension: dimension, metric: .innerProduct)
        try index.train(base, threads: 2)
        try index.add(base, ids: nil, threads: 2)
        let result = try index.search(queries, k: 10, parameters: SearchParameters(nprobe: nprobe))
        let truth = TestData.bruteForce(base, queries, k: 10, metric: .innerProduct)
        var hits = 0
        for q in 0..<queries.rows { hits += Set(result.ids(ofQuery: q)).intersection(truth[q]).count }
        return Double(hits) / Double(queries.rows * 10)
    }

    @Test(arguments: ["IVF16,PQ16x4fs", "IVF16,PQ8"])
    func recallAtTenIsHigherAtTheSameCodeSize(factory: String) throws {
        let plain = try Self.recall(factory, nprobe: 16)
        let aware = try Self.recall(factory.replacingOccurrences(of: "PQ16x4fs", with: "PQ16x4fs_aq0.5")
            .replacingOccurrences(of: "PQ8", with: "PQ8_aq0.5"), nprobe: 16)
        #expect(aware > plain, "\(factory): recall@10 \(plain) plain, \(aware) anisotropic")
    }

    @Test func codesAreTheSameForEveryThreadCountAndKernelLevel() throws {
        let data = Self.base.rows(0..<3000)
        func trained(threads: Int) throws -> ProductQuantizer {
            var pq = try ProductQuantizer(dimension: Self.dimension, subquantizers: 16, bits: 4)
            try pq.trainAnisotropic(residuals: data, originals: data, threshold: 0.3, rounds: 2, threads: threads)
            return pq
        }
        let one = try trained(threads: 1)
        #expect(one.codebooks == (try trained(threads: 4)).codebooks)
        let trainedOnLevels = try KernelLevels.both { try trained(threads: 2).codebooks }
        #expect(trainedOnLevels.simd == trainedOnLevels.portable && trainedOnLevels.simd == one.codebooks)
        let levels = KernelLevels.both { one.encodeAnisotropic(residuals: data, originals: data, threshold: 0.3, threads: 3) }
        #expect(levels.simd == levels.portable)
        #expect(levels.simd == one.encodeAnisotropic(residuals: data, originals: data, threshold: 0.3, threads: 1))
    }

    @Test func theFactoryTokenRoundTripsAndRefusesWhatItCannotDo() throws {
        let index = try IndexFactory.make("IVF16,PQ8x4fs_aq0.2,RefineFlat", dimension: Self.dimension, metric: .innerProduct)
        #expect(index.factoryString == "IVF16,PQ8x4fs_aq0.2,RefineFlat")
        try index.train(Self.base.rows(0..<2000), threads: 2)
        try index.add(Self.base.rows(0..<2000), ids: nil, threads: 2)
        let loaded = try IndexFactory.load(bytes: IndexFactory.encoded(index), name: "aq")
        #expect(loaded.factoryString == index.factoryString)
        let parameters = SearchParameters(nprobe: 4, refineFactor: 2)
        #expect(try loaded.search(Self.queries, k: 10, parameters: parameters) == index.search(Self.queries, k: 10, parameters: parameters))
        // Vectors added after loading get the codes the original would give them.
        try index.add(Self.base.rows(2000..<2100), ids: nil, threads: 1)
        try loaded.add(Self.base.rows(2000..<2100), ids: nil, threads: 2)
        #expect(try loaded.search(Self.queries, k: 10, parameters: parameters) == index.search(Self.queries, k: 10, parameters: parameters))

        // The same limits through the configuration, without a factory string.
        for (metric, threshold, problem) in [(Metric.l2, Float(0.2), "inner-product indexes only"), (.innerProduct, .nan, "anisotropic threshold"),
                                             (.innerProduct, 0, "anisotropic threshold"), (.innerProduct, 2e6, "anisotropic threshold")] {
            #expect(throws: IndexError.self) {
                try IVFPQIndex(.init(dimension: Self.dimension, metric: metric, lists: 4, subquantizers: 8, bits: 4, anisotropicThreshold: threshold))
            }
            do {
                _ = try IVFPQIndex(.init(dimension: Self.dimension, metric: metric, lists: 4, subquantizers: 8, bits: 4, anisotropicThreshold: threshold))
            } catch {
                #expect("\(error)".contains(problem), "\(error)")
            }
        }
        // A sub-vector too long for the codeword solves (PQ1 on 64-D: a 64 x 64 system each).
        #expect { try IndexFactory.make("PQ1_aq0.2", dimension: 64, metric: .innerProduct) } throws: { "\($0)".contains("sub-vector dimension") }
        for (factory, problem) in [("IVF16,PQ8_aq0.2", "metric is l2"), ("PQ8_aq0", "threshold 0 < T"), ("PQ8_aq-1", "threshold"),
                                   ("PQ8_aqnan", "threshold"), ("PQ8_aq", "threshold"), ("PQ8_aq1e9", "threshold"), ("PQ8x4_aq0.2", "fast scan")] {
            let metric: Metric = factory.hasPrefix("IVF") ? .l2 : .innerProduct
            do {
                _ = try IndexFactory.make(factory, dimension: Self.dimension, metric: metric)
                Issue.record("\(factory) accepted")
            } catch {
                #expect("\(error)".contains(problem), "\(factory): \(error)")
            }
        }
    }

    @Test func theCodewordSystemSolverSolves() throws {
        // A symmetric positive definite 3 x 3 system with a known solution.
        let a: [Double] = [4, 1, 0.5, 1, 3, 0.2, 0.5, 0.2, 2]
        let x: [Double] = [1, -2, 0.5]
        let b = (0..<3).map { i in (0..<3).reduce(0.0) { $0 + a[i * 3 + $1] * x[$1] } }
        let solved = try #require(ProductQuantizer.solveSymmetric(a, b, size: 3))
        for i in 0..<3 { #expect(abs(solved[i] - x[i]) < 1e-12) }
        #expect(ProductQuantizer.solveSymmetric([1, 2, 2, 1], [1, 1], size: 2) == nil)   // indefinite
    }
}

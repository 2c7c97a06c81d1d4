import PharosKernels
import PharosTestSupport
import PharosVectors
import Testing
@testable import PharosIndex

@Suite struct ProductQuantizerTests {
    @Test(arguments: [4, 8])
    func encodePicksTheNearestCodeword(bits: Int) throws {
        let data = TestData.clustered(2000, dimension: 16)
        var pq = try ProductQuantizer(dimension: 16, subquantizers: 4, bits: bits)
        try pq.train(data, threads: 2)
        let codes = pq.encode(data.rows(0..<50), threads: 2)
        let ksub = 1 << bits
        for i in 0..<50 {
            for s in 0..<4 {
                let sub = Array(data.row(i)[s * 4 ..< s * 4 + 4])
                let best = (0..<ksub).min { a, b in
                    let ca = Array(pq.codebooks[(s * ksub + a) * 4 ..< (s * ksub + a) * 4 + 4])
                    let cb = Array(pq.codebooks[(s * ksub + b) * 4 ..< (s * ksub + b) * 4 + 4])
                    return VectorMath.squaredL2(sub, ca) < VectorMath.squaredL2(sub, cb)
                }!
                let chosen = Int(codes[i * 4 + s])
                let cChosen = Array(pq.codebooks[(s * ksub + chosen) * 4 ..< (s * ksub + chosen) * 4 + 4])
                let cBest = Array(pq.codebooks[(s * ksub + best) * 4 ..< (s * ksub + best) * 4 + 4])
                #expect(abs(VectorMath.squaredL2(sub, cChosen) - VectorMath.squaredL2(sub, cBest)) < 1e-4)
            }
        }
    }

    @Test(arguments: [4, 8])
    func encodingIsTheSameOnEveryKernelLevel(bits: Int) throws {
        let data = TestData.clustered(3000, dimension: 24)
        var pq = try ProductQuantizer(dimension: 24, subquantizers: 6, bits: bits)
        try pq.train(data, iterations: 5, threads: 2)
        let levels = KernelLevels.both { pq.encode(data, threads: 2) }
        #expect(levels.portable == levels.simd)
    }

    @Test func innerProductTableMatchesDots() throws {
        let data = TestData.clustered(600, dimension: 12)
        var pq = try ProductQuantizer(dimension: 12, subquantizers: 3, bits: 8)
        try pq.train(data, iterations: 3, threads: 1)
        let q = data.row(5)
        var table = [Float](repeating: 0, count: 3 * 256)
        q.withUnsafeBufferPointer { qp in table.withUnsafeMutableBufferPointer { pq.innerProductTable(qp.baseAddress!, into: $0.baseAddress!) } }
        for s in 0..<3 {
            for j in stride(from: 0, to: 256, by: 17) {
                let word = Array(pq.codebooks[(s * 256 + j) * 4 ..< (s * 256 + j) * 4 + 4])
                #expect(abs(table[s * 256 + j] - VectorMath.dot(Array(q[s * 4 ..< s * 4 + 4]), word)) < 1e-4)
            }
        }
    }

    @Test func rejectsNonDividingSubquantizers() {
        #expect(throws: IndexError.self) { try ProductQuantizer(dimension: 10, subquantizers: 3, bits: 8) }
        #expect(throws: IndexError.self) { try ProductQuantizer(dimension: 12, subquantizers: 3, bits: 6) }
    }

    @Test func opqRotationIsOrthogonalAndHelpsAnisotropicData() throws {
        // Variance concentrated in the first components: plain PQ wastes sub-quantizers on
        // the flat ones; the learned rotation spreads it.
        var rng = SplitMix64(seed: 8)
        var data = Matrix(rows: 3000, columns: 16)
        for i in 0..<3000 { for j in 0..<16 { data.values[i * 16 + j] = rng.nextGaussian() * (j < 4 ? 10 : 0.1) } }
        let opq = try OPQRotation(training: data, subquantizers: 4, bits: 4, iterations: 8, threads: 2)
        let rrt = BLAS.multiplyTransposed(opq.matrix, opq.matrix)
        for i in 0..<16 { for j in 0..<16 { #expect(abs(rrt.values[i * 16 + j] - (i == j ? 1 : 0)) < 1e-3) } }

        func error(_ x: Matrix) throws -> Float {
            var pq = try ProductQuantizer(dimension: 16, subquantizers: 4, bits: 4)
            try pq.train(x, threads: 2)
            let codes = pq.encode(x, threads: 2)
            var total: Float = 0
            var out = [Float](repeating: 0, count: 16)
            for i in 0..<x.rows {
                codes.withUnsafeBufferPointer { pq.decode($0.baseAddress! + i * 4, into: &out) }
                total += VectorMath.squaredL2(out, x.row(i))
            }
            return total / Float(x.rows)
        }
        #expect(try error(opq.apply(data)) < 0.9 * error(data))
    }
}

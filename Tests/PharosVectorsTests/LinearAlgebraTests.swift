import Testing
@testable import PharosVectors

@Suite struct LinearAlgebraTests {
    @Test func gemmMatchesNaiveProducts() {
        let a = sampleMatrix(rows: 7, columns: 5), b = sampleMatrix(rows: 4, columns: 5)
        let abt = BLAS.multiplyTransposed(a, b)
        for i in 0..<7 {
            for j in 0..<4 {
                let naive = (0..<5).reduce(Float(0)) { $0 + a.values[i * 5 + $1] * b.values[j * 5 + $1] }
                #expect(abs(abt.values[i * 4 + j] - naive) < 1e-4)
            }
        }
        let c = sampleMatrix(rows: 5, columns: 3)
        let ac = BLAS.multiply(a, c)
        let atb = BLAS.multiplyTransposingFirst(a, a)
        for i in 0..<7 {
            for j in 0..<3 {
                let naive = (0..<5).reduce(Float(0)) { $0 + a.values[i * 5 + $1] * c.values[$1 * 3 + j] }
                #expect(abs(ac.values[i * 3 + j] - naive) < 1e-4)
            }
        }
        for i in 0..<5 {
            for j in 0..<5 {
                let naive = (0..<7).reduce(Float(0)) { $0 + a.values[$1 * 5 + i] * a.values[$1 * 5 + j] }
                #expect(abs(atb.values[i * 5 + j] - naive) < 1e-4)
            }
        }
        var y = [Float](repeating: 0, count: 7)
        let x: [Float] = [1, 2, 3, 4, 5]
        a.values.withUnsafeBufferPointer { ap in
            BLAS.gemv(m: 7, n: 5, a: ap.baseAddress!, lda: 5, x: x, y: &y)
        }
        for i in 0..<7 { #expect(abs(y[i] - VectorMath.dot(a.row(i), x)) < 1e-4) }
    }

    @Test func symmetricEigenDecomposition() throws {
        let x = sampleMatrix(rows: 50, columns: 6)
        let cov = BLAS.multiplyTransposingFirst(x, x)
        let (values, vectors) = try LinearAlgebra.symmetricEigen(cov)
        #expect(values == values.sorted(by: >))
        for i in 0..<6 {
            let v = vectors.row(i)
            let av = (0..<6).map { r in VectorMath.dot(cov.row(r), v) }
            for j in 0..<6 { #expect(abs(av[j] - values[i] * v[j]) < 1e-2 * max(1, values[0])) }
            #expect(abs(VectorMath.dot(v, v) - 1) < 1e-4)
        }
    }

    @Test func svdReconstructs() throws {
        let a = sampleMatrix(rows: 8, columns: 5)
        let (u, s, vt) = try LinearAlgebra.svd(a)
        #expect(u.rows == 8 && u.columns == 5 && vt.rows == 5 && vt.columns == 5)
        var us = u
        for i in 0..<8 { for j in 0..<5 { us.values[i * 5 + j] *= s[j] } }
        let back = BLAS.multiply(us, vt)
        for (p, q) in zip(back.values, a.values) { #expect(abs(p - q) < 1e-4) }
        let tall = try LinearAlgebra.svd(sampleMatrix(rows: 3, columns: 6))
        #expect(tall.u.rows == 3 && tall.vt.rows == 3 && tall.vt.columns == 6)
    }

    @Test func normalisationAndDistances() {
        var m = Matrix(rowArrays: [[3, 4], [0, 0], [1, 0]])
        VectorMath.normalizeRows(&m)
        #expect(m.values == [0.6, 0.8, 0, 0, 1, 0])
        let d = VectorMath.squaredL2Distances(Matrix(rowArrays: [[0, 0]]), Matrix(rowArrays: [[3, 4], [1, 1]]))
        #expect(d.values == [25, 2])
        #expect(VectorMath.squaredNorms(Matrix(rowArrays: [[1, 2]])) == [5])
        #expect(Matrix(rowArrays: [[1, .nan]]).firstNonFinite()! == (0, 1))
    }

    @Test func syntheticDataIsDeterministicInAnyBatching() {
        let a = SyntheticDataset(dimension: 8, clusters: 5, normalized: true, seed: 3)
        let b = SyntheticDataset(dimension: 8, clusters: 5, normalized: true, seed: 3)
        var pieces = a.vectors(0..<10, stream: 0)
        pieces.append(contentsOf: a.vectors(10..<25, stream: 0))
        #expect(pieces == b.vectors(0..<25, stream: 0))
        #expect(a.vectors(0..<5, stream: 1) != a.vectors(0..<5, stream: 0))
        for i in 0..<25 { #expect(abs(VectorMath.dot(pieces.row(i), pieces.row(i)) - 1) < 1e-5) }
    }
}

/// OpenBLAS's kernel choice: a CPU it fell back on gets the kernels its flags allow; a CPU it
/// recognised keeps its choice.
@Suite struct OpenBLASCoreTypeTests {
    @Test func aFallbackIsReplacedByWhatTheCPUSupports() {
        let avx512: Set<String> = ["sse3", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"]
        #expect(OpenBLASThreads.coreTypeFitting(current: "Prescott", cpuFlags: avx512) == "SkylakeX")
        #expect(OpenBLASThreads.coreTypeFitting(current: "Prescott", cpuFlags: ["sse3", "avx", "avx2", "fma"]) == "Haswell")
        #expect(OpenBLASThreads.coreTypeFitting(current: "Prescott", cpuFlags: ["sse3", "avx"]) == nil)
        #expect(OpenBLASThreads.coreTypeFitting(current: "Haswell", cpuFlags: avx512) == nil)
        #expect(OpenBLASThreads.coreTypeFitting(current: "SkylakeX", cpuFlags: avx512) == nil)
    }
}

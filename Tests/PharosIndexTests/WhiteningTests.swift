import Foundation
import PharosVectors
import Testing
@testable import PharosIndex

@Suite struct WhiteningTests {
    /// Correlated 12-D data: a random linear mix of independent components of very different scales.
    static func correlated(rows: Int, seed: UInt64) -> Matrix {
        var rng = SplitMix64(seed: seed)
        var mix = Matrix(rows: 12, columns: 12)
        for i in mix.values.indices { mix.values[i] = rng.nextGaussian() }
        var sources = Matrix(rows: rows, columns: 12)
        for r in 0..<rows {
            for c in 0..<12 { sources.values[r * 12 + c] = rng.nextGaussian() * Float(c + 1) + 3 }
        }
        return BLAS.multiply(sources, mix)
    }

    /// Covariance of `P (x - mean)` over the sample (the map before normalisation).
    static func projectedCovariance(_ w: Whitening, _ x: Matrix) -> Matrix {
        var centered = x
        for r in 0..<x.rows { for c in 0..<x.columns { centered.values[r * x.columns + c] -= w.mean[c] } }
        let y = BLAS.multiplyTransposed(centered, w.projection)
        var cov = BLAS.multiplyTransposingFirst(y, y)
        for i in cov.values.indices { cov.values[i] /= Float(x.rows - 1) }
        return cov
    }

    @Test func pcaWhiteningDecorrelatesToIdentity() throws {
        let x = Self.correlated(rows: 4000, seed: 1)
        let w = try Whitening.learnPCA(x)
        let cov = Self.projectedCovariance(w, x)
        for i in 0..<12 { for j in 0..<12 { #expect(abs(cov.values[i * 12 + j] - (i == j ? 1 : 0)) < 2e-3) } }

        // Power 0 is plain PCA: variances are the eigenvalues, descending.
        let pca = try Whitening.learnPCA(x, outputDimension: 4, power: 0)
        let variances = (0..<4).map { Self.projectedCovariance(pca, x).values[$0 * 4 + $0] }
        #expect(variances == variances.sorted(by: >))
        #expect(pca.outputDimension == 4 && pca.inputDimension == 12)

        // Shrinkage pulls the variances of the whitened components toward each other's inverse.
        let shrunk = try Whitening.learnPCA(x, shrinkage: 1)
        let c = Self.projectedCovariance(shrunk, x)
        #expect(c.values[0] > c.values[11 * 12 + 11] * 4)   // no longer whitened: equal scaling of all axes

        // Outputs are unit vectors.
        let out = try w.descriptorSpace.prepare(x.rows(0..<10))
        for r in 0..<10 { #expect(abs(VectorMath.dot(out.row(r), out.row(r)) - 1) < 1e-5) }
    }

    @Test func learnedWhiteningWhitensThePairDifferences() throws {
        // Pairs: a point and a noisy copy whose noise is strongly anisotropic.
        var rng = SplitMix64(seed: 3)
        let base = Self.correlated(rows: 1500, seed: 2)
        var rows = base.values
        for r in 0..<1500 {
            for c in 0..<12 { rows.append(base.values[r * 12 + c] + rng.nextGaussian() * (c < 3 ? 5 : 0.2)) }
        }
        let sample = Matrix(rows: 3000, columns: 12, values: rows)
        let pairs = (0..<1500).map { ($0, $0 + 1500) }
        let w = try Whitening.learnFromPairs(sample, pairs: pairs, outputDimension: 12)
        var differences = Matrix(rows: 1500, columns: 12)
        for (r, (a, b)) in pairs.enumerated() {
            for c in 0..<12 { differences.values[r * 12 + c] = sample.values[a * 12 + c] - sample.values[b * 12 + c] }
        }
        let projected = BLAS.multiplyTransposed(differences, w.projection)
        var cov = BLAS.multiplyTransposingFirst(projected, projected)
        for i in cov.values.indices { cov.values[i] /= 1500 }
        for i in 0..<12 { for j in 0..<12 { #expect(abs(cov.values[i * 12 + j] - (i == j ? 1 : 0)) < 2e-3) } }
        #expect(w.kind == .learnedFromPairs)
        #expect(throws: IndexError.self) { try Whitening.learnFromPairs(sample, pairs: [(0, 1), (2, 9999)]) }
    }

    @Test func fileRoundTripAndDamage() throws {
        let w = try Whitening.learnPCA(Self.correlated(rows: 200, seed: 4), outputDimension: 5, power: 0.4, shrinkage: 0.1)
        let path = NSTemporaryDirectory() + "whitening-\(UUID().uuidString.prefix(8)).phxw"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try w.save(path)
        #expect(try Whitening.load(path) == w)

        var bytes = w.serialized()
        bytes[40] ^= 1
        #expect { try Whitening(bytes: bytes, source: "damaged") } throws: { "\($0)".contains("CRC32C mismatch") }
        #expect { try Whitening(bytes: Array(bytes.prefix(10)), source: "short") } throws: { "\($0)".contains("short") }
        #expect { try w.project(Matrix(rows: 1, columns: 7)) } throws: { ($0 as? IndexError) == .dimensionMismatch(expected: 12, found: 7) }
        var nan = Self.correlated(rows: 10, seed: 5)
        nan.values[13] = .nan
        #expect { try Whitening.learnPCA(nan) } throws: { ($0 as? IndexError) == .nonFiniteValue(row: 1, column: 1) }
    }

    /// Six vectors span five directions: whitening a sixth would divide by a variance of about
    /// zero. It is refused, naming the rank, unless forced; the default stays within the rank;
    /// plain PCA and shrinkage may keep any dimension.
    @Test func whiteningBeyondTheSampleRankIsRefused() throws {
        let x = Self.correlated(rows: 6, seed: 8)
        #expect(try Whitening.learnPCA(x).outputDimension == 5)
        #expect { try Whitening.learnPCA(x, outputDimension: 8) } throws: { "\($0)".contains("6 vectors span at most 5 directions") }
        #expect(try Whitening.learnPCA(x, outputDimension: 8, allowBeyondRank: true).outputDimension == 8)
        #expect(try Whitening.learnPCA(x, power: 0).outputDimension == 12)
        #expect(try Whitening.learnPCA(x, outputDimension: 12, shrinkage: 0.5).outputDimension == 12)
    }
}

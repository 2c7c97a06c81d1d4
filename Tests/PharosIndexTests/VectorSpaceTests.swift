import PharosIndex
import PharosVectors
import Testing

/// The collection's vector space: one owner of preparation and score order.
@Suite struct VectorSpaceTests {
    @Test func preparationWhitensThenNormalisesAndOnlyThen() throws {
        let sample = SyntheticDataset(dimension: 12, clusters: 5, normalized: false, seed: 3).vectors(0..<400, stream: 0)
        let whitening = try Whitening.learnPCA(sample, outputDimension: 6)
        let rows = sample.rows(0..<20)

        // Plain: vectors as given.
        let plain = try VectorSpace(dimension: 12, metric: .l2)
        #expect(try plain.prepare(rows) == rows)
        #expect(!plain.isUnitNorm)

        // Normalised: unit rows, directions unchanged.
        let unit = try VectorSpace(dimension: 12, metric: .innerProduct, normalization: .l2)
        let normalised = try unit.prepare(rows)
        for r in 0..<20 {
            let norm = normalised.row(r).reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(abs(norm - 1) < 1e-5)
            #expect(abs(VectorMath.normalized(rows.row(r))[0] - normalised.row(r)[0]) < 1e-6)
        }

        // Whitened: the affine map, then L2, so a whitened space is unit-norm even without `.l2`.
        let whitened = try VectorSpace(dimension: 6, metric: .l2, whitening: whitening)
        #expect(whitened.isUnitNorm && whitened.inputDimension == 12)
        var expected = try whitening.project(rows)
        VectorMath.normalizeRows(&expected)
        #expect(try whitened.prepare(rows) == expected)
    }

    @Test func badInputIsRefusedNamingWhatIsWrong() throws {
        let space = try VectorSpace(dimension: 4, metric: .l2)
        #expect(throws: IndexError.dimensionMismatch(expected: 4, found: 3)) { try space.prepare(Matrix(rows: 2, columns: 3)) }
        var bad = Matrix(rows: 2, columns: 4)
        bad.values[6] = .nan
        #expect(throws: IndexError.nonFiniteValue(row: 1, column: 2)) { try space.prepare(bad) }
        let whitening = try Whitening.learnPCA(SyntheticDataset(dimension: 8, clusters: 3, normalized: false, seed: 1).vectors(0..<100, stream: 0), outputDimension: 3)
        #expect(throws: IndexError.self) { try VectorSpace(dimension: 4, metric: .l2, whitening: whitening) }
        #expect(throws: IndexError.self) { try VectorSpace(dimension: 0, metric: .l2) }
    }

    @Test func scoreOrderFollowsTheMetric() throws {
        let ip = try VectorSpace(dimension: 2, metric: .innerProduct), l2 = try VectorSpace(dimension: 2, metric: .l2)
        #expect(ip.higherIsBetter && ip.ranks(0.9, before: 0.1))
        #expect(!l2.higherIsBetter && l2.ranks(0.1, before: 0.9))
        // A stored vector moved off the sphere by its codes comes back onto it, only in a unit-norm space.
        #expect(try VectorSpace(dimension: 2, metric: .innerProduct, normalization: .l2).conformed([3, 4]) == [0.6, 0.8])
        #expect(l2.conformed([3, 4]) == [3, 4])
    }
}

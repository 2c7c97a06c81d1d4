import PharosVectors
import Testing
@testable import PharosIndex

@Suite struct KMeansTests {
    @Test func deterministicUnderSeedAndThreadCount() throws {
        let data = TestData.clustered(3000)
        var config = KMeans.Configuration(clusters: 20)
        config.threads = 1
        let one = try KMeans(training: data, configuration: config)
        config.threads = 2
        let two = try KMeans(training: data, configuration: config)
        config.threads = 5
        let five = try KMeans(training: data, configuration: config)
        #expect(one.centroids == two.centroids)
        #expect(one.centroids == five.centroids)
        config.seed = 99
        #expect(try KMeans(training: data, configuration: config).centroids != one.centroids)
    }

    @Test func recoversWellSeparatedClusters() throws {
        // Four tight clusters far apart: every point must end with its own centre.
        var rng = SplitMix64(seed: 1)
        let centres: [[Float]] = [[0, 0], [100, 0], [0, 100], [100, 100]]
        var rows: [[Float]] = []
        for i in 0..<400 {
            let c = centres[i % 4]
            rows.append([c[0] + rng.nextGaussian(), c[1] + rng.nextGaussian()])
        }
        var config = KMeans.Configuration(clusters: 4)
        config.usePlusPlus = true
        let km = try KMeans(training: Matrix(rowArrays: rows), configuration: config)
        for c in centres {
            let nearest = (0..<4).map { VectorMath.squaredL2(km.centroids.row($0), c) }.min()!
            #expect(nearest < 1)
        }
        #expect(km.objective < 3)
    }

    @Test func repairsEmptyClusters() throws {
        // 40 points but only 3 distinct values: most centroids start on duplicates and would
        // otherwise stay empty; repair must leave no NaN and no empty cluster.
        let rows = (0..<40).map { i -> [Float] in [Float(i % 3), 0] }
        var config = KMeans.Configuration(clusters: 6)
        config.iterations = 5
        let km = try KMeans(training: Matrix(rowArrays: rows), configuration: config)
        #expect(km.centroids.firstNonFinite() == nil)
        #expect(km.objective < 1e-3)
    }

    @Test func rejectsTooFewPoints() {
        #expect(throws: IndexError.notEnoughTrainingData(needed: 10, found: 3, what: "k-means with 10 clusters")) {
            try KMeans(training: TestData.clustered(3), configuration: .init(clusters: 10))
        }
    }
}

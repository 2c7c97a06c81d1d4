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

    /// Spherical k-means (inner-product IVF): unit centroids, so the nearest centroid by L2,
    /// where a vector is stored, is the one of largest inner product, where a query looks.
    @Test func sphericalCentroidsAreUnitAndNearestMeansLargestInnerProduct() throws {
        let data = TestData.clustered(3000, dimension: 16, normalized: true)
        var config = KMeans.Configuration(clusters: 20)
        config.spherical = true
        config.threads = 2
        let centroids = try KMeans(training: data, configuration: config).centroids
        for c in 0..<20 { #expect(abs(VectorMath.dot(centroids.row(c), centroids.row(c)) - 1) < 1e-5) }
        var assignment = [Int32](), distances = [Float]()
        KMeans.assign(data, centroids: centroids, threads: 2, assignment: &assignment, distances: &distances)
        for i in stride(from: 0, to: 3000, by: 7) {
            let products = (0..<20).map { VectorMath.dot(data.row(i), centroids.row($0)) }
            #expect(products[Int(assignment[i])] >= products.max()! - 1e-5)
        }
        // An inner-product IVF index trains its lists this way.
        let index = try IndexFactory.make("IVF20,PQ4", dimension: 16, metric: .innerProduct) as! IVFPQIndex
        try index.train(data, threads: 2)
        for c in 0..<20 { #expect(abs(VectorMath.dot(index.centroids.row(c), index.centroids.row(c)) - 1) < 1e-5) }
    }

    @Test func rejectsTooFewPoints() {
        #expect(throws: IndexError.notEnoughTrainingData(needed: 10, found: 3, what: "k-means with 10 clusters")) {
            try KMeans(training: TestData.clustered(3), configuration: .init(clusters: 10))
        }
    }
}

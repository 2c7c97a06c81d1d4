import Foundation
import PharosIndex
import PharosVectors
import Testing
@testable import PharosDescriptors

@Suite struct GlobalPoolingTests {
    /// MAC, SPoC, GeM, CroW and R-MAC of a random map equal the reference implementation's
    /// (Scripts/make-descriptor-fixtures.py, numpy in float64).
    @Test func matchesTheReferencePooling() throws {
        let raw = try Fixture.matrix("map")
        let map = FeatureMap(channels: 16, height: 13, width: 17, values: raw.values)
        let expected = try Fixture.matrix("pooled")
        for (row, method) in [PoolingMethod.mac, .spoc, .gem, .crow, .rmac].enumerated() {
            let v = try GlobalPooling.pool(map, method)
            let e = Fixture.relativeErrors(v, expected.row(row))
            #expect(e.max < 1e-5, "\(method): relative error \(e)")
            #expect(abs(VectorMath.dot(v, v) - 1) < 1e-5)
        }
    }

    @Test func rmacRegionsFollowTheReferenceLayout() {
        let regions = GlobalPooling.rmacRegions(height: 13, width: 17, levels: 3)
        #expect(regions.count == 21)
        #expect(regions[0] == .init(top: 0, left: 0, height: 13, width: 17))
        #expect(regions[1] == .init(top: 0, left: 0, height: 13, width: 13))
        #expect(regions[2] == .init(top: 0, left: 4, height: 13, width: 13))
        #expect(regions.last == .init(top: 7, left: 11, height: 6, width: 6))
        // Every region lies inside the map.
        for (h, w) in [(3, 3), (4, 9), (30, 7), (1, 1)] {
            for r in GlobalPooling.rmacRegions(height: h, width: w, levels: 3) {
                #expect(r.top >= 0 && r.left >= 0 && r.top + r.height <= h && r.left + r.width <= w)
            }
        }
    }

    @Test func gemSpansSpocToMac() throws {
        let raw = try Fixture.matrix("map")
        let map = FeatureMap(channels: 16, height: 13, width: 17, values: raw.values)
        let spoc = try GlobalPooling.pool(map, .spoc), gem1 = try GlobalPooling.pool(map, .gem, options: .init(gemPower: 1))
        #expect(Fixture.relativeErrors(gem1, spoc).max < 1e-4)
        let mac = try GlobalPooling.pool(map, .mac), gem64 = try GlobalPooling.pool(map, .gem, options: .init(gemPower: 64))
        #expect(Fixture.relativeErrors(gem64, mac).max < 0.1)
        #expect(throws: DescriptorError.self) { try GlobalPooling.pool(map, .gem, options: .init(gemPower: 0.5)) }
    }

    @Test func rmacWithRegionWhitening() throws {
        let raw = try Fixture.matrix("map")
        let map = FeatureMap(channels: 16, height: 13, width: 17, values: raw.values)
        var rng = SplitMix64(seed: 3)
        let sample = Matrix(rows: 200, columns: 16, values: (0..<3200).map { _ in abs(rng.nextGaussian()) })
        let whitening = try Whitening.learnPCA(sample, outputDimension: 8)
        let v = try GlobalPooling.pool(map, .rmac, options: .init(regionWhitening: whitening))
        #expect(v.count == 8)
        // Direct: whiten each L2-normalised region MAC, sum, normalise.
        var sum = [Float](repeating: 0, count: 8)
        for r in GlobalPooling.rmacRegions(height: 13, width: 17, levels: 3) {
            let region = VectorMath.normalized(GlobalPooling.regionMax(map, top: r.top, left: r.left, height: r.height, width: r.width))
            for (i, x) in try whitening.descriptorSpace.prepare(region).enumerated() { sum[i] += x }
        }
        #expect(Fixture.relativeErrors(v, VectorMath.normalized(sum)).max < 1e-5)
    }
}

import PharosKernels
import PharosTestSupport
import PharosVectors
import Testing
@testable import PharosIndex

@Suite(.serialized) struct KernelTests {
    @Test func crc32cKnownAnswer() {
        let bytes = Array("123456789".utf8)
        let crc = KernelLevels.both { pharos_crc32c(0, bytes, bytes.count) }
        #expect(crc.simd == 0xE306_9283 && crc.portable == 0xE306_9283)
        // Continuation equals one pass.
        let a = pharos_crc32c(0, bytes, 4)
        #expect(pharos_crc32c(a, Array(bytes[4...]), 5) == 0xE306_9283)
    }

    @Test func heapKeepsTheSmallestWithIdTieBreak() {
        var rng = SplitMix64(seed: 5)
        let values = (0..<500).map { _ in Float(rng.next() % 50) }
        var heap = ResultHeap(capacity: 17)
        for (i, v) in values.enumerated().reversed() { heap.push(v, Int64(i)) }
        let (d, ids) = heap.sorted()
        let expected = values.enumerated().map { ($0.element, Int64($0.offset)) }.sorted { $0 < $1 }.prefix(17)
        #expect(Array(d) == expected.map(\.0))
        #expect(Array(ids) == expected.map(\.1))
        var nan = ResultHeap(capacity: 2)
        nan.push(.nan, 1)
        #expect(nan.size == 0)
    }

    /// Integer inner products are exact: the same as a naive sum, at every kernel level, for
    /// lengths with and without a tail past the 16-byte blocks, and at the int8 extremes.
    @Test(arguments: [1, 15, 16, 33, 512])
    func int8InnerProductsAreExact(dimension: Int) {
        var rng = SplitMix64(seed: UInt64(dimension))
        let n = 37
        let query = (0..<dimension).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127) }
        var rows = (0..<n * dimension).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127) }
        for j in 0..<dimension { rows[j] = query[j] == -127 ? -127 : 127 }   // row 0 near the largest sum
        let naive = (0..<n).map { i in (0..<dimension).reduce(Int32(0)) { $0 + Int32(query[$1]) * Int32(rows[i * dimension + $1]) } }
        let (simd, portable) = KernelLevels.both {
            var dots = [Int32](repeating: 0, count: n)
            pharos_i8_dots(query, rows, n, dimension, &dots)
            return dots
        }
        #expect(simd == naive && portable == naive)
    }

    @Test func pq8DistancesMatchNaiveSums() {
        var rng = SplitMix64(seed: 9)
        let m = 5, n = 23
        let lut = (0..<(m * 256)).map { _ in rng.nextGaussian() }
        let codes = (0..<(n * m)).map { _ in UInt8(rng.next() % 256) }
        var out = [Float](repeating: 0, count: n)
        pharos_pq8_distances(lut, m, codes, n, 1.5, &out)
        for i in 0..<n {
            let naive = (0..<m).reduce(Float(1.5)) { $0 + lut[$1 * 256 + Int(codes[i * m + $1])] }
            #expect(abs(out[i] - naive) < 1e-4)
        }
    }

    /// The AVX2 and portable fast-scan kernels must agree with a naive sum, for odd M (padding),
    /// partial blocks, queries in pairs and one left over, and a table two queries share.
    @Test(arguments: [1, 2, 7, 32, 64])
    func fastScanMatchesNaiveSums(m: Int) {
        var rng = SplitMix64(seed: UInt64(m))
        let n = 75, mp = (m + 1) & ~1, queries = 5, tables = 4   // query 4 uses query 1's table
        let codes = (0..<(n * m)).map { _ in UInt8(rng.next() % 16) }
        let blocks = (n + 31) / 32
        var packed = [UInt8](repeating: 0, count: blocks * mp * 16)
        pharos_fs4_pack(codes, n, m, mp, &packed)
        for i in 0..<n { for s in 0..<m { #expect(pharos_fs4_code(packed, mp, i, s) == codes[i * m + s]) } }
        var luts = [UInt8](repeating: 0, count: tables * mp * 16)
        for q in 0..<tables { for s in 0..<m { for j in 0..<16 { luts[q * mp * 16 + s * 16 + j] = UInt8(rng.next() % 256) } } }
        let tableOf = [0, 1, 2, 3, 1]
        let levels = KernelLevels.both {
            var sums = [UInt16](repeating: 0, count: queries * blocks * 32)
            luts.withUnsafeBufferPointer { base in
                let pointers: [UnsafePointer<UInt8>?] = tableOf.map { base.baseAddress! + $0 * mp * 16 }
                pharos_fs4_scan(pointers, queries, mp, packed, blocks, &sums)
            }
            return sums
        }
        for (portable, sums) in [(false, levels.simd), (true, levels.portable)] {
            for q in 0..<queries {
                for i in 0..<n {
                    let naive = (0..<m).reduce(0) { $0 + Int(luts[tableOf[q] * mp * 16 + $1 * 16 + Int(codes[i * m + $1])]) }
                    #expect(Int(sums[q * blocks * 32 + i]) == naive, "query \(q) vector \(i) portable \(portable)")
                }
            }
        }
    }

    /// Float dot products and squared distances: the same bits on every kernel level (32
    /// partial sums in one order), for lengths below, at and past the 32-wide blocks, and close
    /// to a double-precision sum.
    @Test(arguments: [1, 5, 31, 32, 33, 64, 100, 784, 2048])
    func dotAndSquaredDistanceAreTheSameOnEveryKernelLevel(d: Int) {
        var rng = SplitMix64(seed: UInt64(d) &+ 77)
        let a = (0..<d).map { _ in rng.nextGaussian() }
        let b = (0..<d).map { _ in rng.nextGaussian() }
        let dot = KernelLevels.both { pharos_dot(a, b, d) }
        let l2 = KernelLevels.both { pharos_l2sq(a, b, d) }
        #expect(dot.simd.bitPattern == dot.portable.bitPattern)
        #expect(l2.simd.bitPattern == l2.portable.bitPattern)
        let exactDot = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let exactL2 = zip(a, b).reduce(0.0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) }
        #expect(abs(Double(dot.simd) - exactDot) <= 1e-5 * Double(d))
        #expect(abs(Double(l2.simd) - exactL2) <= 1e-5 * max(1, exactL2))
    }

    @Test(arguments: [1, 8, 13, 784])
    func sq8DistanceMatchesDecodeAndIsTheSameOnEveryKernelLevel(d: Int) {
        var rng = SplitMix64(seed: UInt64(d))
        let offset = (0..<d).map { _ in rng.nextGaussian() }
        let scale = (0..<d).map { _ in abs(rng.nextGaussian()) / 255 }
        let code = (0..<d).map { _ in UInt8(rng.next() % 256) }
        let query = (0..<d).map { _ in rng.nextGaussian() }
        var decoded = [Float](repeating: 0, count: d)
        pharos_sq8_decode(code, offset, scale, d, &decoded)
        for ip: Int32 in [0, 1] {
            let (simd, portable) = KernelLevels.both { pharos_sq8_distance(query, code, offset, scale, d, ip) }
            #expect(simd == portable)
            let naive = ip == 1 ? -VectorMath.dot(query, decoded) : VectorMath.squaredL2(query, decoded)
            #expect(abs(simd - naive) <= 1e-4 * max(1, abs(naive)))
        }
        let weights = zip(query, scale).map { $0 * $1 }
        let (simdSum, portableSum) = KernelLevels.both { pharos_sq8_weighted_sum(weights, code, d) }
        #expect(simdSum == portableSum)
        let viaWeights = VectorMath.dot(query, offset) + simdSum
        #expect(abs(viaWeights - VectorMath.dot(query, decoded)) <= 1e-4 * max(1, abs(viaWeights)))
    }

    @Test(arguments: [1, 7, 8, 9, 1024, 1029])
    func argminFindsTheFirstMinimumOnEveryKernelLevel(n: Int) {
        var rng = SplitMix64(seed: UInt64(n))
        // Few distinct values, so ties across lanes are common; one NaN that must never win.
        var values = (0..<n).map { _ in Float(rng.next() % 5) }
        let bias = (0..<n).map { _ in Float(rng.next() % 3) }
        if n > 3 { values[2] = .nan }
        let sums = zip(values, bias).map { $0 + $1 }
        let expected = sums.indices.filter { !sums[$0].isNaN }.min { sums[$0] < sums[$1] || (sums[$0] == sums[$1] && $0 < $1) }!
        let levels = KernelLevels.both {
            var best: Float = 0
            return [Float(pharos_argmin_sum(values, bias, n, &best)), best]
        }
        for found in [levels.simd, levels.portable] { #expect(found == [Float(expected), sums[expected]]) }
    }

    @Test func halfPrecisionRoundTrip() {
        let values: [Float] = [0, -0, 1, -1, 0.1, 65504, 1e-5, 6e-8, -3.14159, .infinity]
        var half = [UInt16](repeating: 0, count: values.count)
        var back = [Float](repeating: 0, count: values.count)
        pharos_f32_to_f16(values, values.count, &half)
        pharos_f16_to_f32(half, values.count, &back)
        for (a, b) in zip(values, back) where a.isFinite {
            #expect(abs(a - b) <= max(abs(a) * 1e-3, 6e-8))
        }
        #expect(back.last == .infinity)
        #expect(half[2] == 0x3C00)
    }
}

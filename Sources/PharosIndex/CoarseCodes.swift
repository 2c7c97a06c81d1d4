import PharosKernels
import PharosVectors

/// The coarse centroids in int8 (one symmetric scale per centroid): a first pass that reads a
/// quarter of the bytes, for interactive queries whose coarse search is a pass over the whole
/// centroid matrix, bound by memory (8 MB at 4096 x 512 in float). The pass only shortlists;
/// the shortlist is scored again exactly, so the lists chosen are the exact nearest ones
/// unless the int8 error moved one of them out of a shortlist several times nprobe long.
struct CoarseCodes: Sendable {
    /// `lists x dimension` int8 codes, row-major.
    let codes: [Int8]
    /// Each centroid's scale: centroid ~= scale x code.
    let scales: [Float]
    let dimension: Int

    /// The codes of `centroids`.
    init(_ centroids: Matrix) {
        dimension = centroids.columns
        var codes = [Int8](repeating: 0, count: centroids.rows * centroids.columns)
        var scales = [Float](repeating: 1, count: centroids.rows)
        for i in 0..<centroids.rows {
            let row = centroids.values[i * dimension ..< (i + 1) * dimension]
            let scale = Self.scale(of: row)
            scales[i] = scale
            for (j, v) in row.enumerated() { codes[i * dimension + j] = Self.code(v, scale: scale) }
        }
        self.codes = codes
        self.scales = scales
    }

    /// Whether the first pass pays for a search of `nprobe` of `lists` lists in `dimension`
    /// dimensions: enough centroids to read and a shortlist well under all of them.
    static func worthIt(lists: Int, dimension: Int, nprobe: Int) -> Bool {
        // (At most 65,536 dimensions: int32 sums of 127 x 127 products cannot overflow.)
        lists >= 256 && (32...65536).contains(dimension) && shortlist(nprobe: nprobe, lists: lists) * 4 <= lists
    }

    /// Centroids scored exactly after the int8 pass.
    static func shortlist(nprobe: Int, lists: Int) -> Int { Swift.min(lists, Swift.max(2 * nprobe, nprobe + 32)) }

    /// The int8 pass for one query: approximate inner products with every centroid.
    func innerProducts(query: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let q = UnsafeBufferPointer(start: query, count: dimension)
        let queryScale = Self.scale(of: q)
        let queryCodes = q.map { Self.code($0, scale: queryScale) }
        let lists = scales.count
        var sums = [Int32](repeating: 0, count: lists)
        codes.withUnsafeBufferPointer { c in
            queryCodes.withUnsafeBufferPointer { qc in
                sums.withUnsafeMutableBufferPointer { s in
                    pharos_i8_dots(qc.baseAddress!, c.baseAddress!, lists, dimension, s.baseAddress!)
                }
            }
        }
        for i in 0..<lists { out[i] = Float(sums[i]) * (scales[i] * queryScale) }
    }

    /// max |v| / 127 (1 for an all-zero vector, whose codes are then all zero).
    private static func scale<C: Collection>(of values: C) -> Float where C.Element == Float {
        let largest = values.reduce(Float(0)) { Swift.max($0, abs($1)) }
        return largest > 0 && largest.isFinite ? largest / 127 : 1
    }

    private static func code(_ value: Float, scale: Float) -> Int8 {
        let r = (value / scale).rounded()
        guard r.isFinite else { return 0 }   // (inputs are checked finite; a trap must not be reachable)
        return Int8(Swift.max(-127, Swift.min(127, r)))
    }
}

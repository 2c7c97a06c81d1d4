import PharosKernels
import PharosVectors

/// Higher-fidelity codes kept beside the compressed ones to re-rank a shortlist (faiss's
/// `IndexRefine`): the shortlist of `refineFactor * k` candidates is re-scored with these.
public struct RefineCodec: Sendable, Equatable {
    /// The code family.
    public enum Kind: String, Sendable, CaseIterable {
        /// 8-bit scalar quantizer with a per-dimension trained range (d bytes).
        case sq8 = "SQ8"
        /// IEEE half precision (2d bytes).
        case fp16 = "FP16"
        /// Uncompressed float32 (4d bytes).
        case flat = "Flat"
    }

    /// The code family.
    public let kind: Kind
    /// Vector dimension.
    public let dimension: Int
    /// SQ8: per-dimension minimum.
    public internal(set) var minimum: [Float] = [] { didSet { deriveDecoding() } }
    /// SQ8: per-dimension range (max - min).
    public internal(set) var range: [Float] = [] { didSet { deriveDecoding() } }
    /// SQ8 decoding, derived from the range: x = offset + code * scale.
    private var decodeOffset: [Float] = []
    private var decodeScale: [Float] = []

    private mutating func deriveDecoding() {
        guard minimum.count == range.count else { return }
        decodeScale = range.map { $0 / 255 }
        decodeOffset = zip(minimum, decodeScale).map { $0 + $1 / 2 }
    }

    /// An untrained codec.
    public init(kind: Kind, dimension: Int) {
        self.kind = kind
        self.dimension = dimension
    }

    /// Bytes per encoded vector.
    public var codeBytes: Int {
        switch kind {
        case .sq8: return dimension
        case .fp16: return dimension * 2
        case .flat: return dimension * 4
        }
    }

    /// Learns the SQ8 range from a sample (min/max per dimension, as faiss's default `RS_minmax`).
    public mutating func train(_ sample: Matrix) {
        guard kind == .sq8 else { return }
        var lo = [Float](repeating: .infinity, count: dimension)
        var hi = [Float](repeating: -.infinity, count: dimension)
        for i in 0..<sample.rows {
            for j in 0..<dimension {
                let v = sample.values[i * dimension + j]
                lo[j] = Swift.min(lo[j], v)
                hi[j] = Swift.max(hi[j], v)
            }
        }
        minimum = lo.map { $0.isFinite ? $0 : 0 }
        range = zip(lo, hi).map { $0.isFinite && $1.isFinite ? $1 - $0 : 0 }
    }

    /// Appends the codes of every row of `data` to `codes`.
    public func encode(_ data: Matrix, appendingTo codes: inout [UInt8]) {
        precondition(data.columns == dimension, "refine dimension mismatch")
        let start = codes.count
        codes += [UInt8](repeating: 0, count: data.rows * codeBytes)
        codes.withUnsafeMutableBufferPointer { out in
            data.values.withUnsafeBufferPointer { x in
                for i in 0..<data.rows {
                    let dst = out.baseAddress! + start + i * codeBytes
                    let src = x.baseAddress! + i * dimension
                    switch kind {
                    case .sq8:
                        pharos_sq8_encode(src, minimum, range, dimension, dst)
                    case .fp16:
                        dst.withMemoryRebound(to: UInt16.self, capacity: dimension) { pharos_f32_to_f16(src, dimension, $0) }
                    case .flat:
                        UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: dimension * 4)
                    }
                }
            }
        }
    }

    /// Whether `code` (`codeBytes` long) decodes to finite values only: 8-bit codes always do;
    /// half and single precision ones may hold infinities and NaNs.
    public func isFinite(_ code: [UInt8]) -> Bool {
        switch kind {
        case .sq8:
            return true
        case .fp16:   // exponent bits all ones: infinity or NaN
            return stride(from: 0, to: code.count - 1, by: 2).allSatisfy { (UInt16(code[$0]) | UInt16(code[$0 + 1]) << 8) & 0x7C00 != 0x7C00 }
        case .flat:
            return stride(from: 0, to: code.count - 3, by: 4).allSatisfy { i in
                Float(bitPattern: UInt32(code[i]) | UInt32(code[i + 1]) << 8 | UInt32(code[i + 2]) << 16 | UInt32(code[i + 3]) << 24).isFinite
            }
        }
    }

    /// Decodes one code into `output` (`dimension` floats).
    public func decode(_ code: UnsafePointer<UInt8>, into output: UnsafeMutablePointer<Float>) {
        switch kind {
        case .sq8:
            pharos_sq8_decode(code, decodeOffset, decodeScale, dimension, output)
        case .fp16:
            UnsafeRawPointer(code).withMemoryRebound(to: UInt16.self, capacity: dimension) { pharos_f16_to_f32($0, dimension, output) }
        case .flat:
            UnsafeMutableRawPointer(output).copyMemory(from: code, byteCount: dimension * 4)
        }
    }

    /// Distance (smaller is better) between a query and one code: squared L2, or the negated
    /// inner product. `scratch` holds `dimension` floats for the codes that must be decoded.
    @inline(__always)
    func distance(_ query: UnsafePointer<Float>, _ code: UnsafePointer<UInt8>, metric: Metric,
                  scratch: UnsafeMutablePointer<Float>) -> Float {
        if kind == .sq8 {
            return decodeOffset.withUnsafeBufferPointer { offset in
                decodeScale.withUnsafeBufferPointer { scale in
                    pharos_sq8_distance(query, code, offset.baseAddress!, scale.baseAddress!, dimension, metric == .innerProduct ? 1 : 0)
                }
            }
        }
        // Flat codes are the floats themselves: read in place when aligned (they are, in lists
        // and segments; a copy of every candidate was an eighth of a 784-D search).
        let vector: UnsafePointer<Float>
        if kind == .flat, Int(bitPattern: code) % MemoryLayout<Float>.alignment == 0 {
            vector = UnsafeRawPointer(code).assumingMemoryBound(to: Float.self)
        } else {
            decode(code, into: scratch)
            vector = UnsafePointer(scratch)
        }
        return metric == .l2 ? pharos_l2sq(query, vector, dimension) : -pharos_dot(query, vector, dimension)
    }

    /// Per-query state that makes inner-product distances to SQ8 codes cheaper.
    struct PreparedQuery {
        /// query * scale, per component.
        var weights: [Float]
        /// <query, offset>.
        var bias: Float
    }

    /// Prepares `query` for `distance(prepared:_:)`, or nil where preparing does not pay
    /// (L2, or codes other than SQ8).
    func prepare(_ query: UnsafePointer<Float>, metric: Metric) -> PreparedQuery? {
        guard kind == .sq8, metric == .innerProduct else { return nil }
        let weights = (0..<dimension).map { query[$0] * decodeScale[$0] }
        return PreparedQuery(weights: weights, bias: decodeOffset.withUnsafeBufferPointer { pharos_dot(query, $0.baseAddress!, dimension) })
    }

    /// Negated inner product between a prepared query and an SQ8 code.
    @inline(__always)
    func distance(prepared: PreparedQuery, _ code: UnsafePointer<UInt8>) -> Float {
        -(prepared.bias + pharos_sq8_weighted_sum(prepared.weights, code, dimension))
    }

    func encodeParameters(_ w: inout ByteWriter) {
        w.write(kind.rawValue)
        w.write(minimum)
        w.write(range)
    }

    static func decodeParameters(_ r: inout ByteReader, dimension: Int) throws -> RefineCodec {
        let name = try r.readString()
        guard let kind = Kind(rawValue: name) else { throw r.corrupt("unknown refine kind '\(name)'") }
        var codec = RefineCodec(kind: kind, dimension: dimension)
        let expected = kind == .sq8 ? dimension : 0
        codec.minimum = try r.readFloats("refine minimum", expected: expected)
        codec.range = try r.readFloats("refine range", expected: expected)
        return codec
    }
}

import PharosDurability
import PharosKernels
import PharosVectors

/// Builds indexes from faiss-style factory strings and saves and loads them.
///
/// Grammar (comma-separated, in this order):
/// ```
/// Flat
/// [OPQ<m>,] [IVF<lists>,] PQ<m>[x8|x4fs][_aq<T>] [,Refine(SQ8|FP16|Flat)]
/// ```
/// Examples: `Flat`, `PQ16`, `IVF1024,PQ32`, `OPQ32,IVF4096,PQ32x4fs,RefineSQ8`,
/// `IVF1024,PQ25x4fs_aq0.2,RefineFlat` (inner product only: codes and codebooks learned for
/// the score-aware loss of threshold T, as ScaNN's `score_ah`; see `ProductQuantizer+Anisotropic`).
public enum IndexFactory {
    /// Creates an untrained index of dimension `dimension` for `factory`.
    public static func make(_ factory: String, dimension: Int, metric: Metric) throws -> any VectorIndex {
        guard dimension > 0 else {
            throw IndexError.invalidParameter(name: "dimension", value: "\(dimension)", allowed: ">= 1")
        }
        let tokens = factory.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters() }
        func bad(_ position: Int, _ problem: String) -> IndexError {
            .invalidFactory("token \(position + 1) '\(tokens[position])' in \"\(factory)\": \(problem)")
        }
        guard !(tokens.count == 1 && tokens[0].isEmpty) else {
            throw IndexError.invalidFactory("empty factory string; allowed forms: Flat | [OPQ<m>,][IVF<lists>,]PQ<m>[x8|x4fs][_aq<T>][,RefineSQ8|RefineFP16|RefineFlat]")
        }
        if tokens == ["Flat"] { return FlatIndex(dimension: dimension, metric: metric) }

        var position = 0
        var opq: Int?
        var lists = 1
        if let m = number(after: "OPQ", in: tokens[position]) {
            guard m >= 1, dimension % m == 0 else {
                throw bad(position, "OPQ sub-quantizers must divide the dimension \(dimension)")
            }
            opq = m
            position += 1
        } else if tokens[position].hasPrefix("OPQ") {
            throw bad(position, "expected OPQ<m> with m a divisor of \(dimension) (dimension reduction OPQ<m>_<d> is not supported)")
        }
        if position < tokens.count, tokens[position].hasPrefix("IVF") {
            guard let n = number(after: "IVF", in: tokens[position]), n >= 1, n <= 1 << 20 else {
                throw bad(position, "expected IVF<lists> with 1 <= lists <= \(1 << 20)")
            }
            lists = n
            position += 1
        }
        guard position < tokens.count else {
            throw IndexError.invalidFactory("\"\(factory)\" ends before the PQ<m> token; allowed: [OPQ<m>,][IVF<lists>,]PQ<m>[x8|x4fs][_aq<T>][,Refine...]")
        }
        let pqToken = tokens[position]
        guard pqToken.hasPrefix("PQ") else {
            if pqToken == "Flat" { throw bad(position, "IVF<lists>,Flat is not supported; use Flat or a PQ encoding") }
            throw bad(position, "expected PQ<m>, PQ<m>x8 or PQ<m>x4fs")
        }
        var body = pqToken.dropFirst(2)
        var anisotropic: Float?
        if let marker = body.range(of: "_aq") {
            let text = body[marker.upperBound...]
            guard let t = Float(text), t.isFinite, t > 0, t <= ProductQuantizer.maximumAnisotropicThreshold else {
                throw bad(position, "expected _aq<T> with a threshold 0 < T <= 1e6 (ScaNN's anisotropic_quantization_threshold, e.g. _aq0.2), found '\(text)'")
            }
            guard metric == .innerProduct else {
                throw bad(position, "anisotropic quantization (_aq) is a loss for inner product; this index's metric is \(metric.rawValue)")
            }
            anisotropic = t
            body = body[..<marker.lowerBound]
        }
        var bits = 8
        if body.hasSuffix("x4fs") {
            bits = 4
            body = body.dropLast(4)
        } else if body.hasSuffix("x8") {
            body = body.dropLast(2)
        } else if body.hasSuffix("x4") {
            throw bad(position, "4-bit PQ is only offered as fast scan: write PQ<m>x4fs")
        }
        guard let m = Int(body), m >= 1 else { throw bad(position, "expected PQ<m> with a positive integer m") }
        guard dimension % m == 0 else { throw bad(position, "\(m) sub-quantizers do not divide the dimension \(dimension)") }
        position += 1
        var refine: RefineCodec.Kind?
        if position < tokens.count {
            let token = tokens[position]
            guard token.hasPrefix("Refine"), let kind = RefineCodec.Kind(rawValue: String(token.dropFirst(6))) else {
                throw bad(position, "expected RefineSQ8, RefineFP16 or RefineFlat")
            }
            refine = kind
            position += 1
        }
        guard position == tokens.count else { throw bad(position, "unexpected token after the end of the configuration") }
        return try IVFPQIndex(.init(dimension: dimension, metric: metric, opqSubquantizers: opq, lists: lists,
                                    subquantizers: m, bits: bits, refine: refine, anisotropicThreshold: anisotropic))
    }

    /// Writes `index` to `path` atomically (temporary file, fsync, rename).
    public static func save(_ index: any VectorIndex, to path: String) throws {
        try FileIO.writeAtomically(encoded(index), to: path)
    }

    /// Loads an index written by `save`, verifying every checksum and size.
    public static func load(from path: String) throws -> any VectorIndex {
        try load(try IndexFileReader(path: path))
    }

    /// Loads an index from the bytes of a file written by `save` (received over the wire);
    /// errors name `name` as the file.
    public static func load(bytes: [UInt8], name: String) throws -> any VectorIndex {
        try load(try IndexFileReader(bytes: bytes, path: name))
    }

    /// The trained-state version of `index`: CRC32C of its canonical encoding, as shards
    /// report it (the checksum of the `TRAINED` file they write).
    public static func trainedStateVersion(_ index: any VectorIndex) -> UInt64 {
        UInt64(encoded(index).withUnsafeBytes { pharos_crc32c(0, $0.baseAddress, $0.count) })
    }

    /// The bytes `save` would write.
    public static func encoded(_ index: any VectorIndex) -> [UInt8] {
        var writer = IndexFileWriter()
        writer.section("CONF") { w in
            w.write(index.factoryString)
            w.write(index.metric.rawValue)
            w.write(index.dimension)
        }
        index.encode(into: &writer)
        return writer.encoded()
    }

    private static func load(_ file: IndexFileReader) throws -> any VectorIndex {
        var reader = file
        var conf = try reader.section("CONF")
        let factory = try conf.readString()
        let metricName = try conf.readString()
        let dimension = try conf.readInt("dimension", in: 1...VectorFileReader.maximumDimension)
        try conf.expectEnd()
        guard let metric = Metric(rawValue: metricName) else { throw conf.corrupt("unknown metric '\(metricName)'") }
        let index = try make(factory, dimension: dimension, metric: metric)
        switch index {
        case let flat as FlatIndex: try flat.decode(from: &reader)
        case let ivf as IVFPQIndex: try ivf.decode(from: &reader)
        default: preconditionFailure("factory produced an unknown index type")
        }
        try reader.expectEnd()
        return index
    }

    private static func number(after prefix: String, in token: String) -> Int? {
        guard token.hasPrefix(prefix) else { return nil }
        return Int(token.dropFirst(prefix.count))
    }
}

private extension Substring {
    func trimmingCharacters() -> String {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

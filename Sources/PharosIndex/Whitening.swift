#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosVectors

/// A learned affine map applied to descriptors before they are indexed or searched:
/// `y = P (x - mean)` (`project`); a `VectorSpace` holding it then L2-normalises. Whitening de-correlates descriptor components and
/// evens out their variance, which is what makes inner products of CNN descriptors compare
/// well (Jégou and Chum 2012; Radenović et al. 2018).
///
/// Two ways to learn it:
/// - **PCA whitening** from a sample: eigenvectors of the covariance, each scaled by
///   `eigenvalue^-power` (power 0.5 is full whitening, 0 plain PCA), optionally shrunk toward the
///   mean eigenvalue and cut to the leading `outputDimension` components.
/// - **Learned whitening** from matching pairs (Radenović's "Lw"): whiten the intra-pair
///   difference covariance, then rotate onto the principal axes of the projected data.
///
/// Stored as a versioned, checksummed file (`serialized()`, `init(bytes:source:)`): a
/// `ChecksummedRecord` with magic `PHXWHITN` whose payload is
/// ```
/// u32 kind (1 PCA, 2 learned)   i64 input dimension   i64 output dimension
/// u32 power (f32 bits)          u32 shrinkage (f32 bits)
/// f32[input] mean               f32[output x input] projection, row-major (each count-prefixed)
/// ```
public struct Whitening: Sendable, Equatable {
    /// How the projection was learned.
    public enum Kind: UInt32, Sendable {
        /// PCA whitening of a descriptor sample.
        case pca = 1
        /// Whitening learned from matching pairs.
        case learnedFromPairs = 2
    }

    /// The format version this build writes and reads.
    public static let formatVersion: UInt32 = 1
    static let magic = "PHXWHITN"
    /// Largest dimension accepted, in and out: bounds the file and the work of learning.
    public static let maximumDimension = 16_384

    /// How it was learned.
    public let kind: Kind
    /// The sample mean subtracted first (`inputDimension` values).
    public let mean: [Float]
    /// `outputDimension x inputDimension`, row-major.
    public let projection: Matrix
    /// Eigenvalue power used (PCA).
    public let power: Float
    /// Shrinkage toward the mean eigenvalue used (PCA), in 0...1.
    public let shrinkage: Float

    /// Dimension of the descriptors it takes.
    public var inputDimension: Int { mean.count }
    /// Dimension of the descriptors it produces.
    public var outputDimension: Int { projection.rows }

    /// A whitening from its parts; checks that they fit together.
    public init(kind: Kind, mean: [Float], projection: Matrix, power: Float = 0.5, shrinkage: Float = 0) throws {
        guard projection.columns == mean.count else {
            throw IndexError.dimensionMismatch(expected: mean.count, found: projection.columns)
        }
        guard (1...Self.maximumDimension).contains(mean.count), (1...mean.count).contains(projection.rows) else {
            throw IndexError.invalidParameter(name: "whitening dimensions", value: "\(mean.count) -> \(projection.rows)",
                                              allowed: "1...\(Self.maximumDimension) in, 1...input out")
        }
        guard mean.allSatisfy(\.isFinite), projection.firstNonFinite() == nil else {
            throw IndexError.invalidParameter(name: "whitening", value: "non-finite values", allowed: "finite mean and projection")
        }
        self.kind = kind
        self.mean = mean
        self.projection = projection
        self.power = power
        self.shrinkage = shrinkage
    }

    // MARK: Learning

    /// PCA whitening of `sample` (one descriptor per row).
    /// - Parameters:
    ///   - outputDimension: components kept (default: all; when whitening, all within the rank).
    ///   - power: each component is scaled by `eigenvalue^-power`; 0.5 whitens fully.
    ///   - shrinkage: eigenvalues are replaced by `(1 - s) * lambda + s * mean(lambda)` before the
    ///     power, which keeps tiny, noisy components from being blown up.
    ///
    /// A centred sample of n vectors spans at most n - 1 directions (its rank). Whitening
    /// (`power` > 0) divides by the variance along each kept direction, so a direction past the
    /// rank, of variance near zero, would be blown up into pure noise: without shrinkage, such an
    /// output dimension is refused unless `allowBeyondRank`, and the default output dimension
    /// stays within the rank. Plain PCA (`power` 0) only projects, and shrinkage lifts the tiny
    /// eigenvalues, so either may keep any dimension.
    public static func learnPCA(_ sample: Matrix, outputDimension: Int? = nil, power: Float = 0.5, shrinkage: Float = 0,
                                allowBeyondRank: Bool = false) throws -> Whitening {
        let d = sample.columns
        let rank = Swift.max(1, Swift.min(d, sample.rows - 1))
        let risky = power > 0 && shrinkage == 0
        let out = outputDimension ?? (risky ? rank : d)
        try checkLearning(sample, outputDimension: out, power: power, shrinkage: shrinkage)
        if risky, out > rank, !allowBeyondRank {
            throw IndexError.invalidParameter(
                name: "whitening output dimension", value: "\(out)",
                allowed: "1...\(rank): \(sample.rows) vectors span at most \(rank) directions; use more vectors, a smaller output dimension, shrinkage, plain PCA (power 0), or force it")
        }
        let mean = VectorMath.columnMeans(sample)
        let centered = centeredRows(sample, mean: mean)
        var covariance = BLAS.multiplyTransposingFirst(centered, centered)
        let scale = 1 / Float(sample.rows - 1)
        for i in covariance.values.indices { covariance.values[i] *= scale }
        let (values, vectors) = try LinearAlgebra.symmetricEigen(covariance)
        let average = values.reduce(0, +) / Float(d)
        let floor = Swift.max(values[0], Float.leastNormalMagnitude) * 1e-9
        var projection = Matrix(rows: out, columns: d)
        for i in 0..<out {
            let lambda = Swift.max((1 - shrinkage) * values[i] + shrinkage * average, floor)
            let factor = power == 0 ? 1 : Float(pow(Double(lambda), Double(-power)))
            for j in 0..<d { projection.values[i * d + j] = vectors.values[i * d + j] * factor }
        }
        return try Whitening(kind: .pca, mean: mean, projection: projection, power: power, shrinkage: shrinkage)
    }

    /// Learned whitening from matching pairs (Radenović et al., "Fine-tuning CNN image retrieval
    /// with no human annotation", section 3.4): with `m` the mean of the pairs' first members and
    /// `C` the covariance of the pair differences, whiten by `C^-1/2`, then rotate onto the
    /// principal axes of the whitened sample, keeping `outputDimension` of them.
    /// - Parameter pairs: row indexes into `sample` of descriptors of the same instance.
    public static func learnFromPairs(_ sample: Matrix, pairs: [(Int, Int)], outputDimension: Int? = nil) throws -> Whitening {
        let d = sample.columns
        let out = outputDimension ?? d
        try checkLearning(sample, outputDimension: out, power: 0.5, shrinkage: 0)
        guard pairs.count >= 2 else { throw IndexError.notEnoughTrainingData(needed: 2, found: pairs.count, what: "learned whitening (pairs)") }
        if let bad = pairs.first(where: { !(0..<sample.rows).contains($0.0) || !(0..<sample.rows).contains($0.1) }) {
            throw IndexError.invalidParameter(name: "pair", value: "(\(bad.0), \(bad.1))", allowed: "row indexes 0..<\(sample.rows)")
        }
        let mean = VectorMath.columnMeans(sample.gathering(rows: pairs.map(\.0)))
        var differences = Matrix(rows: pairs.count, columns: d)
        for (r, (a, b)) in pairs.enumerated() {
            for j in 0..<d { differences.values[r * d + j] = sample.values[a * d + j] - sample.values[b * d + j] }
        }
        var intra = BLAS.multiplyTransposingFirst(differences, differences)
        for i in intra.values.indices { intra.values[i] /= Float(pairs.count) }
        // C^-1/2 by eigen-decomposition. Any P with P C P^T = I gives the same final map up to
        // signs, because the rotation that follows absorbs the difference.
        let (values, vectors) = try LinearAlgebra.symmetricEigen(intra)
        let floor = Swift.max(values[0], Float.leastNormalMagnitude) * 1e-6
        var scaled = vectors
        for i in 0..<d {
            let factor = 1 / Swift.max(values[i], floor).squareRoot()
            for j in 0..<d { scaled.values[i * d + j] *= factor }
        }
        let inverseRoot = BLAS.multiplyTransposingFirst(vectors, scaled)   // E^T diag(l^-1/2) E: symmetric
        let projected = BLAS.multiply(centeredRows(sample, mean: mean), inverseRoot)
        let (_, axes) = try LinearAlgebra.symmetricEigen(BLAS.multiplyTransposingFirst(projected, projected))
        let rotation = BLAS.multiply(axes.rows(0..<out), inverseRoot)
        return try Whitening(kind: .learnedFromPairs, mean: mean, projection: rotation, power: 0.5, shrinkage: 0)
    }

    private static func checkLearning(_ sample: Matrix, outputDimension out: Int, power: Float, shrinkage: Float) throws {
        let d = sample.columns
        guard (1...maximumDimension).contains(d) else {
            throw IndexError.invalidParameter(name: "descriptor dimension", value: "\(d)", allowed: "1...\(maximumDimension)")
        }
        guard (1...d).contains(out) else { throw IndexError.invalidParameter(name: "output dimension", value: "\(out)", allowed: "1...\(d)") }
        guard sample.rows >= 2 else { throw IndexError.notEnoughTrainingData(needed: 2, found: sample.rows, what: "whitening") }
        guard (0...2).contains(power) else { throw IndexError.invalidParameter(name: "power", value: "\(power)", allowed: "0...2") }
        guard (0...1).contains(shrinkage) else { throw IndexError.invalidParameter(name: "shrinkage", value: "\(shrinkage)", allowed: "0...1") }
        if let (row, column) = sample.firstNonFinite() { throw IndexError.nonFiniteValue(row: row, column: column) }
    }

    private static func centeredRows(_ m: Matrix, mean: [Float]) -> Matrix {
        var out = m
        for i in 0..<m.rows {
            for j in 0..<m.columns { out.values[i * m.columns + j] -= mean[j] }
        }
        return out
    }

    // MARK: Applying

    /// The affine map alone, `P (x - mean)`, for each row of `descriptors` (`inputDimension`
    /// columns). Not normalised: a `VectorSpace` with this whitening whitens and then
    /// normalises, and is the only place that composes the two.
    public func project(_ descriptors: Matrix) throws -> Matrix {
        guard descriptors.columns == inputDimension else {
            throw IndexError.dimensionMismatch(expected: inputDimension, found: descriptors.columns)
        }
        return BLAS.multiplyTransposed(Self.centeredRows(descriptors, mean: mean), projection)
    }

    /// The unit-norm space of descriptors this whitening produces: inner product, whitened,
    /// L2-normalised (how descriptor pipelines and `eval --database` use a whitening).
    public var descriptorSpace: VectorSpace {
        VectorSpace(checked: outputDimension, metric: .innerProduct, normalization: .l2, whitening: self)
    }

    // MARK: Storage

    /// The file form (see the type's documentation).
    public func serialized() -> [UInt8] {
        var w = ByteWriter()
        w.write(kind.rawValue)
        w.write(inputDimension)
        w.write(outputDimension)
        w.write(power.bitPattern)
        w.write(shrinkage.bitPattern)
        w.write(mean)
        w.write(projection.values)
        return ChecksummedRecord.encode(magic: Self.magic, version: Self.formatVersion, payload: w.bytes)
    }

    /// Reads the file form; errors name `source` and what is wrong.
    public init(bytes: [UInt8], source: String) throws {
        func corrupt(_ problem: String) -> IndexError { .corruptFile(path: source, problem: problem) }
        let payload: [UInt8]
        do {
            payload = try ChecksummedRecord.decode(bytes, magic: Self.magic, versions: Self.formatVersion...Self.formatVersion).payload
        } catch let damage as ChecksummedRecord.Damage {
            throw corrupt("not a usable whitening file: \(damage)")
        }
        var r = ByteReader(bytes: payload[...], path: source, tag: "whitening")
        let rawKind = try r.readUInt32()
        guard let kind = Kind(rawValue: rawKind) else { throw corrupt("kind \(rawKind), expected 1 (PCA) or 2 (learned from pairs)") }
        let input = try r.readInt("input dimension", in: 1...Self.maximumDimension)
        let output = try r.readInt("output dimension", in: 1...input)
        let power = Float(bitPattern: try r.readUInt32())
        let shrinkage = Float(bitPattern: try r.readUInt32())
        let mean = try r.readFloats("mean", expected: input)
        let projection = try r.readFloats("projection", expected: output * input)
        try r.expectEnd()
        do {
            try self.init(kind: kind, mean: mean, projection: Matrix(rows: output, columns: input, values: projection),
                          power: power, shrinkage: shrinkage)
        } catch let error as IndexError {
            throw corrupt("\(error)")
        }
    }

    /// Reads a whitening file.
    public static func load(_ path: String) throws -> Whitening {
        try Whitening(bytes: try FileIO.readWholeFile(path), source: path)
    }

    /// Writes the file atomically (temporary, fsync, rename, fsync of the directory).
    public func save(_ path: String) throws { try FileIO.writeAtomically(serialized(), to: path) }
}

extension Whitening {
    /// A pairs file that cannot be read, naming the file and line.
    public struct PairsFileError: Error, CustomStringConvertible {
        /// What is wrong, and where.
        public var description: String
    }

    /// Matching pairs for `learnFromPairs`: lines of two row numbers (0-based) of the same
    /// instance, separated by spaces, tabs or a comma; blank lines are skipped.
    public static func readPairs(_ path: String) throws -> [(Int, Int)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw PairsFileError(description: "cannot read \(path)") }
        var list: [(Int, Int)] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
            guard fields.count == 2, let a = Int(fields[0]), let b = Int(fields[1]) else {
                throw PairsFileError(description: "\(path):\(n + 1): expected two row numbers, found \(line.debugDescription)")
            }
            list.append((a, b))
        }
        return list
    }
}

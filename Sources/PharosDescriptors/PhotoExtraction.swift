import Foundation
import PharosDurability
import PharosIndex
import PharosVectors

/// A folder of photos described into files (`pharos extract`, `pharos ingest --images`):
/// `PREFIX.npy` or `.fvecs` (one global descriptor per readable photo), `PREFIX.keys` (the
/// photos' paths relative to the folder, in row order) and, with local features,
/// `PREFIX.local`. Unreadable photos are reported and skipped.
public struct PhotoExtraction: Sendable {
    /// What was written.
    public struct Output: Sendable, Equatable {
        /// The descriptor file.
        public var vectors: String
        /// The key file.
        public var keys: String
        /// Photos described.
        public var count: Int
        /// Photos skipped (unreadable), each reported.
        public var skipped: Int
    }

    /// The extractor (network, pooling, whitening, local features).
    public let extractor: DescriptorExtractor
    /// The 112 -> 40 PCA of local descriptors; nil learns one from the first photos.
    public let localPCA: Whitening?
    /// Photos described at once.
    public let threads: Int

    /// An extraction with `extractor`.
    public init(extractor: DescriptorExtractor, localPCA: Whitening? = nil, threads: Int) {
        self.extractor = extractor
        self.localPCA = localPCA
        self.threads = Swift.max(1, threads)
    }

    /// Photo files under `folder`, searched recursively, sorted, as (relative key, full path).
    public static func photos(in folder: String) throws -> [(key: String, path: String)] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw DescriptorError.badInput("--images \(folder): the folder does not exist")
        }
        guard isFolder.boolValue else { throw DescriptorError.badInput("--images \(folder): not a folder") }
        guard let walker = FileManager.default.enumerator(atPath: folder) else { throw DescriptorError.badInput("cannot read folder \(folder)") }
        var found: [(String, String)] = []
        while let relative = walker.nextObject() as? String {
            if ImageLoader.isPhoto(fileName: relative) { found.append((relative, folder + "/" + relative)) }
        }
        return found.sorted { $0.0 < $1.0 }
    }

    /// Describes every photo under `folder` into `prefix`.{`format`,keys[,local]}.
    /// `progress(done, total)` after each group of photos; `report` says what was skipped.
    public func run(folder: String, prefix: String, format: String,
                    progress: (Int, Int) -> Void = { _, _ in }, report: (String) -> Void = { _ in }) throws -> Output {
        guard ["npy", "fvecs"].contains(format) else { throw DescriptorError.badInput("--format \(format): expected npy or fvecs") }
        let files = try Self.photos(in: folder)
        guard !files.isEmpty else { throw DescriptorError.badInput("no .jpg, .jpeg or .png files under \(folder)") }
        let directory = (prefix as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let vectorPath = prefix + "." + format, keyPath = prefix + ".keys"
        let writer = try VectorFileWriter(path: vectorPath, dimension: extractor.dimension)
        let local = extractor.configuration.local != nil
        let localFile = local ? try LocalFeatureFile(writingTo: prefix + ".local") : nil
        var pca = localPCA
        var keys: [String] = [], skipped = 0, done = 0
        let chunk = threads * 8
        for start in stride(from: 0, to: files.count, by: chunk) {
            let batch = Array(files[start ..< Swift.min(files.count, start + chunk)])
            var results = [Result<DescriptorExtractor.Description, any Error>?](repeating: nil, count: batch.count)
            let extractor = self.extractor
            results.withSendablePointer { out in
                Parallel.forEachChunk(count: batch.count, chunkSize: 1, threads: threads) { range in
                    for i in range { out.pointer[i] = Result { try extractor.describe(path: batch[i].path) } }
                }
            }
            var described: [(String, DescriptorExtractor.Description)] = []
            for (i, result) in results.enumerated() {
                switch result {
                case let .success(description)?: described.append((batch[i].key, description))
                case let .failure(error)?:
                    skipped += 1
                    report("skipped \(batch[i].path): \(error)")
                case nil:
                    skipped += 1
                    report("skipped \(batch[i].path): not described")
                }
            }
            if let localFile {
                if pca == nil, !described.isEmpty {
                    pca = try Self.learnLocalPCA(described.compactMap(\.1.local), saveTo: prefix + ".local-pca.phxw", report: report)
                }
                for (key, description) in described {
                    guard let features = description.local, let pca else { continue }
                    try localFile.append(key: key, try features.projected(by: pca))
                }
            }
            if !described.isEmpty {
                try writer.write(Matrix(rows: described.count, columns: extractor.dimension, values: described.flatMap(\.1.global)))
            }
            keys += described.map(\.0)
            done += batch.count
            progress(done, files.count)
        }
        guard !keys.isEmpty else { throw DescriptorError.badInput("none of the \(files.count) images could be read") }
        try writer.finish()
        try localFile?.finish()
        try FileIO.writeAtomically(Array(keys.map { $0 + "\n" }.joined().utf8), to: keyPath)
        return Output(vectors: vectorPath, keys: keyPath, count: keys.count, skipped: skipped)
    }

    /// A 112 -> 40 PCA of local descriptors (at most 100,000 of them, evenly spaced), saved to `path`.
    public static func learnLocalPCA(_ features: [LocalFeatures], saveTo path: String, report: (String) -> Void = { _ in }) throws -> Whitening {
        let dimension = EfficientNetLite0.intermediateChannels
        let all = features.flatMap(\.descriptors)
        let rows = all.count / dimension
        guard rows > LocalFeatureExtractor.pcaDimension else {
            throw DescriptorError.badInput("too few local features in the first images (\(rows)) to learn their PCA: pass --local-pca")
        }
        let step = Swift.max(1, rows / 100_000)
        let sample = Matrix(rowArrays: stride(from: 0, to: rows, by: step).map { Array(all[$0 * dimension ..< ($0 + 1) * dimension]) })
        let pca = try Whitening.learnPCA(sample, outputDimension: LocalFeatureExtractor.pcaDimension, power: 0)
        try pca.save(path)
        report("learned the local-descriptor PCA (\(dimension) -> \(pca.outputDimension)) from \(sample.rows) features: \(path)")
        return pca
    }
}

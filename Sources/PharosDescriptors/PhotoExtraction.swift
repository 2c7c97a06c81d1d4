import Foundation
import PharosDurability
import PharosIndex
import PharosVectors

/// Photos described into files (`pharos extract`): `PREFIX.npy` or `.fvecs` (one global
/// descriptor per readable photo), `PREFIX.keys` (the photos' keys in row order) and, with local
/// features, `PREFIX.local`, appended after every group so that a rerun resumes where a stopped
/// one ended (`ExtractionFiles`). Unreadable photos are reported, listed in `PREFIX.errors.tsv`
/// and skipped.
public struct PhotoExtraction: Sendable {
    /// What was written.
    public struct Output: Sendable, Equatable {
        /// The descriptor file.
        public var vectors: String
        /// The key file.
        public var keys: String
        /// The errors file (this run's skipped photos).
        public var errors: String
        /// Photos the files hold (from earlier runs and this one).
        public var count: Int
        /// Photos this run described.
        public var described: Int
        /// Photos an earlier run had already described (skipped without decoding).
        public var resumed: Int
        /// Photos this run skipped (unreadable), each reported.
        public var skipped: Int
    }

    /// The extractor (network, pooling, whitening, local features).
    public let extractor: DescriptorExtractor
    /// The 112 -> 40 PCA of local descriptors; nil learns one from the first photos.
    public let localPCA: Whitening?
    /// Photos described at once.
    public let threads: Int
    /// Photos committed to the files at a time.
    public let groupSize: Int

    /// An extraction with `extractor`.
    public init(extractor: DescriptorExtractor, localPCA: Whitening? = nil, threads: Int, groupSize: Int = 64) {
        self.extractor = extractor
        self.localPCA = localPCA
        self.threads = Swift.max(1, threads)
        self.groupSize = Swift.max(1, groupSize)
    }

    /// Photo files under `folder`, searched recursively, sorted, as (relative key, full path).
    public static func photos(in folder: String) throws -> [(key: String, path: String)] {
        try PhotoList.scan(folder: folder).map { ($0.key, $0.path) }
    }

    /// Describes the photos not yet in `prefix`'s files and appends them, a group at a time.
    /// `settings` name how descriptors are made (files made otherwise are refused); `restart`
    /// starts the files over. `progress(done, total)` after each group; `report` says what was
    /// skipped.
    public func run(photos: [Photo], prefix: String, format: String, settings: [String: String], restart: Bool = false,
                    progress: @escaping (Int, Int) -> Void = { _, _ in }, report: @escaping (String) -> Void = { _ in }) async throws -> Output {
        guard !photos.isEmpty else { throw DescriptorError.badInput("no photos to describe") }
        let files = try ExtractionFiles(prefix: prefix, format: format, dimension: extractor.dimension, settings: settings,
                                        local: extractor.configuration.local != nil, restart: restart)
        defer { files.close() }
        let todo = PhotoList.remaining(photos, done: Set(files.keys)) { photo, reason in
            files.recordSkipped(path: photo.path, reason: reason)
            report("skipped \(photo.path): \(reason)")
        }
        let resumed = photos.count - todo.count - files.skipped
        if resumed > 0 { report("resuming: \(resumed) of \(photos.count) photos are already in \(files.keyPath)") }
        var pca = localPCA
        if pca == nil, extractor.configuration.local != nil, FileManager.default.fileExists(atPath: files.localPCAPath) {
            pca = try Whitening.load(files.localPCAPath)
        }
        let pipeline = PhotoPipeline(extractor: extractor, photos: todo, threads: threads, groupSize: groupSize, groupsHeld: 1)
        var handled = photos.count - todo.count, described = 0
        progress(handled, photos.count)
        do {
            for await group in pipeline.groups() {
                var good: [(key: String, description: DescriptorExtractor.Description)] = []
                for item in group {
                    switch item.result {
                    case let .success(description): good.append((item.photo.key, description))
                    case let .failure(failure):
                        files.recordSkipped(path: item.photo.path, reason: failure.reason)
                        report("skipped \(failure)")
                    }
                }
                if extractor.configuration.local != nil, pca == nil, !good.isEmpty {
                    pca = try Self.learnLocalPCA(good.compactMap(\.description.local), saveTo: files.localPCAPath, report: report)
                }
                try files.append(good, localPCA: pca)
                described += good.count
                handled += group.count
                pipeline.release(group.count)
                progress(handled, photos.count)
            }
        } catch {
            pipeline.stop()
            throw error
        }
        guard !files.keys.isEmpty else { throw DescriptorError.badInput("none of the \(photos.count) photos could be read (see \(files.errorsPath))") }
        return Output(vectors: files.vectorPath, keys: files.keyPath, errors: files.errorsPath, count: files.keys.count,
                      described: described, resumed: resumed, skipped: files.skipped)
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

import PharosDurability
import ArgumentParser
import Foundation
import PharosCommandLine
import PharosDescriptors
import PharosIndex
import PharosVectors

/// How images become descriptors: shared by `pharos extract` and `pharos ingest --images`.
struct ExtractionOptions: ParsableArguments {
    @Option(help: "Folder of photos (JPEG, PNG), searched recursively; keys are paths relative to it.") var images: String?
    @Option(help: "Global pooling: gem, mac, spoc, crow, rmac.") var pooling: String = "gem"
    @Option(help: "GeM power p.") var gemPower: Float = 3
    @Flag(help: "Extract at scales 1, 1/sqrt(2), 1/2 and combine.") var multiscale = false
    @Option(help: "R-MAC levels (region scales).") var rmacLevels: Int = 3
    @Option(help: "R-MAC: a whitening applied to each L2-normalised region vector before the sum (PHXWHITN, 1280-D input).") var regionWhitening: String?
    @Option(help: "A whitening file (PHXWHITN, from `pharos whiten learn`) applied to every global descriptor.") var whiten: String?
    @Flag(help: "Also extract DELF-style local features (PREFIX.local).") var local = false
    @Option(help: "PCA for local descriptors (112 -> 40); default: learned from the first images and saved as PREFIX.local-pca.phxw.") var localPca: String?
    @Option(help: "Local features kept per image.") var maxKeypoints: Int = 1000
    @Option(help: "Longer image side the network sees (larger images are shrunk).") var maxSide: Int = 1024
    @Option(help: "Images processed at once.") var threads: Int = Parallel.defaultThreads
    @Option(help: "The EfficientNet-Lite0 weights (.pth); default $PHAROS_WEIGHTS or the package installed by Scripts/install-deps.sh.") var weights: String?

    /// Photo files under `folder`, sorted, as (relative key, full path).
    static func photos(in folder: String) throws -> [(key: String, path: String)] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw ValidationError("--images \(folder): the folder does not exist")
        }
        guard isFolder.boolValue else { throw ValidationError("--images \(folder): not a folder") }
        guard let walker = FileManager.default.enumerator(atPath: folder) else { throw ValidationError("cannot read folder \(folder)") }
        var found: [(String, String)] = []
        while let relative = walker.nextObject() as? String {
            if ImageLoader.isPhoto(fileName: relative) { found.append((relative, folder + "/" + relative)) }
        }
        return found.sorted { $0.0 < $1.0 }
    }

    func extractor() throws -> DescriptorExtractor {
        guard let method = PoolingMethod(rawValue: pooling) else {
            throw ValidationError("--pooling \(pooling): expected one of \(PoolingMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let network = try weights.map { try EfficientNetLite0(weightsPath: $0) } ?? EfficientNetLite0()
        var configuration = DescriptorExtractor.Configuration(pooling: method, multiscale: multiscale, maximumSide: maxSide,
                                                              whitening: try whiten.map(Whitening.load))
        configuration.poolingOptions.gemPower = gemPower
        configuration.poolingOptions.rmacLevels = rmacLevels
        configuration.poolingOptions.regionWhitening = try regionWhitening.map(Whitening.load)
        if local { configuration.local = .init(maximumKeypoints: maxKeypoints) }
        return try DescriptorExtractor(network: network, configuration: configuration)
    }

    /// Extracts every photo under `images` into `prefix`.{npy|fvecs,keys[,local]}; unreadable
    /// images are reported by path and skipped. Returns the vector file, key file and count.
    func run(prefix: String, format: String) throws -> (vectors: String, keys: String, count: Int) {
        guard let images else { throw ValidationError("--images is required") }
        guard ["npy", "fvecs"].contains(format) else { throw ValidationError("--format \(format): expected npy or fvecs") }
        let files = try Self.photos(in: images)
        guard !files.isEmpty else { throw ValidationError("no .jpg, .jpeg or .png files under \(images)") }
        let extractor = try self.extractor()
        let directory = (prefix as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let vectorPath = prefix + "." + format, keyPath = prefix + ".keys"
        let writer = try VectorFileWriter(path: vectorPath, dimension: extractor.dimension)
        let localFile = local ? try LocalFeatureFile(writingTo: prefix + ".local") : nil
        var pca = try localPca.map(Whitening.load)
        var keys: [String] = [], skipped = 0
        let bar = ProgressBar("extract", total: files.count)
        let chunk = Swift.max(1, threads) * 8
        var done = 0
        for start in stride(from: 0, to: files.count, by: chunk) {
            let batch = Array(files[start ..< Swift.min(files.count, start + chunk)])
            var results = [Result<DescriptorExtractor.Description, any Error>?](repeating: nil, count: batch.count)
            results.withSendablePointer { out in
                Parallel.forEachChunk(count: batch.count, chunkSize: 1, threads: threads) { range in
                    for i in range { out.pointer[i] = Result { try extractor.describe(path: batch[i].path) } }
                }
            }
            var described: [(String, DescriptorExtractor.Description)] = []
            for (i, result) in results.enumerated() {
                switch result! {
                case let .success(description): described.append((batch[i].key, description))
                case let .failure(error):
                    skipped += 1
                    printError("skipped \(batch[i].path): \(error)")
                }
            }
            if let localFile {
                if pca == nil, !described.isEmpty {
                    pca = try Self.learnLocalPCA(described.compactMap(\.1.local), saveTo: prefix + ".local-pca.phxw")
                }
                for (key, description) in described { try localFile.append(key: key, try description.local!.projected(by: pca!)) }
            }
            if !described.isEmpty {
                try writer.write(Matrix(rows: described.count, columns: extractor.dimension, values: described.flatMap(\.1.global)))
            }
            keys += described.map(\.0)
            done += batch.count
            bar.update(done)
        }
        guard !keys.isEmpty else { throw ValidationError("none of the \(files.count) images could be read") }
        try writer.finish()
        try localFile?.finish()
        try FileIO.writeAtomically(Array(keys.map { $0 + "\n" }.joined().utf8), to: keyPath)
        bar.finish()
        if skipped > 0 { printError("\(skipped) of \(files.count) images skipped (listed above)") }
        return (vectorPath, keyPath, keys.count)
    }

    /// A 112 -> 40 PCA of local descriptors (at most 100,000 of them, evenly spaced).
    static func learnLocalPCA(_ features: [LocalFeatures], saveTo path: String) throws -> Whitening {
        let dimension = EfficientNetLite0.intermediateChannels
        let all = features.flatMap(\.descriptors)
        let rows = all.count / dimension
        guard rows > LocalFeatureExtractor.pcaDimension else {
            throw ValidationError("too few local features in the first images (\(rows)) to learn their PCA: pass --local-pca")
        }
        let step = Swift.max(1, rows / 100_000)
        let sample = Matrix(rowArrays: stride(from: 0, to: rows, by: step).map { Array(all[$0 * dimension ..< ($0 + 1) * dimension]) })
        let pca = try Whitening.learnPCA(sample, outputDimension: LocalFeatureExtractor.pcaDimension, power: 0)
        try pca.save(path)
        printError("learned the local-descriptor PCA (\(dimension) -> \(pca.outputDimension)) from \(sample.rows) features: \(path)")
        return pca
    }
}

/// `pharos extract`: photos to descriptor files.
struct ExtractCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "extract", abstract: "Extract global descriptors (and local features) from a folder of photos.",
        discussion: """
            Writes PREFIX.npy (or .fvecs): one L2-normalised descriptor per readable image (1280-D, \
            or the whitening's output dimension); PREFIX.keys: the images' paths relative to \
            --images, one per line, in row order; with --local, PREFIX.local (keypoints and 40-D \
            descriptors per image). Unreadable or corrupt images are reported by path and skipped.
            """)

    @OptionGroup var extraction: ExtractionOptions
    @Option(help: "Output prefix.") var out: String
    @Option(help: "Descriptor file format: npy or fvecs.") var format: String = "npy"

    func run() throws {
        let clock = Date()
        let (vectors, keys, count) = try extraction.run(prefix: out, format: format)
        print(String(format: "extracted %d images in %.1f s (%.2f images/s): %@, %@%@", count, Date().timeIntervalSince(clock),
                     Double(count) / Date().timeIntervalSince(clock), vectors, keys, extraction.local ? ", \(out).local" : ""))
    }
}

/// `pharos whiten learn`: learns a whitening from descriptors.
struct WhitenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "whiten", abstract: "Learn whitenings.", subcommands: [Learn.self])

    struct Learn: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "learn", abstract: "Learn a PCA whitening (or, with --pairs, a whitening from matching pairs).")

        @Option(help: "Descriptors (.npy/.fvecs), one per row.") var descriptors: String
        @Option(help: "Matching pairs: lines of two row numbers (0-based) of the same instance; learns Radenović's whitening.") var pairs: String?
        @Option(help: "Output dimension (default: the input's).") var dimension: Int?
        @Option(help: "PCA: eigenvalue power (0.5 whitens fully, 0 is plain PCA).") var power: Float = 0.5
        @Option(help: "PCA: shrinkage of the eigenvalues toward their mean, 0...1.") var shrinkage: Float = 0
        @Option(help: "The whitening file to write.") var out: String

        func run() throws {
            let sample = try VectorFileReader(path: descriptors).readAll()
            let whitening: Whitening
            if let pairs {
                guard let text = try? String(contentsOfFile: pairs, encoding: .utf8) else { throw ValidationError("cannot read \(pairs)") }
                var list: [(Int, Int)] = []
                for (n, line) in text.split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                    let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," })
                    guard fields.count == 2, let a = Int(fields[0]), let b = Int(fields[1]) else {
                        throw ValidationError("\(pairs):\(n + 1): expected two row numbers, found \(line.debugDescription)")
                    }
                    list.append((a, b))
                }
                whitening = try Whitening.learnFromPairs(sample, pairs: list, outputDimension: dimension)
            } else {
                whitening = try Whitening.learnPCA(sample, outputDimension: dimension, power: power, shrinkage: shrinkage)
            }
            try whitening.save(out)
            print("learned \(whitening.kind == .pca ? "PCA" : "pair") whitening \(whitening.inputDimension) -> \(whitening.outputDimension) from \(sample.rows) descriptors: \(out)")
        }
    }
}

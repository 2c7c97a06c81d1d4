import ArgumentParser
import Foundation
import PharosCommandLine
import PharosDescriptors
import PharosDurability
import PharosEvaluation
import PharosIndex
import PharosVectors

/// How images become descriptors: shared by `pharos extract` and `pharos ingest --images`.
struct ExtractionOptions: ParsableArguments {
    @Option(help: "Folder of photos (JPEG, PNG), searched recursively; keys are paths relative to it.") var images: String?
    @Option(help: "A file naming the photos, one path per line (keys are the lines as written; relative paths are read from --images when given).")
    var imageList: String?
    @Option(help: "Only part I of N (1 <= I <= N) of the photos: N machines each run one part; a photo's part is fixed by a hash of its key.")
    var part: String?
    @Option(help: "Global pooling: gem, mac, spoc, crow, rmac.") var pooling: String = "gem"
    @Option(help: "GeM power p.") var gemPower: Float = 3
    @Flag(help: "Extract at scales 1, 1/sqrt(2), 1/2 and combine.") var multiscale = false
    @Option(help: "R-MAC levels (region scales).") var rmacLevels: Int = 3
    @Option(help: "R-MAC: a whitening applied to each L2-normalised region vector before the sum (PHXWHITN, 1280-D input).") var regionWhitening: String?
    @Option(help: "A whitening file (PHXWHITN, from `pharos whiten learn`) applied to every global descriptor.") var whitening: String?
    @Flag(help: "Also extract DELF-style local features (PREFIX.local).") var local = false
    @Option(help: "PCA for local descriptors (112 -> 40); default: learned from the first images and saved as PREFIX.local-pca.phxw.") var localPca: String?
    @Option(help: "Local features kept per image.") var maxKeypoints: Int = 1000
    // 512 by evidence (Benchmarks/RESULTS.md, "Defaults by evidence"): on real multi-view photos
    // it ranks as well as 1024 in 0.64x of the time, and held-out landmark photos ranked clearly
    // worse at 1024; this ImageNet-224 network sees places best near its training scale.
    @Option(help: "Longer image side the network sees (larger images are shrunk).") var maxSide: Int = 512
    @Option(help: "Images processed at once (1...256).") var threads: Int = Parallel.defaultThreads
    @Option(help: "The EfficientNet-Lite0 weights (.pth); default $PHAROS_WEIGHTS or the package installed by Scripts/install-deps.sh.") var weights: String?

    func validate() throws {
        guard (1...256).contains(threads) else { throw ValidationError("--threads \(threads): expected 1...256") }
        guard (EfficientNetLite0.minimumSide...EfficientNetLite0.maximumSide).contains(maxSide) else {
            throw ValidationError("--max-side \(maxSide): expected \(EfficientNetLite0.minimumSide)...\(EfficientNetLite0.maximumSide)")
        }
    }

    func extractor() throws -> DescriptorExtractor {
        guard let method = PoolingMethod(rawValue: pooling) else {
            throw ValidationError("--pooling \(pooling): expected one of \(PoolingMethod.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let network = try weights.map { try EfficientNetLite0(weightsPath: $0) } ?? EfficientNetLite0()
        var configuration = DescriptorExtractor.Configuration(pooling: method, multiscale: multiscale, maximumSide: maxSide,
                                                              whitening: try whitening.map(Whitening.load))
        configuration.poolingOptions.gemPower = gemPower
        configuration.poolingOptions.rmacLevels = rmacLevels
        configuration.poolingOptions.regionWhitening = try regionWhitening.map(Whitening.load)
        if local { configuration.local = .init(maximumKeypoints: maxKeypoints) }
        return try DescriptorExtractor(network: network, configuration: configuration)
    }

    /// The photos to describe: the folder's or the list's, sorted, this part's only.
    func photos() throws -> [Photo] {
        let part = try self.part.map(PhotoPart.init(parsing:)) ?? .whole
        let all: [Photo]
        if let imageList {
            all = try PhotoList.read(listFile: imageList, root: images)
        } else if let images {
            all = try PhotoList.scan(folder: images)
            guard !all.isEmpty else { throw DescriptorError.badInput("no .jpg, .jpeg or .png files under \(images)") }
        } else {
            throw ValidationError("give --images DIR (a folder of photos) or --image-list FILE")
        }
        let mine = all.filter { part.contains($0.key) }
        guard !mine.isEmpty else { throw DescriptorError.badInput("part \(part) of the \(all.count) photos is empty") }
        return mine
    }

    /// What the descriptors depend on: a resumed run must match it (files of other settings
    /// are refused rather than mixed).
    func settings(dimension: Int) throws -> [String: String] {
        let weightsPath = weights ?? EfficientNetLite0.defaultWeightsPath
        var settings = [
            "pooling": pooling, "gem_power": "\(gemPower)", "multiscale": "\(multiscale)", "max_side": "\(maxSide)",
            "whitening": try ExtractionFiles.fingerprint(of: whitening), "dimension": "\(dimension)",
            "weights": try ExtractionFiles.fingerprint(of: weightsPath),
        ]
        if pooling == "rmac" {
            settings["rmac_levels"] = "\(rmacLevels)"
            settings["region_whitening"] = try ExtractionFiles.fingerprint(of: regionWhitening)
        }
        if local {
            settings["local_keypoints"] = "\(maxKeypoints)"
            settings["local_pca"] = try ExtractionFiles.fingerprint(of: localPca)
        }
        return settings
    }

    /// Describes the photos not yet in `prefix`'s files into them (`PhotoExtraction`):
    /// resumable, unreadable photos reported and listed in PREFIX.errors.tsv.
    func run(prefix: String, format: String, restart: Bool) throws -> PhotoExtraction.Output {
        do {
            let photos = try self.photos()
            let extractor = try self.extractor()
            let extraction = PhotoExtraction(extractor: extractor, localPCA: try localPca.map(Whitening.load), threads: threads)
            let settings = try self.settings(dimension: extractor.dimension)
            let bar = ProgressBar("extract", total: photos.count, baselineFromFirstUpdate: true)
            let output = try runBlocking {
                try await extraction.run(photos: photos, prefix: prefix, format: format, settings: settings, restart: restart,
                                         progress: { bar.update($0, of: $1) }, report: printError)
            }
            bar.finish()
            if output.skipped > 0 { printError("\(output.skipped) photos skipped, listed in \(output.errors)") }
            return output
        } catch let error as DescriptorError {
            throw ValidationError(error.description)
        } catch let error as VectorFileError {
            throw ValidationError(error.description)
        }
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
            descriptors per image). Unreadable or corrupt images are reported by path, listed in \
            PREFIX.errors.tsv and skipped. The files are appended in place a group of photos at a \
            time and are valid after every group: run the same command again after a stop (Ctrl-C, \
            kill -9, a reboot) and it goes on with the photos not yet described; PREFIX.extract.json \
            records the settings, and other settings are refused (--restart starts over).
            """)

    @OptionGroup var extraction: ExtractionOptions
    @Option(help: "Output prefix.") var out: String
    @Option(help: "Descriptor file format: npy or fvecs.") var format: String = "npy"
    @Flag(help: "Remove the outputs of an earlier run first instead of resuming it.") var restart = false
    @Option(help: "Describe only the query images of this ground truth (pharos eval's JSON), each cropped to its box (bbx) when it has one, as the revisited protocol does; keys are the query keys (an image is KEY, or KEY.jpg/.jpeg/.png, under --images).")
    var queriesOf: String?

    func validate() throws {
        if queriesOf != nil {
            guard extraction.images != nil else { throw ValidationError("--queries-of needs --images (the folder the query keys are relative to)") }
            guard extraction.imageList == nil, extraction.part == nil, !extraction.local else {
                throw ValidationError("--queries-of describes the ground truth's queries only: no --image-list, --part or --local")
            }
        }
    }

    func run() throws {
        if let queriesOf { return try describeQueries(of: queriesOf) }
        let clock = Date()
        let output = try extraction.run(prefix: out, format: format, restart: restart)
        let seconds = Date().timeIntervalSince(clock)
        let resumed = output.resumed > 0 ? "; the files hold \(output.count), \(output.resumed) described by an earlier run" : ""
        print(String(format: "extracted %d images in %.1f s (%.2f images/s): %@, %@%@%@", output.described, seconds,
                     Double(output.described) / seconds, output.vectors, output.keys, extraction.local ? ", \(out).local" : "", resumed))
    }
}

extension ExtractCommand {
    /// `--queries-of`: the ground truth's query images, cropped to their boxes, described into
    /// PREFIX.npy and PREFIX.keys (written whole and renamed into place: a few dozen images).
    /// A query photo that cannot be read stops the run: an evaluation without it would be wrong.
    private func describeQueries(of groundTruth: String) throws {
        let clock = Date()
        let truth = try RetrievalGroundTruth.load(groundTruth)
        let root = extraction.images ?? "."
        let extractor: DescriptorExtractor
        var rows: [Float] = []
        var cropped = 0
        do {
            extractor = try extraction.extractor()
            for query in truth.queries {
                guard !query.key.contains("\n") else {
                    throw ValidationError("\(groundTruth): query key \(query.key.debugDescription) holds a line break (keys files are one per line)")
                }
                let photo = try PhotoList.queryPhoto(key: query.key, root: root)
                do {
                    let description = try query.box.map { box in
                        cropped += 1
                        return try extractor.describe(path: photo.path, box: box)
                    } ?? extractor.describe(path: photo.path)
                    rows += description.global
                } catch let error as DescriptorError {
                    throw ValidationError("query \(query.key.debugDescription) (\(photo.path)): \(error)")
                }
            }
        } catch let error as DescriptorError {
            throw ValidationError(error.description)
        }
        let vectors = out + "." + format
        let writer = try VectorFileWriter(path: vectors, dimension: extractor.dimension)
        try writer.write(Matrix(rows: truth.queries.count, columns: extractor.dimension, values: rows))
        try writer.finish()
        let keys = out + ".keys"
        try FileIO.writeAtomically(Array(truth.queries.map { $0.key + "\n" }.joined().utf8), to: keys)
        print(String(format: "described %d queries (%d cropped to their box) in %.1f s: %@, %@", truth.queries.count, cropped,
                     Date().timeIntervalSince(clock), vectors, keys))
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
        @Option(help: "Output dimension (default: the input's, or the sample's rank, vectors - 1, when that is smaller).") var dimension: Int?
        @Option(help: "PCA: eigenvalue power (0.5 whitens fully, 0 is plain PCA).") var power: Float = 0.5
        @Option(help: "PCA: shrinkage of the eigenvalues toward their mean, 0...1.") var shrinkage: Float = 0
        @Option(help: "The whitening file to write.") var out: String
        @Flag(help: "Whiten beyond the sample's rank (more output dimensions than vectors - 1): those directions are noise blown up.")
        var force = false

        func run() throws {
            let sample = try VectorFileReader(path: descriptors).readAll()
            let whitening: Whitening
            if let pairs {
                do { whitening = try Whitening.learnFromPairs(sample, pairs: try Whitening.readPairs(pairs), outputDimension: dimension) }
                catch let error as Whitening.PairsFileError { throw ValidationError(error.description) }
            } else {
                let rank = min(sample.columns, sample.rows - 1)
                if power > 0, shrinkage == 0, let dimension, dimension > rank {
                    guard force else {
                        throw ValidationError("--dimension \(dimension): \(sample.rows) descriptors span at most \(rank) directions, and whitening the others would blow noise up; give more descriptors, --dimension \(max(1, rank)) or less, --shrinkage, --power 0, or --force")
                    }
                    printError("warning: whitening \(dimension) dimensions from \(sample.rows) descriptors (rank \(rank)): the last \(dimension - rank) are noise (--force)")
                }
                whitening = try Whitening.learnPCA(sample, outputDimension: dimension, power: power, shrinkage: shrinkage, allowBeyondRank: force)
            }
            try whitening.save(out)
            print("learned \(whitening.kind == .pca ? "PCA" : "pair") whitening \(whitening.inputDimension) -> \(whitening.outputDimension) from \(sample.rows) descriptors: \(out)")
        }
    }
}

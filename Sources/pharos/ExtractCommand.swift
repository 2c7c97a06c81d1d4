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
    @Option(help: "A whitening file (PHXWHITN, from `pharos whiten learn`) applied to every global descriptor.") var whitening: String?
    @Flag(help: "Also extract DELF-style local features (PREFIX.local).") var local = false
    @Option(help: "PCA for local descriptors (112 -> 40); default: learned from the first images and saved as PREFIX.local-pca.phxw.") var localPca: String?
    @Option(help: "Local features kept per image.") var maxKeypoints: Int = 1000
    @Option(help: "Longer image side the network sees (larger images are shrunk).") var maxSide: Int = 1024
    @Option(help: "Images processed at once.") var threads: Int = Parallel.defaultThreads
    @Option(help: "The EfficientNet-Lite0 weights (.pth); default $PHAROS_WEIGHTS or the package installed by Scripts/install-deps.sh.") var weights: String?

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

    /// Extracts every photo under `images` into `prefix`.{npy|fvecs,keys[,local]}
    /// (`PhotoExtraction`); unreadable images are reported by path and skipped.
    func run(prefix: String, format: String) throws -> (vectors: String, keys: String, count: Int) {
        guard let images else { throw ValidationError("--images is required") }
        let extraction = PhotoExtraction(extractor: try extractor(), localPCA: try localPca.map(Whitening.load), threads: threads)
        let bar = ProgressBar("extract", total: 0)
        let output: PhotoExtraction.Output
        do {
            output = try extraction.run(folder: images, prefix: prefix, format: format, progress: { bar.update($0, of: $1) }, report: printError)
        } catch let error as DescriptorError {
            throw ValidationError(error.description)
        }
        bar.finish()
        if output.skipped > 0 { printError("\(output.skipped) of \(output.count + output.skipped) images skipped (listed above)") }
        return (output.vectors, output.keys, output.count)
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

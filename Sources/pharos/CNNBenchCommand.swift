import ArgumentParser
import Foundation
import PharosCommandLine
import PharosDescriptors
import PharosVectors

/// `pharos cnn-bench`: images per second of the Swift forward pass on decoded photos at a fixed
/// resolution (Benchmarks/cnn.sh runs it side by side with PyTorch on the same images).
struct CNNBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cnn-bench", abstract: "Time the EfficientNet-Lite0 forward pass (images/s) on photos resized to a fixed size.")

    @Option(help: "Folder of photos.") var images: String
    @Option(help: "Use the first N photos (sorted by path).") var count: Int = 16
    @Option(help: "Input height.") var height: Int = 384
    @Option(help: "Input width.") var width: Int = 512
    @Option(help: "Threads (images run in parallel, one per thread).") var threads: Int = 1
    @Option(help: "Timed passes over the images; the median is reported.") var rounds: Int = 3
    @Option(help: "The weights (.pth).") var weights: String?

    func run() throws {
        let network = try weights.map { try EfficientNetLite0(weightsPath: $0) } ?? EfficientNetLite0()
        let files = try ExtractionOptions.photos(in: images).prefix(count)
        guard !files.isEmpty else { throw ValidationError("no photos under \(images)") }
        let inputs = try files.map { file in
            EfficientNetLite0.normalizedInput(ImageResampler.resize(try ImageLoader.load(path: file.path), height: height, width: width))
        }
        _ = try network.forward(inputs[0], intermediate: false)   // warm-up: page in weights, size caches
        var rates: [Double] = []
        for _ in 0..<max(1, rounds) {
            let clock = Date()
            Parallel.forEachChunk(count: inputs.count, chunkSize: 1, threads: threads) { range in
                for i in range { _ = try? network.forward(inputs[i], intermediate: false) }
            }
            rates.append(Double(inputs.count) / Date().timeIntervalSince(clock))
        }
        print(String(format: "pharos %d images %dx%d threads %d: %.2f images/s (median of %d)", inputs.count, width, height, threads,
                     rates.median, rates.count))
    }
}

import Foundation
import PharosDescriptors
import PharosVectors

/// The forward pass's speed (`pharos cnn-bench`): images per second of EfficientNet-Lite0 on
/// decoded photos at a fixed resolution (Benchmarks/cnn.sh runs it side by side with PyTorch on
/// the same images).
public struct CNNBenchmark: Sendable {

    /// Folder of photos.
    public var images: String
    /// Use the first N photos (sorted by path).
    public var count: Int = 16
    /// Input height.
    public var height: Int = 384
    /// Input width.
    public var width: Int = 512
    /// Threads (images run in parallel, one per thread).
    public var threads: Int = 1
    /// Timed passes over the images; the median is reported.
    public var rounds: Int = 3
    /// The weights (.pth).
    public var weights: String?

    /// A benchmark of the photos under `images`.
    public init(images: String) { self.images = images }

    /// Runs it; the result line.
    public func run() throws -> String {
        let network = try weights.map { try EfficientNetLite0(weightsPath: $0) } ?? EfficientNetLite0()
        let files = try PhotoExtraction.photos(in: images).prefix(count)
        guard !files.isEmpty else { throw DescriptorError.badInput("no photos under \(images)") }
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
        return String(format: "pharos %d images %dx%d threads %d: %.2f images/s (median of %d)", inputs.count, width, height, threads,
                     rates.median, rates.count)
    }
}

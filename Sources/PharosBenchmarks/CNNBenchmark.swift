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
    /// Also time every stage of the network (one thread, one pass over the images, after the
    /// timed rounds) and add the table to the result.
    public var profile = false

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
        let rate = rates.median
        let flops = 2 * Double(network.multiplyAdds(height: height, width: width))
        let peak = Self.gemmPeak(threads: threads)
        let line = String(format: "pharos %d images %dx%d threads %d: %.2f images/s (median of %d); %.3f GFLOP per image, %.1f GFLOP/s, %.0f%% of the %.1f GFLOP/s SGEMM peak on %d threads (OpenBLAS %@ kernels)",
                          inputs.count, width, height, threads, rate, rates.count, flops / 1e9, rate * flops / 1e9,
                          100 * rate * flops / peak, peak / 1e9, threads, BLAS.coreName)
        guard profile else { return line }
        let stages = ForwardProfile()
        for input in inputs { _ = try network.forward(input, intermediate: false, profile: stages) }
        return line + "\n" + Self.table(stages, images: inputs.count, onePeak: Self.gemmPeak(threads: 1))
    }

    /// The profile as a Markdown table: milliseconds per image, share of the total, GFLOP/s of
    /// the stages that multiply, against one thread's SGEMM peak.
    static func table(_ profile: ForwardProfile, images: Int, onePeak: Double) -> String {
        let stages = profile.stages
        let total = stages.reduce(0) { $0 + $1.stage.seconds }
        var lines = ["| stage (one thread) | ms per image | share | GFLOP per image | GFLOP/s | of SGEMM peak |", "|---|---|---|---|---|---|"]
        for (name, stage) in stages {
            let gflop = 2 * Double(stage.multiplyAdds) / Double(images) / 1e9
            let rate = stage.seconds > 0 ? 2 * Double(stage.multiplyAdds) / stage.seconds / 1e9 : 0
            lines.append(String(format: "| %@ | %.2f | %.0f%% | %@ | %@ | %@ |", name, 1000 * stage.seconds / Double(images),
                                100 * stage.seconds / Swift.max(total, 1e-12),
                                stage.multiplyAdds > 0 ? String(format: "%.3f", gflop) : "-",
                                stage.multiplyAdds > 0 ? String(format: "%.1f", rate) : "-",
                                stage.multiplyAdds > 0 ? String(format: "%.0f%%", 100 * rate * 1e9 / onePeak) : "-"))
        }
        lines.append(String(format: "| all | %.2f | 100%% | | | (peak %.1f GFLOP/s) |", 1000 * total / Double(images), onePeak / 1e9))
        return lines.joined(separator: "\n")
    }

    /// The machine's attainable FLOP/s on `threads` threads: each runs OpenBLAS SGEMMs of
    /// 1024 x 1024 x 1024 at once (single-threaded each, as the forward pass calls it), best of
    /// 5 timed rounds after a warm-up. This is the ceiling the convolutions' GEMMs can reach;
    /// depthwise layers and memory traffic keep a whole network below it.
    public static func gemmPeak(threads: Int, size n: Int = 1024) -> Double {
        let workers = Swift.max(1, threads)
        var rng = SplitMix64(seed: 3)
        let a = (0..<(n * n)).map { _ in rng.nextGaussian() }, b = (0..<(n * n)).map { _ in rng.nextGaussian() }
        var best = 0.0
        for round in 0..<6 {
            let clock = Date()
            Parallel.forEachChunk(count: workers, chunkSize: 1, threads: workers) { _ in
                var c = [Float](repeating: 0, count: n * n)
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            BLAS.gemm(m: n, n: n, k: n, a: pa.baseAddress!, lda: n, b: pb.baseAddress!, ldb: n, c: pc.baseAddress!, ldc: n)
                        }
                    }
                }
            }
            let seconds = Date().timeIntervalSince(clock)
            if round > 0 { best = Swift.max(best, Double(workers) * 2 * Double(n * n * n) / seconds) }
        }
        return best
    }
}

import ArgumentParser
import Foundation
import PharosBenchmarks
import PharosCommandLine

/// `pharos cnn-bench`: images per second of the Swift forward pass (`CNNBenchmark`).
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
    @Flag(help: "Also print where a forward pass spends its time, stage by stage (one thread).") var profile = false

    func run() throws {
        var bench = CNNBenchmark(images: images)
        (bench.count, bench.height, bench.width, bench.threads, bench.rounds, bench.weights) = (count, height, width, threads, rounds, weights)
        bench.profile = profile
        print(try bench.run())
    }
}

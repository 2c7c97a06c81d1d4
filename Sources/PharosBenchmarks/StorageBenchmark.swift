import Foundation
import PharosIndex
import PharosRouting
import PharosStorage
import PharosVectors

/// The storage engine against the in-memory index engine (`pharos-shard bench`) on the same
/// synthetic data, thread count and process, runs interleaved, medians reported: durable
/// ingestion (log + seal) vs `add`, search over sealed segments vs the in-memory index, and
/// the time and resident memory of opening the sealed shard in a fresh process.
public struct StorageBenchmark: Sendable {
    /// Vectors to ingest.
    public var count: Int = 1_000_000
    /// Dimension.
    public var dimension: Int = 128
    /// Factory string of the index.
    public var factory: String = "IVF1024,PQ32x4fs,RefineSQ8"
    /// Worker threads (encoding and search).
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// Interleaved repetitions; medians are reported.
    public var repeats: Int = 3
    /// Queries per search run.
    public var queries: Int = 2000
    /// Lists probed per query.
    public var nprobe: Int = 16
    /// Vectors per upsert call.
    public var batch: Int = 10_000
    /// Batches in flight during ingestion (encoding overlaps logging; commits stay in order).
    public var writers: Int = 2
    /// Shard data directory (replaced).
    public var data: String = "data/bench-shard"

    /// The program and arguments that run `OpenMeasurement.measure` in a fresh process and
    /// print its line (`pharos-shard bench-open`); `--data`, `--dimension`, `--queries` and
    /// `--nprobe` are appended.
    public var openProbe: (executable: String, arguments: [String]) = ("/proc/self/exe", ["bench-open"])

    /// A benchmark with the defaults (1M x 128, `IVF1024,PQ32x4fs,RefineSQ8`).
    public init() {}

    /// Runs it; `log` hears each repeat; the result is a Markdown table.
    public func run(log: (String) -> Void = { _ in }) throws -> String {
        let dataset = SyntheticDataset(dimension: dimension, clusters: 1000, normalized: false, seed: 1)
        let base = dataset.vectors(0..<count, stream: 0)
        let queryRows = dataset.vectors(0..<queries, stream: 2)
        let keys = (0..<count).map { "v\($0)" }
        let trained = try IndexFactory.make(factory, dimension: dimension, metric: .l2) as! IVFPQIndex
        try trained.train(dataset.vectors(0..<min(100_000, max(count / 10, 40_000)), stream: 1), threads: threads)
        let trainedPath = data + ".trained"
        try IndexFactory.save(trained, to: trainedPath)
        defer { try? FileManager.default.removeItem(atPath: trainedPath) }
        log("\(count) x \(dimension), \(factory), \(threads) threads, \(repeats) interleaved repeats")

        var addRates: [Double] = [], ingestRates: [Double] = []
        var memory: IVFPQIndex!
        for r in 0..<repeats {
            memory = try IndexFactory.load(from: trainedPath) as? IVFPQIndex
            var clock = Date()
            try memory.add(base, ids: nil, threads: threads)
            addRates.append(Double(count) / Date().timeIntervalSince(clock))

            try? FileManager.default.removeItem(atPath: data)
            var options = Shard.Options()
            options.encodeThreads = threads
            let shardIndex = try IndexFactory.load(from: trainedPath) as! IVFPQIndex
            clock = Date()
            let shard = try Shard.create(at: data, trainedIndex: shardIndex, options: options)
            // Batches in flight: one is encoded while another is logged and applied, committed in order.
            let size = batch, total = count
            try shard.upsertInOrder(count: (count + batch - 1) / batch, inFlight: writers) { b in
                let rows = b * size ..< min(total, (b + 1) * size)
                return (Array(keys[rows]), base.rows(rows), nil)
            }
            try shard.seal()
            shard.close()
            ingestRates.append(Double(count) / Date().timeIntervalSince(clock))
            log("repeat \(r + 1): add \(Int(addRates.last!)) vectors/s, durable ingest \(Int(ingestRates.last!)) vectors/s")
        }

        // Opening in a fresh process: time and resident memory before any query touches data.
        let open = try measureOpen()

        var options = Shard.Options()
        options.automaticMaintenance = false
        let shard = try Shard.open(at: data, options: options)
        let segmentsAsSealed = shard.statistics.segments
        let parameters = SearchParameters(nprobe: nprobe, threads: threads)
        var memoryQPS: [Double] = [], sealedQPS: [Double] = [], compactedQPS: [Double] = []
        func timeSearch(_ body: () throws -> Void) rethrows -> Double {
            let clock = Date()
            try body()
            return Double(queries) / Date().timeIntervalSince(clock)
        }
        var memoryResult: SearchResult!, shardResult: [[Shard.Hit]] = []
        // Alternating which goes first, so neither always runs on a warmer machine.
        for r in 0..<max(3, repeats) * 2 {
            if r % 2 == 0 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
            sealedQPS.append(try timeSearch { shardResult = try shard.search(queryRows, k: 10, parameters: parameters) })
            if r % 2 == 1 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
        }
        try shard.compact(force: true)
        for r in 0..<max(3, repeats) * 2 {
            if r % 2 == 0 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
            compactedQPS.append(try timeSearch { shardResult = try shard.search(queryRows, k: 10, parameters: parameters) })
            if r % 2 == 1 { memoryQPS.append(try timeSearch { memoryResult = try memory.search(queryRows, k: 10, parameters: parameters) }) }
        }
        // Buckets inside the shard: a search naming half of 4,096 buckets (a node answering
        // for the buckets it reads, with copies elsewhere) against the same shard unfiltered.
        let half = BucketSet(count: 4096, buckets: stride(from: 0, to: 4096, by: 2))
        var clock = Date()
        _ = try shard.search(queryRows.rows(0..<1), k: 10, parameters: parameters, buckets: half)   // builds the exclusion bitmap once
        let exclusionMilliseconds = Date().timeIntervalSince(clock) * 1000
        var unfilteredQPS: [Double] = [], halfQPS: [Double] = []
        var halfResult: [[Shard.Hit]] = []
        for r in 0..<max(3, repeats) * 2 {
            if r % 2 == 0 { unfilteredQPS.append(try timeSearch { _ = try shard.search(queryRows, k: 10, parameters: parameters) }) }
            halfQPS.append(try timeSearch { halfResult = try shard.search(queryRows, k: 10, parameters: parameters, buckets: half) })
            if r % 2 == 1 { unfilteredQPS.append(try timeSearch { _ = try shard.search(queryRows, k: 10, parameters: parameters) }) }
        }
        let outside = halfResult.joined().filter { !half.contains(KeyHash.bucket(of: $0.key, buckets: 4096)) }.count
        clock = Date()
        var same = 0
        for q in 0..<queries {
            let expected = Set(memoryResult.ids(ofQuery: q).map { "v\($0)" })
            same += shardResult[q].filter { expected.contains($0.key) }.count
        }
        shard.close()

        let addMedian = addRates.median, ingestMedian = ingestRates.median
        let memoryMedian = memoryQPS.median
        return """
        ## Storage engine vs in-memory engine: \(count) x \(dimension), \(factory), \(threads) threads

        | measure | in-memory engine | shard storage | ratio |
        |---|---|---|---|
        | ingest (vectors/s; storage: batches of \(batch), \(writers) in flight, committed in order with group commit, then seal) | \(Int(addMedian)) | \(Int(ingestMedian)) | \(String(format: "%.2f", ingestMedian / addMedian))x |
        | search QPS, nprobe \(nprobe), k 10, \(segmentsAsSealed) sealed segments | \(Int(memoryMedian)) | \(Int(sealedQPS.median)) | \(String(format: "%.2f", sealedQPS.median / memoryMedian))x |
        | search QPS, after compaction to 1 segment | \(Int(memoryMedian)) | \(Int(compactedQPS.median)) | \(String(format: "%.2f", compactedQPS.median / memoryMedian))x |
        | top-10 agreement with the in-memory index | | \(String(format: "%.4f", Double(same) / Double(queries * 10))) | |

        | measure (compacted shard) | every entry | naming half of 4,096 buckets | ratio |
        |---|---|---|---|
        | search QPS, nprobe \(nprobe), k 10 (\(outside) hits outside the named buckets) | \(Int(unfilteredQPS.median)) | \(Int(halfQPS.median)) | \(String(format: "%.2f", halfQPS.median / unfilteredQPS.median))x |

        A search naming buckets first builds each segment's exclusion bitmap from its key index: \(String(format: "%.1f", exclusionMilliseconds)) ms for \(count) entries, once per bucket set.

        Opening the sealed shard in a fresh process: \(String(format: "%.1f", open.milliseconds)) ms; resident memory \(open.rssBefore) MB before, \(open.rssOpen) MB after opening, \(open.rssQueried) MB after \(queries) queries.
        """
    }

    private func measureOpen() throws -> OpenMeasurement {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: openProbe.executable)
        process.arguments = openProbe.arguments + ["--data", data, "--dimension", "\(dimension)", "--queries", "\(queries)", "--nprobe", "\(nprobe)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let measured = OpenMeasurement(line: text) else {
            throw StorageError.invalidInput(field: "open probe", problem: "did not measure: \(text)")
        }
        return measured
    }
}

/// Opening a shard: the time, and resident memory before, after opening and after queries.
public struct OpenMeasurement: Sendable {
    /// Milliseconds to open.
    public var milliseconds: Double
    /// VmRSS (MB) before opening, after, and after the queries.
    public var rssBefore: Int, rssOpen: Int, rssQueried: Int

    /// Opens the shard in `data` in this process and searches `queries` synthetic queries.
    public static func measure(data: String, dimension: Int, queries: Int, nprobe: Int) throws -> OpenMeasurement {
        let queryRows = SyntheticDataset(dimension: dimension, clusters: 1000, normalized: false, seed: 1).vectors(0..<queries, stream: 2)
        var options = Shard.Options()
        options.automaticMaintenance = false
        let before = residentMegabytes()
        let clock = Date()
        let shard = try Shard.open(at: data, options: options)
        let milliseconds = Date().timeIntervalSince(clock) * 1000
        let opened = residentMegabytes()
        _ = try shard.search(queryRows, k: 10, parameters: SearchParameters(nprobe: nprobe))
        return OpenMeasurement(milliseconds: milliseconds, rssBefore: before, rssOpen: opened, rssQueried: residentMegabytes())
    }

    /// The line a probe prints: `milliseconds rss-before rss-open rss-after-queries`.
    public var line: String { String(format: "%.2f %d %d %d", milliseconds, rssBefore, rssOpen, rssQueried) }

    init(milliseconds: Double, rssBefore: Int, rssOpen: Int, rssQueried: Int) {
        (self.milliseconds, self.rssBefore, self.rssOpen, self.rssQueried) = (milliseconds, rssBefore, rssOpen, rssQueried)
    }

    init?(line: String) {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Double($0) }
        guard fields.count == 4 else { return nil }
        self.init(milliseconds: fields[0], rssBefore: Int(fields[1]), rssOpen: Int(fields[2]), rssQueried: Int(fields[3]))
    }

    /// VmRSS of this process, in MB.
    static func residentMegabytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return -1 }
        return kb / 1024
    }
}

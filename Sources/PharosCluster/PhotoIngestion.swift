import Foundation
import PharosDescriptors
import PharosIndex
import PharosWire

/// `pharos ingest --images` as a library: photos described by a `PhotoPipeline` and upserted a
/// batch at a time as soon as a batch is described, with a few batches in flight, while the
/// workers describe the next ones; every acknowledged batch is recorded in an `IngestJournal`
/// so that a rerun skips it. Memory is bounded by the pipeline (`batch` x (`inFlight` + 1)
/// photos plus one per worker), whatever the number of photos.
public struct PhotoIngestion: Sendable {
    /// What a run did.
    public struct Summary: Sendable, Equatable {
        /// Photos in the list (this part).
        public var photos: Int
        /// Photos an earlier run had stored (skipped without decoding).
        public var resumed: Int
        /// Photos this run described and had acknowledged.
        public var sent: Int
        /// Of those, keys that were already stored (replaced).
        public var replaced: Int
        /// Photos skipped as unreadable (listed in the errors file).
        public var skipped: Int

        /// A summary.
        public init(photos: Int, resumed: Int, sent: Int, replaced: Int, skipped: Int) {
            (self.photos, self.resumed, self.sent, self.replaced, self.skipped) = (photos, resumed, sent, replaced, skipped)
        }
    }

    /// A batch the cluster did not take (after the retries), naming its first photo.
    public struct BatchRefused: Error, CustomStringConvertible {
        /// The first key of the batch.
        public var firstKey: String
        /// Photos in it.
        public var count: Int
        /// The cluster's answer.
        public var error: WireError

        public var description: String { "the cluster refused a batch of \(count) photos from \(firstKey) (\(error.code)): \(error.message)" }
    }

    /// Upserts one batch (keys, row-major vectors, dimension); returns the keys replaced.
    public typealias Upsert = @Sendable (_ keys: [String], _ vectors: [Float], _ dimension: Int) async throws -> Int

    /// Attempts per batch when the cluster says it is busy or briefly unavailable.
    public static let attempts = 5

    /// The extractor.
    public let extractor: DescriptorExtractor
    /// Workers describing photos.
    public let threads: Int
    /// Photos per upsert request.
    public let batch: Int
    /// Upserts in flight.
    public let inFlight: Int
    /// Seconds before the first retry of a batch (doubling after each).
    public let retryPause: Double

    /// An ingestion describing with `extractor`.
    public init(extractor: DescriptorExtractor, threads: Int, batch: Int, inFlight: Int, retryPause: Double = 0.5) {
        self.extractor = extractor
        self.threads = Swift.max(1, threads)
        self.batch = Swift.max(1, batch)
        self.inFlight = Swift.max(1, inFlight)
        self.retryPause = retryPause
    }

    /// Describes and upserts every photo of `photos` the journal does not hold; skipped photos
    /// go to `errors` (path TAB reason, this run's). With `descriptors`, the acknowledged
    /// descriptors are also appended there. `progress(handled, total)` after each batch.
    public func run(photos: [Photo], journal: IngestJournal, errors: String, descriptors: ExtractionFiles? = nil,
                    upsert: @escaping Upsert, progress: @escaping @Sendable (Int, Int) -> Void = { _, _ in },
                    report: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Summary {
        let errorLog = try SkippedPhotosFile(path: errors)
        defer { errorLog.close() }
        // Only the journal says what the cluster holds: descriptor files may hold photos a
        // fresh journal, cluster or collection never received.
        let todo = PhotoList.remaining(photos, done: journal.done) { photo, reason in
            errorLog.record(path: photo.path, reason: reason)
            report("skipped \(photo.path): \(reason)")
        }
        let resumed = photos.count - todo.count - errorLog.count
        if resumed > 0 { report("resuming: \(resumed) of \(photos.count) photos were stored by an earlier run (\(journal.path))") }
        if !journal.damagedLines.isEmpty {
            report("\(journal.path): lines \(journal.damagedLines.map(String.init).joined(separator: ", ")) are damaged; their photos are ingested again")
        }
        let pipeline = PhotoPipeline(extractor: extractor, photos: todo, threads: threads, groupSize: batch, groupsHeld: inFlight)
        let tally = Tally(handled: photos.count - todo.count)
        let total = photos.count
        let descriptorFiles = descriptors.map { SharedFiles(files: $0) }
        progress(tally.handled, total)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var running = 0
                for await described in pipeline.groups() {
                    var keys: [String] = [], vectors: [Float] = [], good: [(key: String, description: DescriptorExtractor.Description)] = []
                    for item in described {
                        switch item.result {
                        case let .success(description):
                            keys.append(item.photo.key)
                            vectors += description.global
                            if descriptorFiles != nil { good.append((item.photo.key, description)) }
                        case let .failure(failure):
                            errorLog.record(path: item.photo.path, reason: failure.reason)
                            report("skipped \(failure)")
                        }
                    }
                    let failed = described.count - keys.count
                    if failed > 0 {
                        pipeline.release(failed)
                        progress(tally.add(handled: failed), total)
                    }
                    guard !keys.isEmpty else { continue }
                    let dimension = extractor.dimension, pause = retryPause
                    let batchGood = good
                    group.addTask {
                        do {
                            let replaced = try await Self.upsertWithRetries(keys, vectors, dimension, pause: pause, upsert: upsert, report: report)
                            try descriptorFiles?.append(batchGood)
                            try journal.record(keys)
                            pipeline.release(keys.count)
                            progress(tally.add(handled: keys.count, sent: keys.count, replaced: replaced), total)
                        } catch {
                            // The workers would otherwise wait for permits this batch never
                            // gives back, and the stream the loop reads would never end.
                            pipeline.stop()
                            throw error
                        }
                    }
                    running += 1
                    if running >= inFlight {
                        _ = try await group.next()
                        running -= 1
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            pipeline.stop()
            throw error
        }
        let counts = tally.snapshot
        return Summary(photos: photos.count, resumed: resumed, sent: counts.sent, replaced: counts.replaced, skipped: errorLog.count)
    }

    /// One upsert, tried again after a pause when the cluster answers OVERLOADED, UNAVAILABLE,
    /// NOT_READY or DEADLINE_EXCEEDED (at most `attempts` times, `pause` doubling).
    static func upsertWithRetries(_ keys: [String], _ vectors: [Float], _ dimension: Int, pause first: Double, upsert: Upsert,
                                  report: @Sendable (String) -> Void) async throws -> Int {
        var pause = first, attempt = 1
        while true {
            do {
                return try await upsert(keys, vectors, dimension)
            } catch let error as WireError {
                guard [.overloaded, .unavailable, .notReady, .deadlineExceeded].contains(error.code), attempt < attempts else {
                    throw BatchRefused(firstKey: keys[0], count: keys.count, error: error)
                }
                report("batch of \(keys.count) photos from \(keys[0]): \(error) (attempt \(attempt) of \(attempts); trying again in \(pause) s)")
                try await Task.sleep(nanoseconds: UInt64(pause * 1e9))
                pause *= 2
                attempt += 1
            }
        }
    }

    /// Counts shared by the batches' tasks.
    final class Tally: @unchecked Sendable {
        // @unchecked: every field is guarded by `lock`.
        private let lock = NSLock()
        private var counts: (handled: Int, sent: Int, replaced: Int)

        init(handled: Int) { counts = (handled, 0, 0) }

        var handled: Int { lock.withLock { counts.handled } }
        var snapshot: (handled: Int, sent: Int, replaced: Int) { lock.withLock { counts } }

        /// Adds and returns the photos handled so far.
        func add(handled: Int, sent: Int = 0, replaced: Int = 0) -> Int {
            lock.withLock {
                counts.handled += handled
                counts.sent += sent
                counts.replaced += replaced
                return counts.handled
            }
        }
    }

    /// Descriptor files appended from the batches' tasks, one at a time; a photo they already
    /// hold (sent again because the journal lacked it) is not appended twice.
    final class SharedFiles: @unchecked Sendable {
        // @unchecked: `files` and `present` are used only under `lock`.
        private let lock = NSLock()
        private let files: ExtractionFiles
        private var present: Set<String>

        init(files: ExtractionFiles) {
            self.files = files
            present = Set(files.keys)
        }

        func append(_ described: [(key: String, description: DescriptorExtractor.Description)]) throws {
            try lock.withLock {
                let new = described.filter { !present.contains($0.key) }
                try files.append(new, localPCA: nil)
                present.formUnion(new.map(\.key))
            }
        }
    }
}

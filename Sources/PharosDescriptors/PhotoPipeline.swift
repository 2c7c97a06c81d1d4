import Foundation

/// Describes photos on worker threads and hands them over in groups as soon as a group is
/// full, with a bound on what is in memory: the first stage of `pharos extract` and of
/// `pharos ingest --images`, whose consumers write or upsert a group while the workers go on.
///
/// Each worker takes the next photo from a shared counter (so a slow photo delays only its own
/// worker), decodes it and runs the network. A worker first takes a permit; the consumer gives
/// permits back (`release`) when it is done with photos (written, or acknowledged by the
/// cluster), so at most `capacity` described photos exist at once whatever the input's size.
public final class PhotoPipeline: @unchecked Sendable {
    // @unchecked: the mutable state (`next`, `pending`, `active`, `stopped`, `available`) is
    // guarded by `lock`. Permits are a counter under a condition rather than a
    // DispatchSemaphore, which traps when freed below its initial value (a consumer that stops
    // early never gives every permit back).

    /// One photo after description: its descriptors, or why it could not be described.
    public struct Described: Sendable {
        /// The photo.
        public var photo: Photo
        /// The descriptors, or the reason (naming the file) it was skipped.
        public var result: Result<DescriptorExtractor.Description, DescribeFailure>
    }

    /// Why a photo was skipped.
    public struct DescribeFailure: Error, Sendable, CustomStringConvertible {
        /// The photo's file.
        public var path: String
        /// What is wrong with it.
        public var reason: String

        public var description: String { "\(path): \(reason)" }
    }

    private let extractor: DescriptorExtractor
    private let photos: [Photo]
    private let threads: Int
    private let groupSize: Int
    private let lock = NSCondition()
    private var available: Int
    private var next = 0
    private var pending: [Described] = []
    private var active = 0
    private var stopped = false
    private var continuation: AsyncStream<[Described]>.Continuation?

    /// Photos in memory at most: `groupSize` per group the consumer may hold, plus one photo
    /// per worker.
    public let capacity: Int

    /// A pipeline over `photos`, `threads` workers, groups of `groupSize`, at most
    /// `groupsHeld` groups held by the consumer at once.
    public init(extractor: DescriptorExtractor, photos: [Photo], threads: Int, groupSize: Int, groupsHeld: Int) {
        self.extractor = extractor
        self.photos = photos
        self.threads = Swift.max(1, Swift.min(threads, Swift.max(1, photos.count)))
        self.groupSize = Swift.max(1, groupSize)
        // One group being filled beyond those held, and a photo in each worker's hands.
        capacity = self.groupSize * (Swift.max(1, groupsHeld) + 1) + self.threads
        available = capacity
    }

    /// Starts the workers; the groups arrive in completion order and the stream ends when every
    /// photo was handed over (or after `stop`).
    public func groups() -> AsyncStream<[Described]> {
        let (stream, continuation) = AsyncStream<[Described]>.makeStream(bufferingPolicy: .unbounded)
        continuation.onTermination = { [weak self] _ in self?.stop() }
        lock.withLock {
            self.continuation = continuation
            active = threads
        }
        guard !photos.isEmpty else {
            continuation.finish()
            return stream
        }
        for _ in 0..<threads {
            let worker = Thread { [self] in work() }
            worker.stackSize = 16 << 20
            worker.start()
        }
        return stream
    }

    /// Gives back `count` photos' permits: the consumer is done with them.
    public func release(_ count: Int) {
        lock.withLock {
            available += Swift.max(0, count)
            lock.broadcast()
        }
    }

    /// Stops handing out photos; workers finish the photo in hand and exit.
    public func stop() {
        lock.withLock {
            stopped = true
            lock.broadcast()
        }
    }

    private func work() {
        while let index = take() {
            let photo = photos[index]
            let result: Result<DescriptorExtractor.Description, DescribeFailure>
            do { result = .success(try extractor.describe(path: photo.path)) } catch let DescriptorError.unreadableImage(_, reason) {
                result = .failure(DescribeFailure(path: photo.path, reason: reason))
            } catch {
                result = .failure(DescribeFailure(path: photo.path, reason: "\(error)"))
            }
            lock.lock()
            pending.append(Described(photo: photo, result: result))
            var full: [Described] = []
            if pending.count >= groupSize { swap(&full, &pending) }
            let continuation = self.continuation
            lock.unlock()
            if !full.isEmpty { continuation?.yield(full) }
        }
        lock.lock()
        active -= 1
        let last = active == 0
        var rest: [Described] = []
        if last && !stopped { swap(&rest, &pending) }
        let continuation = self.continuation
        lock.unlock()
        if last {
            if !rest.isEmpty { continuation?.yield(rest) }
            continuation?.finish()
        }
    }

    /// The next photo's index once a permit is free, or nil when there is none left or the
    /// pipeline was stopped.
    private func take() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        while available == 0 && !stopped { lock.wait() }
        guard !stopped, next < photos.count else { return nil }
        available -= 1
        next += 1
        return next - 1
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PharosDurability
import PharosIndex
import PharosKernels
import PharosVectors

/// The shard's write-ahead log: numbered files `wal/<sequence>.log` of CRC32C-framed,
/// LZ4-compressed records, made durable by group commit before any write is acknowledged.
///
/// File header (32 bytes): magic `PHAROSWL`, `u32` format version, `u64` the file's sequence,
/// `u64` the LSN of its first record, `u32` CRC32C of the 28 bytes before it. Frame:
/// `u32 stored length, u32 raw length, u64 log sequence number (LSN), u32 CRC32C` of those 16
/// bytes and the stored payload, then the payload. LSNs are consecutive across the files of a
/// shard (a failed write gives its numbers back), so replay can tell a lost record, a lost
/// file or a file cut at a record boundary from a torn tail (`readChain`). Files written
/// before headers existed (no magic) are still read, with LSNs only required to increase.
///
/// Many writers append at once; one of them (the leader) writes every waiting frame with a
/// single `write` and one `fsync`, then applies the records to memory in LSN order, then
/// wakes the others.
///
/// Writing is here; reading a chain of log files back at open (replay, torn tails) is in
/// `WriteAheadLog+Replay.swift`.
final class WriteAheadLog: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `condition`; the file descriptor is used
    // for writing only by the single leader (`flushing == true`) or under `condition`.

    static let frameHeaderBytes = 20
    static let fileSuffix = ".log"
    static let fileMagic = Array("PHAROSWL".utf8)
    static let fileFormatVersion: UInt32 = 1
    static let fileHeaderBytes = 32

    let directory: String
    private let condition = NSCondition()
    private var fd: Int32 = -1
    private(set) var sequence: UInt64
    private var fileSize = 0
    /// Records waiting to be written. A ticket names one enqueued record for `wait` and is
    /// never reused; an LSN can be (a failed write gives its numbers back), so results must
    /// not be keyed by it: a later record with the same LSN would take another's outcome.
    private var pending: [(ticket: UInt64, lsn: UInt64, record: LogRecord, frame: [UInt8])] = []
    private var results: [UInt64: Result<Int, any Error>] = [:]
    private var nextTicket: UInt64 = 1
    private var nextLSN: UInt64
    private var flushing = false
    private var records = 0
    private var syncs = 0
    private var failure: String?
    /// Writes that failed (and were undone) since the log was opened, and why the last one
    /// did: ordered writers use the count to stop at the first failure (see `enqueue`).
    private var failedWrites = 0
    private var lastWriteFailure = ""
    private let faults: StorageFaults
    private let observe: (@Sendable (Shard.StorageObservation) -> Void)?
    /// Applies a durable record to memory; returns the number of keys it affected.
    private let apply: (LogRecord) -> Int

    /// The path of log file `sequence` in `directory`.
    static func path(_ directory: String, _ sequence: UInt64) -> String {
        directory + "/" + String(format: "%016llx", sequence) + fileSuffix
    }

    /// Log file sequences present in `directory`, ascending.
    static func sequences(in directory: String) throws -> [UInt64] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw StorageError.io(path: directory, operation: "list", reason: "\(error)")
        }
        return names.compactMap { name in
            guard name.hasSuffix(fileSuffix), name.count == 16 + fileSuffix.count else { return nil }
            return UInt64(name.prefix(16), radix: 16)
        }.sorted()
    }

    /// Creates log file `sequence` for appending (records continue from `nextLSN`).
    init(directory: String, sequence: UInt64, nextLSN: UInt64, faults: StorageFaults,
         observe: (@Sendable (Shard.StorageObservation) -> Void)? = nil, apply: @escaping (LogRecord) -> Int) throws {
        self.directory = directory
        self.observe = observe
        self.sequence = sequence
        self.nextLSN = nextLSN
        self.faults = faults
        self.apply = apply
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The header of log file `sequence` whose first record will be `firstLSN`.
    static func fileHeader(sequence: UInt64, firstLSN: UInt64) -> [UInt8] {
        var w = ByteWriter()
        w.write(fileFormatVersion)
        w.write(Int64(bitPattern: sequence))
        w.write(Int64(bitPattern: firstLSN))
        let head = fileMagic + w.bytes
        var crc = ByteWriter()
        crc.write(head.withUnsafeBytes { pharos_crc32c(0, $0.baseAddress!, $0.count) })
        return head + crc.bytes
    }

    /// Switches to log file `sequence`, which is created by the first write that goes into it:
    /// opening a shard and rotating write nothing, so both work on a full disk.
    private func switchFile(to sequence: UInt64) {
        if fd >= 0 { close(fd) }
        fd = -1
        fileSize = 0
        self.sequence = sequence
    }

    /// Creates the current file (never reusing one: its name is past every existing log file)
    /// and makes its header and its directory entry durable before any record goes in.
    private func createFile(firstLSN: UInt64) throws {
        let path = WriteAheadLog.path(directory, sequence)
        let newFD = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard newFD >= 0 else { throw StorageError.io(path: path, operation: "create", reason: FileIO.errnoText()) }
        let header = WriteAheadLog.fileHeader(sequence: sequence, firstLSN: firstLSN)
        let written = header.withUnsafeBytes { pwrite(newFD, $0.baseAddress!, $0.count, 0) }
        guard written == header.count, fsync(newFD) == 0 else {
            let reason = FileIO.errnoText()
            close(newFD)
            unlink(path)
            throw StorageError.io(path: path, operation: "write the log file header", reason: reason)
        }
        FileIO.syncDirectory(containing: path)
        fd = newFD
        fileSize = header.count
    }

    /// Records written and fsyncs made since this log was opened (group commit makes the
    /// second smaller than the first under concurrent writers).
    var counts: (records: Int, syncs: Int) { condition.withLock { (records, syncs) } }

    /// A record serialised and compressed, not yet given its place in the log.
    struct PreparedRecord: Sendable {
        fileprivate let record: LogRecord
        fileprivate let frame: [UInt8]
    }

    /// Serialises and compresses `record` (no lock taken: callers do this in parallel).
    static func prepare(_ record: LogRecord) throws -> PreparedRecord {
        let payload = record.encoded()
        guard payload.count <= StorageLimits.maximumRecordBytes else {
            throw StorageError.invalidInput(field: "batch", problem: "\(payload.count) bytes encoded, at most \(StorageLimits.maximumRecordBytes)")
        }
        return PreparedRecord(record: record, frame: frame(payload, lsn: 0))
    }

    /// Logs `record`, waits until it is durable and applied, and returns what `apply`
    /// returned for it. Throws when the write fails (nothing stored) or the fsync fails (the
    /// log then stops: whether the record reached the disk is unknown, and it is not applied).
    func append(_ record: LogRecord) throws -> Int {
        try wait(for: try enqueue(try WriteAheadLog.prepare(record)))
    }

    /// How many writes have failed so far; pass it to `enqueue(_:unlessWritesFailedSince:)`.
    var failedWriteCount: Int { condition.withLock { failedWrites } }

    /// Gives `prepared` the next LSN: it will be written and applied after every record
    /// enqueued before it. Returns the ticket to `wait` for.
    ///
    /// With `failedWriteCount`, refuses the record when any write has failed since that count
    /// was read. A failed write fails every record queued behind it, but one enqueued just
    /// after would still land; an ordered sequence of records passes the count it started with
    /// so the check and the enqueue are one step, and what lands of it stays a prefix.
    func enqueue(_ prepared: PreparedRecord, unlessWritesFailedSince failedWriteCount: Int? = nil) throws -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        if let failure { throw StorageError.logFailed(path: directory, reason: failure) }
        if let failedWriteCount, failedWrites > failedWriteCount {
            throw StorageError.io(path: WriteAheadLog.path(directory, sequence), operation: "append",
                                  reason: "an earlier write of this ordered batch sequence failed (\(lastWriteFailure))")
        }
        let lsn = nextLSN
        nextLSN += 1
        let ticket = nextTicket
        nextTicket += 1
        pending.append((ticket, lsn, prepared.record, WriteAheadLog.stamp(prepared.frame, lsn: lsn)))
        return ticket
    }

    /// Waits until the record of `ticket` is durable and applied (leading a group commit when
    /// no other writer is), and returns what `apply` returned for it, or its write's error.
    func wait(for ticket: UInt64) throws -> Int {
        condition.lock()
        while true {
            if let result = results.removeValue(forKey: ticket) {
                condition.unlock()
                return try result.get()
            }
            if flushing {
                condition.wait()
                continue
            }
            flushing = true
            let batch = pending
            pending = []
            condition.unlock()
            var batchResults: [UInt64: Result<Int, any Error>] = [:]
            var writeError: (any Error)?
            do {
                try writeAndSync(batch.map(\.frame), firstLSN: batch.first?.lsn ?? 0)
                for item in batch { batchResults[item.ticket] = .success(apply(item.record)) }
            } catch {
                writeError = error
            }
            condition.lock()
            if let writeError {
                // Records queued behind a failed write fail with it, so the log never holds a
                // record whose predecessor was refused (batches committed in order stay a prefix).
                for item in batch + pending { batchResults[item.ticket] = .failure(writeError) }
                // None of their numbers reached the file: give them back, so LSNs stay
                // consecutive and a gap on disk always means a lost record.
                if let first = (batch + pending).map(\.lsn).min() { nextLSN = first }
                pending = []
                failedWrites += 1
                lastWriteFailure = "\(writeError)"
            }
            records += batch.count
            syncs += 1
            results.merge(batchResults) { _, new in new }   // tickets are unique: never both
            flushing = false
            condition.broadcast()
        }
    }

    /// Appends the frames with one write and one fsync. On a failed write the file is cut
    /// back to its previous length, so a failed batch leaves no partial record; a failure
    /// that cannot be undone (fsync, truncate) stops the log.
    private func writeAndSync(_ frames: [[UInt8]], firstLSN: UInt64) throws {
        guard !frames.isEmpty else { return }
        if fd < 0 { try createFile(firstLSN: firstLSN) }
        let path = WriteAheadLog.path(directory, sequence)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(frames.reduce(0) { $0 + $1.count })
        for f in frames { bytes += f }
        faults.applyLogWriteDelay()
        let started = DispatchTime.now().uptimeNanoseconds
        let error: String? = bytes.withUnsafeBytes { buffer in
            if let injected = faults.takeWriteFailure() { return injected }
            var done = 0
            while done < buffer.count {
                let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(fileSize + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    return FileIO.errnoText()
                }
                done += n
            }
            return nil
        }
        if let error {
            if ftruncate(fd, off_t(fileSize)) != 0 {
                stop("truncate after a failed write: \(FileIO.errnoText())")
            }
            throw StorageError.io(path: path, operation: "append \(bytes.count) bytes", reason: error)
        }
        guard fsync(fd) == 0 else {
            let reason = "fsync: \(FileIO.errnoText())"
            stop(reason)
            throw StorageError.logFailed(path: path, reason: reason)
        }
        fileSize += bytes.count
        observe?(.logSync(nanoseconds: DispatchTime.now().uptimeNanoseconds &- started, bytes: bytes.count))
    }

    private func stop(_ reason: String) {
        condition.lock()
        failure = reason
        condition.unlock()
    }

    /// Starts log file `sequence + 1` and runs `body` while no batch is being written or
    /// applied, so that every record applied before `body` is in the older files and every
    /// record applied after it is in the new one. Returns the new file's sequence and the
    /// LSN of its first record.
    func rotate(_ body: () -> Void) throws -> (sequence: UInt64, firstLSN: UInt64) {
        condition.lock()
        defer { condition.unlock() }
        while flushing { condition.wait() }
        if let failure { throw StorageError.logFailed(path: directory, reason: failure) }
        // Waiting writers keep their records in `pending`; they will be written to the new file.
        let firstLSN = pending.first?.lsn ?? nextLSN
        // A file never created holds no record: the "new" file can be that one, and skipping
        // its number would leave a gap that replay rightly refuses.
        if fd >= 0 { switchFile(to: sequence + 1) }
        body()
        return (sequence, firstLSN)
    }

    /// Deletes log files older than `sequence` (their records are in segments now).
    func removeFiles(before sequence: UInt64) throws {
        for s in try WriteAheadLog.sequences(in: directory) where s < sequence {
            unlink(WriteAheadLog.path(directory, s))
        }
    }

    // MARK: Frames

    static func frame(_ payload: [UInt8], lsn: UInt64) -> [UInt8] {
        let compressed = LZ4Block.compress(payload)
        var w = ByteWriter()
        w.write(UInt32(compressed.count))
        w.write(UInt32(payload.count))
        w.write(Int64(bitPattern: lsn))
        w.write(UInt32(0))
        return w.bytes + compressed
    }

    /// Fills in the LSN and CRC of a frame built by `frame`.
    static func stamp(_ frame: [UInt8], lsn: UInt64) -> [UInt8] {
        var f = frame
        withUnsafeBytes(of: lsn.littleEndian) { for i in 0..<8 { f[8 + i] = $0[i] } }
        let crc = f.withUnsafeBytes { b -> UInt32 in
            let head = pharos_crc32c(0, b.baseAddress!, 16)
            return pharos_crc32c(head, b.baseAddress! + frameHeaderBytes, b.count - frameHeaderBytes)
        }
        withUnsafeBytes(of: crc.littleEndian) { for i in 0..<4 { f[16 + i] = $0[i] } }
        return f
    }
}

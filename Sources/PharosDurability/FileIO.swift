#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Numbers the temporary files of this process (see `FileIO.createTemporary`).
private let temporaryCounter = Atomic<Int>(0)

/// The one home of file durability: positioned reads that never load more than asked, full
/// writes, and atomic replacement (temp, fsync, rename, fsync dir). Vector files, index
/// containers, whitenings, checkpoints and storage all write through it.
public enum FileIO {
    /// The text of the current `errno`.
    public static func errnoText() -> String { String(cString: strerror(errno)) }

    /// Opens a file for reading.
    public static func openForReading(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(path: path, problem: "cannot open for reading: \(errnoText())") }
        return fd
    }

    /// Size of an open file in bytes.
    public static func size(of fd: Int32, path: String) throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, problem: "cannot stat: \(errnoText())") }
        return Int(st.st_size)
    }

    /// Reads exactly `count` bytes at `offset` into `buffer`, or throws naming the offset.
    public static func read(_ fd: Int32, path: String, into buffer: UnsafeMutableRawPointer, count: Int, offset: Int) throws {
        var done = 0
        while done < count {
            let n = pread(fd, buffer + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, offset: offset + done, problem: "read failed: \(errnoText())")
            }
            if n == 0 {
                throw FileError(path: path, offset: offset + done,
                                      problem: "unexpected end of file: expected \(count - done) more bytes")
            }
            done += n
        }
    }

    /// Reads `count` bytes at `offset` into a new array.
    public static func readBytes(_ fd: Int32, path: String, count: Int, offset: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(fd, path: path, into: $0.baseAddress!, count: count, offset: offset) }
        return bytes
    }

    /// The whole file at `path`; with `maximumBytes`, a larger file is refused before any of
    /// it is read (so a huge or wrong file cannot exhaust memory).
    public static func readWholeFile(_ path: String, maximumBytes: Int? = nil) throws -> [UInt8] {
        let fd = try openForReading(path)
        defer { close(fd) }
        let size = try self.size(of: fd, path: path)
        if let maximumBytes, size > maximumBytes {
            throw FileError(path: path, problem: "\(size) bytes, more than the \(maximumBytes) read at most")
        }
        return try readBytes(fd, path: path, count: size, offset: 0)
    }

    /// The complete lines of an append-only text file (everything up to its last line break),
    /// cutting a torn last line (a write a kill interrupted) off the file itself.
    public static func completeLines(_ path: String) throws -> ArraySlice<UInt8> {
        let bytes = try readWholeFile(path)
        let end = (bytes.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
        if end != bytes.count {
            guard truncate(path, off_t(end)) == 0 else { throw FileError(path: path, problem: "cannot cut a torn last line: \(errnoText())") }
        }
        return bytes[..<end]
    }

    /// Writes all of `buffer` to `fd` at its current position.
    public static func writeAll(_ fd: Int32, path: String, _ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(path: path, problem: "write failed: \(errnoText())")
            }
            done += n
        }
    }

    /// Creates (truncating) a temporary sibling of `path` for writing; returns its descriptor and name.
    public static func createTemporary(for path: String) throws -> (fd: Int32, path: String) {
        // Unique per call, not only per process: two writers of one path in one process (or
        // a retry while an abandoned writer still holds its file) must not share a file.
        let temp = "\(path).tmp-\(getpid())-\(temporaryCounter.wrappingAdd(1, ordering: .relaxed).oldValue)"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError(path: temp, problem: "cannot create: \(errnoText())") }
        return (fd, temp)
    }

    /// Makes a finished temporary file durable and moves it over `path` atomically:
    /// fsync the file, close, rename, fsync the directory. Always closes `fd` (and removes
    /// the temporary file on failure): callers must not close or discard it again.
    public static func commitTemporary(fd: Int32, temporary: String, to path: String) throws {
        guard fsync(fd) == 0 else {
            let text = errnoText()
            close(fd)
            unlink(temporary)
            throw FileError(path: temporary, problem: "fsync failed: \(text)")
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let text = errnoText()
            unlink(temporary)
            throw FileError(path: path, problem: "rename from \(temporary) failed: \(text)")
        }
        syncDirectory(containing: path)
    }

    /// Replaces `path` with `bytes` atomically: temporary sibling, write, fsync, rename, fsync
    /// of the directory. On failure the old file (if any) is untouched.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let (fd, temporary) = try createTemporary(for: path)
        do {
            try bytes.withUnsafeBytes { try writeAll(fd, path: temporary, $0) }
        } catch {
            discardTemporary(fd: fd, temporary: temporary)
            throw error
        }
        try commitTemporary(fd: fd, temporary: temporary, to: path)
    }

    /// Abandons a temporary file after a failure.
    public static func discardTemporary(fd: Int32, temporary: String) {
        close(fd)
        unlink(temporary)
    }

    /// fsyncs the directory that holds `path`, so that a rename into it is durable.
    public static func syncDirectory(containing path: String) {
        let directory: String
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            directory = "."
        }
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            fsync(fd)
            close(fd)
        }
    }
}

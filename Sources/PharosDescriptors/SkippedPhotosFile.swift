import Foundation

/// A run's skipped photos, one `path TAB reason` line each (tabs and line breaks inside either
/// become spaces), written as they come and started afresh by each run: the errors file of
/// `pharos extract` (PREFIX.errors.tsv) and of `pharos ingest --images` (the journal's).
public final class SkippedPhotosFile: @unchecked Sendable {
    // @unchecked: `handle` and `written` are used only under `lock`.
    private let lock = NSLock()
    private var handle: FileHandle?
    private var written = 0
    /// The file.
    public let path: String

    /// Creates (or empties) the file at `path`, and its folder.
    public init(path: String) throws {
        self.path = path
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw DescriptorError.badInput("cannot create the errors file \(path)")
        }
        self.handle = handle
    }

    deinit { close() }

    /// Photos recorded so far.
    public var count: Int { lock.withLock { written } }

    /// Records one skipped photo.
    public func record(path photo: String, reason: String) {
        func flat(_ text: String) -> String { text.replacingOccurrences(of: "\t", with: " ").replacingOccurrences(of: "\n", with: " ") }
        let line = Data((flat(photo) + "\t" + flat(reason) + "\n").utf8)
        lock.withLock {
            written += 1
            // A full disk must not stop the run over its list of bad photos.
            try? handle?.write(contentsOf: line)
        }
    }

    /// Flushes and closes the file.
    public func close() {
        lock.withLock {
            try? handle?.synchronize()
            try? handle?.close()
            handle = nil
        }
    }
}

/// Errors raised by shard storage, each naming what to look at: the file and block for
/// damage, the field and limit for rejected input.
public enum StorageError: Error, CustomStringConvertible, Equatable {
    /// A file failed a check: bad magic or version, checksum mismatch, truncation. `block`
    /// names the part of the file (e.g. "list 17", "key block 3", "header").
    case corrupt(path: String, block: String, problem: String)
    /// Input that breaks a limit or a rule; nothing was written.
    case invalidInput(field: String, problem: String)
    /// The operating system refused an operation (disk full, permissions, ...). Writes that
    /// fail this way are not acknowledged and leave stored data as it was.
    case io(path: String, operation: String, reason: String)
    /// The data directory does not hold a shard, or holds one this build cannot read.
    case notAShard(path: String, problem: String)
    /// The write-ahead log refused further writes after a failure it could not undo
    /// (reads keep working); reopen the shard to recover.
    case logFailed(path: String, reason: String)
    /// The shard was closed.
    case closed

    public var description: String {
        switch self {
        case let .corrupt(path, block, problem): return "\(path): \(block): \(problem)"
        case let .invalidInput(field, problem): return "invalid \(field): \(problem)"
        case let .io(path, operation, reason): return "\(path): \(operation) failed: \(reason)"
        case let .notAShard(path, problem): return "\(path) is not a usable shard directory: \(problem)"
        case let .logFailed(path, reason): return "write-ahead log \(path) refuses writes after an unrecoverable failure (\(reason)); reads still work, reopen the shard to recover"
        case .closed: return "the shard is closed"
        }
    }
}

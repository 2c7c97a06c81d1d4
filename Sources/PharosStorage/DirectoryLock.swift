import PharosDurability

/// The shard directory's `LOCK`: a `FileLock` whose failure is a `StorageError`.
final class DirectoryLock {
    private let lock: FileLock

    init(_ path: String) throws {
        do {
            lock = try FileLock(path, busy: "the shard is already open (in another process or another Shard object)")
        } catch let error as FileError {
            throw StorageError.io(path: path, operation: "lock", reason: error.problem)
        }
    }
}

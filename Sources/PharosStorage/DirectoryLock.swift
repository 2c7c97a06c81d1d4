#if canImport(Glibc)
import Glibc
#endif
import PharosVectors

/// An exclusive `flock` on a file, released when this object goes away (or the process
/// dies, so a killed shard never leaves a stale lock).
final class DirectoryLock {
    private let fd: Int32

    init(_ path: String) throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw StorageError.io(path: path, operation: "open lock file", reason: FileIO.errnoText()) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw StorageError.io(path: path, operation: "lock", reason: "the shard is already open (in another process or another Shard object)")
        }
    }

    deinit { close(fd) }
}

#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosVectors

/// An exclusive `flock` on a file, released when this object goes away (or the process
/// dies, so a killed shard never leaves a stale lock).
final class DirectoryLock {
    private let fd: Int32

    init(_ path: String) throws {
        // The descriptor is stored only once it is locked: a class whose stored properties are
        // all set runs `deinit` when its init throws, which would close it a second time (and
        // close whatever file another thread had opened under the reused number).
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw StorageError.io(path: path, operation: "open lock file", reason: FileIO.errnoText()) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw StorageError.io(path: path, operation: "lock", reason: "the shard is already open (in another process or another Shard object)")
        }
        fd = descriptor
    }

    deinit {
        // Unlock explicitly: a child process being spawned at this moment (by any thread) holds a
        // copy of the descriptor until its exec, and the lock would outlive our close with it.
        flock(fd, LOCK_UN)
        close(fd)
    }
}

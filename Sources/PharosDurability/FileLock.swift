#if canImport(Glibc)
import Glibc
#endif

/// An exclusive `flock` on a file, held until this object goes away (or the process dies, so a
/// killed process never leaves a stale lock): one writer per shard directory, extraction
/// output or ingest journal.
public final class FileLock {
    private let fd: Int32

    /// Locks `path` (created when missing) or throws at once, naming `busy` (who holds it).
    public init(_ path: String, busy: String) throws {
        // The descriptor is stored only once it is locked: a class whose stored properties are
        // all set runs `deinit` when its init throws, which would close it a second time (and
        // close whatever file another thread had opened under the reused number).
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw FileError(path: path, problem: "cannot open the lock file: \(FileIO.errnoText())") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            close(descriptor)
            throw FileError(path: path, problem: busy)
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

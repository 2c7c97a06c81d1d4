import Foundation
import PharosDurability
import PharosStorage
import PharosWire
import Synchronization

/// The newest cluster-map epoch a node has seen, kept in its data directory (`MAP_EPOCH`,
/// replaced atomically) so that a restarted node still refuses a coordinator routing by an
/// older map. Requests with epoch 0 (clients, tools) are not checked.
final class MapEpoch: Sendable {
    private let path: String
    private let current: Mutex<UInt64>
    /// Writes admitted and not yet answered, by the epoch they were routed with.
    private let writes = Mutex<[UInt64: Int]>([:])

    /// Loads the kept epoch of `directory` (0 when none); a damaged file is an error naming it.
    init(directory: String) throws {
        path = directory + "/" + Shard.mapEpochFileName
        // A replacement cut short leaves its temporary sibling: the kept file is still whole.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        where name.hasPrefix(Shard.mapEpochFileName + ".tmp") {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
        var value: UInt64 = 0
        if FileManager.default.fileExists(atPath: path) {
            let text = String(decoding: try FileIO.readWholeFile(path, maximumBytes: 64), as: UTF8.self)
            guard let parsed = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw StorageError.corrupt(path: path, block: "map epoch", problem: "holds \(text.debugDescription), expected a decimal number")
            }
            value = parsed
        }
        current = Mutex(value)
    }

    /// The newest epoch seen.
    var value: UInt64 { current.withLock { $0 } }

    /// `admit` for a write, which is counted (under the same lock that raises the epoch, so a
    /// later request of a newer epoch sees it) until `finishWrite`.
    func admitWrite(_ epoch: UInt64) throws {
        try admit(epoch) {
            writes.withLock { $0[epoch, default: 0] += 1 }
        }
    }

    /// A write admitted with `epoch` was answered.
    func finishWrite(_ epoch: UInt64) {
        writes.withLock { counts in
            counts[epoch, default: 1] -= 1
            if counts[epoch] == 0 { counts[epoch] = nil }
        }
    }

    /// Waits (at most `limit`) until no write routed by an epoch before `epoch` is still being
    /// applied: a bucket read or drop of a newer map must not run ahead of a write the older
    /// map sent here alone (from a coordinator that had not seen the move yet).
    func waitForWrites(before epoch: UInt64, limit: Duration = .seconds(30)) {
        let end = ContinuousClock.now + limit
        while writes.withLock({ $0.keys.contains { $0 < epoch } }), ContinuousClock.now < end {
            Thread.sleep(forTimeInterval: 0.001)
        }
    }

    /// Admits a request routed by `epoch`: an older one is `staleMap`; a newer one becomes
    /// this node's (kept durably before the request is served).
    func admit(_ epoch: UInt64, _ admitted: () -> Void = {}) throws {
        guard epoch > 0 else { return admitted() }
        try current.withLock { seen in
            if epoch < seen {
                throw WireError(.staleMap, "the request was routed by cluster map epoch \(epoch); this node has seen epoch \(seen): refresh the map")
            }
            if epoch > seen {
                do { try FileIO.writeAtomically(Array("\(epoch)\n".utf8), to: path) } catch {
                    throw WireError(.storage, "keeping map epoch \(epoch): \(error)")
                }
                seen = epoch
            }
            admitted()   // only once admitted: a refused request is never counted
        }
    }
}

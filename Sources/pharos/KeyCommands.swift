import ArgumentParser
import Foundation
import PharosCommandLine
import PharosWire

/// The keys a key command names: `--key` (repeatable) and `--keys-file` (one per line).
struct KeyArguments: ParsableArguments {
    @Option(help: "A key (repeatable).") var key: [String] = []
    @Option(help: "A file of keys, one per line (empty lines are skipped).") var keysFile: String?

    func validate() throws {
        if key.isEmpty && keysFile == nil { throw ValidationError("give --key KEY (repeatable) or --keys-file FILE") }
    }

    /// Every key given, in order; at least one.
    func keys() throws -> [String] {
        let all = key + (try keysFile.map { try KeyFile.read($0).filter { !$0.isEmpty } } ?? [])
        guard !all.isEmpty else { throw ValidationError("\(keysFile ?? "the keys file") holds no keys") }
        return all
    }
}

/// `pharos fetch`: stored entries by key (vector and metadata), as JSON lines or text.
struct FetchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch", abstract: "Fetch stored entries by key: found or not, the stored (reconstructed) vector, the metadata.",
        discussion: "Exit status 0 when every key was found, 1 when some were not (each is still printed).")

    @OptionGroup var options: CoordinatorOptions
    @OptionGroup var keys: KeyArguments
    @Flag(help: "Print one JSON object per key ({\"key\", \"found\", \"vector\", \"metadata_base64\"}).") var json = false
    @Flag(help: "Leave the vectors out of the output.") var noVectors = false

    func run() throws {
        let wanted = try keys.keys()
        let reply = try options.withClient { try await $0.call(.fetch(keys: wanted)) }
        guard case let .fetchResult(entries) = reply, entries.count == wanted.count else {
            throw ValidationError("the coordinator answered Fetch with \(reply.name)")
        }
        let noVectors = self.noVectors
        for entry in entries {
            if json {
                var object: [String: Any] = ["key": entry.key, "found": entry.found]
                if entry.found {
                    if !noVectors { object["vector"] = entry.vector.map(Double.init) }
                    object["metadata_base64"] = Data(entry.metadata).base64EncodedString()
                }
                try JSONLines.print([object])
            } else if entry.found {
                let vector = noVectors ? "" : " " + entry.vector.map { String(format: "%.6g", $0) }.joined(separator: ",")
                print("\(entry.key.debugDescription) found, \(entry.metadata.count) bytes of metadata\(vector)")
            } else {
                print("\(entry.key.debugDescription) not found")
            }
        }
        let missing = entries.filter { !$0.found }.count
        if missing > 0 {
            printError("\(missing) of \(entries.count) keys not found")
            throw ExitCode.failure
        }
    }
}

/// `pharos delete`: deletes entries by key, durably on every copy before it returns.
struct DeleteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete entries by key (durable on every copy when acknowledged); keys not stored are no error.")

    @OptionGroup var options: CoordinatorOptions
    @OptionGroup var keys: KeyArguments
    @Flag(help: "Print the result as one JSON object ({\"requested\", \"deleted\"}).") var json = false

    func run() throws {
        let wanted = try keys.keys()
        let reply = try options.withClient { try await $0.call(.delete(keys: wanted)) }
        guard case let .deleteResult(deleted) = reply else { throw ValidationError("the coordinator answered Delete with \(reply.name)") }
        if json {
            try JSONLines.print([["requested": wanted.count, "deleted": deleted]])
        } else {
            print("deleted \(deleted) of \(wanted.count) keys (the others were not stored)")
        }
    }
}

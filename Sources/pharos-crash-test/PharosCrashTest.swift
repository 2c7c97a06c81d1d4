import ArgumentParser
import PharosVectors

/// `pharos-crash-test`: the storage crash harness. `run` (the default) starts `drive` in a
/// child process, kills it with SIGKILL at each maintenance step and at random moments, and
/// checks that every acknowledged write survived. A test harness, so not part of the shipped
/// `pharos-shard`.
@main
struct PharosCrashTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pharos-crash-test",
        abstract: "Pharos storage crash harness: SIGKILL a writer repeatedly, check every acknowledged write.",
        subcommands: [CrashTestCommand.self, DriveCommand.self],
        defaultSubcommand: CrashTestCommand.self)

    static func main() {
        OpenBLASThreads.pinBeforeLoad()
        Self.main(nil)
    }
}

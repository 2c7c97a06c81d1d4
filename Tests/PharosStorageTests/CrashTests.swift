import Foundation
import PharosTestSupport
import Testing

/// Runs the crash harness (`pharos-crash-test`) in a bounded form: the driver is
/// killed with SIGKILL at each maintenance step and at random moments, and every
/// acknowledged write is checked after each restart. CI runs a longer form; see README.
@Suite struct CrashTests {
    /// The `pharos-crash-test` binary next to the test bundle (SwiftPM builds every product).
    static var binary: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("pharos-crash-test").path
    }

    /// A real full file system (a 4 MiB tmpfs in a private mount namespace, so root only).
    @Test(.enabled(if: getuid() == 0, "mounting a small tmpfs needs root"))
    func fullDiskFailsTheWriteAndKeepsEverythingAcknowledged() async throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Scripts/disk-full-test.sh").path
        let (status, text) = try await ProcessRunner.run("/bin/bash", [script, Self.binary])
        #expect(status == 0, "\(text)")
        #expect(text.contains("disk-full test passed: the write failed with"), "\(text)")
        #expect(text.contains("No space left on device"), "\(text)")
    }

    @Test func acknowledgedWritesSurviveKills() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "build pharos-crash-test first (swift build)")
        let (status, text) = try await ProcessRunner.run(Self.binary, ["--kills", "8", "--maximum-delay", "300", "--seed", "7"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("crash-test passed: 8 kills"), "\(text)")
        for event in ["seal.frozen", "seal.segment-written", "compaction.segment-written", "persist.deletions-written",
                      "persist.manifest-written", "persist.files-removed"] {
            #expect(text.contains("\(event) 1"), "no kill at \(event): \(text)")
        }
    }
}

import Foundation
import Testing

/// Runs the crash harness (`pharos-shard crash-test`) in a bounded form: the driver is
/// killed with SIGKILL at each maintenance step and at random moments, and every
/// acknowledged write is checked after each restart. CI runs a longer form; see README.
@Suite struct CrashTests {
    /// The `pharos-shard` binary next to the test bundle (SwiftPM builds every product).
    static var binary: String {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return bundle.appendingPathComponent("pharos-shard").path
    }

    @Test func acknowledgedWritesSurviveKills() throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.binary), "build pharos-shard first (swift build)")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = ["crash-test", "--kills", "8", "--maximum-delay", "300", "--seed", "7"]
        var environment = ProcessInfo.processInfo.environment
        environment["OPENBLAS_NUM_THREADS"] = "1"
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("crash-test passed: 8 kills"), "\(text)")
        for event in ["seal.frozen", "seal.segment-written", "compaction.segment-written", "persist.deletions-written",
                      "persist.manifest-written", "persist.files-removed"] {
            #expect(text.contains("\(event) 1"), "no kill at \(event): \(text)")
        }
    }
}

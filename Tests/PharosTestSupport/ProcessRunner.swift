import Foundation

/// Runs a command to completion on a thread of its own, so that a test waiting for it never
/// blocks the Swift concurrency pool that in-process servers of other tests need.
public enum ProcessRunner {
    /// Runs `command` with `arguments` (OpenBLAS pinned to one thread); returns its exit
    /// status and its standard output and error, interleaved.
    public static func run(_ command: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(with: Result {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: command)
                    process.arguments = arguments
                    process.environment = ChildEnvironment.forChildren()
                    let output = Pipe()
                    process.standardOutput = output
                    process.standardError = output
                    try process.run()
                    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                    process.waitUntilExit()
                    return (process.terminationStatus, text)
                })
            }.start()
        }
    }
}

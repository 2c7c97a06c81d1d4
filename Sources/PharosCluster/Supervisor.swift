import Foundation

/// Keeps the processes of a local cluster running: starts each one and waits for its
/// `listening on` line, restarts one that dies (with backoff) while the others go on serving,
/// and stops them all, once, when told to.
public final class Supervisor: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock`.

    /// One supervised process.
    public struct Program: Sendable {
        /// Its name in messages ("shard-1", "coordinator").
        public var name: String
        /// The executable.
        public var binary: URL
        /// Its arguments.
        public var arguments: [String]

        /// A program to supervise.
        public init(name: String, binary: URL, arguments: [String]) {
            self.name = name
            self.binary = binary
            self.arguments = arguments
        }
    }

    /// Where the supervisor says what happens (starts, deaths, restarts).
    private let report: @Sendable (String) -> Void

    /// A supervisor reporting through `report` (standard error by default).
    public init(report: @escaping @Sendable (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) {
        self.report = report
    }

    /// Restart backoff: 0.5 s doubling to 30 s; a process that stayed up a minute starts over.
    public static let firstDelay = 0.5, longestDelay = 30.0, stableAfter = 60.0

    private let lock = NSLock()
    private var running: [String: Process] = [:]
    private var delays: [String: Double] = [:]
    private var stopping = false

    /// Starts `program` and waits for it to listen; throws (with what it said) if it does not.
    public func start(_ program: Program) throws {
        let process = Process()
        process.executableURL = program.binary
        process.arguments = program.arguments
        let out = Pipe()
        process.standardOutput = out
        let started = Date()
        process.terminationHandler = { [weak self] ended in self?.ended(program, ended, startedAt: started) }
        try lock.withLock {
            guard !stopping else { throw SupervisorError.stopping }
            try process.run()
            running[program.name] = process
        }
        // Its first line says where it listens; nothing else is written to standard output.
        let line = String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
        guard line.contains("listening on") else {
            throw SupervisorError.didNotStart(program.name, line.isEmpty ? "it exited (see its messages above)" : line)
        }
        report("\(program.name): \(line.trimmingCharacters(in: .whitespacesAndNewlines))")
    }

    private func ended(_ program: Program, _ process: Process, startedAt: Date) {
        let (restart, delay) = lock.withLock { () -> (Bool, Double) in
            guard !stopping, running[program.name] === process else { return (false, 0) }
            running[program.name] = nil
            let stable = Date().timeIntervalSince(startedAt) >= Self.stableAfter
            let delay = stable ? Self.firstDelay : delays[program.name] ?? Self.firstDelay
            delays[program.name] = min(delay * 2, Self.longestDelay)
            return (true, delay)
        }
        guard restart else { return }
        report("\(program.name) \(Self.describe(process)); restarting it in \(String(format: "%.1f", delay)) s (the others keep serving)")
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [weak self] in
            guard let self else { return }
            do {
                try self.start(program)
                report("\(program.name) restarted")
            } catch SupervisorError.stopping {
                return
            } catch {
                report("\(program.name) did not restart: \(error)")
                // `ended` schedules the next attempt when the failed one exits.
            }
        }
    }

    /// How long a process may take to stop after SIGTERM before it is killed.
    public static let stopGrace = 40.0

    /// Stops every process (SIGTERM; SIGKILL for one still running after `stopGrace`, which
    /// is longer than a server's own 30 s drain); later calls do nothing.
    public func stopAll() {
        let processes = lock.withLock { () -> [(String, Process)] in
            guard !stopping else { return [] }
            stopping = true
            return running.sorted { $0.key < $1.key }
        }
        for (_, process) in processes where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(Self.stopGrace)
        while processes.contains(where: { $0.1.isRunning }) && Date() < deadline { usleep(50_000) }
        for (name, process) in processes where process.isRunning {
            report("\(name) did not stop within \(Int(Self.stopGrace)) s of SIGTERM: killing it")
            kill(process.processIdentifier, SIGKILL)
        }
        for (name, process) in processes {
            process.waitUntilExit()
            if process.terminationReason == .uncaughtSignal || process.terminationStatus != 0 {
                report("\(name) \(Self.describe(process))")
            }
        }
    }

    /// "exited with status 3" or "was killed by SIGKILL".
    public static func describe(_ process: Process) -> String {
        guard process.terminationReason == .uncaughtSignal else { return "exited with status \(process.terminationStatus)" }
        return "was killed by \(signalName(process.terminationStatus))"
    }

    /// The name of signal `number` ("SIGKILL"), or "signal N" for one without a common name.
    public static func signalName(_ number: Int32) -> String {
        let names: [Int32: String] = [SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
                                      SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV",
                                      SIGPIPE: "SIGPIPE", SIGTERM: "SIGTERM", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ"]
        return names[number] ?? "signal \(number)"
    }
}

/// Why a supervised process did not start.
public enum SupervisorError: Error, CustomStringConvertible {
    /// The supervisor is stopping everything: nothing new is started.
    case stopping
    /// The named program exited, or said something else, before saying where it listens.
    case didNotStart(String, String)

    public var description: String {
        switch self {
        case .stopping: "the cluster is stopping"
        case let .didNotStart(name, said): "\(name) did not start: \(said)"
        }
    }
}

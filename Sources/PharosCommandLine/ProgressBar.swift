import Foundation

/// A one-line progress display on standard error with rate and ETA, redrawn at most ten
/// times a second on a terminal; elsewhere (a log under systemd or nohup) a plain line every
/// `plainInterval` seconds, and the final line. Rate and ETA count only the work done since the
/// bar started (a resumed job's earlier work is its baseline, not speed).
public final class ProgressBar: @unchecked Sendable {
    // @unchecked: the mutable state (`lastDraw`, `total`, `baseline`, `waitingForBaseline`) is
    // guarded by `lock`.
    private let lock = NSLock()
    private let label: String
    private var total: Int
    private let start = Date()
    private var lastDraw = Date.distantPast
    private let interactive = isatty(STDERR_FILENO) != 0
    /// Seconds between the plain lines written when standard error is not a terminal.
    public static let plainInterval: TimeInterval = 5

    private var baseline: Int
    private var waitingForBaseline: Bool

    /// A bar for `total` units of work, `baseline` of them done before it started; with
    /// `baselineFromFirstUpdate`, the first update's count is the baseline (a job that learns
    /// what an earlier run did only once it starts).
    public init(_ label: String, total: Int, baseline: Int = 0, baselineFromFirstUpdate: Bool = false) {
        self.label = label
        self.total = total
        self.baseline = baseline
        waitingForBaseline = baselineFromFirstUpdate
    }

    /// Redraws with `done` units finished.
    public func update(_ done: Int) {
        lock.lock()
        defer { lock.unlock() }
        if waitingForBaseline {
            waitingForBaseline = false
            baseline = done
            return
        }
        let now = Date()
        if !interactive {
            if lastDraw == .distantPast { lastDraw = start }
            guard now.timeIntervalSince(lastDraw) >= Self.plainInterval, done < total else { return }
            lastDraw = now
            draw(done, final: false)
            return
        }
        guard now.timeIntervalSince(lastDraw) >= 0.1 || done >= total else { return }
        lastDraw = now
        draw(done, final: false)
    }

    /// Redraws with `done` of `total` units finished (for work whose size is learnt as it goes).
    public func update(_ done: Int, of total: Int) {
        lock.withLock { self.total = total }
        update(done)
    }

    /// Draws the final line (always, also when not a terminal).
    public func finish() {
        lock.withLock { draw(total, final: true) }
    }

    private func draw(_ done: Int, final: Bool) {
        let elapsed = Date().timeIntervalSince(start)
        let fraction = total > 0 ? Double(done) / Double(total) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let rate = elapsed > 0 ? Double(Swift.max(0, done - baseline)) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(format: "%@ [%@] %d/%d %.0f/s %@ %.1fs",
                          label, bar, done, total, rate, final ? "took" : "eta", final ? elapsed : eta)
        let text = (interactive ? "\r\u{1B}[K" : "") + line + (final || !interactive ? "\n" : "")
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// Writes a line to standard error.
public func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

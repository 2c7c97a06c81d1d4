import Foundation

/// The process's resident memory from `/proc/self/status`: anonymous (heaps, in-memory
/// segments) and file-backed (mapped segment pages actually in RAM).
public struct ProcessMemory: Sendable, Equatable {
    /// Resident anonymous bytes (`RssAnon`).
    public var anonymousBytes: Int
    /// Resident file-backed bytes (`RssFile`): with mmapped segments, the pages touched.
    public var fileBytes: Int

    /// Reads the current figures; zeros where the kernel does not report them.
    public static func current() -> ProcessMemory {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else {
            return ProcessMemory(anonymousBytes: 0, fileBytes: 0)
        }
        return parse(text)
    }

    /// The figures in a `/proc/PID/status` text (sizes there are in kB).
    static func parse(_ status: String) -> ProcessMemory {
        var memory = ProcessMemory(anonymousBytes: 0, fileBytes: 0)
        for line in status.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == " " || $0 == "\t" })
            guard parts.count >= 2, let kilobytes = Int(parts[1]) else { continue }
            switch parts[0] {
            case "RssAnon": memory.anonymousBytes = kilobytes * 1024
            case "RssFile": memory.fileBytes = kilobytes * 1024
            default: break
            }
        }
        return memory
    }

    /// Registers gauges of resident memory, refreshed at each scrape.
    public static func register(in metrics: MetricsRegistry) {
        let anonymous = metrics.gauge("pharos_process_resident_anonymous_bytes", help: "Resident anonymous memory (heaps, in-memory segments).")
        let file = metrics.gauge("pharos_process_resident_file_bytes",
                                 help: "Resident file-backed memory: the mmapped segment pages in RAM (and the binary's own pages).")
        metrics.onScrape {
            let now = ProcessMemory.current()
            anonymous.set(Double(now.anonymousBytes))
            file.set(Double(now.fileBytes))
        }
    }
}

import Foundation
import Logging
import NIOConcurrencyHelpers

/// A swift-log handler that writes one JSON object per line to standard error:
/// `{"time":"…","level":"info","logger":"pharos.shard","message":"…", …metadata}`.
/// What log collectors (journald's JSON export, Loki, Elasticsearch) ingest without parsing
/// rules. Metadata values are written as strings; keys never collide with the fixed fields
/// (a metadata key `message` becomes `meta.message`).
public struct JSONLogHandler: LogHandler {
    /// Lines are written whole under one lock, so threads never interleave within a line.
    private static let output = NIOLockedValueBox(FileHandle.standardError)
    private static let fixedFields: Set<String> = ["time", "level", "logger", "message", "source"]

    private let label: String
    /// Lines below this level are dropped.
    public var logLevel: Logger.Level = .info
    /// Metadata added to every line of this logger.
    public var metadata: Logger.Metadata = [:]
    /// Metadata from the context of each line (the request being served).
    public var metadataProvider: Logger.MetadataProvider?

    /// A handler for the logger named `label`, adding what `metadataProvider` gives to each line.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: String] = [:]
        let provided = metadataProvider?.get() ?? [:]
        for (key, value) in metadata.merging(provided, uniquingKeysWith: { _, new in new })
            .merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
            fields[Self.fixedFields.contains(key) ? "meta.\(key)" : key] = "\(value)"
        }
        let line = Self.line(time: Date(), level: event.level, logger: label, message: "\(event.message)", fields: fields)
        Self.output.withLockedValue { $0.write(Data(line.utf8)) }
    }

    /// One JSON line (with its newline); keys after the fixed ones are sorted.
    static func line(time: Date, level: Logger.Level, logger: String, message: String, fields: [String: String]) -> String {
        var text = "{\"time\":\(quoted(timestamp(time))),\"level\":\(quoted(level.rawValue)),\"logger\":\(quoted(logger)),\"message\":\(quoted(message))"
        for key in fields.keys.sorted() { text += ",\(quoted(key)):\(quoted(fields[key] ?? ""))" }
        return text + "}\n"
    }

    /// RFC 3339 UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(milliseconds % 1000))
    }

    /// `text` as a JSON string literal (control characters escaped, UTF-8 kept).
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

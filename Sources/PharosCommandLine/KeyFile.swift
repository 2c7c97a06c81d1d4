import ArgumentParser
import Foundation

/// Key files: one key per line, line i naming row i of the vector file beside it (as
/// `pharos extract` writes them). A final newline is optional; other empty lines are kept, so a
/// stray one shows up as a count that disagrees with the rows rather than as shifted keys.
public enum KeyFile {
    /// The keys in `path`.
    public static func read(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read \(path) as UTF-8 text")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        return lines.last == "" ? Array(lines.dropLast()) : lines
    }

    /// The keys in `path`, which must be one per row of a `rows`-row vector file.
    public static func read(_ path: String, rows: Int) throws -> [String] {
        let keys = try read(path)
        guard keys.count == rows else { throw ValidationError("\(path): \(keys.count) keys for \(rows) rows") }
        return keys
    }
}

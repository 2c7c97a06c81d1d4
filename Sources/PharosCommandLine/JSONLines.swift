import Foundation
import PharosDurability

/// Machine-readable output: one JSON object per line (keys sorted, so lines are stable),
/// to standard output or to a file written atomically.
public enum JSONLines {
    /// One object as a line of JSON text (with its newline).
    public static func line(_ object: [String: Any]) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    /// Prints each object as a line on standard output.
    public static func print(_ objects: [[String: Any]]) throws {
        for object in objects { FileHandle.standardOutput.write(Data(try line(object).utf8)) }
    }

    /// Writes the objects as lines to `path`, replacing it atomically.
    public static func write(_ objects: [[String: Any]], to path: String) throws {
        try FileIO.writeAtomically(Array(objects.map(line).joined().utf8), to: path)
    }
}

/// A problem with a file: names the file, the byte offset when one applies, and what was
/// expected versus found. Thrown by `FileIO` and by every file format built on it (vector
/// files, index containers); storage translates it into its own `StorageError`.
public struct FileError: Error, CustomStringConvertible, Equatable {
    /// The file's path as given.
    public let path: String
    /// Byte offset of the problem, when it is about a place in the file.
    public let offset: Int?
    /// What was wrong, phrased as expected versus found.
    public let problem: String

    /// Creates an error.
    public init(path: String, offset: Int? = nil, problem: String) {
        self.path = path
        self.offset = offset
        self.problem = problem
    }

    public var description: String {
        if let offset { return "\(path): at byte \(offset): \(problem)" }
        return "\(path): \(problem)"
    }
}

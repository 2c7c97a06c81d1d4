/// Errors raised by indexes, with enough context to act on.
public enum IndexError: Error, CustomStringConvertible, Equatable {
    /// A vector's dimension does not match the index.
    case dimensionMismatch(expected: Int, found: Int)
    /// The index must be trained before this operation.
    case notTrained
    /// Too few training vectors for the requested configuration.
    case notEnoughTrainingData(needed: Int, found: Int, what: String)
    /// A vector holds NaN or an infinity.
    case nonFiniteValue(row: Int, column: Int)
    /// The number of ids differs from the number of vectors.
    case idCountMismatch(vectors: Int, ids: Int)
    /// An id that is not in the index.
    case unknownID(Int64)
    /// An id already present (ids must be unique).
    case duplicateID(Int64)
    /// A search or build parameter out of its allowed range.
    case invalidParameter(name: String, value: String, allowed: String)
    /// A factory string that does not parse.
    case invalidFactory(String)
    /// A damaged or foreign index file.
    case corruptFile(path: String, problem: String)

    public var description: String {
        switch self {
        case let .dimensionMismatch(expected, found): return "dimension mismatch: index holds \(expected)-D vectors, got \(found)-D"
        case .notTrained: return "the index is not trained: call train (or build) first"
        case let .notEnoughTrainingData(needed, found, what): return "\(what) needs at least \(needed) training vectors, got \(found)"
        case let .nonFiniteValue(row, column): return "vector \(row) has a non-finite value (NaN or infinity) at component \(column)"
        case let .idCountMismatch(vectors, ids): return "\(vectors) vectors but \(ids) ids"
        case let .unknownID(id): return "id \(id) is not in the index"
        case let .duplicateID(id): return "id \(id) is already in the index"
        case let .invalidParameter(name, value, allowed): return "\(name) = \(value) is out of range: allowed \(allowed)"
        case let .invalidFactory(message): return "invalid factory string: \(message)"
        case let .corruptFile(path, problem): return "\(path): \(problem)"
        }
    }
}

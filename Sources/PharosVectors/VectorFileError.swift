import PharosDurability

/// A problem with a vector file (path, byte offset, expected versus found): the durability
/// layer's `FileError`, under the name vector-file code has always used.
public typealias VectorFileError = FileError

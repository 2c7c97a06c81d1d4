/// Carries a raw pointer into concurrently executed closures.
///
/// Swift 6 refuses to capture unsafe pointers in `@Sendable` closures. Every use in Pharos
/// hands disjoint ranges of one buffer to different workers, and the buffer outlives the
/// parallel loop (it is owned by the caller, which waits for the loop to finish), so sharing
/// the address is safe.
package struct SendablePointer<Pointee>: @unchecked Sendable {
    /// The wrapped address.
    package let pointer: UnsafeMutablePointer<Pointee>
    /// Wraps a mutable pointer.
    package init(_ pointer: UnsafeMutablePointer<Pointee>) { self.pointer = pointer }
    /// Wraps a read-only pointer; the callee promises not to write through it.
    package init(readOnly pointer: UnsafePointer<Pointee>) { self.pointer = UnsafeMutablePointer(mutating: pointer) }
}

extension Array {
    /// Calls `body` with a `SendablePointer` to the array's storage, valid for the duration of
    /// `body`: the way to hand an output buffer to a parallel loop. The array must not be empty.
    package mutating func withSendablePointer<R>(_ body: (SendablePointer<Element>) throws -> R) rethrows -> R {
        precondition(!isEmpty, "withSendablePointer on an empty array")
        return try withUnsafeMutableBufferPointer { try body(SendablePointer($0.baseAddress!)) }
    }
}

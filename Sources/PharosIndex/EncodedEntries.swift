/// A batch of vectors encoded by an `IVFPQIndex` but not stored: for each row, its inverted
/// list, its unpacked PQ code and its refine code.
///
/// Storage logs these (so that replay needs no re-encoding) and appends them to its lists.
public struct EncodedEntries: Sendable, Equatable {
    /// List of each row.
    public var lists: [Int32]
    /// `count * layout.subquantizers` bytes, one byte per sub-quantizer.
    public var codes: [UInt8]
    /// `count * layout.refineBytes` bytes.
    public var refine: [UInt8]
    /// The layout the codes were made for.
    public let layout: CodeLayout

    /// Creates a batch, checking that the arrays agree in length.
    public init(lists: [Int32], codes: [UInt8], refine: [UInt8], layout: CodeLayout) {
        precondition(codes.count == lists.count * layout.subquantizers, "codes do not match the row count")
        precondition(refine.count == lists.count * layout.refineBytes, "refine codes do not match the row count")
        self.lists = lists
        self.codes = codes
        self.refine = refine
        self.layout = layout
    }

    /// Rows in the batch.
    public var count: Int { lists.count }

    /// Calls `body(row, list, code, refineCode)` for each row in order; `refineCode` is nil
    /// without refinement. The pointers are valid only during the call.
    public func forEachEntry(_ body: (Int, Int, UnsafePointer<UInt8>, UnsafePointer<UInt8>?) throws -> Void) rethrows {
        let m = layout.subquantizers, r = layout.refineBytes
        try codes.withUnsafeBufferPointer { c in
            try refine.withUnsafeBufferPointer { rc in
                for row in 0..<lists.count {
                    try body(row, Int(lists[row]), c.baseAddress! + row * m, r > 0 ? rc.baseAddress! + row * r : nil)
                }
            }
        }
    }
}

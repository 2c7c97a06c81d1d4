import CLZ4

/// LZ4 block compression of byte arrays (the raw size is stored by the caller).
enum LZ4Block {
    /// Largest input LZ4 accepts in one block.
    static let maximumInput = Int(LZ4_MAX_INPUT_SIZE)

    /// Compresses `input` (at most `maximumInput` bytes).
    static func compress(_ input: UnsafeRawBufferPointer) -> [UInt8] {
        precondition(input.count <= maximumInput, "LZ4 block of \(input.count) bytes exceeds \(maximumInput)")
        guard input.count > 0 else { return [] }
        let bound = Int(LZ4_compressBound(Int32(input.count)))
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { o in
            LZ4_compress_default(input.baseAddress!.assumingMemoryBound(to: CChar.self),
                                 o.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(input.count), Int32(bound))
        }
        precondition(written > 0, "LZ4 compression cannot fail with a bound-sized output")
        out.removeSubrange(Int(written)...)
        return out
    }

    /// Compresses an array.
    static func compress(_ input: [UInt8]) -> [UInt8] { input.withUnsafeBytes { compress($0) } }

    /// Decompresses a block that must expand to exactly `rawSize` bytes; nil when the block
    /// is malformed (the caller names the file and block).
    static func decompress(_ input: UnsafeRawBufferPointer, rawSize: Int) -> [UInt8]? {
        guard rawSize > 0 else { return input.count == 0 ? [] : nil }
        guard rawSize <= maximumInput, input.count > 0 else { return nil }
        var out = [UInt8](repeating: 0, count: rawSize)
        let n = out.withUnsafeMutableBytes { o in
            LZ4_decompress_safe(input.baseAddress!.assumingMemoryBound(to: CChar.self),
                                o.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(input.count), Int32(rawSize))
        }
        return n == Int32(rawSize) ? out : nil
    }
}

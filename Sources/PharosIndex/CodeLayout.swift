import Foundation
import PharosKernels

/// How an IVF-PQ index lays out one entry's codes inside an inverted list.
public struct CodeLayout: Sendable, Equatable {
    /// PQ sub-quantizers (bytes of an unpacked code).
    public let subquantizers: Int
    /// 8 (one byte per sub-quantizer, entries back to back) or 4 (fast-scan blocks of 32).
    public let bits: Int
    /// Refine-code bytes per entry (0 without refinement).
    public let refineBytes: Int

    /// Creates a layout.
    public init(subquantizers: Int, bits: Int, refineBytes: Int) {
        precondition(bits == 8 || bits == 4, "codes are 8 or 4 bits")
        self.subquantizers = subquantizers
        self.bits = bits
        self.refineBytes = refineBytes
    }

    /// Sub-quantizers rounded up to even (fast-scan blocks hold pairs).
    public var paddedSubquantizers: Int { (subquantizers + 1) & ~1 }
    /// Bytes of one fast-scan block of 32 entries.
    public var blockBytes: Int { pharos_fs4_block_bytes(paddedSubquantizers) }

    /// Bytes of PQ codes for a list of `count` entries.
    public func codeBytes(count: Int) -> Int {
        bits == 8 ? count * subquantizers : ((count + 31) / 32) * blockBytes
    }

    /// Writes entry `position`'s unpacked code (`subquantizers` bytes) into a list's code
    /// area, which must already hold `codeBytes(count: position + 1)` bytes, zeroed beyond
    /// the previous entries in the 4-bit case.
    public func store(_ code: UnsafePointer<UInt8>, at position: Int, in codes: UnsafeMutablePointer<UInt8>) {
        if bits == 8 {
            (codes + position * subquantizers).update(from: code, count: subquantizers)
            return
        }
        let block = codes + (position / 32) * blockBytes
        let j = position % 32
        let shift: UInt8 = j < 16 ? 0 : 4
        for s in 0..<subquantizers {
            block[s * 16 + j % 16] |= (code[s] & 15) << shift
        }
    }

    /// Reads entry `position`'s unpacked code back from a list's code area.
    public func load(at position: Int, from codes: UnsafePointer<UInt8>, into code: UnsafeMutablePointer<UInt8>) {
        if bits == 8 {
            code.update(from: codes + position * subquantizers, count: subquantizers)
            return
        }
        for s in 0..<subquantizers { code[s] = pharos_fs4_code(codes, paddedSubquantizers, position, s) }
    }
}

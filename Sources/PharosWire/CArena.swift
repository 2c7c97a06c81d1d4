#if canImport(Glibc)
import Glibc
#endif
import CProtobufC

/// Owns the C memory of one message being encoded; everything is freed with the arena, so no
/// C pointer outlives `WireCodec.encode`.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit { for p in allocations { free(p) } }

    /// Zeroed memory for `count` values of `T`.
    func allocate<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        let raw = calloc(Swift.max(1, count), MemoryLayout<T>.stride)!
        allocations.append(raw)
        return raw.bindMemory(to: T.self, capacity: Swift.max(1, count))
    }

    /// A NUL-terminated copy of `s` (callers have rejected embedded NULs).
    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let bytes = Array(s.utf8)
        let p = allocate(CChar.self, count: bytes.count + 1)
        bytes.withUnsafeBytes { UnsafeMutableRawPointer(p).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        return p
    }

    func strings(_ xs: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        guard !xs.isEmpty else { return nil }
        let p = allocate(UnsafeMutablePointer<CChar>?.self, count: xs.count)
        for (i, s) in xs.enumerated() { p[i] = string(s) }
        return p
    }

    func floats(_ xs: [Float]) -> UnsafeMutablePointer<Float>? {
        guard !xs.isEmpty else { return nil }
        let p = allocate(Float.self, count: xs.count)
        p.update(from: xs, count: xs.count)
        return p
    }

    func uint32s(_ xs: [UInt32]) -> UnsafeMutablePointer<UInt32>? {
        guard !xs.isEmpty else { return nil }
        let p = allocate(UInt32.self, count: xs.count)
        p.update(from: xs, count: xs.count)
        return p
    }

    func bytes(_ xs: [UInt8]) -> ProtobufCBinaryData {
        guard !xs.isEmpty else { return ProtobufCBinaryData(len: 0, data: nil) }
        let p = allocate(UInt8.self, count: xs.count)
        p.update(from: xs, count: xs.count)
        return ProtobufCBinaryData(len: xs.count, data: p)
    }

    /// A zeroed message initialised by its generated `init` function.
    func message<T>(_ type: T.Type, _ initialise: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let p = allocate(T.self)
        initialise(p)
        return p
    }
}

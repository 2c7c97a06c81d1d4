import CProtobufC
import PharosVectors
import PharosWireC

/// Builds *valid* protobuf envelopes whose fields are absent, zero, negative, NaN, huge,
/// repeated or malformed in content, for every message type of `Protocols/pharos.proto`.
///
/// Driven by protoc-c's descriptors, so a field added to the protocol is fuzzed without a
/// change here. Byte-flipping alone almost never produces a well-formed message with one
/// field missing or extreme, which is where servers trusted their input.
struct StructuredFuzzer {
    var rng: SplitMix64
    /// The collection's dimension: vector fields are often a whole number of rows of it.
    let dimension: Int

    init(seed: UInt64, dimension: Int) {
        rng = SplitMix64(seed: seed)
        self.dimension = dimension
    }

    /// One envelope's bytes: a request id and one body (a known one, mostly), and the body's
    /// message name ("Search", ...) for reports.
    mutating func envelope(requestID: UInt64) -> (bytes: [UInt8], body: String) {
        withUnsafePointer(to: pharos__envelope__descriptor) { envelope in
            var out: [UInt8] = []
            key(1, wireType: 0, into: &out)
            varint(requestID, into: &out)
            let d = envelope.pointee
            let bodies = (0..<Int(d.n_fields)).filter { d.fields[$0].type == PROTOBUF_C_TYPE_MESSAGE }
            if chance(2) {   // a body number this protocol does not have
                key(99, wireType: 2, into: &out)
                varint(0, into: &out)
                return (out, "unknown body")
            }
            // One body, now and then a second: protobuf keeps the last of a oneof.
            var name = ""
            for _ in 0..<(chance(3) ? 2 : 1) {
                let field = d.fields[bodies[pick(bodies.count)]]
                let sub = field.descriptor!.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                let body = message(sub, depth: 0)
                key(field.id, wireType: 2, into: &out)
                varint(UInt64(body.count), into: &out)
                out += body
                name = String(cString: sub.pointee.short_name)
            }
            return (out, name)
        }
    }

    // MARK: Messages and fields

    private mutating func message(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, depth: Int) -> [UInt8] {
        var out: [UInt8] = []
        let d = descriptor.pointee
        for i in 0..<Int(d.n_fields) {
            let field = d.fields[i]
            if chance(30) { continue }   // absent
            let repeated = field.label == PROTOBUF_C_LABEL_REPEATED
            // Scalars given twice on the wire now and then: the last one wins.
            let times = repeated ? repetitions() : (chance(8) ? 2 : 1)
            if repeated && field.type == PROTOBUF_C_TYPE_FLOAT && chance(70) {
                packedFloats(field.id, count: floatCount(), into: &out)
                continue
            }
            for _ in 0..<times { value(of: field, depth: depth, into: &out) }
        }
        if chance(5) {   // an unknown field, which must be skipped
            key(200 + UInt32(pick(50)), wireType: 0, into: &out)
            varint(rng.next(), into: &out)
        }
        return out
    }

    private mutating func value(of field: ProtobufCFieldDescriptor, depth: Int, into out: inout [UInt8]) {
        switch field.type {
        case PROTOBUF_C_TYPE_FLOAT:
            key(field.id, wireType: 5, into: &out)
            var bits = floatValue().bitPattern.littleEndian
            withUnsafeBytes(of: &bits) { out += $0 }
        case PROTOBUF_C_TYPE_STRING:
            let s = stringValue()
            key(field.id, wireType: 2, into: &out)
            varint(UInt64(s.count), into: &out)
            out += s
        case PROTOBUF_C_TYPE_BYTES:
            let b = bytesValue()
            key(field.id, wireType: 2, into: &out)
            varint(UInt64(b.count), into: &out)
            out += b
        case PROTOBUF_C_TYPE_MESSAGE:
            guard depth < 4, let sub = field.descriptor?.assumingMemoryBound(to: ProtobufCMessageDescriptor.self) else { return }
            let m = message(sub, depth: depth + 1)
            key(field.id, wireType: 2, into: &out)
            varint(UInt64(m.count), into: &out)
            out += m
        default:   // varints: uint32, uint64, bool, enums
            key(field.id, wireType: 0, into: &out)
            varint(integerValue(), into: &out)
        }
    }

    // MARK: Values

    private mutating func integerValue() -> UInt64 {
        let choices: [UInt64] = [0, 1, 2, 3, 4, 5, 16, UInt64(dimension), UInt64(dimension + 1), 100, 4096, 4097, 16385, 65536, 65537,
                                 1 << 20, 1 << 31, UInt64(UInt32.max), UInt64(UInt32.max) + 1, UInt64.max,
                                 UInt64(bitPattern: -1), UInt64(bitPattern: -4096)]
        return chance(80) ? choices[pick(choices.count)] : rng.next() % 1000
    }

    private mutating func floatValue() -> Float {
        let choices: [Float] = [0, -0.0, 1, -1, 0.5, .nan, -.nan, .infinity, -.infinity, .greatestFiniteMagnitude,
                                .leastNonzeroMagnitude, 1e-30, 3]
        return chance(40) ? choices[pick(choices.count)] : Float(Int(rng.next() % 2000) - 1000) / 100
    }

    private mutating func floatCount() -> Int {
        let rows = [0, 1, 2, 3, 10, 100][pick(6)]
        switch pick(4) {
        case 0: return rows * dimension
        case 1: return rows * dimension + 1
        case 2: return pick(40)
        default: return chance(10) ? 70_000 : dimension
        }
    }

    private mutating func packedFloats(_ id: UInt32, count: Int, into out: inout [UInt8]) {
        key(id, wireType: 2, into: &out)
        varint(UInt64(count * 4), into: &out)
        for _ in 0..<count {
            var bits = floatValue().bitPattern.littleEndian
            withUnsafeBytes(of: &bits) { out += $0 }
        }
    }

    private mutating func repetitions() -> Int {
        [0, 1, 1, 2, 3, 5, 50][pick(7)]
    }

    private mutating func stringValue() -> [UInt8] {
        switch pick(10) {
        case 0: return []
        case 1: return Array("k\(pick(60))".utf8)   // keys that exist
        case 2: return Array(repeating: UInt8(ascii: "x"), count: 2000)
        case 3: return Array("row-5".utf8) + [0] + Array("evil".utf8)
        case 4: return [0x61, 0xff, 0xfe, 0x62]     // not UTF-8
        case 5: return Array("ключ-\(pick(5))".utf8)
        case 6: return [0]
        default: return Array("f\(pick(100))".utf8)
        }
    }

    private mutating func bytesValue() -> [UInt8] {
        switch pick(5) {
        case 0: return []
        case 1: return Array("PHAROSIX".utf8) + (0..<pick(64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case 2: return Array("PHXWHITN".utf8) + (0..<pick(64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        default: return (0..<pick(300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
    }

    // MARK: Wire format

    private func key(_ id: UInt32, wireType: UInt64, into out: inout [UInt8]) {
        varint(UInt64(id) << 3 | wireType, into: &out)
    }

    private func varint(_ value: UInt64, into out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    private mutating func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
    private mutating func chance(_ percent: Int) -> Bool { pick(100) < percent }
}

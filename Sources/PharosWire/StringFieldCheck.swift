import CProtobufC
import PharosWireC

/// Checks every `string` field of an encoded message, at any depth, for what protobuf-c cannot
/// represent faithfully: a NUL byte (protobuf-c hands strings over NUL-terminated, so `a\0b`
/// would silently become `a`) and invalid UTF-8 (which Swift would repair into U+FFFD, so two
/// different keys could become one).
///
/// The walk is driven by protoc-c's own descriptors, so it covers every message and field of
/// `Protocols/pharos.proto` without a list to keep in step. It runs on bytes protobuf-c has
/// already unpacked successfully, so the framing inside is known to be sound.
enum StringFieldCheck {
    /// The first bad string field of `bytes` (a message of type `descriptor`), named by path.
    static func firstProblem(in bytes: UnsafeRawBufferPointer, descriptor: UnsafePointer<ProtobufCMessageDescriptor>) -> String? {
        var problem: String?
        walk(bytes, descriptor, path: { String(cString: descriptor.pointee.short_name) }, depth: 0, problem: &problem)
        return problem
    }

    /// protobuf-c itself limits nesting; this bound only keeps the walk finite on any input.
    private static let maximumDepth = 32

    /// `path` names the message for a report; it is built only when there is one.
    private static func walk(_ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
                             path: () -> String, depth: Int, problem: inout String?) {
        guard depth < maximumDepth else { problem = "\(path()): nested too deeply"; return }
        var position = 0
        // Occurrences of each length-delimited field so far: a repeated field's index, counted
        // as the walk goes (counting from the start for each one made long repeated messages,
        // such as a BucketWrite's entries, quadratic).
        var seen: [UInt32: Int] = [:]
        while position < bytes.count, problem == nil {
            guard let key = varint(bytes, &position) else { problem = "\(path()): truncated field key"; return }
            let number = UInt32(truncatingIfNeeded: key >> 3)
            switch key & 7 {
            case 0: guard varint(bytes, &position) != nil else { problem = "\(path()): truncated varint"; return }
            case 1: position += 8
            case 5: position += 4
            case 2:
                guard let length = varint(bytes, &position), length <= UInt64(bytes.count - position) else {
                    problem = "\(path()): truncated length-delimited field"
                    return
                }
                let start = position
                position += Int(length)
                let index = seen[number, default: 0]
                seen[number] = index + 1
                guard let field = field(number, in: descriptor) else { continue }   // unknown: kept opaque
                // Names are built only for a report, or to name a nested message's fields.
                func fieldPath() -> String {
                    let name = String(cString: field.pointee.name)
                    guard field.pointee.label == PROTOBUF_C_LABEL_REPEATED else { return "\(path()).\(name)" }
                    return "\(path()).\(name)[\(index)]"
                }
                let payload = UnsafeRawBufferPointer(rebasing: bytes[start ..< position])
                switch field.pointee.type {
                case PROTOBUF_C_TYPE_STRING:
                    if let nul = payload.firstIndex(of: 0) {
                        problem = "\(fieldPath()) contains a NUL byte at offset \(nul), which is not allowed"
                    } else if !isUTF8(payload) {
                        problem = "\(fieldPath()) is not valid UTF-8"
                    }
                case PROTOBUF_C_TYPE_MESSAGE:
                    guard let sub = field.pointee.descriptor?.assumingMemoryBound(to: ProtobufCMessageDescriptor.self) else { continue }
                    // Below the envelope a body is named by its message type ("Upsert.keys[3]").
                    walk(payload, sub, path: { depth == 0 ? String(cString: sub.pointee.short_name) : fieldPath() }, depth: depth + 1, problem: &problem)
                default:
                    continue   // bytes, or a packed repeated number
                }
            default:
                problem = "\(path()): wire type \(key & 7) of field \(number) is not used by this protocol"
                return
            }
            if position > bytes.count { problem = "\(path()): field \(number) runs past the end"; return }
        }
    }

    /// UTF-8 validity, with a fast path for ASCII (nearly every key).
    private static func isUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        if !bytes.contains(where: { $0 >= 0x80 }) { return true }
        return String(validating: bytes, as: UTF8.self) != nil
    }

    private static func field(_ number: UInt32, in descriptor: UnsafePointer<ProtobufCMessageDescriptor>) -> UnsafePointer<ProtobufCFieldDescriptor>? {
        let d = descriptor.pointee
        for i in 0..<Int(d.n_fields) where d.fields[i].id == number { return d.fields + i }
        return nil
    }

    private static func varint(_ bytes: UnsafeRawBufferPointer, _ position: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while position < bytes.count, shift < 64 {
            let byte = bytes[position]
            position += 1
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }
}

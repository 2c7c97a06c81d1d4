/// A value of the pickle subset PyTorch's legacy checkpoints use.
indirect enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for `Int` (LONG1), as its little-endian two's-complement bytes.
    case wideInt([UInt8])
    case float(Double)
    case string(String)
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    /// A class or function named by module and name (GLOBAL), never resolved or run.
    case global(module: String, name: String)
    /// A persistent id (BINPERSID): in a checkpoint, a reference to a storage.
    case persistent(PickleValue)
    /// `callable(arguments...)` (REDUCE), recorded rather than run.
    case call(PickleValue, [PickleValue])
    case mark

    var int: Int? { if case let .int(v) = self { v } else { nil } }
    var string: String? { if case let .string(v) = self { v } else { nil } }
    var tuple: [PickleValue]? { if case let .tuple(v) = self { v } else { nil } }
}

/// A list that APPEND/APPENDS grow in place (shared through the memo).
final class PickleList {
    var items: [PickleValue] = []
}

/// A dict (or OrderedDict) that SETITEM/SETITEMS grow in place, keeping insertion order.
final class PickleDict {
    var entries: [(key: PickleValue, value: PickleValue)] = []
}

/// A pickle error: where in which file, and what.
public struct PickleError: Error, CustomStringConvertible {
    /// The file.
    public var path: String
    /// Byte offset of the problem.
    public var offset: Int
    /// What is wrong.
    public var problem: String
    public var description: String { "\(path): pickle at byte \(offset): \(problem)" }
}

/// Reads one pickle (protocol 2, the opcodes `torch.save`'s legacy format emits) without
/// executing anything: classes stay names and calls stay records, so a hostile file can do
/// no more than fail to parse. Limits: nesting and sizes are bounded by the input length.
struct PickleReader {
    let bytes: [UInt8]
    let path: String
    private(set) var position: Int

    init(bytes: [UInt8], path: String, offset: Int = 0) {
        self.bytes = bytes
        self.path = path
        self.position = offset
    }

    private func fail(_ problem: String) -> PickleError { PickleError(path: path, offset: position, problem: problem) }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - position else { throw fail("needs \(n) bytes, \(bytes.count - position) left") }
        defer { position += n }
        return bytes[position ..< position + n]
    }

    private mutating func uint(_ n: Int) throws -> Int {
        var v = 0
        for (i, b) in try take(n).enumerated() { v |= Int(b) << (8 * i) }
        return v
    }

    /// Reads the next pickle up to and including its STOP; returns its value.
    mutating func read() throws -> PickleValue {
        var stack: [PickleValue] = []
        var memo: [Int: PickleValue] = [:]
        func pop() throws -> PickleValue {
            guard let v = stack.popLast() else { throw fail("stack underflow") }
            return v
        }
        func popToMark() throws -> [PickleValue] {
            guard let m = stack.lastIndex(where: { if case .mark = $0 { true } else { false } }) else { throw fail("no MARK on the stack") }
            let items = Array(stack[(m + 1)...])
            stack.removeSubrange(m...)
            return items
        }
        func string(_ raw: ArraySlice<UInt8>) throws -> String {
            guard let s = String(validating: raw, as: UTF8.self) else { throw fail("invalid UTF-8 in a string") }
            return s
        }
        while true {
            let opcode = try take(1).first!
            switch opcode {
            case 0x80: _ = try take(1)                                        // PROTO
            case 0x2E: return try pop()                                       // STOP
            case 0x7D: stack.append(.dict(PickleDict()))                      // EMPTY_DICT
            case 0x5D: stack.append(.list(PickleList()))                      // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))                               // EMPTY_TUPLE
            case 0x28: stack.append(.mark)                                    // MARK
            case 0x4E: stack.append(.none)                                    // NONE
            case 0x88: stack.append(.bool(true))                              // NEWTRUE
            case 0x89: stack.append(.bool(false))                             // NEWFALSE
            case 0x4B: stack.append(.int(try uint(1)))                        // BININT1
            case 0x4D: stack.append(.int(try uint(2)))                        // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))   // BININT
            case 0x8A:                                                        // LONG1
                let n = try uint(1)
                let raw = Array(try take(n))
                if n <= 8 {
                    var v: Int64 = 0
                    for (i, b) in raw.enumerated() { v |= Int64(b) << (8 * Int64(i)) }
                    if n > 0, n < 8, raw[n - 1] & 0x80 != 0 { v -= Int64(1) << (8 * Int64(n)) }
                    stack.append(.int(Int(v)))
                } else {
                    stack.append(.wideInt(raw))
                }
            case 0x47:                                                        // BINFLOAT (big-endian)
                var bits: UInt64 = 0
                for b in try take(8) { bits = bits << 8 | UInt64(b) }
                stack.append(.float(Double(bitPattern: bits)))
            case 0x58: stack.append(.string(try string(try take(try uint(4)))))   // BINUNICODE
            case 0x8C: stack.append(.string(try string(try take(try uint(1)))))   // SHORT_BINUNICODE
            case 0x55: stack.append(.string(try string(try take(try uint(1)))))   // SHORT_BINSTRING
            case 0x63:                                                        // GLOBAL "module\nname\n"
                func line() throws -> String {
                    guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw fail("GLOBAL without a newline") }
                    let s = try string(bytes[position ..< end])
                    position = end + 1
                    return s
                }
                let module = try line()
                stack.append(.global(module: module, name: try line()))
            case 0x71: memo[try uint(1)] = stack.last                         // BINPUT
            case 0x72: memo[try uint(4)] = stack.last                         // LONG_BINPUT
            case 0x68, 0x6A:                                                  // BINGET, LONG_BINGET
                let key = try uint(opcode == 0x68 ? 1 : 4)
                guard let v = memo[key] else { throw fail("memo key \(key) was never stored") }
                stack.append(v)
            case 0x74: stack.append(.tuple(try popToMark()))                  // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                      // TUPLE1
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))          // TUPLE2
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3
            case 0x51: stack.append(.persistent(try pop()))                   // BINPERSID
            case 0x52:                                                        // REDUCE
                let arguments = try pop(), callable = try pop()
                guard let args = arguments.tuple else { throw fail("REDUCE arguments are not a tuple") }
                if case let .global(module, name) = callable, module == "collections", name == "OrderedDict" {
                    stack.append(.dict(PickleDict()))
                } else {
                    stack.append(.call(callable, args))
                }
            case 0x62: _ = try pop()                                          // BUILD: object state is not needed
            case 0x73:                                                        // SETITEM
                let value = try pop(), key = try pop()
                guard case let .dict(d)? = stack.last else { throw fail("SETITEM on a non-dict") }
                d.entries.append((key, value))
            case 0x75:                                                        // SETITEMS
                let items = try popToMark()
                guard case let .dict(d)? = stack.last, items.count % 2 == 0 else { throw fail("SETITEMS on a non-dict") }
                for i in stride(from: 0, to: items.count, by: 2) { d.entries.append((items[i], items[i + 1])) }
            case 0x61:                                                        // APPEND
                let value = try pop()
                guard case let .list(l)? = stack.last else { throw fail("APPEND on a non-list") }
                l.items.append(value)
            case 0x65:                                                        // APPENDS
                let items = try popToMark()
                guard case let .list(l)? = stack.last else { throw fail("APPENDS on a non-list") }
                l.items += items
            default:
                position -= 1
                throw fail("opcode 0x\(String(opcode, radix: 16)) is not one a legacy PyTorch checkpoint uses")
            }
        }
    }
}

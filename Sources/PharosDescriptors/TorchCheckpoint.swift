#if canImport(Glibc)
import Glibc
#endif
import PharosDurability
import PharosVectors

/// One tensor of a checkpoint, copied out contiguous (row-major) whatever its stored strides.
public struct Tensor: Sendable {
    /// The shape, outermost first.
    public var shape: [Int]
    /// `shape.reduce(1, *)` values, row-major.
    public var values: [Float]
}

/// The state dict of a PyTorch checkpoint in the legacy (non-zip) format, read without Python:
/// five pickles (magic number, protocol version, system info, the state dict, the storage keys)
/// followed by each storage's raw little-endian bytes, prefixed by an 8-byte element count, in
/// the order of the key list. Each tensor is `_rebuild_tensor_v2(storage, offset, size, stride,
/// ...)`; strides are honoured (converted weights are often not row-major).
public struct TorchCheckpoint: Sendable {
    /// The tensors by state-dict key, float32 and integer storages both as `Float`.
    public let tensors: [String: Tensor]
    /// State-dict keys in file order.
    public let keys: [String]
    /// The file read.
    public let path: String

    /// The storage element types read, by their PyTorch class names.
    enum StorageElement: String {
        case float = "FloatStorage", int = "IntStorage", long = "LongStorage", double = "DoubleStorage"
        var size: Int { self == .long || self == .double ? 8 : 4 }
    }

    static let legacyMagic: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]   // 0x1950a86a20f9469cfc6c

    /// Reads a checkpoint file; errors name the file and what is wrong.
    public init(path: String) throws {
        try self.init(bytes: FileIO.readWholeFile(path), path: path)
    }

    /// Reads a checkpoint from its bytes.
    public init(bytes: [UInt8], path: String) throws {
        func bad(_ problem: String) -> PickleError { PickleError(path: path, offset: 0, problem: problem) }
        if bytes.starts(with: [0x50, 0x4B, 0x03, 0x04]) {
            throw bad("a zip-format checkpoint (torch.save since PyTorch 1.6); this reads the legacy format the weights package ships")
        }
        var reader = PickleReader(bytes: bytes, path: path)
        guard case let .wideInt(magic) = try reader.read(), magic == Self.legacyMagic else {
            throw bad("not a legacy PyTorch checkpoint (magic number missing)")
        }
        guard try reader.read().int == 1001 else { throw bad("unsupported legacy protocol version (expected 1001)") }
        _ = try reader.read()   // system info: little-endian is checked per storage below
        guard case let .dict(stateDict) = try reader.read() else { throw bad("the state dict is not a dict") }
        guard case let .list(keyList) = try reader.read() else { throw bad("the storage key list is missing") }

        // Storage payloads follow the pickles, in key-list order.
        var offset = reader.position
        var storages: [String: (start: Int, count: Int, element: StorageElement)] = [:]
        var storageTypes: [String: String] = [:]
        for (_, value) in stateDict.entries {
            guard let (key, type) = Self.storageReference(value) else { continue }
            storageTypes[key] = type
        }
        for item in keyList.items {
            guard let key = item.string else { throw bad("a storage key is not a string") }
            guard offset + 8 <= bytes.count else { throw bad("storage \(key): file ends before its element count") }
            var count = 0
            for i in 0..<8 { count |= Int(bytes[offset + i]) << (8 * i) }
            let type = storageTypes[key] ?? StorageElement.float.rawValue
            guard let element = StorageElement(rawValue: type) else {
                throw bad("storage \(key): type \(type) is not supported (float32, float64, int32, int64 are)")
            }
            guard count >= 0, count <= (bytes.count - offset - 8) / element.size else {
                throw bad("storage \(key): \(count) elements run past the end of the file")
            }
            storages[key] = (offset + 8, count, element)
            offset += 8 + count * element.size
        }

        var tensors: [String: Tensor] = [:], keys: [String] = []
        for (name, value) in stateDict.entries {
            guard let name = name.string else { throw bad("a state-dict key is not a string") }
            guard case let .call(.global(_, function), args) = value, function.hasPrefix("_rebuild_tensor"),
                  args.count >= 4, let (storageKey, _) = Self.storageReference(args[0]),
                  let start = args[1].int, let shape = args[2].tuple?.compactMap(\.int), let strides = args[3].tuple?.compactMap(\.int),
                  shape.count == args[2].tuple?.count, strides.count == shape.count else {
                throw bad("\(name): not a tensor this reader understands")
            }
            guard let storage = storages[storageKey] else { throw bad("\(name): storage \(storageKey) has no data") }
            guard shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else { throw bad("\(name): negative size or stride") }
            let count = shape.reduce(1, *)
            let last = start + zip(shape, strides).reduce(0) { $0 + ($1.0 - 1) * $1.1 }
            guard count == 0 || (start >= 0 && last < storage.count) else {
                throw bad("\(name): shape \(shape), strides \(strides), offset \(start) reach element \(last); the storage holds \(storage.count)")
            }
            var values = [Float](repeating: 0, count: count)
            if count > 0 {
                Self.gather(bytes, storage: storage.start, element: storage.element, offset: start, shape: shape, strides: strides, into: &values)
            }
            tensors[name] = Tensor(shape: shape, values: values)
            keys.append(name)
        }
        self.tensors = tensors
        self.keys = keys
        self.path = path
    }

    /// (storage key, storage type name) of a `('storage', type, key, location, size)` persistent id.
    private static func storageReference(_ value: PickleValue) -> (String, String)? {
        let id: PickleValue
        if case let .call(_, args) = value, let first = args.first { id = first } else { id = value }
        guard case let .persistent(.tuple(parts)) = id, parts.count >= 3, parts[0].string == "storage",
              case let .global(_, type) = parts[1], let key = parts[2].string else { return nil }
        return (key, type)
    }

    /// Copies a strided view out row-major.
    private static func gather(_ bytes: [UInt8], storage: Int, element kind: StorageElement, offset: Int, shape: [Int], strides: [Int],
                               into out: inout [Float]) {
        bytes.withUnsafeBytes { raw in
            func element(_ i: Int) -> Float {
                switch kind {
                case .long: Float(raw.loadUnaligned(fromByteOffset: storage + i * 8, as: Int64.self))
                case .int: Float(raw.loadUnaligned(fromByteOffset: storage + i * 4, as: Int32.self))
                case .double: Float(raw.loadUnaligned(fromByteOffset: storage + i * 8, as: Double.self))
                case .float: raw.loadUnaligned(fromByteOffset: storage + i * 4, as: Float.self)
                }
            }
            var index = [Int](repeating: 0, count: shape.count)
            var source = offset
            for n in 0..<out.count {
                out[n] = element(source)
                // Odometer increment over the shape, tracking the strided source position.
                var axis = shape.count - 1
                while axis >= 0 {
                    index[axis] += 1
                    source += strides[axis]
                    if index[axis] < shape[axis] { break }
                    source -= strides[axis] * shape[axis]
                    index[axis] = 0
                    axis -= 1
                }
            }
        }
    }

    /// The tensor `name`, checking its shape when `shape` is given.
    public func tensor(_ name: String, shape: [Int]? = nil) throws -> Tensor {
        guard let t = tensors[name] else { throw PickleError(path: path, offset: 0, problem: "no tensor \(name)") }
        if let shape, t.shape != shape {
            throw PickleError(path: path, offset: 0, problem: "\(name) has shape \(t.shape), expected \(shape)")
        }
        return t
    }
}

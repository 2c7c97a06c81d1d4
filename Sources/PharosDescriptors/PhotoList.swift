import Foundation
import PharosDurability

/// A photo to describe: its key (the path relative to the folder, or as a list file names it)
/// and where to read it.
public struct Photo: Sendable, Equatable {
    /// The key it is stored under.
    public var key: String
    /// The file.
    public var path: String

    /// A photo.
    public init(key: String, path: String) {
        self.key = key
        self.path = path
    }
}

/// One of N deterministic parts of a photo list (`--part I/N`, I counted from 1), so that N
/// machines can each describe one part against the same cluster.
///
/// A photo belongs to the part its key's FNV-1a hash names, not to a range of the sorted list:
/// photos added to the folder later never move an existing photo to another part, so a part's
/// journal stays valid when the folder grows.
public struct PhotoPart: Sendable, Equatable, CustomStringConvertible {
    /// This part, 1...count.
    public var index: Int
    /// How many parts.
    public var count: Int

    /// The whole list.
    public static let whole = PhotoPart(index: 1, count: 1)

    /// Parts at most (a sanity bound: more machines than this is a typing mistake).
    public static let maximumCount = 100_000

    /// Part `index` of `count`.
    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// Parses `I/N` with 1 <= I <= N.
    public init(parsing text: String) throws {
        let pieces = text.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2, let index = Int(pieces[0]), let count = Int(pieces[1]),
              (1...Self.maximumCount).contains(count), (1...count).contains(index) else {
            throw DescriptorError.badInput("--part \(text): expected I/N with 1 <= I <= N <= \(Self.maximumCount), e.g. 2/3")
        }
        self.init(index: index, count: count)
    }

    /// The part `key` belongs to, 1...count.
    public static func of(_ key: String, count: Int) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return Int(hash % UInt64(count)) + 1
    }

    /// Whether `key` is in this part.
    public func contains(_ key: String) -> Bool { count == 1 || Self.of(key, count: count) == index }

    public var description: String { "\(index)/\(count)" }
}

/// The photos of a folder (searched recursively) or of a list file, sorted by key.
public enum PhotoList {
    /// Lines of a list file at most (a bound on memory before anything is read).
    public static let maximumListBytes = 1 << 30

    /// The photo of an evaluation query `key` under `root`: the key as a path relative to it,
    /// else with `.jpg`, `.jpeg` or `.png` appended (the revisited Oxford/Paris lists name
    /// images without their extension). The error names the paths tried.
    public static func queryPhoto(key: String, root: String) throws -> Photo {
        let base = root.hasSuffix("/") ? root + key : root + "/" + key
        let candidates = [base] + [".jpg", ".jpeg", ".png"].map { base + $0 }
        for path in candidates where FileManager.default.isReadableFile(atPath: path) {
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
                return Photo(key: key, path: path)
            }
        }
        throw DescriptorError.badInput("query \(key.debugDescription): no photo at \(candidates.joined(separator: ", "))")
    }

    /// Photo files under `folder`, sorted by key (the path relative to `folder`).
    public static func scan(folder: String) throws -> [Photo] {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else {
            throw DescriptorError.badInput("--images \(folder): the folder does not exist")
        }
        guard isFolder.boolValue else { throw DescriptorError.badInput("--images \(folder): not a folder") }
        guard let walker = FileManager.default.enumerator(atPath: folder) else { throw DescriptorError.badInput("cannot read folder \(folder)") }
        var found: [Photo] = []
        while let relative = walker.nextObject() as? String {
            if ImageLoader.isPhoto(fileName: relative) { found.append(Photo(key: relative, path: folder + "/" + relative)) }
        }
        return found.sorted { $0.key < $1.key }
    }

    /// The photos a list file names, one path per line (empty lines and lines starting with `#`
    /// skipped), sorted by key; keys are the lines as written (an absolute path under `root`
    /// relative to it), and relative paths are read from `root` when given (else the current
    /// folder). A key named twice is an error.
    public static func read(listFile: String, root: String?) throws -> [Photo] {
        let bytes: [UInt8]
        do { bytes = try FileIO.readWholeFile(listFile, maximumBytes: maximumListBytes) } catch let error as FileError {
            throw DescriptorError.badInput("--image-list \(error)")
        }
        guard let text = String(validatingUTF8Bytes: bytes) else {
            throw DescriptorError.badInput("--image-list \(listFile): not UTF-8 text")
        }
        var photos: [Photo] = []
        // "\r\n" is one Character in Swift: split on it as well as on "\n".
        for line in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            var key = String(line)
            if key.hasSuffix("\r") { key.removeLast() }
            if key.isEmpty || key.hasPrefix("#") { continue }
            // An absolute path under the root is keyed by its path relative to it, as a folder
            // scan keys it.
            if let root, key.hasPrefix("/") {
                let base = root.hasSuffix("/") ? root : root + "/"
                let absoluteBase = base.hasPrefix("/") ? base : FileManager.default.currentDirectoryPath + "/" + base
                for prefix in [base, absoluteBase] where key.hasPrefix(prefix) && key.count > prefix.count {
                    key = String(key.dropFirst(prefix.count))
                    break
                }
            }
            let path = key.hasPrefix("/") ? key : (root.map { $0 + "/" + key } ?? key)
            photos.append(Photo(key: key, path: path))
        }
        photos.sort { $0.key < $1.key }
        for (a, b) in zip(photos, photos.dropFirst()) where a.key == b.key {
            throw DescriptorError.badInput("--image-list \(listFile): \(a.key) is listed twice")
        }
        guard !photos.isEmpty else { throw DescriptorError.badInput("--image-list \(listFile): names no photos") }
        return photos
    }

    /// The photos of `photos` not in `done`, in order; those whose key cannot be stored
    /// (`unusableKey`) are handed to `skip` with the reason instead.
    public static func remaining(_ photos: [Photo], done: Set<String>, skip: (Photo, String) -> Void) -> [Photo] {
        var todo: [Photo] = []
        for photo in photos where !done.contains(photo.key) {
            if let reason = unusableKey(photo.key) { skip(photo, reason) } else { todo.append(photo) }
        }
        return todo
    }

    /// Why `key` cannot be stored as a line of a key file, or nil when it can.
    public static func unusableKey(_ key: String) -> String? {
        if key.contains("\n") || key.contains("\r") { return "its name contains a line break (keys are written one per line)" }
        if key.utf8.count > 1024 { return "its key is \(key.utf8.count) bytes (at most 1024)" }
        return nil
    }
}

private extension String {
    init?(validatingUTF8Bytes bytes: [UInt8]) {
        guard let text = String(bytes: bytes, encoding: .utf8) else { return nil }
        self = text
    }
}

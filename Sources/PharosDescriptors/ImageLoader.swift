#if canImport(Glibc)
import Glibc
#endif
import CPharosImage
import PharosDurability
import PharosVectors

/// Reads JPEG and PNG files into RGB planes (pixel values 0...255), any aspect ratio, the longer
/// side brought down to a maximum with antialiasing (never up).
public enum ImageLoader {
    /// Largest file read: bounds memory before decoding.
    public static let maximumFileBytes = 256 << 20

    /// Whether a file's name marks it as a photo this loader reads (.jpg, .jpeg, .png, any case).
    public static func isPhoto(fileName name: String) -> Bool {
        let lower = name.lowercased()
        return lower.hasSuffix(".jpg") || lower.hasSuffix(".jpeg") || lower.hasSuffix(".png")
    }

    /// The image at `path` as a 3 x height x width map, longer side at most `maximumSide`.
    /// Errors name the file and what is wrong with it (not an image, truncated, unsupported).
    public static func load(path: String, maximumSide: Int? = nil) throws -> FeatureMap {
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readWholeFile(path, maximumBytes: maximumFileBytes)
        } catch let error as VectorFileError {
            throw DescriptorError.unreadableImage(path: path, reason: error.problem)
        }
        return try decode(bytes, path: path, maximumSide: maximumSide)
    }

    /// Decodes JPEG or PNG bytes (told apart by their signature); `path` is for messages.
    public static func decode(_ bytes: [UInt8], path: String, maximumSide: Int? = nil) throws -> FeatureMap {
        if let maximumSide, maximumSide < 1 {
            throw DescriptorError.invalidParameter(name: "maximum side", value: "\(maximumSide)", allowed: ">= 1")
        }
        var image = PharosDecodedImage()
        var message = [CChar](repeating: 0, count: 256)
        let status: Int32
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            status = pharos_decode_jpeg(bytes, bytes.count, Int32(maximumSide ?? 0), &image, &message, message.count)
        } else if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            status = pharos_decode_png(bytes, bytes.count, &image, &message, message.count)
        } else {
            throw DescriptorError.unreadableImage(path: path, reason: bytes.isEmpty ? "empty file" : "not a JPEG or PNG file (unknown signature)")
        }
        guard status == 0 else {
            throw DescriptorError.unreadableImage(path: path, reason: String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        defer { pharos_decoded_image_free(&image) }
        let (w, h) = (Int(image.width), Int(image.height))
        var map = FeatureMap(channels: 3, height: h, width: w)
        map.values.withUnsafeMutableBufferPointer { planes in
            let pixels = image.pixels!
            for i in 0..<(w * h) {
                planes[i] = Float(pixels[3 * i])
                planes[w * h + i] = Float(pixels[3 * i + 1])
                planes[2 * w * h + i] = Float(pixels[3 * i + 2])
            }
        }
        if let maximumSide, Swift.max(w, h) > maximumSide { map = ImageResampler.resize(map, longerSide: maximumSide) }
        return map
    }

    /// Encodes an RGB map (values 0...255, rounded and clamped) as JPEG bytes.
    public static func encodeJPEG(_ image: FeatureMap, quality: Int = 90) throws -> [UInt8] {
        guard image.channels == 3, image.height > 0, image.width > 0 else { throw DescriptorError.badInput("JPEG encoding needs a 3-channel image") }
        guard (1...100).contains(quality) else { throw DescriptorError.invalidParameter(name: "JPEG quality", value: "\(quality)", allowed: "1...100") }
        let plane = image.height * image.width
        var pixels = [UInt8](repeating: 0, count: plane * 3)
        for i in 0..<plane {
            for c in 0..<3 { pixels[3 * i + c] = UInt8(Swift.max(0, Swift.min(255, image.values[c * plane + i].rounded()))) }
        }
        var buffer: UnsafeMutablePointer<UInt8>?
        var size = 0
        var message = [CChar](repeating: 0, count: 256)
        guard pharos_encode_jpeg(pixels, Int32(image.width), Int32(image.height), Int32(quality), &buffer, &size, &message, message.count) == 0,
              let buffer else {
            throw DescriptorError.badInput(String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        defer { pharos_encoded_free(buffer) }
        return Array(UnsafeBufferPointer(start: buffer, count: size))
    }
}

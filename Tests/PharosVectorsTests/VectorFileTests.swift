import Foundation
import Testing
@testable import PharosVectors

/// A fresh temporary directory per test.
func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "pharos-tests-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func sampleMatrix(rows: Int, columns: Int, integral: Bool = false) -> Matrix {
    var rng = SplitMix64(seed: 7)
    var m = Matrix(rows: rows, columns: columns)
    for i in 0..<m.values.count {
        m.values[i] = integral ? Float(rng.next() % 256) : rng.nextGaussian()
    }
    return m
}

@Suite struct VectorFileTests {
    @Test(arguments: ["fvecs", "bvecs", "npy"])
    func roundTripsRows(ext: String) throws {
        let dir = temporaryDirectory()
        let m = sampleMatrix(rows: 37, columns: 9, integral: ext == "bvecs")
        let path = "\(dir)/v.\(ext)"
        let w = try VectorFileWriter(path: path, dimension: 9)
        try w.write(m.rows(0..<20))
        try w.write(m.rows(20..<37))
        try w.finish()
        let r = try VectorFileReader(path: path)
        #expect(r.count == 37)
        #expect(r.dimension == 9)
        #expect(try r.readAll() == m)
        #expect(try r.readRows(5..<8) == m.rows(5..<8))
        // Samples: all rows up to the limit, else rows i * 37 / 4 (spread over the whole file).
        #expect(try r.readEvenlySpaced(atMost: 37) == m)
        #expect(try r.readEvenlySpaced(atMost: 4) == Matrix(rowArrays: [0, 9, 18, 27].map { m.rows($0..<$0 + 1).row(0) }))
        #expect(throws: VectorFileError.self) { try r.readEvenlySpaced(atMost: 0) }
    }

    @Test func npyFloat16AndInt32() throws {
        let dir = temporaryDirectory()
        let m = Matrix(rows: 2, columns: 3, values: [0.5, -2, 1024, 0.333, 65504, -0.0001])
        let w = try VectorFileWriter(path: "\(dir)/h.npy", dimension: 3, elementType: .float16)
        try w.write(m)
        try w.finish()
        let back = try VectorFileReader(path: "\(dir)/h.npy").readAll()
        for (a, b) in zip(m.values, back.values) { #expect(abs(a - b) <= abs(a) * 1e-3 + 1e-7) }

        let iw = try VectorFileWriter(path: "\(dir)/i.ivecs", dimension: 4)
        try iw.write(int32Rows: [1, 2, 3, 4, -1, 0, 7, Int32.max])
        try iw.finish()
        let ir = try VectorFileReader(path: "\(dir)/i.ivecs")
        #expect(try ir.readInt32Rows(0..<2) == [1, 2, 3, 4, -1, 0, 7, Int32.max])
        #expect(throws: VectorFileError.self) { try VectorFileReader(path: "\(dir)/h.npy").readInt32Rows(0..<1) }
    }

    @Test func batchesCoverTheFileInOrder() throws {
        let dir = temporaryDirectory()
        let m = sampleMatrix(rows: 1000, columns: 4)
        let w = try VectorFileWriter(path: "\(dir)/b.fvecs", dimension: 4)
        try w.write(m)
        try w.finish()
        var seen = Matrix(rows: 0, columns: 4)
        var firsts: [Int] = []
        try VectorFileReader(path: "\(dir)/b.fvecs").forEachBatch(of: 300) { batch, first in
            firsts.append(first)
            seen.append(contentsOf: batch)
        }
        #expect(firsts == [0, 300, 600, 900])
        #expect(seen == m)
    }

    @Test func truncatedTailNamesTheOffset() throws {
        let dir = temporaryDirectory()
        let path = "\(dir)/t.fvecs"
        let w = try VectorFileWriter(path: path, dimension: 4)
        try w.write(sampleMatrix(rows: 3, columns: 4))
        try w.finish()
        let h = FileHandle(forWritingAtPath: path)!
        h.truncateFile(atOffset: 3 * 20 - 5)
        h.closeFile()
        let error = #expect(throws: VectorFileError.self) { try VectorFileReader(path: path) }
        #expect(error?.offset == 40)
        #expect(error?.problem.contains("truncated") == true)
        #expect(error?.description.contains(path) == true)
    }

    @Test func inconsistentRowDimensionIsReported() throws {
        let dir = temporaryDirectory()
        let path = "\(dir)/bad.fvecs"
        // Two rows of 2 floats; the second row claims dimension 3.
        var bytes: [UInt8] = []
        for (i, dim) in [Int32(2), Int32(3)].enumerated() {
            withUnsafeBytes(of: dim.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: Float(i)) { bytes += $0 }
            withUnsafeBytes(of: Float(i)) { bytes += $0 }
        }
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let r = try VectorFileReader(path: path)
        let error = #expect(throws: VectorFileError.self) { try r.readAll() }
        #expect(error?.offset == 12)
        #expect(error?.problem.contains("declares dimension 3, expected 2") == true)
    }

    @Test func malformedNpyHeaders() throws {
        let dir = temporaryDirectory()
        func npy(_ header: String, payload: Int) -> String {
            var h = header
            while (10 + h.utf8.count + 1) % 64 != 0 { h += " " }
            h += "\n"
            var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(h.utf8.count & 0xff), UInt8(h.utf8.count >> 8)]
            bytes += Array(h.utf8) + [UInt8](repeating: 0, count: payload)
            let path = "\(dir)/\(UUID().uuidString).npy"
            _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
            return path
        }
        let f8 = #expect(throws: VectorFileError.self) {
            try VectorFileReader(path: npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", payload: 32))
        }
        #expect(f8?.problem.contains("unsupported dtype '<f8'") == true)
        let fortran = #expect(throws: VectorFileError.self) {
            try VectorFileReader(path: npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", payload: 16))
        }
        #expect(fortran?.problem.contains("Fortran") == true)
        let short = #expect(throws: VectorFileError.self) {
            try VectorFileReader(path: npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", payload: 12))
        }
        #expect(short?.problem.contains("truncated") == true)
        let good = try VectorFileReader(path: npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", payload: 16))
        #expect(good.count == 2 && good.dimension == 2)

        let magic = "\(dir)/magic.npy"
        _ = FileManager.default.createFile(atPath: magic, contents: Data(repeating: 7, count: 64))
        let bad = #expect(throws: VectorFileError.self) { try VectorFileReader(path: magic) }
        #expect(bad?.offset == 0)
        #expect(bad?.problem.contains("bad magic") == true)
    }

    @Test func unknownExtensionAndMissingFile() {
        #expect(throws: VectorFileError.self) { try VectorFileReader(path: "/tmp/x.csv") }
        let missing = #expect(throws: VectorFileError.self) { try VectorFileReader(path: "/nonexistent/x.fvecs") }
        #expect(missing?.description.contains("/nonexistent/x.fvecs") == true)
    }

    @Test func unfinishedWriterLeavesNoFile() throws {
        let dir = temporaryDirectory()
        do {
            let w = try VectorFileWriter(path: "\(dir)/never.fvecs", dimension: 2)
            try w.write(sampleMatrix(rows: 2, columns: 2))
        }
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/never.fvecs"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
    }

    @Test func idxImagesAreFlattened() throws {
        let dir = temporaryDirectory()
        var bytes: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]
        bytes += Array(0..<12)
        _ = FileManager.default.createFile(atPath: "\(dir)/x.idx", contents: Data(bytes))
        let m = try IDXReader.readImages(path: "\(dir)/x.idx")
        #expect(m.rows == 2 && m.columns == 6)
        #expect(m.values == (0..<12).map(Float.init))
        _ = FileManager.default.createFile(atPath: "\(dir)/y.idx", contents: Data(bytes.dropLast()))
        #expect(throws: VectorFileError.self) { try IDXReader.readImages(path: "\(dir)/y.idx") }
    }
}

/// Errors about a vector file name the file, and the row and component where there is one.
@Suite struct VectorFileErrorTests {
    @Test(arguments: [Float.nan, .infinity, -.infinity])
    func aNonFiniteValueIsNamedByFileRowAndComponent(value: Float) throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var m = sampleMatrix(rows: 20, columns: 8)
        m.values[17 * 8 + 2] = value
        for ext in ["fvecs", "npy"] {
            let path = "\(dir)/bad.\(ext)"
            let w = try VectorFileWriter(path: path, dimension: 8)
            try w.write(m)
            try w.finish()
            let reader = try VectorFileReader(path: path)
            #expect(throws: VectorFileError.self) { try reader.readAll() }
            do { _ = try reader.readRows(10..<20) } catch {
                #expect("\(error)".contains(path) && "\(error)".contains("row 17 component 2"), "\(error)")
            }
            #expect(try reader.readRows(0..<17).rows == 17)   // rows before it are fine
        }
    }

    @Test func anEmptyFileIsNamed() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = "\(dir)/empty.fvecs"
        FileManager.default.createFile(atPath: path, contents: Data())
        #expect { try VectorFileReader(path: path) } throws: { "\($0)".contains(path) && "\($0)".contains("empty") }
    }
}

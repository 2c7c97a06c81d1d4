import Foundation
import Testing
@testable import PharosVectors

/// Appending in place: the file is complete after every append, and reopening keeps exactly
/// the rows its caller committed, cutting what a kill left past them.
@Suite struct VectorFileAppenderTests {
    @Test(arguments: ["npy", "fvecs"])
    func appendsStayReadableAndReopeningCutsUncommittedRows(format: String) throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/x." + format
        let m = sampleMatrix(rows: 10, columns: 6)
        let rows = { (range: Range<Int>) in Matrix(rows: range.count, columns: 6, values: Array(m.values[range.lowerBound * 6 ..< range.upperBound * 6])) }
        let appender = try VectorFileAppender(path: path, dimension: 6, keeping: 0)
        try appender.append(rows(0..<3))
        #expect(try VectorFileReader(path: path).readAll() == rows(0..<3))   // strict reader: complete after each append
        try appender.append(rows(3..<7))
        #expect(try VectorFileReader(path: path).readAll() == rows(0..<7))
        appender.close()

        // A kill after rows 7..<10 were written but before they were committed (or counted).
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        let extra = try Data(contentsOf: URL(fileURLWithPath: path)).suffix(3 * (format == "npy" ? 24 : 28))
        try handle.write(contentsOf: extra + Data([1, 2, 3]))
        try handle.close()
        let resumed = try VectorFileAppender(path: path, dimension: 6, keeping: 5)
        #expect(resumed.count == 5)
        #expect(try VectorFileReader(path: path).readAll() == rows(0..<5))
        try resumed.append(rows(5..<10))
        #expect(try VectorFileReader(path: path).readAll() == m)
        resumed.close()

        // More rows committed than the file holds, or another dimension: refused, nothing changed.
        #expect { try VectorFileAppender(path: path, dimension: 6, keeping: 11) } throws: { "\($0)".contains("holds 10 whole rows") }
        #expect { try VectorFileAppender(path: path, dimension: 7, keeping: 10) } throws: { "\($0)".contains("this run writes 7") }
        #expect(try VectorFileReader(path: path).readAll() == m)
    }
}

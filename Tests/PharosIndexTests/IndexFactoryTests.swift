import Foundation
import PharosVectors
import Testing
@testable import PharosIndex

@Suite struct IndexFactoryTests {
    @Test(arguments: ["Flat", "PQ16", "PQ16x4fs", "IVF64,PQ8", "IVF64,PQ32x4fs,RefineSQ8", "OPQ16,IVF4096,PQ16x4fs,RefineFP16", "PQ8,RefineFlat"])
    func validStringsRoundTrip(factory: String) throws {
        let index = try IndexFactory.make(factory, dimension: 64, metric: .l2)
        #expect(index.factoryString == factory)
    }

    @Test func x8IsTheDefaultSpelling() throws {
        #expect(try IndexFactory.make("IVF4,PQ8x8", dimension: 64, metric: .l2).factoryString == "IVF4,PQ8")
    }

    @Test(arguments: [
        ("", "empty factory string"),
        ("IVF", "token 1 'IVF'"),
        ("IVF64", "ends before the PQ<m> token"),
        ("IVF64,PQ7", "token 2 'PQ7'"),
        ("IVF64,PQ8x4", "PQ<m>x4fs"),
        ("IVF64,HNSW32", "token 2 'HNSW32'"),
        ("IVF64,Flat", "IVF<lists>,Flat is not supported"),
        ("OPQ7,PQ8", "token 1 'OPQ7'"),
        ("PQ8,RefineXYZ", "token 2 'RefineXYZ'"),
        ("PQ8,RefineSQ8,extra", "token 3 'extra'"),
    ])
    func badStringsNameTheToken(factory: String, fragment: String) {
        let error = #expect(throws: IndexError.self) { try IndexFactory.make(factory, dimension: 64, metric: .l2) }
        #expect(error?.description.contains(fragment) == true, "\(String(describing: error))")
    }
}

@Suite struct IndexFileTests {
    static let base = TestData.clustered(3000, dimension: 16)
    static let queries = TestData.clustered(20, dimension: 16, stream: 1)

    func saved(_ factory: String) throws -> (path: String, index: any VectorIndex) {
        let index = try IndexFactory.make(factory, dimension: 16, metric: .l2)
        try index.train(Self.base, threads: 2)
        try index.add(Self.base, ids: nil, threads: 2)
        let path = TestData.temporaryDirectory() + "/" + IndexFile.fileName
        try IndexFactory.save(index, to: path)
        return (path, index)
    }

    @Test(arguments: ["Flat", "IVF16,PQ8", "OPQ4,IVF16,PQ4x4fs,RefineSQ8", "PQ8x4fs,RefineFP16"])
    func loadReturnsTheSameResults(factory: String) throws {
        let (path, index) = try saved(factory)
        let loaded = try IndexFactory.load(from: path)
        #expect(loaded.factoryString == factory)
        #expect(loaded.count == index.count)
        let p = SearchParameters(nprobe: 4, threads: 1)
        #expect(try loaded.search(Self.queries, k: 7, parameters: p) == index.search(Self.queries, k: 7, parameters: p))
        #expect(try loaded.reconstruct(17) == index.reconstruct(17))
    }

    @Test func everyFlippedByteIsDetected() throws {
        let (path, _) = try saved("IVF16,PQ4x4fs,RefineSQ8")
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        // Flip one byte at many positions across the file: header, section headers, payloads.
        for position in stride(from: 0, to: original.count, by: max(1, original.count / 97)) {
            var damaged = original
            damaged[position] ^= 0x5A
            let error = #expect(throws: IndexError.self, "flip at \(position)") {
                try IndexFactory.load(from: self.write(damaged))
            }
            if case .corruptFile = error {} else { Issue.record("flip at \(position) gave \(String(describing: error))") }
        }
    }

    @Test func truncationAndForeignFilesAreRejected() throws {
        let (path, _) = try saved("IVF16,PQ8")
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        for length in [0, 7, 19, 20, 40, original.count / 2, original.count - 1] {
            let error = #expect(throws: IndexError.self) { try IndexFactory.load(from: self.write(original.prefix(length))) }
            #expect(error?.description.contains(".pharos") == true)
        }
        let foreign = #expect(throws: IndexError.self) { try IndexFactory.load(from: self.write(Data(repeating: 1, count: 100))) }
        #expect(foreign?.description.contains("bad magic") == true)
        var appended = original
        appended.append(0)
        #expect(throws: IndexError.self) { try IndexFactory.load(from: self.write(appended)) }
    }

    private func write(_ data: Data) throws -> String {
        let path = TestData.temporaryDirectory() + "/damaged.pharos"
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }
}

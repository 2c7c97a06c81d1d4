import Foundation
import PharosKernels
import PharosTestSupport
import PharosVectors
import Testing
@testable import PharosIndex

/// The deletion bitmap of an in-memory list grows only as far as the deleted entry when it is
/// marked; entries appended later lie past its end. The kernels must treat them as live, never
/// read past the bitmap.
@Suite struct DeletionMaskTests {
    /// Leaves a freed 128-byte chunk full of set bits at the head of the allocator's free list,
    /// so that the bitmap's first allocation (16 words) is very likely that chunk: whatever its
    /// capacity holds past the words it uses is then all ones, which is what made live entries
    /// vanish from searches (the bitmap was read up to its capacity, not its length).
    private func poisonNextSmallAllocation() {
        let chunk = malloc(16 * 8)!
        memset(chunk, 0xFF, 16 * 8)
        free(chunk)
    }

    @Test(arguments: ["IVF1,PQ8x4fs", "IVF1,PQ8", "IVF1,PQ8x4fs,RefineFlat"])
    func entriesAppendedAfterADeleteAreFoundByEveryKernel(factory: String) throws {
        let index = try IndexFactory.make(factory, dimension: 16, metric: .l2) as! IVFPQIndex
        try index.train(TestData.clustered(2000, stream: 3), threads: 1)
        let vectors = TestData.clustered(300, stream: 4)
        let encoded = try index.encodeEntries(vectors, threads: 1)
        let lists = InvertedLists(lists: 1, layout: index.layout)
        let live = Set((0..<300).filter { $0 != 5 }.map(Int64.init))
        encoded.forEachEntry { row, list, code, refine in
            if row == 10 {
                // A delete early in the list: its bitmap is one word long from now on.
                poisonNextSmallAllocation()
                lists.markDeleted(list: 0, offset: 5)
            }
            lists.append(list: list, id: Int64(row), code: code, refineCode: refine)
        }
        #expect(lists.deletedCount == 1)
        #expect(!lists.view(ofList: 0).isDeleted(299))
        let levels = try KernelLevels.both {
            try index.search(vectors.rows(0..<4), k: 300, parameters: SearchParameters(nprobe: 1, refineFactor: 1, threads: 1), sources: [lists])
        }
        for (portable, result) in [(false, levels.simd), (true, levels.portable)] {
            for q in 0..<4 {
                // The in-memory lists identify entries by the ids they were appended with (the rows).
                let found = Set(result.hits(ofQuery: q).map(\.entry))
                #expect(found == live, "\(factory), portable \(portable): \(live.subtracting(found).sorted().prefix(10)) missing")
            }
        }
    }

    @Test func theSkipMaskIsNeverReadPastItsLength() {
        // Bits beyond `bits` are set in memory, but the mask says they are not there.
        let words: [UInt64] = [0b1000, ~0, ~0]
        var distances = [Float](repeating: 1, count: 192)
        var ids = [Int64](repeating: -1, count: 192)
        var dist = [Float](repeating: 0, count: 192)
        dist.withUnsafeMutableBufferPointer { d in
            ids.withUnsafeMutableBufferPointer { i in
                var heap = PharosHeap(distances: d.baseAddress!, ids: i.baseAddress!, capacity: 192, count: 0)
                words.withUnsafeBufferPointer { w in
                    distances.withUnsafeMutableBufferPointer { x in
                        pharos_heap_push_many(&heap, x.baseAddress!, 192, nil, 0, PharosSkipMask(words: w.baseAddress, bits: 64, base: 0, excluded: nil, excluded_bits: 0, excluded_base: 0))
                    }
                }
                #expect(heap.count == 191)
            }
        }
        #expect(!ids.contains(3))
        #expect(Set(ids.filter { $0 >= 0 }) == Set((0..<192).filter { $0 != 3 }.map(Int64.init)))
    }
}

import PharosKernels

/// A bounded max-heap keeping the k smallest (distance, id) pairs, over the C heap.
///
/// Ties on distance keep the smaller id, so the kept set never depends on the order in which
/// candidates arrive (the basis of thread-count invariance).
struct ResultHeap {
    private(set) var distances: [Float]
    private(set) var ids: [Int64]
    private var count: Int32 = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        distances = [Float](repeating: .infinity, count: capacity)
        ids = [Int64](repeating: -1, count: capacity)
    }

    /// Runs `body` with the C view of this heap.
    mutating func withHeap<T>(_ body: (UnsafeMutablePointer<PharosHeap>) throws -> T) rethrows -> T {
        let capacity = Int32(self.capacity)
        let current = count
        let (result, newCount): (T, Int32) = try distances.withUnsafeMutableBufferPointer { d in
            try ids.withUnsafeMutableBufferPointer { i in
                var heap = PharosHeap(distances: d.baseAddress, ids: i.baseAddress, capacity: capacity, count: current)
                let r = try body(&heap)
                return (r, heap.count)
            }
        }
        count = newCount
        return result
    }

    mutating func push(_ distance: Float, _ id: Int64) {
        withHeap { pharos_heap_push($0, distance, id) }
    }

    var threshold: Float {
        Int(count) < capacity ? .infinity : distances[0]
    }

    /// Number of kept candidates.
    var size: Int { Int(count) }

    /// The kept pairs sorted ascending by (distance, id).
    mutating func sorted() -> (distances: ArraySlice<Float>, ids: ArraySlice<Int64>) {
        withHeap { pharos_heap_sort($0) }
        return (distances[0..<Int(count)], ids[0..<Int(count)])
    }

    /// Empties the heap for reuse.
    mutating func reset() { count = 0 }
}

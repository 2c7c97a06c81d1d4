/// The best `k` of many candidates in one pass, through a bounded heap whose root is the worst
/// kept: `O(n log k)` where a full sort is `O(n log n)` (a million scores per query at R1M
/// scale, a shortlist's every row in a diffusion graph).
public enum BoundedSelection {
    /// The `k` best of `candidates`, best first, by `worse` (a strict total order:
    /// `worse(a, b)` when `a` ranks below `b`; break ties in it for a deterministic answer).
    public static func best<Candidates: Sequence<Int>>(_ k: Int, of candidates: Candidates, worse: (Int, Int) -> Bool) -> [Int] {
        guard k > 0 else { return [] }
        var heap: [Int] = []
        heap.reserveCapacity(k)
        for candidate in candidates {
            if heap.count < k {
                heap.append(candidate)
                var child = heap.count - 1
                while child > 0, worse(heap[child], heap[(child - 1) / 2]) {
                    heap.swapAt(child, (child - 1) / 2)
                    child = (child - 1) / 2
                }
            } else if worse(heap[0], candidate) {
                heap[0] = candidate
                var parent = 0
                while true {
                    let left = 2 * parent + 1, right = left + 1
                    var worst = parent
                    if left < k, worse(heap[left], heap[worst]) { worst = left }
                    if right < k, worse(heap[right], heap[worst]) { worst = right }
                    if worst == parent { break }
                    heap.swapAt(parent, worst)
                    parent = worst
                }
            }
        }
        return heap.sorted { worse($1, $0) }
    }
}

import PharosKernels
import PharosVectors

/// Re-ranking: the shortlist re-scored with refine codes against the original query.
extension IVFPQIndex {
    /// Re-scores `labels` with refine codes against the original (unrotated) query. Codes are
    /// read grouped by (source, list), so each list is opened once; the distances are then
    /// pushed in shortlist order (best approximate distance first), which keeps most later
    /// pushes cheap rejections, as when codes were read in that order. The heap keeps the k
    /// smallest (distance, label) pairs, a total order, so the result does not depend on it.
    func rerank(query queries: Matrix, row q: Int, codec: RefineCodec, labels: ArraySlice<Int64>,
                sources: [any InvertedListSource], groups: inout ListGroups, into heap: inout ResultHeap) throws {
        let d = dimension, bytes = codec.codeBytes, metric = self.metric
        var scratch = [Float](repeating: 0, count: d)
        groups.group(labels)
        try groups.withGroups { order, starts, count, distances in
            try queries.values.withUnsafeBufferPointer { qb in
                try scratch.withUnsafeMutableBufferPointer { out in
                    let query = qb.baseAddress! + q * d
                    let prepared = codec.prepare(query, metric: metric)
                    for g in 0..<count {
                        let members = order[Int(starts[g]) ..< Int(starts[g + 1])]
                        let first = labels[labels.startIndex + Int(order[Int(starts[g])])]
                        try sources[Label.source(first)].withList(Label.list(first)) { view in
                            guard let refine = view.refine else {
                                throw IndexError.invalidParameter(name: "list source", value: "no refine codes", allowed: "a source of this index's layout")
                            }
                            for (position, m) in zip(members.indices, members) {
                                let code = refine + Label.offset(labels[labels.startIndex + Int(m)]) * bytes
                                // The next code's lines are fetched while this one is scored
                                // (a flat 784-D code is 49 lines from anywhere in memory).
                                if position + 1 < members.endIndex {
                                    pharos_prefetch(refine + Label.offset(labels[labels.startIndex + Int(members[position + 1])]) * bytes, bytes)
                                }
                                if let prepared {
                                    distances[Int(m)] = codec.distance(prepared: prepared, code)
                                } else {
                                    distances[Int(m)] = codec.distance(query, code, metric: metric, scratch: out.baseAddress!)
                                }
                            }
                        }
                    }
                }
            }
            for (i, label) in labels.enumerated() { heap.push(distances[i], label) }
        }
    }

    /// Positions of a shortlist's labels grouped by (source, list), in linear time: a table
    /// indexed by (source, list) numbers the distinct lists in order of first appearance, then
    /// a counting sort lays the positions out group by group (a comparison sort of a 400-label
    /// shortlist cost about 7% of a k = 100 search). Its buffers are reused across the queries
    /// of a chunk; the table is cleared entry by entry after each use.
    struct ListGroups {
        /// Label positions, group after group (each group in shortlist order).
        private var order: [Int32] = []
        /// Where each group starts in `order`, plus the end.
        private var starts: [Int32] = [0, 0]
        /// Group of each (source, list) slot, -1 when unused; slots beyond the table's reach
        /// (very many lists and sources) are found in `overflow`.
        private var groupOfSlot: [Int32]
        private var overflow: [Int64: Int32] = [:]
        private var slotOfGroup: [Int] = []
        private var groupOf: [Int32] = []
        private var sizes: [Int32] = []
        /// Refined distance of each label position (filled by `rerank`).
        private var distances: [Float] = []
        private let lists: Int
        private var groupCount = 0

        /// Groups for labels over `sources` sources of `lists` lists each.
        init(lists: Int, sources: Int) {
            self.lists = lists
            groupOfSlot = [Int32](repeating: -1, count: Swift.min(lists * Swift.max(1, sources), 1 << 20))
        }

        /// Makes the table cover `sources` sources (a kept scratch may have served fewer).
        mutating func fit(sources: Int) {
            let needed = Swift.min(lists * Swift.max(1, sources), 1 << 20)
            if groupOfSlot.count < needed { groupOfSlot = [Int32](repeating: -1, count: needed) }
        }

        /// Groups `labels`, replacing the previous grouping.
        mutating func group(_ labels: ArraySlice<Int64>) {
            let n = labels.count
            if groupOf.count < n {
                distances = [Float](repeating: 0, count: n)
                groupOf = [Int32](repeating: 0, count: n)
                order = [Int32](repeating: 0, count: n)
                sizes = [Int32](repeating: 0, count: n + 1)
                starts = [Int32](repeating: 0, count: n + 2)
                slotOfGroup = [Int](repeating: 0, count: n)
            }
            overflow.removeAll(keepingCapacity: true)
            var groups = 0
            let lists = self.lists
            labels.withUnsafeBufferPointer { labels in
                groupOf.withUnsafeMutableBufferPointer { groupOf in
                    sizes.withUnsafeMutableBufferPointer { sizes in
                        slotOfGroup.withUnsafeMutableBufferPointer { slotOfGroup in
                            groupOfSlot.withUnsafeMutableBufferPointer { table in
                                for i in 0..<n {
                                    let label = labels[i]
                                    let slot = Label.source(label) * lists + Label.list(label)
                                    var g: Int32
                                    if slot < table.count {
                                        g = table[slot]
                                        if g < 0 {
                                            g = Int32(groups)
                                            table[slot] = g
                                            slotOfGroup[groups] = slot
                                            sizes[groups] = 0
                                            groups += 1
                                        }
                                    } else if let known = overflow[label >> 32] {
                                        g = known
                                    } else {
                                        g = Int32(groups)
                                        overflow[label >> 32] = g
                                        slotOfGroup[groups] = -1
                                        sizes[groups] = 0
                                        groups += 1
                                    }
                                    groupOf[i] = g
                                    sizes[Int(g)] += 1
                                }
                                for g in 0..<groups where slotOfGroup[g] >= 0 { table[slotOfGroup[g]] = -1 }
                            }
                        }
                    }
                    starts.withUnsafeMutableBufferPointer { starts in
                        sizes.withUnsafeMutableBufferPointer { fill in
                            starts[0] = 0
                            for g in 0..<groups {
                                starts[g + 1] = starts[g] + fill[g]
                                fill[g] = starts[g]   // from here on, each group's next free place
                            }
                            order.withUnsafeMutableBufferPointer { order in
                                for i in 0..<n {
                                    let g = Int(groupOf[i])
                                    order[Int(fill[g])] = Int32(i)
                                    fill[g] += 1
                                }
                            }
                        }
                    }
                }
            }
            groupCount = groups
        }

        /// Calls `body(order, starts, count, distances)`: label positions group after group, where
        /// each group starts (plus the end), the number of groups, and a distance per position.
        mutating func withGroups<R>(_ body: (UnsafeBufferPointer<Int32>, UnsafeBufferPointer<Int32>, Int,
                                             UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
            let count = groupCount
            return try order.withUnsafeBufferPointer { order in
                try starts.withUnsafeBufferPointer { starts in
                    try distances.withUnsafeMutableBufferPointer { try body(order, starts, count, $0) }
                }
            }
        }

    }
}

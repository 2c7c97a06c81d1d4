import PharosVectors

/// Re-ranking: the shortlist re-scored with refine codes against the original query.
extension IVFPQIndex {
    /// Re-scores `labels` with refine codes against the original (unrotated) query. Labels are
    /// visited grouped by (source, list), so each list is opened once; the heap keeps the k
    /// smallest (distance, label) pairs, a total order, so the visiting order does not matter.
    func rerank(query queries: Matrix, row q: Int, codec: RefineCodec, labels: ArraySlice<Int64>,
                sources: [any InvertedListSource], groups: inout ListGroups, into heap: inout ResultHeap) throws {
        let d = dimension, bytes = codec.codeBytes, metric = self.metric
        var scratch = [Float](repeating: 0, count: d)
        groups.group(labels)
        try queries.values.withUnsafeBufferPointer { qb in
            try scratch.withUnsafeMutableBufferPointer { out in
                let query = qb.baseAddress! + q * d
                let prepared = codec.prepare(query, metric: metric)
                for g in 0..<groups.count {
                    let members = groups.members(g)
                    let first = labels[labels.startIndex + Int(members.first!)]
                    try sources[Label.source(first)].withList(Label.list(first)) { view in
                        guard let refine = view.refine else {
                            throw IndexError.invalidParameter(name: "list source", value: "no refine codes", allowed: "a source of this index's layout")
                        }
                        for m in members {
                            let label = labels[labels.startIndex + Int(m)]
                            let code = refine + Label.offset(label) * bytes
                            let distance: Float
                            if let prepared {
                                distance = codec.distance(prepared: prepared, code)
                            } else {
                                distance = codec.distance(query, code, metric: metric, scratch: out.baseAddress!)
                            }
                            heap.push(distance, label)
                        }
                    }
                }
            }
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
        private let lists: Int
        private var groupCount = 0

        /// Groups for labels over `sources` sources of `lists` lists each.
        init(lists: Int, sources: Int) {
            self.lists = lists
            groupOfSlot = [Int32](repeating: -1, count: Swift.min(lists * Swift.max(1, sources), 1 << 20))
        }

        /// Groups `labels`, replacing the previous grouping.
        mutating func group(_ labels: ArraySlice<Int64>) {
            let n = labels.count
            if groupOf.count < n {
                groupOf = [Int32](repeating: 0, count: n)
                order = [Int32](repeating: 0, count: n)
                sizes = [Int32](repeating: 0, count: n + 1)
                starts = [Int32](repeating: 0, count: n + 2)
            }
            slotOfGroup.removeAll(keepingCapacity: true)
            overflow.removeAll(keepingCapacity: true)
            var groups = 0
            let lists = self.lists
            labels.withUnsafeBufferPointer { labels in
                groupOf.withUnsafeMutableBufferPointer { groupOf in
                    sizes.withUnsafeMutableBufferPointer { sizes in
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
                                        slotOfGroup.append(slot)
                                        sizes[groups] = 0
                                        groups += 1
                                    }
                                } else if let known = overflow[label >> 32] {
                                    g = known
                                } else {
                                    g = Int32(groups)
                                    overflow[label >> 32] = g
                                    sizes[groups] = 0
                                    groups += 1
                                }
                                groupOf[i] = g
                                sizes[Int(g)] += 1
                            }
                            for slot in slotOfGroup { table[slot] = -1 }
                        }
                    }
                }
            }
            groupCount = groups
            starts.withUnsafeMutableBufferPointer { starts in
                sizes.withUnsafeBufferPointer { sizes in
                    starts[0] = 0
                    for g in 0..<groups { starts[g + 1] = starts[g] + sizes[g] }
                    // `sizes` becomes each group's fill position.
                }
                order.withUnsafeMutableBufferPointer { order in
                    groupOf.withUnsafeBufferPointer { groupOf in
                        var fill = Array(starts[0..<groups])
                        fill.withUnsafeMutableBufferPointer { fill in
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

        /// Distinct lists.
        var count: Int { groupCount }

        /// Label positions of group `g`.
        func members(_ g: Int) -> ArraySlice<Int32> { order[Int(starts[g]) ..< Int(starts[g + 1])] }
    }
}

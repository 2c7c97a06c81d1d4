import CProtobufC
import PharosWireC

/// The elastic cluster's messages (bucket moves, cluster administration) to and from C.
extension WireCodec {
    // MARK: Swift -> C

    private static func entries(_ list: [MovedEntry], arena: CArena) throws -> UnsafeMutablePointer<UnsafeMutablePointer<Pharos__BucketEntry>?>? {
        guard !list.isEmpty else { return nil }
        let out = arena.allocate(UnsafeMutablePointer<Pharos__BucketEntry>?.self, count: list.count)
        for (i, entry) in list.enumerated() {
            let m = arena.message(Pharos__BucketEntry.self) { pharos__bucket_entry__init($0) }
            m.pointee.key = arena.string(try checked([entry.key], "key")[0])
            m.pointee.list = UInt32(clamping: entry.list)
            m.pointee.code = arena.bytes(entry.code)
            m.pointee.refine = arena.bytes(entry.refine)
            m.pointee.metadata = arena.bytes(entry.metadata)
            out[i] = m
        }
        return out
    }

    static func fillCluster(_ e: inout Pharos__Envelope, with body: WireMessage, arena: CArena) throws {
        switch body {
        case let .bucketRead(r):
            let m = arena.message(Pharos__BucketRead.self) { pharos__bucket_read__init($0) }
            m.pointee.bucket_count = UInt32(clamping: r.buckets.count)
            m.pointee.bucket_mask = arena.bytes(r.buckets.bits)
            if let after = r.after {
                m.pointee.has_cursor = 1
                m.pointee.after_hash = after.hash
                m.pointee.after_key = arena.string(try checked([after.key], "after_key")[0])
            }
            m.pointee.limit = UInt32(clamping: r.limit)
            e.body_case = PHAROS__ENVELOPE__BODY_BUCKET_READ
            e.bucket_read = m
        case let .bucketEntries(list):
            let m = arena.message(Pharos__BucketEntries.self) { pharos__bucket_entries__init($0) }
            m.pointee.n_entries = list.count
            m.pointee.entries = try entries(list, arena: arena)
            e.body_case = PHAROS__ENVELOPE__BODY_BUCKET_ENTRIES
            e.bucket_entries = m
        case let .bucketWrite(list, finishing, run):
            let m = arena.message(Pharos__BucketWrite.self) { pharos__bucket_write__init($0) }
            m.pointee.run = arena.string(try checked([run], "run")[0])
            m.pointee.n_entries = list.count
            m.pointee.entries = try entries(list, arena: arena)
            m.pointee.finish_count = UInt32(clamping: finishing.count)
            m.pointee.finish_mask = arena.bytes(finishing.bits)
            e.body_case = PHAROS__ENVELOPE__BODY_BUCKET_WRITE
            e.bucket_write = m
        case let .bucketDrop(mask, receive, run):
            let m = arena.message(Pharos__BucketDrop.self) { pharos__bucket_drop__init($0) }
            m.pointee.run = arena.string(try checked([run], "run")[0])
            m.pointee.bucket_count = UInt32(clamping: mask.count)
            m.pointee.bucket_mask = arena.bytes(mask.bits)
            m.pointee.receive = receive ? 1 : 0
            e.body_case = PHAROS__ENVELOPE__BODY_BUCKET_DROP
            e.bucket_drop = m
        case let .bucketCounts(count):
            let m = arena.message(Pharos__BucketCounts.self) { pharos__bucket_counts__init($0) }
            m.pointee.bucket_count = UInt32(clamping: count)
            e.body_case = PHAROS__ENVELOPE__BODY_BUCKET_COUNTS
            e.bucket_counts = m
        case let .bucketCountsResult(counts):
            let m = arena.message(Pharos__BucketCountsResult.self) { pharos__bucket_counts_result__init($0) }
            m.pointee.n_entries = counts.count
            if !counts.isEmpty {
                let p = arena.allocate(UInt64.self, count: counts.count)
                p.update(from: counts, count: counts.count)
                m.pointee.entries = p
            }
            e.body_case = PHAROS__ENVELOPE__BODY_BUCKET_COUNTS_RESULT
            e.bucket_counts_result = m
        case .clusterStatus:
            e.body_case = PHAROS__ENVELOPE__BODY_CLUSTER_STATUS
            e.cluster_status = arena.message(Pharos__ClusterStatus.self) { pharos__cluster_status__init($0) }
        case let .clusterStatusResult(r):
            let m = arena.message(Pharos__ClusterStatusResult.self) { pharos__cluster_status_result__init($0) }
            m.pointee.epoch = r.epoch
            m.pointee.buckets = UInt32(clamping: r.buckets)
            m.pointee.replication = UInt32(clamping: r.replication)
            let nodes = arena.allocate(UnsafeMutablePointer<Pharos__NodeStatus>?.self, count: r.nodes.count)
            for (i, n) in r.nodes.enumerated() {
                let s = arena.message(Pharos__NodeStatus.self) { pharos__node_status__init($0) }
                let strings = try checked([n.name, n.address, n.zone, n.state, n.problem, n.software], "node status")
                s.pointee.software = arena.string(strings[5])
                s.pointee.protocol_version = n.protocolVersion
                s.pointee.name = arena.string(strings[0])
                s.pointee.address = arena.string(strings[1])
                s.pointee.zone = arena.string(strings[2])
                s.pointee.state = arena.string(strings[3])
                s.pointee.problem = arena.string(strings[4])
                s.pointee.buckets = UInt32(clamping: n.buckets)
                s.pointee.entries = n.entries
                nodes[i] = s
            }
            m.pointee.n_nodes = r.nodes.count
            m.pointee.nodes = r.nodes.isEmpty ? nil : nodes
            let moves = arena.allocate(UnsafeMutablePointer<Pharos__MoveStatus>?.self, count: r.moves.count)
            for (i, move) in r.moves.enumerated() {
                let s = arena.message(Pharos__MoveStatus.self) { pharos__move_status__init($0) }
                let strings = try checked([move.source, move.target, move.phase], "move status")
                s.pointee.bucket = UInt32(clamping: move.bucket)
                s.pointee.source = arena.string(strings[0])
                s.pointee.target = arena.string(strings[1])
                s.pointee.phase = arena.string(strings[2])
                s.pointee.entries_copied = move.entriesCopied
                s.pointee.bytes_copied = move.bytesCopied
                moves[i] = s
            }
            m.pointee.n_moves = r.moves.count
            m.pointee.moves = r.moves.isEmpty ? nil : moves
            m.pointee.moves_pending = UInt32(clamping: r.movesPending)
            m.pointee.buckets_under_replicated = UInt32(clamping: r.bucketsUnderReplicated)
            m.pointee.moves_done = r.movesDone
            m.pointee.entries_moved = r.entriesMoved
            m.pointee.bytes_moved = r.bytesMoved
            m.pointee.last_problem = arena.string(String(r.lastProblem.map { $0 == "\u{0}" ? " " : $0 }))
            e.body_case = PHAROS__ENVELOPE__BODY_CLUSTER_STATUS_RESULT
            e.cluster_status_result = m
        case let .addNode(n):
            let m = arena.message(Pharos__AddNode.self) { pharos__add_node__init($0) }
            let strings = try checked([n.name, n.host, n.zone], "node")
            m.pointee.name = arena.string(strings[0])
            m.pointee.host = arena.string(strings[1])
            m.pointee.zone = arena.string(strings[2])
            m.pointee.port = UInt32(clamping: n.port)
            e.body_case = PHAROS__ENVELOPE__BODY_ADD_NODE
            e.add_node = m
        case let .removeNode(name):
            let m = arena.message(Pharos__RemoveNode.self) { pharos__remove_node__init($0) }
            m.pointee.name = arena.string(try checked([name], "name")[0])
            e.body_case = PHAROS__ENVELOPE__BODY_REMOVE_NODE
            e.remove_node = m
        case let .rebalance(r):
            let m = arena.message(Pharos__Rebalance.self) { pharos__rebalance__init($0) }
            m.pointee.replication = UInt32(clamping: r.replication)
            m.pointee.max_concurrent_moves = UInt32(clamping: r.maximumConcurrentMoves)
            m.pointee.rate_mb = r.rateMegabytes
            e.body_case = PHAROS__ENVELOPE__BODY_REBALANCE
            e.rebalance = m
        default:
            throw WireError(.internalError, "\(body.name) is not a cluster message")
        }
    }

    // MARK: C -> Swift

    private static func entries(_ p: UnsafeMutablePointer<UnsafeMutablePointer<Pharos__BucketEntry>?>?, _ n: Int) -> [MovedEntry] {
        guard let p else { return [] }
        return (0..<n).map { i in
            let x = p[i]!.pointee
            return MovedEntry(key: string(x.key), list: Int(x.list), code: bytes(x.code), refine: bytes(x.refine), metadata: bytes(x.metadata))
        }
    }

    static func clusterBody(of e: Pharos__Envelope) -> WireMessage? {
        switch e.body_case {
        case PHAROS__ENVELOPE__BODY_BUCKET_READ:
            let r = e.bucket_read.pointee
            return .bucketRead(BucketReadRequest(buckets: BucketMask(count: count(r.bucket_count), bits: bytes(r.bucket_mask)),
                                                 after: r.has_cursor != 0 ? (r.after_hash, string(r.after_key)) : nil,
                                                 limit: count(r.limit)))
        case PHAROS__ENVELOPE__BODY_BUCKET_ENTRIES:
            return .bucketEntries(entries(e.bucket_entries.pointee.entries, e.bucket_entries.pointee.n_entries))
        case PHAROS__ENVELOPE__BODY_BUCKET_WRITE:
            let w = e.bucket_write.pointee
            return .bucketWrite(entries(w.entries, w.n_entries), finishing: BucketMask(count: count(w.finish_count), bits: bytes(w.finish_mask)),
                                run: string(w.run))
        case PHAROS__ENVELOPE__BODY_BUCKET_DROP:
            let d = e.bucket_drop.pointee
            return .bucketDrop(BucketMask(count: count(d.bucket_count), bits: bytes(d.bucket_mask)), receive: d.receive != 0, run: string(d.run))
        case PHAROS__ENVELOPE__BODY_BUCKET_COUNTS:
            return .bucketCounts(count: count(e.bucket_counts.pointee.bucket_count))
        case PHAROS__ENVELOPE__BODY_BUCKET_COUNTS_RESULT:
            let r = e.bucket_counts_result.pointee
            return .bucketCountsResult(r.entries.map { Array(UnsafeBufferPointer(start: $0, count: r.n_entries)) } ?? [])
        case PHAROS__ENVELOPE__BODY_CLUSTER_STATUS:
            return .clusterStatus
        case PHAROS__ENVELOPE__BODY_CLUSTER_STATUS_RESULT:
            let r = e.cluster_status_result.pointee
            let nodes = (0..<r.n_nodes).map { i -> NodeReport in
                let n = r.nodes[i]!.pointee
                return NodeReport(name: string(n.name), address: string(n.address), zone: string(n.zone), state: string(n.state),
                                  buckets: count(n.buckets), entries: n.entries, problem: string(n.problem),
                                  software: string(n.software), protocolVersion: n.protocol_version)
            }
            let moves = (0..<r.n_moves).map { i -> MoveReport in
                let m = r.moves[i]!.pointee
                return MoveReport(bucket: count(m.bucket), source: string(m.source), target: string(m.target), phase: string(m.phase),
                                  entriesCopied: m.entries_copied, bytesCopied: m.bytes_copied)
            }
            return .clusterStatusResult(ClusterReport(epoch: r.epoch, buckets: count(r.buckets), replication: count(r.replication), nodes: nodes,
                                                      moves: moves, movesPending: count(r.moves_pending),
                                                      bucketsUnderReplicated: count(r.buckets_under_replicated), movesDone: r.moves_done,
                                                      lastProblem: string(r.last_problem), entriesMoved: r.entries_moved,
                                                      bytesMoved: r.bytes_moved))
        case PHAROS__ENVELOPE__BODY_ADD_NODE:
            let n = e.add_node.pointee
            return .addNode(NodeAddition(name: string(n.name), host: string(n.host), port: count(n.port), zone: string(n.zone)))
        case PHAROS__ENVELOPE__BODY_REMOVE_NODE:
            return .removeNode(name: string(e.remove_node.pointee.name))
        case PHAROS__ENVELOPE__BODY_REBALANCE:
            let r = e.rebalance.pointee
            return .rebalance(RebalanceRequest(replication: count(r.replication), maximumConcurrentMoves: count(r.max_concurrent_moves),
                                               rateMegabytes: r.rate_mb))
        default:
            return nil
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CProtobufC
import PharosWireC

/// Encodes and decodes envelopes with the protoc-c code; C structures live only inside these
/// two functions.
public enum WireCodec {
    /// The protobuf encoding of `envelope` (the frame payload, without the length prefix).
    /// Throws `invalidArgument` for strings with NUL bytes, which the C strings cannot carry.
    public static func encode(_ envelope: Envelope) throws -> [UInt8] {
        let arena = CArena()
        var e = Pharos__Envelope()
        pharos__envelope__init(&e)
        e.request_id = envelope.requestID
        e.map_epoch = envelope.mapEpoch
        if !envelope.authToken.isEmpty { e.auth_token = arena.string(try checked([envelope.authToken], "auth token")[0]) }
        try fill(&e, with: envelope.body, arena: arena)
        let size = withUnsafePointer(to: &e) { $0.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { protobuf_c_message_get_packed_size($0) } }
        var out = [UInt8](repeating: 0, count: size)
        let written = out.withUnsafeMutableBufferPointer { buffer in
            withUnsafePointer(to: &e) { $0.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { protobuf_c_message_pack($0, buffer.baseAddress) } }
        }
        precondition(written == size, "protobuf-c packed \(written) bytes, announced \(size)")
        return out
    }

    /// Decodes a frame payload. Throws `malformed` for bytes that are not an envelope,
    /// `invalidArgument` (with the request id) for a string field holding a NUL byte or
    /// invalid UTF-8, and `unsupported` for an envelope without a known body.
    public static func decode(_ bytes: UnsafeRawBufferPointer, checkingStrings: Bool = true) throws -> Envelope {
        guard let e = pharos__envelope__unpack(nil, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)) else {
            throw WireError(.malformed, "\(bytes.count) bytes are not a valid Envelope message")
        }
        defer { pharos__envelope__free_unpacked(e, nil) }
        if checkingStrings, let problem = withUnsafePointer(to: pharos__envelope__descriptor, {
            StringFieldCheck.firstProblem(in: bytes, descriptor: $0)
        }) {
            throw WireError(.invalidArgument, problem, requestID: e.pointee.request_id)
        }
        return Envelope(requestID: e.pointee.request_id, body: try body(of: e.pointee), mapEpoch: e.pointee.map_epoch,
                        authToken: string(e.pointee.auth_token))
    }

    /// Decodes a frame payload held in an array.
    public static func decode(_ bytes: [UInt8]) throws -> Envelope {
        try bytes.withUnsafeBytes { try decode($0) }
    }

    // MARK: Swift -> C

    static func checked(_ strings: [String], _ field: String) throws -> [String] {
        if let bad = strings.firstIndex(where: { $0.utf8.contains(0) }) {
            throw WireError(.invalidArgument, "\(field) \(bad) contains a NUL byte")
        }
        return strings
    }

    private static func fill(_ e: inout Pharos__Envelope, with body: WireMessage, arena: CArena) throws {
        switch body {
        case let .hello(h):
            let m = arena.message(Pharos__Hello.self) { pharos__hello__init($0) }
            m.pointee.protocol_version = h.protocolVersion
            m.pointee.max_protocol_version = h.maxProtocolVersion
            m.pointee.role = Pharos__Role(rawValue: UInt32(h.role.rawValue))
            m.pointee.node_name = arena.string(try checked([h.nodeName], "node name")[0])
            m.pointee.software = arena.string(try checked([h.software], "software")[0])
            e.body_case = PHAROS__ENVELOPE__BODY_HELLO
            e.hello = m
        case let .search(s):
            let m = arena.message(Pharos__Search.self) { pharos__search__init($0) }
            m.pointee.n_vectors = s.vectors.count
            m.pointee.vectors = arena.floats(s.vectors)
            m.pointee.dimension = UInt32(clamping: s.dimension)
            m.pointee.n_query_keys = s.queryKeys.count
            m.pointee.query_keys = arena.strings(try checked(s.queryKeys, "query key"))
            m.pointee.k = UInt32(clamping: s.k)
            m.pointee.nprobe = UInt32(clamping: s.nprobe)
            m.pointee.refine_factor = UInt32(clamping: s.refineFactor)
            m.pointee.deadline_ms = UInt32(clamping: s.deadlineMilliseconds)
            m.pointee.with_vectors = s.withVectors ? 1 : 0
            m.pointee.bucket_count = UInt32(clamping: s.buckets.count)
            m.pointee.bucket_mask = arena.bytes(s.buckets.bits)
            m.pointee.n_probe_lists = s.probeLists.count
            m.pointee.probe_lists = arena.uint32s(s.probeLists)
            m.pointee.n_probe_biases = s.probeBiases.count
            m.pointee.probe_biases = arena.floats(s.probeBiases)
            m.pointee.probe_trained_version = s.probeTrainedVersion
            if s.expansion != .none {
                let x = arena.message(Pharos__Expansion.self) { pharos__expansion__init($0) }
                switch s.expansion {
                case .none: break
                case let .averageQE(n):
                    x.pointee.kind = PHAROS__EXPANSION__KIND__KIND_AQE
                    x.pointee.top_n = UInt32(clamping: n)
                case let .alphaQE(n, alpha):
                    x.pointee.kind = PHAROS__EXPANSION__KIND__KIND_ALPHA_QE
                    x.pointee.top_n = UInt32(clamping: n)
                    x.pointee.alpha = alpha
                }
                m.pointee.expansion = x
            }
            if case let .diffusion(shortlist, neighbours, alpha, gamma) = s.rerank {
                let x = arena.message(Pharos__Rerank.self) { pharos__rerank__init($0) }
                x.pointee.kind = PHAROS__RERANK__KIND__KIND_DIFFUSION
                x.pointee.shortlist = UInt32(clamping: shortlist)
                x.pointee.neighbours = UInt32(clamping: neighbours)
                x.pointee.alpha = alpha
                x.pointee.gamma = gamma
                m.pointee.rerank = x
            }
            e.body_case = PHAROS__ENVELOPE__BODY_SEARCH
            e.search = m
        case let .searchResult(r):
            let m = arena.message(Pharos__SearchResult.self) { pharos__search_result__init($0) }
            let queries = arena.allocate(UnsafeMutablePointer<Pharos__QueryHits>?.self, count: r.queries.count)
            for (i, q) in r.queries.enumerated() {
                let h = arena.message(Pharos__QueryHits.self) { pharos__query_hits__init($0) }
                h.pointee.n_keys = q.keys.count
                h.pointee.keys = arena.strings(try checked(q.keys, "key"))
                h.pointee.n_scores = q.scores.count
                h.pointee.scores = arena.floats(q.scores)
                h.pointee.n_vectors = q.vectors.count
                h.pointee.vectors = arena.floats(q.vectors)
                queries[i] = h
            }
            m.pointee.n_queries = r.queries.count
            m.pointee.queries = r.queries.isEmpty ? nil : queries
            m.pointee.partial = r.partial ? 1 : 0
            let missing = arena.allocate(UnsafeMutablePointer<Pharos__ShardFailure>?.self, count: r.missing.count)
            for (i, f) in r.missing.enumerated() {
                let s = arena.message(Pharos__ShardFailure.self) { pharos__shard_failure__init($0) }
                s.pointee.shard = arena.string(try checked([f.shard], "shard")[0])
                s.pointee.reason = arena.string(try checked([f.reason], "reason")[0])
                missing[i] = s
            }
            m.pointee.n_missing = r.missing.count
            m.pointee.missing = r.missing.isEmpty ? nil : missing
            if case .diffusion = r.reranked { m.pointee.reranked = PHAROS__RERANK__KIND__KIND_DIFFUSION }
            e.body_case = PHAROS__ENVELOPE__BODY_SEARCH_RESULT
            e.search_result = m
        case let .upsert(u):
            let m = arena.message(Pharos__Upsert.self) { pharos__upsert__init($0) }
            m.pointee.n_keys = u.keys.count
            m.pointee.keys = arena.strings(try checked(u.keys, "key"))
            m.pointee.n_vectors = u.vectors.count
            m.pointee.vectors = arena.floats(u.vectors)
            m.pointee.dimension = UInt32(clamping: u.dimension)
            let metadata = arena.allocate(ProtobufCBinaryData.self, count: u.metadata.count)
            for (i, value) in u.metadata.enumerated() { metadata[i] = arena.bytes(value) }
            m.pointee.n_metadata = u.metadata.count
            m.pointee.metadata = u.metadata.isEmpty ? nil : metadata
            m.pointee.deadline_ms = UInt32(clamping: u.deadlineMilliseconds)
            if !u.encoded.isEmpty {
                let rows = arena.allocate(UnsafeMutablePointer<Pharos__EncodedRow>?.self, count: u.encoded.count)
                for (i, row) in u.encoded.enumerated() {
                    let r = arena.message(Pharos__EncodedRow.self) { pharos__encoded_row__init($0) }
                    r.pointee.list = UInt32(clamping: row.list)
                    r.pointee.code = arena.bytes(row.code)
                    r.pointee.refine = arena.bytes(row.refine)
                    rows[i] = r
                }
                m.pointee.n_encoded = u.encoded.count
                m.pointee.encoded = rows
            }
            m.pointee.trained_version = u.trainedVersion
            e.body_case = PHAROS__ENVELOPE__BODY_UPSERT
            e.upsert = m
        case let .upsertResult(written, replaced):
            let m = arena.message(Pharos__UpsertResult.self) { pharos__upsert_result__init($0) }
            m.pointee.written = UInt32(clamping: written)
            m.pointee.replaced = UInt32(clamping: replaced)
            e.body_case = PHAROS__ENVELOPE__BODY_UPSERT_RESULT
            e.upsert_result = m
        case let .delete(keys):
            let m = arena.message(Pharos__Delete.self) { pharos__delete__init($0) }
            m.pointee.n_keys = keys.count
            m.pointee.keys = arena.strings(try checked(keys, "key"))
            e.body_case = PHAROS__ENVELOPE__BODY_DELETE
            e.delete_ = m
        case let .deleteResult(deleted):
            let m = arena.message(Pharos__DeleteResult.self) { pharos__delete_result__init($0) }
            m.pointee.deleted = UInt32(clamping: deleted)
            e.body_case = PHAROS__ENVELOPE__BODY_DELETE_RESULT
            e.delete_result = m
        case let .fetch(keys):
            let m = arena.message(Pharos__Fetch.self) { pharos__fetch__init($0) }
            m.pointee.n_keys = keys.count
            m.pointee.keys = arena.strings(try checked(keys, "key"))
            e.body_case = PHAROS__ENVELOPE__BODY_FETCH
            e.fetch = m
        case let .fetchResult(entries):
            let m = arena.message(Pharos__FetchResult.self) { pharos__fetch_result__init($0) }
            let list = arena.allocate(UnsafeMutablePointer<Pharos__FetchedEntry>?.self, count: entries.count)
            for (i, entry) in entries.enumerated() {
                let f = arena.message(Pharos__FetchedEntry.self) { pharos__fetched_entry__init($0) }
                f.pointee.key = arena.string(try checked([entry.key], "key")[0])
                f.pointee.found = entry.found ? 1 : 0
                f.pointee.n_vector = entry.vector.count
                f.pointee.vector = arena.floats(entry.vector)
                f.pointee.metadata = arena.bytes(entry.metadata)
                list[i] = f
            }
            m.pointee.n_entries = entries.count
            m.pointee.entries = entries.isEmpty ? nil : list
            e.body_case = PHAROS__ENVELOPE__BODY_FETCH_RESULT
            e.fetch_result = m
        case .stats:
            e.body_case = PHAROS__ENVELOPE__BODY_STATS
            e.stats = arena.message(Pharos__Stats.self) { pharos__stats__init($0) }
        case let .statsResult(s):
            let m = arena.message(Pharos__StatsResult.self) { pharos__stats_result__init($0) }
            m.pointee.live_entries = s.liveEntries
            m.pointee.segments = s.segments
            m.pointee.sealed_entries = s.sealedEntries
            m.pointee.memory_entries = s.memoryEntries
            m.pointee.factory = arena.string(try checked([s.factory], "factory")[0])
            m.pointee.dimension = UInt32(clamping: s.dimension)
            m.pointee.trained_version = s.trainedVersion
            m.pointee.metric = arena.string(try checked([s.metric], "metric")[0])
            e.body_case = PHAROS__ENVELOPE__BODY_STATS_RESULT
            e.stats_result = m
        case .health:
            e.body_case = PHAROS__ENVELOPE__BODY_HEALTH
            e.health = arena.message(Pharos__Health.self) { pharos__health__init($0) }
        case let .healthResult(ready, status):
            let m = arena.message(Pharos__HealthResult.self) { pharos__health_result__init($0) }
            m.pointee.ready = ready ? 1 : 0
            m.pointee.status = arena.string(try checked([status], "status")[0])
            e.body_case = PHAROS__ENVELOPE__BODY_HEALTH_RESULT
            e.health_result = m
        case let .trainedState(indexFile, whitening):
            let m = arena.message(Pharos__TrainedState.self) { pharos__trained_state__init($0) }
            m.pointee.index_file = arena.bytes(indexFile)
            m.pointee.whitening = arena.bytes(whitening)
            e.body_case = PHAROS__ENVELOPE__BODY_TRAINED_STATE
            e.trained_state = m
        case let .trainedStateAck(version):
            let m = arena.message(Pharos__TrainedStateAck.self) { pharos__trained_state_ack__init($0) }
            m.pointee.trained_version = version
            e.body_case = PHAROS__ENVELOPE__BODY_TRAINED_STATE_ACK
            e.trained_state_ack = m
        case let .drop(confirm):
            let m = arena.message(Pharos__Drop.self) { pharos__drop__init($0) }
            m.pointee.confirm = arena.string(try checked([confirm], "confirm")[0])
            e.body_case = PHAROS__ENVELOPE__BODY_DROP
            e.drop = m
        case let .dropResult(dropped):
            let m = arena.message(Pharos__DropResult.self) { pharos__drop_result__init($0) }
            m.pointee.dropped_entries = dropped
            e.body_case = PHAROS__ENVELOPE__BODY_DROP_RESULT
            e.drop_result = m
        case .schema:
            e.body_case = PHAROS__ENVELOPE__BODY_SCHEMA
            e.schema = arena.message(Pharos__Schema.self) { pharos__schema__init($0) }
        case let .schemaResult(s):
            let m = arena.message(Pharos__SchemaResult.self) { pharos__schema_result__init($0) }
            m.pointee.dimension = UInt32(clamping: s.dimension)
            m.pointee.metric = arena.string(try checked([s.metric], "metric")[0])
            m.pointee.factory = arena.string(try checked([s.factory], "factory")[0])
            m.pointee.normalize = s.normalize ? 1 : 0
            m.pointee.input_dimension = UInt32(clamping: s.inputDimension)
            m.pointee.whitened = s.whitened ? 1 : 0
            m.pointee.buckets = UInt32(clamping: s.buckets)
            m.pointee.shard_count = UInt32(clamping: s.shardCount)
            e.body_case = PHAROS__ENVELOPE__BODY_SCHEMA_RESULT
            e.schema_result = m
        case .bucketRead, .bucketEntries, .bucketWrite, .bucketDrop, .bucketCounts, .bucketCountsResult,
             .clusterStatus, .clusterStatusResult, .addNode, .removeNode, .rebalance:
            try fillCluster(&e, with: body, arena: arena)
        case let .error(error):
            let m = arena.message(Pharos__Error.self) { pharos__error__init($0) }
            m.pointee.code = Pharos__ErrorCode(rawValue: UInt32(error.code.rawValue))
            m.pointee.message = arena.string(String(error.message.map { $0 == "\u{0}" ? " " : $0 }))
            m.pointee.request_id = error.requestID
            e.body_case = PHAROS__ENVELOPE__BODY_ERROR
            e.error = m
        }
    }

    // MARK: C -> Swift

    static func string(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
    }

    static func strings(_ p: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?, _ n: Int) -> [String] {
        guard let p else { return [] }
        return (0..<n).map { string(p[$0]) }
    }

    private static func floats(_ p: UnsafeMutablePointer<Float>?, _ n: Int) -> [Float] {
        guard let p, n > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    static func bytes(_ b: ProtobufCBinaryData) -> [UInt8] {
        guard let data = b.data, b.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: data, count: b.len))
    }

    static func count(_ v: UInt32) -> Int { Int(v) }

    private static func body(of e: Pharos__Envelope) throws -> WireMessage {
        switch e.body_case {
        case PHAROS__ENVELOPE__BODY_HELLO:
            let h = e.hello.pointee
            guard let role = Int32(exactly: h.role.rawValue).flatMap(PeerRole.init(rawValue:)) else {
                throw WireError(.invalidArgument, "Hello.role \(Int32(bitPattern: h.role.rawValue)) is not a role of this protocol", requestID: e.request_id)
            }
            return .hello(Hello(protocolVersion: h.protocol_version, maxProtocolVersion: h.max_protocol_version, role: role,
                                nodeName: string(h.node_name), software: string(h.software)))
        case PHAROS__ENVELOPE__BODY_SEARCH:
            let s = e.search.pointee
            var expansion = QueryExpansion.none
            if let x = s.expansion?.pointee {
                switch x.kind {
                case PHAROS__EXPANSION__KIND__KIND_AQE: expansion = .averageQE(n: Int(x.top_n))
                case PHAROS__EXPANSION__KIND__KIND_ALPHA_QE: expansion = .alphaQE(n: Int(x.top_n), alpha: x.alpha)
                case PHAROS__EXPANSION__KIND__KIND_NONE: break
                default:
                    // Served as a plain search it would silently be something the client did not ask for.
                    throw WireError(.invalidArgument, "Search.expansion.kind \(Int32(bitPattern: x.kind.rawValue)) is not a kind this node knows (NONE, AQE, ALPHA_QE)",
                                    requestID: e.request_id)
                }
            }
            var request = SearchRequest(vectors: floats(s.vectors, s.n_vectors), dimension: count(s.dimension),
                                        queryKeys: strings(s.query_keys, s.n_query_keys), k: count(s.k), nprobe: count(s.nprobe),
                                        refineFactor: count(s.refine_factor), expansion: expansion,
                                        deadlineMilliseconds: count(s.deadline_ms), withVectors: s.with_vectors != 0)
            request.buckets = BucketMask(count: count(s.bucket_count), bits: bytes(s.bucket_mask))
            if let lists = s.probe_lists, s.n_probe_lists > 0 { request.probeLists = Array(UnsafeBufferPointer(start: lists, count: s.n_probe_lists)) }
            request.probeBiases = floats(s.probe_biases, s.n_probe_biases)
            request.probeTrainedVersion = s.probe_trained_version
            if let x = s.rerank?.pointee {
                switch x.kind {
                case PHAROS__RERANK__KIND__KIND_NONE: break
                case PHAROS__RERANK__KIND__KIND_DIFFUSION:
                    // Zero fields take the documented defaults (a proto3 client cannot tell zero from unset).
                    guard case let .diffusion(shortlist, neighbours, alpha, gamma) = SearchRerank.standardDiffusion else { break }
                    request.rerank = .diffusion(shortlist: x.shortlist == 0 ? Swift.max(shortlist, count(s.k)) : count(x.shortlist),
                                                neighbours: x.neighbours == 0 ? neighbours : count(x.neighbours),
                                                alpha: x.alpha == 0 ? alpha : x.alpha, gamma: x.gamma == 0 ? gamma : x.gamma)
                default:
                    throw WireError(.invalidArgument, "Search.rerank.kind \(Int32(bitPattern: x.kind.rawValue)) is not a kind this node knows (NONE, DIFFUSION)",
                                    requestID: e.request_id)
                }
            }
            return .search(request)
        case PHAROS__ENVELOPE__BODY_SEARCH_RESULT:
            let r = e.search_result.pointee
            let queries = (0..<r.n_queries).map { i -> QueryHits in
                let h = r.queries[i]!.pointee
                return QueryHits(keys: strings(h.keys, h.n_keys), scores: floats(h.scores, h.n_scores), vectors: floats(h.vectors, h.n_vectors))
            }
            let missing = (0..<r.n_missing).map { i -> ShardFailure in
                let f = r.missing[i]!.pointee
                return ShardFailure(shard: string(f.shard), reason: string(f.reason))
            }
            // A sender that flags the answer partial without naming shards still gets it
            // reported as partial: `partial` is derived from `missing` on this side.
            let unnamed = r.partial != 0 && missing.isEmpty
                ? [ShardFailure(shard: "(unnamed)", reason: "the sender marked the answer partial without naming the missing shards")] : []
            var response = SearchResponse(queries: queries, missing: missing + unnamed)
            // An unknown kind from a newer coordinator reads as none: the client then says the
            // re-ranking it asked for was not applied.
            if r.reranked == PHAROS__RERANK__KIND__KIND_DIFFUSION { response.reranked = .diffusion(shortlist: 0, neighbours: 0, alpha: 0, gamma: 0) }
            return .searchResult(response)
        case PHAROS__ENVELOPE__BODY_UPSERT:
            let u = e.upsert.pointee
            let encoded: [EncodedRow] = u.encoded.map { rows in
                (0..<u.n_encoded).compactMap { i in
                    rows[i].map { EncodedRow(list: Int($0.pointee.list), code: bytes($0.pointee.code), refine: bytes($0.pointee.refine)) }
                }
            } ?? []
            return .upsert(UpsertRequest(keys: strings(u.keys, u.n_keys), vectors: floats(u.vectors, u.n_vectors),
                                         dimension: count(u.dimension), metadata: (0..<u.n_metadata).map { bytes(u.metadata[$0]) },
                                         deadlineMilliseconds: count(u.deadline_ms), encoded: encoded, trainedVersion: u.trained_version))
        case PHAROS__ENVELOPE__BODY_UPSERT_RESULT:
            return .upsertResult(written: count(e.upsert_result.pointee.written), replaced: count(e.upsert_result.pointee.replaced))
        case PHAROS__ENVELOPE__BODY_DELETE:
            return .delete(keys: strings(e.delete_.pointee.keys, e.delete_.pointee.n_keys))
        case PHAROS__ENVELOPE__BODY_DELETE_RESULT:
            return .deleteResult(deleted: count(e.delete_result.pointee.deleted))
        case PHAROS__ENVELOPE__BODY_FETCH:
            return .fetch(keys: strings(e.fetch.pointee.keys, e.fetch.pointee.n_keys))
        case PHAROS__ENVELOPE__BODY_FETCH_RESULT:
            let r = e.fetch_result.pointee
            return .fetchResult((0..<r.n_entries).map { i in
                let f = r.entries[i]!.pointee
                return FetchedEntry(key: string(f.key), found: f.found != 0, vector: floats(f.vector, f.n_vector), metadata: bytes(f.metadata))
            })
        case PHAROS__ENVELOPE__BODY_STATS:
            return .stats
        case PHAROS__ENVELOPE__BODY_STATS_RESULT:
            let s = e.stats_result.pointee
            return .statsResult(ShardStatistics(liveEntries: s.live_entries, segments: s.segments, sealedEntries: s.sealed_entries,
                                                memoryEntries: s.memory_entries, factory: string(s.factory),
                                                dimension: count(s.dimension), trainedVersion: s.trained_version,
                                                metric: string(s.metric)))
        case PHAROS__ENVELOPE__BODY_HEALTH:
            return .health
        case PHAROS__ENVELOPE__BODY_HEALTH_RESULT:
            return .healthResult(ready: e.health_result.pointee.ready != 0, status: string(e.health_result.pointee.status))
        case PHAROS__ENVELOPE__BODY_TRAINED_STATE:
            return .trainedState(indexFile: bytes(e.trained_state.pointee.index_file), whitening: bytes(e.trained_state.pointee.whitening))
        case PHAROS__ENVELOPE__BODY_TRAINED_STATE_ACK:
            return .trainedStateAck(version: e.trained_state_ack.pointee.trained_version)
        case PHAROS__ENVELOPE__BODY_DROP:
            return .drop(confirm: string(e.drop.pointee.confirm))
        case PHAROS__ENVELOPE__BODY_DROP_RESULT:
            return .dropResult(droppedEntries: e.drop_result.pointee.dropped_entries)
        case PHAROS__ENVELOPE__BODY_SCHEMA:
            return .schema
        case PHAROS__ENVELOPE__BODY_SCHEMA_RESULT:
            let s = e.schema_result.pointee
            return .schemaResult(CollectionSchema(dimension: count(s.dimension), metric: string(s.metric), factory: string(s.factory),
                                                  normalize: s.normalize != 0, inputDimension: count(s.input_dimension),
                                                  whitened: s.whitened != 0, buckets: count(s.buckets), shardCount: count(s.shard_count)))
        case PHAROS__ENVELOPE__BODY_ERROR:
            let x = e.error.pointee
            return .error(WireError(Int32(exactly: x.code.rawValue).flatMap(WireError.Code.init(rawValue:)) ?? .unspecified, string(x.message), requestID: x.request_id))
        default:
            if let message = clusterBody(of: e) { return message }
            throw WireError(.unsupported, "envelope \(e.request_id) has no body this build knows (body field \(e.body_case.rawValue))", requestID: e.request_id)
        }
    }
}

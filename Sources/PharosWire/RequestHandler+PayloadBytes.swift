extension RequestHandler {
    /// Bytes a request holds while served (its vectors, keys and metadata).
    static func payloadBytes(_ message: WireMessage) -> Int {
        switch message {
        case let .search(s): return s.vectors.count * 4 + s.queryKeys.reduce(0) { $0 + $1.utf8.count }
        case let .searchResult(r):
            return r.queries.reduce(0) { sum, q in sum + q.keys.reduce(0) { $0 + $1.utf8.count + 8 } + (q.scores.count + q.vectors.count) * 4 }
        case let .fetchResult(entries): return entries.reduce(0) { $0 + $1.key.utf8.count + $1.vector.count * 4 + $1.metadata.count }
        case let .upsert(u):
            return u.vectors.count * 4 + u.keys.reduce(0) { $0 + $1.utf8.count } + u.metadata.reduce(0) { $0 + $1.count }
                + u.encoded.reduce(0) { $0 + 8 + $1.code.count + $1.refine.count }
        case let .delete(keys), let .fetch(keys): return keys.reduce(0) { $0 + $1.utf8.count }
        case let .trainedState(file, whitening): return file.count + whitening.count
        case let .bucketEntries(entries), let .bucketWrite(entries, _, _):
            return entries.reduce(0) { $0 + $1.key.utf8.count + $1.code.count + $1.refine.count + $1.metadata.count }
        default: return 0
        }
    }
}

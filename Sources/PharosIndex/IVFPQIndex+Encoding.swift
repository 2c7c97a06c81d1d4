import PharosKernels
import PharosVectors

/// Encoding and adding: each row's list, PQ code and refine code.
extension IVFPQIndex {
    public func add(_ vectors: Matrix, ids newIDs: [Int64]?, threads: Int) throws {
        let batch = try encodeEntries(vectors, threads: threads)
        try lock.withWriteLock {
            let ids = newIDs ?? (0..<Int64(vectors.rows)).map { Int64(total) + $0 }
            guard ids.count == vectors.rows else { throw IndexError.idCountMismatch(vectors: vectors.rows, ids: ids.count) }
            if let map = directMap {
                var seen = Set<Int64>()
                for id in ids where map[id] != nil || !seen.insert(id).inserted { throw IndexError.duplicateID(id) }
            }
            batch.forEachEntry { row, list, code, refineCode in
                let offset = lists.append(list: list, id: ids[row], code: code, refineCode: refineCode)
                directMap?[ids[row]] = UInt64(list) << 32 | UInt64(offset)
            }
        }
    }

    /// Encodes vectors without storing them: each row's list, PQ code and refine code.
    ///
    /// The storage layer encodes outside its locks with this, logs the result, then appends
    /// it to its own lists; `add` is this followed by an append.
    public func encodeEntries(_ vectors: Matrix, threads: Int) throws -> EncodedEntries {
        try validate(vectors)
        let x = try lock.withReadLock {
            guard trained else { throw IndexError.notTrained }
            return rotation?.apply(vectors) ?? vectors
        }
        let assignment = assign(x, threads: threads)
        let residuals = residualsOf(x, assignment: assignment)
        let codes = configuration.anisotropicThreshold.map {
            pq.encodeAnisotropic(residuals: residuals, originals: x, threshold: $0, threads: threads)
        } ?? pq.encode(residuals, threads: threads)
        var refineCodes = [UInt8]()
        refineCodec?.encode(vectors, appendingTo: &refineCodes)
        return EncodedEntries(lists: assignment, codes: codes, refine: refineCodes, layout: layout)
    }
}

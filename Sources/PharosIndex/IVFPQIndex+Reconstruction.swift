import PharosVectors

/// Reconstruction: the index's approximation of a stored vector, from refine codes when it
/// has them, else from the PQ code plus its list's centroid.
extension IVFPQIndex {
    public func reconstruct(_ id: Int64) throws -> [Float] {
        let location: UInt64? = try lock.withWriteLock {
            guard trained else { throw IndexError.notTrained }
            if directMap == nil {
                var map = [Int64: UInt64](minimumCapacity: total)
                for l in 0..<configuration.lists {
                    for (offset, id) in lists.ids(ofList: l).enumerated() { map[id] = UInt64(l) << 32 | UInt64(offset) }
                }
                directMap = map
            }
            return directMap![id]
        }
        guard let location else { throw IndexError.unknownID(id) }
        return lock.withReadLock {
            let l = Int(location >> 32), offset = Int(location & 0xffff_ffff)
            let view = lists.view(ofList: l)
            var code = [UInt8](repeating: 0, count: pq.subquantizers)
            code.withUnsafeMutableBufferPointer { layout.load(at: offset, from: view.codes!, into: $0.baseAddress!) }
            return code.withUnsafeBufferPointer { c in
                reconstructLocked(list: l, code: c.baseAddress!, refine: view.refine.map { $0 + offset * layout.refineBytes })
            }
        }
    }

    /// The approximation of an entry stored elsewhere (a segment), from its list, its unpacked
    /// PQ code (`layout.subquantizers` bytes) and its refine code (`layout.refineBytes`).
    public func reconstruct(list: Int, code: [UInt8], refine: [UInt8]) throws -> [Float] {
        guard (0..<configuration.lists).contains(list) else {
            throw IndexError.invalidParameter(name: "list", value: "\(list)", allowed: "0..<\(configuration.lists)")
        }
        guard code.count == layout.subquantizers, refine.count == layout.refineBytes else {
            throw IndexError.invalidParameter(name: "stored entry", value: "\(code.count) code and \(refine.count) refine bytes",
                                              allowed: "\(layout.subquantizers) and \(layout.refineBytes)")
        }
        return try lock.withReadLock {
            guard trained else { throw IndexError.notTrained }
            return code.withUnsafeBufferPointer { c in
                refine.withUnsafeBufferPointer { r in
                    reconstructLocked(list: list, code: c.baseAddress!, refine: layout.refineBytes > 0 ? r.baseAddress : nil)
                }
            }
        }
    }

    private func reconstructLocked(list l: Int, code: UnsafePointer<UInt8>, refine: UnsafePointer<UInt8>?) -> [Float] {
        var out = [Float](repeating: 0, count: dimension)
        if let codec = refineCodec, let refine {
            out.withUnsafeMutableBufferPointer { codec.decode(refine, into: $0.baseAddress!) }
            return out
        }
        out.withUnsafeMutableBufferPointer { pq.decode(code, into: $0.baseAddress!) }
        for j in 0..<dimension { out[j] += centroids.values[l * dimension + j] }
        if let rotation { return rotation.reverse(Matrix(rows: 1, columns: dimension, values: out)).values }
        return out
    }
}

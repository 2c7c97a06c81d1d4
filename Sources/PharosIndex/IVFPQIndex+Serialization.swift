import PharosKernels
import PharosVectors

/// Serialisation into the index container (`IndexFile.swift`): trained state, then lists.
extension IVFPQIndex {
    public func encode(into writer: inout IndexFileWriter) {
        lock.withReadLock {
            writer.section("TRND") { w in
                w.write(trained ? 1 : 0)
                w.write(rotation?.matrix.values ?? [])
                w.write(centroids.values)
                w.write(pq.codebooks)
                if let refineCodec { refineCodec.encodeParameters(&w) }
            }
            writer.section("LIST") { w in
                w.write(total)
                for l in 0..<configuration.lists {
                    w.write(Array(lists.ids(ofList: l)))
                    w.write(Array(lists.codes(ofList: l)))
                    w.write(Array(lists.refineCodes(ofList: l)))
                }
            }
        }
    }

    /// Restores state written by `encode`, validating every size against the configuration.
    func decode(from reader: inout IndexFileReader) throws {
        try lock.withWriteLock {
            let d = dimension, ksub = pq.centroidsPerSubspace
            var t = try reader.section("TRND")
            trained = try t.readInt("trained flag", in: 0...1) == 1
            let rot = try t.readFloats("rotation")
            if configuration.opqSubquantizers != nil && trained {
                guard rot.count == d * d else { throw t.corrupt("rotation holds \(rot.count) floats, expected \(d * d)") }
                rotation = OPQRotation(matrix: Matrix(rows: d, columns: d, values: rot))
            }
            centroids = Matrix(rows: configuration.lists, columns: d,
                               values: try t.readFloats("centroids", expected: configuration.lists * d))
            centroidNorms = VectorMath.squaredNorms(centroids)
            coarseCodes = CoarseCodes(centroids)
            pq.codebooks = try t.readFloats("codebooks", expected: trained ? pq.subquantizers * ksub * pq.subDimension : 0)
            if refineCodec != nil {
                refineCodec = try RefineCodec.decodeParameters(&t, dimension: d)
            }
            try t.expectEnd()
            var l = try reader.section("LIST")
            let expectedTotal = try l.readInt("vector count", in: 0...Int(Int32.max) * 64)
            var seen = 0
            let refineBytes = refineCodec?.codeBytes ?? 0
            for i in 0..<configuration.lists {
                let ids = try l.readInt64s("list \(i) ids")
                guard ids.count < 1 << 32 else { throw l.corrupt("list \(i) holds \(ids.count) vectors, at most 2^32") }
                lists.replace(list: i, ids: ids,
                              codes: try l.readBytes("list \(i) codes", expected: layout.codeBytes(count: ids.count)),
                              refine: try l.readBytes("list \(i) refine codes", expected: ids.count * refineBytes))
                seen += ids.count
            }
            try l.expectEnd()
            guard seen == expectedTotal else { throw l.corrupt("lists hold \(seen) vectors, header says \(expectedTotal)") }
            buildL2Table()
        }
    }
}

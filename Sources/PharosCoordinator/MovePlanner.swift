/// Plans the bucket moves that bring a cluster map to its goal: every bucket on
/// `replication` distinct active nodes, nothing left on draining nodes, and (when balancing)
/// bucket copies per active node within one of each other. Buckets hash keys uniformly, so
/// even copy counts are even entry counts.
///
/// Pure: the same state gives the same plan (ties go to the earlier node), so a restarted
/// coordinator plans what it planned before.
public enum MovePlanner {
    /// The moves, in the order to run them: drains first, then missing copies, then balance.
    /// Buckets that already have a move in `state.moves` are left alone.
    public static func plan(_ state: ClusterState, balance: Bool) -> [ClusterState.Move] {
        let active = state.nodes.filter { $0.state == .active }.map(\.name)
        guard !active.isEmpty else { return [] }
        let draining = Set(state.nodes.filter { $0.state == .draining }.map(\.name))
        let down = Set(state.nodes.filter { $0.state == .down }.map(\.name))
        var load = Dictionary(uniqueKeysWithValues: active.map { ($0, 0) })
        for list in state.replicas { for name in list where load[name] != nil { load[name]! += 1 } }
        let busy = Set(state.moves.map(\.bucket))
        var holders = state.replicas.map { Set($0) }
        var moves: [ClusterState.Move] = []

        /// The least loaded active node not holding `bucket` (earliest on ties).
        func emptiest(for bucket: Int) -> String? {
            active.filter { !holders[bucket].contains($0) }.min { load[$0]! < load[$1]! }
        }
        var moving = busy
        func schedule(_ bucket: Int, from source: String?, to target: String) {
            moves.append(ClusterState.Move(bucket: bucket, source: source, target: target))
            moving.insert(bucket)
            holders[bucket].insert(target)
            load[target]! += 1
            if let source {
                holders[bucket].remove(source)
                if load[source] != nil { load[source]! -= 1 }
            }
        }

        for b in 0..<state.buckets where !busy.contains(b) {
            for leaving in state.replicas[b] where draining.contains(leaving) {
                guard let target = emptiest(for: b) else { break }
                schedule(b, from: leaving, to: target)
            }
        }
        for b in 0..<state.buckets where !moving.contains(b) {
            // Copies that serve: not down, not leaving (a draining node's copy is moved above).
            var serving = holders[b].filter { !down.contains($0) && !draining.contains($0) }.count
            while serving < state.replication, holders[b].contains(where: { !down.contains($0) }), let target = emptiest(for: b) {
                schedule(b, from: nil, to: target)
                serving += 1
            }
        }
        guard balance else { return moves }
        for _ in 0..<(state.buckets * state.replication) {
            let ordered = active.sorted { (load[$0]!, $0) < (load[$1]!, $1) }
            guard let lightest = ordered.first, let heaviest = ordered.last, load[heaviest]! - load[lightest]! > 1 else { break }
            guard let b = (0..<state.buckets).first(where: { b in
                !moving.contains(b) && holders[b].contains(heaviest) && !holders[b].contains(lightest)
            }) else { break }
            schedule(b, from: heaviest, to: lightest)
        }
        return moves
    }
}

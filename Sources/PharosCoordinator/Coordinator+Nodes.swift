import Foundation
import PharosRouting
import PharosWire

/// Nodes joining, leaving, failing and returning, and the background mover that keeps every
/// bucket at its replication factor (re-copying what a lost node held), drains leaving nodes
/// and, when asked, evens out the load.
extension Coordinator {
    /// Adds an empty node: it receives the trained state (when the collection has one) and
    /// serves buckets once a rebalance moves some to it.
    func addNode(_ addition: NodeAddition) async throws -> ClusterReport {
        if routing.state.node(addition.name) != nil {
            throw WireError(.invalidArgument, "a node named \(addition.name.debugDescription) is already in the map")
        }
        if routing.state.nodes.contains(where: { $0.host == addition.host && $0.port == addition.port }) {
            throw WireError(.invalidArgument, "\(addition.host):\(addition.port) is already in the map")
        }
        guard options.nodeHosts.allows(addition.host, known: routing.state.nodes.map(\.host)) else {
            throw WireError(.invalidArgument, "AddNode.host \(addition.host.debugDescription) is not a host this coordinator may connect to (\(options.nodeHosts)); start it with --allow-node-host")
        }
        // The node is asked and given the trained state before it enters the map: a node that
        // cannot be reached or refuses leaves the map as it was.
        let node = ClusterState.Node(name: addition.name, host: addition.host, port: addition.port, zone: addition.zone, state: .active)
        let link = self.link(for: node)
        do {
            _ = try await link.call(.health, timeout: options.healthDeadline)
            try await prepare(link, name: addition.name)
            // Idempotent: a change applied again after an unanswered commit finds it done.
            try await changeMap("\(addition.name) joins") { state in
                if state.node(node.name) == nil { state.nodes.append(node) }
            }
        } catch {
            linkPool.withLock { pool in if pool[addition.name] === link { pool[addition.name] = nil } }
            await link.close()
            throw error
        }
        return await clusterReport()
    }

    /// Gives a node of the map the collection's trained state if it lacks one (a replaced node).
    func prepareNode(_ name: String) async throws {
        let routing = self.routing
        guard let index = routing.state.nodes.firstIndex(where: { $0.name == name }) else {
            throw WireError(.invalidArgument, "no node named \(name.debugDescription)")
        }
        try await prepare(routing.links[index], name: name)
    }

    /// Gives the node behind `link` the collection's trained state (the same one again is
    /// acknowledged; a node trained otherwise refuses, which fails the call).
    private func prepare(_ link: ShardLink, name: String) async throws {
        guard let trained = keptTrainedState.withLock({ $0 }) else {
            if case let .statsResult(s)? = try? await everyNode(.stats, within: options.healthDeadline).first?.1, s.trainedVersion != 0 {
                throw WireError(.notReady, "the collection is trained but this coordinator keeps no copy of its trained state to give \(name); push it again with pharos train")
            }
            return
        }
        do {
            _ = try await link.call(.trainedState(indexFile: trained), timeout: options.writeDeadline)
        } catch {
            throw WireError((error as? WireError)?.code ?? .unavailable, "giving \(name) the trained state: \(error)")
        }
    }

    /// Drains a node (its buckets move away) and removes it from the map once empty.
    func removeNode(_ name: String) async throws -> ClusterReport {
        guard let node = routing.state.node(name) else { throw WireError(.invalidArgument, "no node named \(name.debugDescription) in the map") }
        let others = routing.state.nodes.filter { $0.name != name && $0.state == .active }.count
        guard others >= routing.state.replication else {
            throw WireError(.invalidArgument, "removing \(name) would leave \(others) active nodes for replication \(routing.state.replication): add a node or lower the replication first")
        }
        if node.state != .draining || !node.leaving {
            try await changeMap("\(name) draining") { state in
                if let i = state.nodes.firstIndex(where: { $0.name == name }) {
                    state.nodes[i].leaving = true
                    if state.nodes[i].state != .down { state.nodes[i].state = .draining }
                }
            }
        }
        wakeMover()
        return await clusterReport()
    }

    /// Sets the replication factor (when given) and asks the mover to even out the nodes.
    func rebalance(_ request: RebalanceRequest) async throws -> ClusterReport {
        if request.replication > 0 {
            let active = routing.state.nodes.filter { $0.state == .active }.count
            guard request.replication <= active else {
                throw WireError(.invalidArgument, "replication \(request.replication) needs as many active nodes; the map has \(active)")
            }
            guard request.replication >= routing.state.replication else {
                throw WireError(.invalidArgument, "lowering the replication (\(routing.state.replication) to \(request.replication)) is not supported yet")
            }
            try await changeMap("replication \(request.replication)") { $0.replication = request.replication }
        }
        moveProgress.withLock { $0.pending = MovePlanner.plan(routing.state, balance: true).count }
        // In the map: whichever coordinator runs the moves follows it.
        try await changeMap("rebalance") { state in
            state.balance = true
            state.concurrentMoves = Swift.max(1, request.maximumConcurrentMoves)
            state.rateBytesPerSecond = request.rateMegabytes * 1_000_000
        }
        wakeMover()
        return await clusterReport()
    }

    /// Asks the mover to look for work now.
    func wakeMover() { moverWake.withLock { $0 = true } }

    /// The mover: every 250 ms (or when woken) it brings down nodes back, finishes drops,
    /// removes drained nodes, and runs the moves the planner gives until there are none.
    ///
    /// With several coordinators (etcd), only the one holding the mover lease does this; the
    /// copies it finds in the map start again (`restartOrphanedCopies`: their streams died with
    /// the coordinator that ran them).
    func moverLoop() async {
        var lastProbe = ContinuousClock.now - .seconds(10)
        var held = false
        while !Task.isCancelled {
            let woken = moverWake.withLock { w in defer { w = false }; return w }
            if !woken {
                do { try await Task.sleep(for: .milliseconds(250)) } catch { return }
            }
            if Task.isCancelled { return }
            let holds = runsMovesNow
            // Taking the role over: the map as it is kept now (the copies found there start
            // again in the next step).
            if holds && !held { try? await refreshMap() }
            held = holds
            guard holds else { continue }
            if ContinuousClock.now - lastProbe >= .seconds(1) {
                lastProbe = ContinuousClock.now
                await probeDownNodes()
            }
            await moverStep()
        }
    }

    /// Keeps the mover role (renewed every second, apart from the moves themselves, which may
    /// take longer than the role's lease).
    ///
    /// The role counts only until the lease could have lapsed, measured from before the renewal
    /// was sent (`roleValidUntil`): a renewal that hangs cannot leave this coordinator moving
    /// buckets after another one took the lease.
    func leaseLoop() async {
        while !Task.isCancelled {
            let sent = ContinuousClock.now
            let holds = await store.holdsMoverRole()
            let margin = Duration.milliseconds(500)
            movesHere.withLock { $0 = holds }
            roleValidUntil.withLock { $0 = holds ? sent + .seconds(EtcdMapStore.leaseSeconds) - margin : sent }
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
        }
    }

    /// Whether this coordinator runs moves now: it holds the role, and (with etcd) its lease
    /// cannot have lapsed yet.
    var runsMovesNow: Bool {
        movesHere.withLock { $0 } && (store is EtcdMapStore ? ContinuousClock.now < roleValidUntil.withLock { $0 } : true)
    }

    /// Copies in the map that no stream carries start again: between two steps this mover
    /// runs no copy, so every copying move then is one whose stream died (the previous
    /// mover's, this coordinator's before a restart, one whose abandonment could not be
    /// written). Cleared in every step until that is written, not once at a take-over: the
    /// etcd member answering may be the one that just died, and a copy left in the map keeps
    /// its buckets out of every later plan. A stale mover still streaming one of them finds it
    /// gone at its next page or its flip. False when the map could not be changed.
    func restartOrphanedCopies() async -> Bool {
        let orphaned = routing.state.moves.filter { $0.phase == .copying }.count
        guard orphaned > 0 else { return true }
        do {
            try await changeMap("\(orphaned) copies no stream carries start again") { state in
                guard runsMovesNow else { throw WireError(.unavailable, "this coordinator no longer runs the moves") }
                state.moves.removeAll { $0.phase == .copying }
            }
            // Their targets may keep entries of those buckets (client writes, an imported last
            // page) that no later copy to them drops: swept once the map settles.
            sweepOwed.withLock { $0 = true }
            return true
        } catch {
            logger.warning("cannot clear copies no stream carries", metadata: ["copies": "\(orphaned)", "error": "\(error)"])
            moveProgress.withLock { $0.lastProblem = "clearing \(orphaned) copies no stream carries: \(error)" }
            return false
        }
    }

    /// Once the map is settled (no moves) after copies were abandoned or cleared, and once
    /// after this coordinator started: every node that is up drops the entries of buckets it
    /// does not serve (an abandoned copy's target keeps client writes and an imported last
    /// page, and only a later copy of the same buckets to the same node would drop them;
    /// meanwhile they fill its disk and its entry count). A drop is stamped with the epoch: a
    /// node that already saw a newer map (a copy another mover began since) refuses it.
    func sweepUnservedBuckets() async {
        guard sweepOwed.withLock({ $0 }), runsMovesNow else { return }
        let state = routing.state
        guard state.moves.isEmpty, await drain(before: state.epoch, limit: options.writeDeadline) else { return }
        var problems: [String] = []
        for node in state.nodes where node.state != .down {
            let unserved = (0..<state.buckets).filter { !state.replicas[$0].contains(node.name) }
            guard !unserved.isEmpty, runsMovesNow, routing.state.epoch == state.epoch else { continue }
            let set = BucketSet(count: state.buckets, buckets: unserved)
            do {
                let reply = try await call(node.name, .bucketDrop(BucketMask(count: state.buckets, bits: set.mask)), within: options.writeDeadline)
                if case let .deleteResult(deleted) = reply, deleted > 0 {
                    logger.info("entries of buckets a node does not serve dropped", metadata: ["node": "\(node.name)", "entries": "\(deleted)"])
                }
            } catch let error as WireError where error.code == .notReady {
                continue   // no trained state yet: it holds no entries
            } catch {
                problems.append("\(node.name): \(error)")
            }
        }
        guard routing.state.epoch == state.epoch else { return }   // the map changed: swept again when it settles
        if problems.isEmpty {
            sweepOwed.withLock { $0 = false }
        } else {
            moveProgress.withLock { $0.lastProblem = "dropping entries of buckets nodes do not serve: \(problems.joined(separator: "; "))" }
        }
    }

    /// Buckets one move group carries at most (one stream, two epochs, one drop at each end).
    static let bucketsPerMoveGroup = 64

    /// One round of the mover's work.
    func moverStep() async {
        // The role is checked again here: probing a returning node may have taken long enough
        // for the lease to pass to another coordinator, whose copies this must not clear.
        guard runsMovesNow, await restartOrphanedCopies() else { return }
        let state = routing.state
        let dropping = state.moves.filter { $0.phase == .dropping }
        if !dropping.isEmpty {
            do { try await finishDrop(dropping, after: state.epoch) } catch {
                moveProgress.withLock { $0.lastProblem = "dropping \(dropping.count) moved buckets from their old nodes: \(error)" }
            }
        }
        await removeDrainedNodes()
        let settings = routing.state
        let plan = MovePlanner.plan(routing.state, balance: settings.balance)
        moveProgress.withLock { $0.pending = plan.count }
        if plan.isEmpty {
            if settings.balance, routing.state.moves.isEmpty {
                // Checked again on the map the change applies to: a rebalance asked meanwhile
                // (with a node added, say) is not cancelled by this one's end.
                _ = try? await changeMap("balanced") { state in
                    guard state.moves.isEmpty, MovePlanner.plan(state, balance: true).isEmpty else { return }
                    state.balance = false
                }
            }
            if routing.state.moves.isEmpty { await sweepUnservedBuckets() }
            return
        }
        // Up to `concurrentMoves` groups of moves that share a source (for a new copy: the node
        // it is read from) and a target, then plan again. A bucket whose move just failed waits
        // (1 s, doubling to 60 s) before it is tried again.
        let now = ContinuousClock.now
        let waiting = moveRetries.withLock { $0 }
        let routing = self.routing
        var groups: [String: [ClusterState.Move]] = [:], order: [String] = []
        for move in plan where (waiting[move.bucket]?.after ?? now) <= now {
            let from = move.source ?? routing.readers[move.bucket].first.map { "copy from " + routing.name($0) } ?? "-"
            let key = from + " -> " + move.target
            if groups[key] == nil {
                guard order.count < settings.concurrentMoves else { continue }
                order.append(key)
            }
            if groups[key, default: []].count < Self.bucketsPerMoveGroup { groups[key, default: []].append(move) }
        }
        let batch = order.compactMap { groups[$0] }
        await withTaskGroup(of: Void.self) { tasks in
            for group in batch {
                tasks.addTask {
                    do {
                        try await self.run(group, rateBytesPerSecond: settings.rateBytesPerSecond)
                        self.moveRetries.withLock { retries in for m in group { retries[m.bucket] = nil } }
                    } catch {
                        self.logger.warning("bucket move failed", metadata: ["buckets": "\(group.count)", "first": "\(group[0].bucket)",
                                                                             "target": "\(group[0].target)", "error": "\(error)"])
                        self.moveRetries.withLock { retries in
                            for m in group {
                                let wait = Swift.min((retries[m.bucket]?.wait ?? .milliseconds(500)) * 2, .seconds(60))
                                retries[m.bucket] = (ContinuousClock.now + wait, wait)
                            }
                        }
                    }
                }
            }
        }
        moveProgress.withLock { $0.pending = Swift.max(0, $0.pending - batch.reduce(0) { $0 + $1.count }) }
        // More may be planned: no pause between batches (but none while every planned bucket
        // waits out a failure, or the loop would spin).
        if !batch.isEmpty { wakeMover() }
    }

    /// Down nodes that answer again become active (given the trained state if they lost it);
    /// the mover then fills them like any node.
    func probeDownNodes() async {
        for node in routing.state.nodes where node.state == .down {
            guard case let .healthResult(trained, _)? = try? await call(node.name, .health, within: .seconds(1)) else { continue }
            do {
                let state = routing.state
                if !trained {
                    // It came back without its data (a new disk): the buckets it alone held are empty now.
                    let lost = state.replicas.filter { $0 == [node.name] }.count
                    if lost > 0 {
                        let problem = "\(node.name) came back without its data: the \(lost) buckets whose only copy it held are empty now"
                        logger.error("\(problem)")
                        moveProgress.withLock { $0.lastProblem = problem }
                    }
                }
                try await prepareNode(node.name)
                // What it holds of buckets it no longer serves is stale (it missed writes): it
                // goes before the node can be a copy's target again.
                let stale = BucketSet(count: state.buckets, buckets: state.replicas.indices.filter { !state.replicas[$0].contains(node.name) })
                if stale.cardinality > 0 {
                    _ = try await call(node.name, .bucketDrop(BucketMask(count: stale.count, bits: stale.mask)), within: options.writeDeadline)
                }
                try await changeMap("\(node.name) answers again") { state in
                    if let i = state.nodes.firstIndex(where: { $0.name == node.name }), state.nodes[i].state == .down {
                        state.nodes[i].state = state.nodes[i].leaving ? .draining : .active
                    }
                }
                // Its buckets were copied elsewhere meanwhile: even the nodes out again, so it
                // serves its share (buckets redistribute themselves when a node comes back).
                try await changeMap("even out after \(node.name) came back") { $0.balance = true }
                wakeMover()
            } catch {
                moveProgress.withLock { $0.lastProblem = "\(node.name) answers but cannot rejoin: \(error)" }
            }
        }
    }

    /// Draining nodes that serve no bucket and take part in no move leave the map.
    private func removeDrainedNodes() async {
        let state = routing.state
        let empty = state.nodes.filter { node in
            node.state == .draining && !state.replicas.contains { $0.contains(node.name) }
                && !state.moves.contains { $0.source == node.name || $0.target == node.name }
        }.map(\.name)
        guard !empty.isEmpty else { return }
        _ = try? await changeMap("\(empty.joined(separator: ", ")) drained and removed") { state in
            state.nodes.removeAll { empty.contains($0.name) }
        }
    }
}

#!/usr/bin/env python3
"""The Search message's coordinator-to-shard fields (probe_lists, probe_biases,
probe_trained_version) sent by a client written from Protocols/README.md alone, well-formed
and not: a shard refuses lists its index cannot have with INVALID_ARGUMENT naming the field,
ignores lists of another trained state, and a coordinator never passes a client's lists on
(it refuses ill-formed ones like any field, ignores well-formed ones). Every process keeps
serving. Loopback only; about 20 s with a debug build.
Usage: Scripts/probe-fields-test.py [BIN_DIR]   (default .build/debug)"""
import os, sys, random, json, struct
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pharos_client import protocol, Connection, LocalCluster
pb = protocol()
D = 32
rng = random.Random(1)
vec = lambda: [rng.gauss(0, 1) for _ in range(D)]
with LocalCluster(sys.argv[1] if len(sys.argv) > 1 else ".build/debug", 7990, ["--shards", "2", "--dimension", str(D), "--factory", "IVF256,PQ8x4fs,RefineSQ8"]) as c:
    train = [vec() for _ in range(12000)]
    with open(c.work + "/t.fvecs", "wb") as f:
        for v in train: f.write(struct.pack("<i", D) + struct.pack("<%df" % D, *v))
    c.pharos("train", "--train", c.work + "/t.fvecs")
    c.pharos("ingest", "--vectors", c.work + "/t.fvecs")
    shards = json.load(open(c.cluster_file))["shards"]
    co = Connection(pb, 7990)
    sh = Connection(pb, shards[0]["port"])
    def stats_version():
        r = sh.call(lambda e: e.stats.SetInParent())
        return r.stats_result.trained_version
    ver = stats_version()
    def search(conn, n, **probe):
        def fill(e):
            s = e.search
            s.vectors.extend([x for _ in range(n) for x in vec()]); s.dimension = D; s.k = 5; s.nprobe = 4
            for k, v in probe.items():
                if isinstance(v, list): getattr(s, k).extend(v)
                else: setattr(s, k, v)
        conn.send(fill); r = conn.read()
        b = r.WhichOneof("body")
        return b if b != "error" else "error %d: %s" % (r.error.code, r.error.message[:110])
    U = 2**32 - 1
    cases = {
        "huge list numbers": dict(probe_lists=[U] * 4, probe_biases=[0.0] * 4, probe_trained_version=ver),
        "lists without biases": dict(probe_lists=[1, 2, 3, 4], probe_trained_version=ver),
        "biases without lists": dict(probe_biases=[1.0] * 4),
        "NaN biases": dict(probe_lists=[1, 2, 3, 4], probe_biases=[float("nan")] * 4, probe_trained_version=ver),
        "a list twice": dict(probe_lists=[1, 1, 2, 3], probe_biases=[0.0] * 4, probe_trained_version=ver),
        "too many per query": dict(probe_lists=list(range(8)), probe_biases=[0.0] * 8, probe_trained_version=ver),
        "200k lists": dict(probe_lists=list(range(200000)), probe_biases=[0.0] * 200000, probe_trained_version=ver),
        "wrong version, garbage": dict(probe_lists=[7] * 4, probe_biases=[0.0] * 4, probe_trained_version=ver + 1),
        "version only": dict(probe_trained_version=ver),
    }
    # What a shard answers (INVALID_ARGUMENT = 3), and whether coordinators answer at all.
    expected_at_shard = {
        "huge list numbers": "probe_lists[0] is 4294967295", "lists without biases": "one bias per list",
        "biases without lists": "one bias per list", "NaN biases": "probe_biases[0] is nan",
        "a list twice": "list 1 twice", "too many per query": "1...nprobe (4)", "200k lists": "1...nprobe (4)",
        "wrong version, garbage": None, "version only": None,
    }
    # Ill-formed fields are refused by the coordinator too (like any field); well-formed lists
    # are ignored there, never passed to the shards.
    coordinator_refuses = {"lists without biases", "biases without lists", "NaN biases", "too many per query", "200k lists"}
    for name, probe in cases.items():
        at_shard = search(sh, 1, **probe)
        many = {k: (v * 6 if isinstance(v, list) else v) for k, v in probe.items()}
        at_coordinator = [search(co, 1, **probe), search(co, 6, **many)]
        want = expected_at_shard[name]
        assert (at_shard == "search_result") if want is None else (at_shard.startswith("error 3:") and want in at_shard), (name, at_shard)
        for answer in at_coordinator:
            assert answer.startswith("error 3:") if name in coordinator_refuses else answer == "search_result", (name, answer)
        print("probe-fields-test: %-24s shard: %s" % (name, at_shard[:80]))
    assert search(sh, 1) == "search_result" and search(co, 3) == "search_result"
    print("probe-fields-test: a shard refuses lists its index cannot have, a coordinator passes none on, both keep serving: ok")

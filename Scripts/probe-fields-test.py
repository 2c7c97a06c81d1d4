#!/usr/bin/env python3
"""The coordinator-to-shard fields sent by a client written from Protocols/README.md alone,
well-formed and not. Search's probe_lists, probe_biases, probe_trained_version: a shard
refuses lists its index cannot have with INVALID_ARGUMENT naming the field, ignores lists of
another trained state, and a coordinator never passes a client's lists on (it refuses
ill-formed ones like any field, ignores well-formed ones). Upsert's encoded rows and
trained_version (protocol version 3): a shard stores codes its trained state can make and
refuses the rest naming the problem, a coordinator refuses them from a client. Every process
keeps serving. Loopback only; about 20 s with a debug build.
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

    # Upsert.encoded: IVF256, 8 sub-quantizers of 4 bits, SQ8 refine codes of 32 bytes.
    good = dict(list=5, code=bytes([3] * 8), refine=bytes(range(32)))
    def upsert(conn, keys, rows, version=None, vectors=None):
        def fill(e):
            u = e.upsert
            u.keys.extend(keys)
            for r in rows: u.encoded.add(**r)
            u.trained_version = ver if version is None else version
            if vectors: u.vectors.extend(vectors); u.dimension = D
        conn.send(fill); r = conn.read()
        b = r.WhichOneof("body")
        return "written %d" % r.upsert_result.written if b == "upsert_result" else "error %d: %s" % (r.error.code, r.error.message[:110])
    upsert_cases = {   # name: (keys, rows, version, vectors) -> what a shard answers
        "another trained version": ((["e1"], [good], ver + 1, None), "Upsert.trained_version is"),
        "list 2^32-1": ((["e1"], [dict(good, list=2**32 - 1)], None, None), "list 4294967295"),
        "list 256 of 256": ((["e1"], [dict(good, list=256)], None, None), "list 256"),
        "9 code bytes": ((["e1"], [dict(good, code=bytes(9))], None, None), "9 code and 32 refine bytes"),
        "no code bytes": ((["e1"], [dict(good, code=b"")], None, None), "has 0 code"),
        "a 4-bit code of 16": ((["e1"], [dict(good, code=bytes([16] + [0] * 7))], None, None), "4-bit codes"),
        "short refine code": ((["e1"], [dict(good, refine=bytes(31))], None, None), "31 refine bytes"),
        "two rows, one key": ((["e1"], [good, good], None, None), "2 rows for 1 keys"),
        "version, no rows": ((["e1"], [], None, None), "0 rows for 1 keys"),
        "rows and vectors": ((["e1"], [good], None, vec()), "send one or the other"),
        "rows, version 0": ((["e1"], [good], 0, None), "needs the trained_version"),
    }
    for name, ((keys, rows, version, vectors), want) in upsert_cases.items():
        answer = upsert(sh, keys, rows, version, vectors)
        assert answer.startswith("error 3:") and want in answer, (name, answer)
        print("probe-fields-test: Upsert %-22s shard: %s" % (name, answer[:80]))
    fetched = sh.call(lambda e: e.fetch.keys.append("e1"))
    assert not fetched.fetch_result.entries[0].found, "a refused upsert stored e1"
    answer = upsert(co, ["e1"], [good])
    assert answer.startswith("error 3:") and "for a coordinator's requests" in answer, answer
    assert upsert(sh, ["e1", "e2"], [good, dict(good, list=7)]) == "written 2"
    fetched = sh.call(lambda e: e.fetch.keys.extend(["e1", "e2"]))
    assert [x.found for x in fetched.fetch_result.entries] == [True, True]
    assert search(sh, 1) == "search_result" and search(co, 3) == "search_result"
    print("probe-fields-test: a shard stores codes its trained state can make and refuses the rest, a coordinator takes none from a client: ok")

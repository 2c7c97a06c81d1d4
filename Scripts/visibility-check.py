#!/usr/bin/env python3
"""Search visibility after deletes, from outside (the case of the deletion-bitmap overread).

    /usr/bin/python3 Scripts/visibility-check.py [BIN_DIR] [--fresh 1500] [--seed 1]

Starts `pharos cluster up --shards 1` (32-D unit vectors, IVF256,PQ16x4fs,RefineFlat, inner
product) from BIN_DIR (default .build/release), trains it, upserts 21,000 keys in batches,
replaces 600 batches and deletes 600 batches of 10 random keys, then upserts fresh keys one at a
time and searches each right away for its own vector with every list probed and exact
re-ranking. Every fresh key must come back first; the script prints how many did not and exits
1 if any. A client of the wire protocol written from Protocols/README.md (protobuf generated
with protoc into a temporary folder).
"""
import argparse
import math
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pharos_client import ROOT, Connection, LocalCluster, protocol  # noqa: E402

DIM = 32


def upsert(client, keys, vectors):
    def fill(e):
        e.upsert.keys.extend(keys)
        e.upsert.vectors.extend(v for row in vectors for v in row)
        e.upsert.dimension = DIM
    client.call(fill)


def top(client, vector):
    def fill(e):
        e.search.vectors.extend(vector)
        e.search.dimension = DIM
        e.search.k = 1
        e.search.nprobe = 256
        e.search.refine_factor = 256
    hits = client.call(fill).search_result.queries[0]
    return (hits.keys[0], hits.scores[0]) if hits.keys else (None, None)


def unit(rng):
    v = [rng.gauss(0, 1) for _ in range(DIM)]
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bin", nargs="?", default=f"{ROOT}/.build/release")
    parser.add_argument("--fresh", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=7880)
    args = parser.parse_args()
    pb = protocol()
    rng = random.Random(args.seed)
    with LocalCluster(args.bin, args.port, ["--shards", "1", "--dimension", str(DIM), "--metric", "ip",
                                            "--factory", "IVF256,PQ16x4fs,RefineFlat"]) as cluster:
        with open(f"{cluster.work}/train.fvecs", "wb") as f:
            for _ in range(20000):
                f.write(struct.pack("<i", DIM) + struct.pack(f"<{DIM}f", *unit(rng)))
        cluster.pharos("train", "--train", f"{cluster.work}/train.fvecs")
        client = Connection(pb, args.port)
        total = 21000
        for start in range(0, total, 1000):
            upsert(client, [f"key-{i}" for i in range(start, start + 1000)], [unit(rng) for _ in range(1000)])
        for _ in range(600):
            keys = sorted({f"key-{rng.randrange(total)}" for _ in range(10)})
            upsert(client, keys, [unit(rng) for _ in keys])
        for _ in range(600):
            keys = sorted({f"key-{rng.randrange(total)}" for _ in range(10)})
            client.call(lambda e: e.delete.keys.extend(keys))
        missed = []
        for i in range(args.fresh):
            key, vector = f"fresh-{i}", unit(rng)
            upsert(client, [key], [vector])
            found, score = top(client, vector)
            if found != key:
                missed.append((key, found, score))
    print(f"{len(missed)} of {args.fresh} fresh keys not returned first for their own vector "
          f"(after 21,000 upserts, 600 replaced and 600 deleted batches; {args.bin})")
    for key, found, score in missed[:5]:
        print(f"  {key}: got {found} ({score})")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())

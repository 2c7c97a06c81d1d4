#!/usr/bin/env python3
"""Head-of-line blocking: how long other clients wait while one connection floods the cluster.

    python3 Benchmarks/head_of_line.py BIN_DIR [BIN_DIR ...] [--rounds 3] [--flood 300] [--k 4096]

For each build (folder with pharos, pharos-shard, pharos-coordinator), in turn, per round: a
fresh `pharos cluster up` (3 shards on loopback) is trained and loaded with the 20k x 64 set;
then a second client measures 50 sequential searches (k=10) alone, and again while a first
connection has `--flood` searches of k=4096 pipelined (sent at once, replies read only after).
Prints the second client's p50 and worst latency alone and under the flood, per build (medians
over rounds). The protocol module is generated from Protocols/pharos.proto with protoc into a
temporary folder (Debian's protobuf-compiler and python3-protobuf).
"""
import argparse
import os
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Scripts"))
from pharos_client import ROOT, Connection, LocalCluster, protocol, read_fvecs  # noqa: E402


def search(query, k):
    def fill(envelope):
        envelope.search.vectors.extend(query)
        envelope.search.dimension = len(query)
        envelope.search.k = k
        envelope.search.nprobe = 16
    return fill


def probes(pb, port, queries, count=50):
    c = Connection(pb, port)
    latencies = []
    for i in range(count):
        start = time.perf_counter()
        c.send(search(queries[i % len(queries)], 10))
        reply = c.read()
        assert reply.WhichOneof("body") == "search_result", reply
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def measure(pb, bin_dir, data_set, port, flood, k):
    with LocalCluster(bin_dir, port, ["--dimension", "64", "--factory", "IVF128,PQ16x4fs,RefineSQ8"]) as cluster:
        cluster.pharos("train", "--train", f"{data_set}/train.fvecs")
        cluster.pharos("ingest", "--vectors", f"{data_set}/base.fvecs")
        queries = read_fvecs(f"{data_set}/queries.fvecs", 100)
        alone = probes(pb, port, queries)
        flooder = Connection(pb, port)
        for i in range(flood):
            flooder.send(search(queries[i % len(queries)], k))
        under = probes(pb, port, queries)
        drained = [flooder.read() for _ in range(flood)]
        assert all(r.WhichOneof("body") in ("search_result", "error") for r in drained)
        return alone, under


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("builds", nargs="+")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=300)
    parser.add_argument("--k", type=int, default=4096)
    parser.add_argument("--port", type=int, default=7870)
    args = parser.parse_args()
    pb = protocol()
    data_set = f"{ROOT}/data/synthetic-20k-64"
    if not os.path.exists(f"{data_set}/base.fvecs"):
        subprocess.run([f"{args.builds[-1]}/pharos", "data", "synthetic", "--count", "20000", "--train-count", "20000", "--queries", "1000",
                        "--dimension", "64", "--clusters", "500", "--out", data_set], check=True, stdout=subprocess.DEVNULL)
    results = {b: [] for b in args.builds}
    for r in range(args.rounds):
        for build in args.builds:
            alone, under = measure(pb, build, data_set, args.port, args.flood, args.k)
            row = (statistics.median(alone), max(alone), statistics.median(under), max(under))
            results[build].append(row)
            print(f"round {r + 1} {build}: alone p50 {row[0]:.2f} ms max {row[1]:.2f} ms; under the flood p50 {row[2]:.2f} ms max {row[3]:.2f} ms", flush=True)
    print(f"\nanother client's search latency (k=10, 50 sequential) alone and while one connection has {args.flood} searches of k={args.k} pipelined; medians of {args.rounds} rounds")
    print("| build | alone p50 (ms) | alone max | flooded p50 (ms) | flooded max |\n|---|---|---|---|---|")
    for build, rows in results.items():
        cols = [statistics.median(row[i] for row in rows) for i in range(4)]
        print(f"| {build} | {cols[0]:.2f} | {cols[1]:.2f} | {cols[2]:.2f} | {cols[3]:.2f} |")


if __name__ == "__main__":
    sys.exit(main())

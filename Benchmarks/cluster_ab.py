#!/usr/bin/env python3
"""Two builds of Pharos side by side on the cluster benchmark (Benchmarks/cluster.sh's flow).

    python3 Benchmarks/cluster_ab.py OLD_BIN_DIR NEW_BIN_DIR [--rounds 3] [--small]

Each round starts a fresh `pharos cluster up` (3 shards on loopback) from one build and runs
that build's `pharos cluster-bench` against it, alternating A, B, B, A, ... on the same data and
machine. cluster-bench measures the in-process engine in the same run, so each row is also
reported relative to it: the coordinator's added latency (ms over in-process), throughput and
ingestion. Prints per-round rows, medians, and B/A ratios of the medians. Use it to check that a
change costs the cluster nothing (e.g. a build of the previous commit in a git worktree as A).
"""
import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "Scripts"))
from pharos_client import ROOT, LocalCluster, print_ab_table  # noqa: E402


def run_round(bin_dir, data_set, dim, factory, queries, port):
    with LocalCluster(bin_dir, port, ["--shards", "3", "--dimension", str(dim), "--factory", factory]) as cluster:
        out = subprocess.run([os.path.join(bin_dir, "pharos"), "cluster-bench", "--coordinator", f"127.0.0.1:{port}",
                              "--cluster", cluster.cluster_file, "--train", f"{data_set}/train.fvecs",
                              "--base", f"{data_set}/base.fvecs", "--queries", f"{data_set}/queries.fvecs",
                              "--query-count", str(queries), "--rounds", "3"],
                             capture_output=True, text=True, env=cluster.env, timeout=900)
        if out.returncode != 0:
            raise SystemExit(f"cluster-bench failed ({bin_dir}):\n{out.stdout}\n{out.stderr}")
        return parse(out.stdout)


def number(pattern, text):
    match = re.search(pattern, text)
    if not match:
        raise SystemExit(f"cannot find {pattern!r} in:\n{text}")
    return float(match.group(1))


def parse(text):
    return {
        "added p50 (ms)": number(r"latency p50 \(ms\), one query per request \| [\d.]+ \| [\d.]+ \| \+(-?[\d.]+) ms", text),
        "added p99 (ms)": number(r"latency p99 \(ms\) \| [\d.]+ \| [\d.]+ \| \+(-?[\d.]+) ms", text),
        "coordinator p50 (ms)": number(r"latency p50 \(ms\), one query per request \| [\d.]+ \| ([\d.]+)", text),
        "throughput (QPS)": number(r"concurrent clients \(QPS\) \| \| (\d+)", text),
        "ingestion vs one shard": number(r"ingestion .*\| ([\d.]+)x \|", text),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="folder of build A's binaries (pharos, pharos-shard, pharos-coordinator)")
    parser.add_argument("b", help="folder of build B's binaries")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="20k x 64 (else 200k x 128)")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    count, dim, lists, m, queries = (20000, 64, 128, 16, 200) if args.small else (200000, 128, 1024, 32, 500)
    data_set = os.path.join(ROOT, "data", f"synthetic-{count // 1000}k-{dim}")
    if not os.path.exists(f"{data_set}/base.fvecs"):
        subprocess.run([os.path.join(args.b, "pharos"), "data", "synthetic", "--count", str(count), "--train-count", "20000",
                        "--queries", "1000", "--dimension", str(dim), "--clusters", "500", "--out", data_set],
                       check=True, stdout=subprocess.DEVNULL)
    factory = f"IVF{lists},PQ{m}x4fs,RefineSQ8"
    results = {"A": [], "B": []}
    for r in range(args.rounds):
        # Which build goes first alternates: the second run of a round meets a warmer machine.
        for name, bin_dir in (("A", args.a), ("B", args.b)) if r % 2 == 0 else (("B", args.b), ("A", args.a)):
            row = run_round(bin_dir, data_set, dim, factory, queries, args.port)
            results[name].append(row)
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:g}" for k, v in row.items()), flush=True)
    print(f"\n{count} x {dim}, {factory}, 3 shards, k=100, medians of {args.rounds} interleaved rounds")
    print_ab_table(results, digits=2)


if __name__ == "__main__":
    sys.exit(main())

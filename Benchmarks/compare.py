#!/usr/bin/env python3
"""Runs `pharos index bench` and its peers (Benchmarks/faiss_bench.py, Benchmarks/scann_bench.py)
on the same data, parameters and thread counts, interleaved (P F S, F S P, S P F, ...), and
prints a Markdown table of medians and ratios per peer.

Every figure comes from the JSON the two runners print; nothing here is timed itself."""
import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass
class Case:
    data: str
    metric: str
    factory: str
    nprobe: list
    queries: int = 0  # first N queries only (0: all)
    refine_factor: int = 4


def peer_factory(peer, factory):
    """The factory a peer runs for a Pharos factory: faiss has no anisotropic codes, so it runs
    the plain PQ of the same shape; ScaNN has only 4-bit codes (None: no ScaNN row)."""
    if peer == "faiss":
        return re.sub(r"_aq[0-9.eE+-]+", "", factory)
    if peer == "scann":
        return factory if factory == "Flat" or "x4fs" in factory else None
    return factory


SUITES = {
    "small": [
        Case("synthetic-20k-64", "l2", "Flat", [1]),
        Case("synthetic-20k-64", "l2", "IVF64,PQ16", [4, 16]),
        Case("synthetic-20k-64", "l2", "IVF64,PQ16x4fs", [1, 4, 16]),
        Case("synthetic-20k-64", "l2", "IVF64,PQ16x4fs,RefineSQ8", [1, 4, 16]),
    ],
    "full": [
        Case("fashion-mnist", "l2", "Flat", [1], queries=2000),
        Case("fashion-mnist", "l2", "IVF256,PQ56", [4, 16]),
        Case("fashion-mnist", "l2", "IVF256,PQ56x4fs", [1, 2, 4, 16, 64]),
        Case("fashion-mnist", "l2", "IVF256,PQ56x4fs,RefineSQ8", [2, 4, 16]),
        Case("synthetic-1m-128", "l2", "Flat", [1]),
        Case("synthetic-1m-128", "l2", "IVF1024,PQ32", [8, 32]),
        Case("synthetic-1m-128", "l2", "IVF1024,PQ32x4fs", [1, 2, 8, 32]),
        Case("synthetic-1m-128", "l2", "IVF1024,PQ32x4fs,RefineSQ8", [2, 8, 32]),
        Case("synthetic-100k-2048", "ip", "IVF256,PQ128x4fs,RefineSQ8", [2, 8, 32]),
    ],
    # Inner product against ScaNN too (Benchmarks/scann.sh): the shape of ScaNN's recommended
    # configuration (4-bit codes over 2-D blocks, exact reordering of 40 for k=10), plain and
    # with score-aware codes (_aq0.2, ScaNN's default threshold).
    "ip-small": [
        Case("synthetic-20k-64-ip", "ip", "IVF64,PQ32x4fs,RefineFlat", [2, 4, 8, 16]),
        Case("synthetic-20k-64-ip", "ip", "IVF64,PQ32x4fs_aq0.2,RefineFlat", [2, 4, 8, 16]),
    ],
    "ip": [
        Case("fashion-mnist-ip", "ip", "IVF256,PQ392x4fs,RefineFlat", [2, 4, 8, 16], queries=2000),
        Case("fashion-mnist-ip", "ip", "IVF256,PQ392x4fs_aq0.2,RefineFlat", [2, 4, 8, 16], queries=2000),
        Case("fashion-mnist", "l2", "IVF256,PQ392x4fs,RefineFlat", [2, 4, 8, 16], queries=2000),
        Case("synthetic-1m-128", "l2", "IVF1024,PQ64x4fs,RefineFlat", [4, 8, 16, 32]),
        Case("synthetic-100k-2048", "ip", "IVF256,PQ1024x4fs,RefineFlat", [2, 4, 8, 16]),
        Case("synthetic-100k-2048", "ip", "IVF256,PQ1024x4fs_aq0.2,RefineFlat", [2, 4, 8, 16]),
    ],
}


def files(data, metric):
    root = os.path.join("data", data)
    train = os.path.join(root, "train.fvecs")
    return {
        "train": train if os.path.exists(train) else os.path.join(root, "base.fvecs"),
        "base": os.path.join(root, "base.fvecs"),
        "queries": os.path.join(root, "queries.fvecs"),
        "truth": os.path.join(root, f"truth-{metric}-100.ivecs"),
    }


RUNNERS = {"faiss": "faiss_bench.py", "scann": "scann_bench.py"}


def run(command):
    # Each engine gets the environment it would have on its own: Pharos pins OpenBLAS to one
    # thread itself (it parallelises above BLAS); faiss may use its BLAS threads, so a
    # caller's OPENBLAS_NUM_THREADS is not passed to it.
    env = dict(os.environ)
    if any(runner in " ".join(command) for runner in RUNNERS.values()):
        env.pop("OPENBLAS_NUM_THREADS", None)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_rows(runs):
    """Per-nprobe medians over repeated runs of one engine."""
    rows = {}
    for r in runs:
        for row in r["rows"]:
            rows.setdefault(row["nprobe"], []).append(row)
    return {
        p: {key: statistics.median(x[key] for x in rs) for key in ("qps", "recall1", "recall10")}
        for p, rs in rows.items()
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=SUITES, default="small")
    ap.add_argument("--pharos", default=".build/release/pharos")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per engine (medians)")
    ap.add_argument("--searches", type=int, default=1, help="searches per nprobe inside each run (median)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="", help="run only cases whose data or factory contains this")
    ap.add_argument("--peers", default="faiss", help="comma-separated peers: faiss, scann")
    a = ap.parse_args()
    peers = a.peers.split(",")
    unknown = [p for p in peers if p not in RUNNERS]
    if unknown:
        sys.exit(f"compare.py: unknown peer(s) {unknown}; known: {sorted(RUNNERS)}")

    env = dict(os.environ)
    print(f"# Pharos vs {', '.join(peers)} ({a.size})\n")
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores; "
          f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}; medians of {a.repeats} interleaved runs "
          f"(the order rotates each run), {a.searches} search(es) per run; k=10.\n")
    search_lines = {peer: [f"| data | factory | threads | nprobe | R@1 P / {peer} | R@10 P / {peer} | QPS Pharos | QPS {peer} | QPS ratio | ratio at >= recall |",
                           "|---|---|---|---|---|---|---|---|---|---|"] for peer in peers}
    build_lines = {peer: [f"| data | factory | threads | train s P / {peer} | train ratio ({peer}/P) | add vec/s P / {peer} | add ratio | bytes/vector P / {peer} |",
                          "|---|---|---|---|---|---|---|---|"] for peer in peers}
    kernels = set()
    for case in SUITES[a.size]:
        if a.only and a.only not in case.data and a.only not in case.factory:
            continue
        f = files(case.data, case.metric)
        common = ["--metric", case.metric, "--train", f["train"], "--base", f["base"],
                  "--queries", f["queries"], "--truth", f["truth"], "--nprobe", ",".join(map(str, case.nprobe)), "-k", "10",
                  "--repeats", str(a.searches), "--query-limit", str(case.queries), "--refine-factor", str(case.refine_factor)]
        for threads in [int(t) for t in a.threads.split(",")]:
            commands = [("pharos", [a.pharos, "index", "bench", "--factory", case.factory, *common, "--threads", str(threads)])]
            for peer in peers:
                factory = peer_factory(peer, case.factory)
                if factory is not None:
                    commands.append((peer, [a.python, os.path.join(os.path.dirname(__file__), RUNNERS[peer]),
                                            "--factory", factory, *common, "--threads", str(threads)]))
            runs = {name: [] for name, _ in commands}
            for rep in range(a.repeats):
                shift = rep % len(commands)
                for name, cmd in commands[shift:] + commands[:shift]:
                    result = run(cmd)
                    runs[name].append(result)
                    kernels.add(f"{name}: {result['kernel'].strip()}")
                print(f"  ran {case.data} {case.factory} threads={threads} rep={rep + 1}", file=sys.stderr)
            p_rows = median_rows(runs["pharos"])
            med = lambda name, key: statistics.median(r[key] for r in runs[name])
            for peer in peers:
                if peer not in runs:
                    continue
                f_rows = median_rows(runs[peer])
                for nprobe in case.nprobe:
                    p, fr = p_rows[nprobe], f_rows[nprobe]
                    better = [x["qps"] for x in p_rows.values() if x["recall10"] >= fr["recall10"] - 0.005]
                    at_recall = f"{max(better) / fr['qps']:.2f}x" if better else "n/a (recall lower)"
                    search_lines[peer].append(
                        f"| {case.data} | {case.factory} | {threads} | {nprobe if 'IVF' in case.factory else '-'} | "
                        f"{p['recall1']:.3f} / {fr['recall1']:.3f} | {p['recall10']:.3f} / {fr['recall10']:.3f} | "
                        f"{p['qps']:.0f} | {fr['qps']:.0f} | {p['qps'] / fr['qps']:.2f}x | {at_recall} |")
                pt, ft = med("pharos", "train_s"), med(peer, "train_s")
                pa, fa = med("pharos", "add_per_s"), med(peer, "add_per_s")
                build_lines[peer].append(
                    f"| {case.data} | {case.factory} | {threads} | {pt:.2f} / {ft:.2f} | "
                    f"{(ft / pt if pt > 0 else float('inf')):.2f}x | {pa:.0f} / {fa:.0f} | {pa / fa:.2f}x | "
                    f"{runs['pharos'][0]['bytes_per_vector']} / {runs[peer][0]['bytes_per_vector']} |")
    for peer in peers:
        print(f"## Search: Pharos vs {peer}\n")
        print("\n".join(search_lines[peer]))
        print(f"\nQPS ratio: Pharos / {peer} at the same nprobe. Ratio at >= recall: the fastest Pharos row of the same "
              f"case whose recall@10 is at least {peer}'s (within 0.005), over {peer}'s QPS.\n")
    for peer in peers:
        print(f"## Build: Pharos vs {peer}\n")
        print("\n".join(build_lines[peer]))
        print(f"\nTrain ratio: {peer} seconds / Pharos seconds (above 1: Pharos trains faster). Add ratio: Pharos / {peer}."
              + (" ScaNN builds in one step: its train seconds are the whole build, its add rate base rows / build "
                 "seconds; its bytes per vector are not reported (-1)." if peer == "scann" else "") + "\n")
    print("Kernels: " + "; ".join(sorted(kernels)))


if __name__ == "__main__":
    main()

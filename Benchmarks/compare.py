#!/usr/bin/env python3
"""Runs `pharos index bench` and Benchmarks/faiss_bench.py on the same data, parameters and
thread counts, interleaved (P F, F P, ...), and prints a Markdown table of medians and ratios.

Every figure comes from the JSON the two runners print; nothing here is timed itself."""
import argparse
import json
import os
import platform
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


def run(command):
    # Each engine gets the environment it would have on its own: Pharos pins OpenBLAS to one
    # thread itself (it parallelises above BLAS); faiss may use its BLAS threads, so a
    # caller's OPENBLAS_NUM_THREADS is not passed to it.
    env = dict(os.environ)
    if "faiss_bench.py" in " ".join(command):
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
    a = ap.parse_args()

    env = dict(os.environ)
    print(f"# Pharos vs faiss-cpu ({a.size})\n")
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores; "
          f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE', '(unset)')}; medians of {a.repeats} interleaved runs "
          f"(P F, F P, ...), {a.searches} search(es) per run; k=10.\n")
    search_lines = ["| data | factory | threads | nprobe | R@1 P / F | R@10 P / F | QPS Pharos | QPS faiss | QPS ratio | ratio at >= recall |",
                    "|---|---|---|---|---|---|---|---|---|---|"]
    build_lines = ["| data | factory | threads | train s P / F | train ratio (F/P) | add vec/s P / F | add ratio | bytes/vector P / F |",
                   "|---|---|---|---|---|---|---|---|"]
    kernels = set()
    for case in SUITES[a.size]:
        if a.only and a.only not in case.data and a.only not in case.factory:
            continue
        f = files(case.data, case.metric)
        common = ["--factory", case.factory, "--metric", case.metric, "--train", f["train"], "--base", f["base"],
                  "--queries", f["queries"], "--truth", f["truth"], "--nprobe", ",".join(map(str, case.nprobe)), "-k", "10",
                  "--repeats", str(a.searches), "--query-limit", str(case.queries)]
        for threads in [int(t) for t in a.threads.split(",")]:
            pharos_cmd = [a.pharos, "index", "bench", *common, "--threads", str(threads)]
            faiss_cmd = [a.python, os.path.join(os.path.dirname(__file__), "faiss_bench.py"), *common, "--threads", str(threads)]
            runs = {"pharos": [], "faiss": []}
            for rep in range(a.repeats):
                order = [("pharos", pharos_cmd), ("faiss", faiss_cmd)]
                for name, cmd in (order if rep % 2 == 0 else order[::-1]):
                    result = run(cmd)
                    runs[name].append(result)
                    kernels.add(f"{name}: {result['kernel'].strip()}")
                print(f"  ran {case.data} {case.factory} threads={threads} rep={rep + 1}", file=sys.stderr)
            p_rows, f_rows = median_rows(runs["pharos"]), median_rows(runs["faiss"])
            for nprobe in case.nprobe:
                p, fr = p_rows[nprobe], f_rows[nprobe]
                better = [x["qps"] for x in p_rows.values() if x["recall10"] >= fr["recall10"] - 0.005]
                at_recall = f"{max(better) / fr['qps']:.2f}x" if better else "n/a (recall lower)"
                search_lines.append(
                    f"| {case.data} | {case.factory} | {threads} | {nprobe if 'IVF' in case.factory else '-'} | "
                    f"{p['recall1']:.3f} / {fr['recall1']:.3f} | {p['recall10']:.3f} / {fr['recall10']:.3f} | "
                    f"{p['qps']:.0f} | {fr['qps']:.0f} | {p['qps'] / fr['qps']:.2f}x | {at_recall} |")
            med = lambda name, key: statistics.median(r[key] for r in runs[name])
            pt, ft = med("pharos", "train_s"), med("faiss", "train_s")
            pa, fa = med("pharos", "add_per_s"), med("faiss", "add_per_s")
            build_lines.append(
                f"| {case.data} | {case.factory} | {threads} | {pt:.2f} / {ft:.2f} | "
                f"{(ft / pt if pt > 0 else float('inf')):.2f}x | {pa:.0f} / {fa:.0f} | {pa / fa:.2f}x | "
                f"{runs['pharos'][0]['bytes_per_vector']} / {runs['faiss'][0]['bytes_per_vector']} |")
    print("## Search\n")
    print("\n".join(search_lines))
    print("\nQPS ratio: Pharos / faiss at the same nprobe. Ratio at >= recall: the fastest Pharos row of the same "
          "case whose recall@10 is at least faiss's (within 0.005), over faiss's QPS.\n")
    print("## Build\n")
    print("\n".join(build_lines))
    print("\nTrain ratio: faiss seconds / Pharos seconds (above 1: Pharos trains faster). Add ratio: Pharos / faiss.\n")
    print("Kernels: " + "; ".join(sorted(kernels)))


if __name__ == "__main__":
    main()

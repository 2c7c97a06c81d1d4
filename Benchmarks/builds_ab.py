#!/usr/bin/env python3
"""Two builds of Pharos side by side on the engine, storage and CNN benchmarks.

    python3 Benchmarks/builds_ab.py OLD_BIN_DIR NEW_BIN_DIR [--rounds 5] [--only engine,storage,cnn]

For a change that must cost nothing (a refactoring), build the previous commit in a git
worktree as A and the change as B. Each round runs every benchmark once with A and once with
B, alternating which goes first, on the same data, machine and thread count (1 thread; OpenBLAS
single-threaded), so the two see the same noise. Prints every run, the medians, and B/A ratios
of the medians:

- engine: `pharos index bench` (train, add, search at nprobe 8 and 32; 4-bit fast scan with
  refinement and 8-bit PQ) on a synthetic 100k x 64 set: QPS, add rate, recall@10;
- storage: `pharos-shard bench` (100k x 128): durable ingestion, search over sealed and
  compacted segments, each as the in-memory engine's ratio measured in the same run;
- cnn: `pharos cnn-bench` on the labelled photo set at 512x384: images/s.

The cluster's own A/B is Benchmarks/cluster_ab.py.
"""
import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Scripts"))
from pharos_client import print_ab_table  # noqa: E402
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def run(args, timeout=1800):
    out = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def engine(bin_dir, data_set):
    rows = {}
    for factory in ("IVF256,PQ32x4fs,RefineSQ8", "IVF256,PQ16"):
        line = run([os.path.join(bin_dir, "pharos"), "index", "bench", "--factory", factory, "--train", f"{data_set}/train.fvecs",
                    "--base", f"{data_set}/base.fvecs", "--queries", f"{data_set}/queries.fvecs",
                    "--truth", f"{data_set}/truth-l2-100.ivecs", "--nprobe", "8,32", "--threads", "1", "--repeats", "3"])
        result = json.loads(line.strip().splitlines()[-1])
        rows[f"{factory} add/s"] = result["add_per_s"]
        for r in result["rows"]:
            rows[f"{factory} nprobe {r['nprobe']} QPS"] = r["qps"]
            rows[f"{factory} nprobe {r['nprobe']} recall@10"] = r["recall10"]
    return rows


def storage(bin_dir, work):
    text = run([os.path.join(bin_dir, "pharos-shard"), "bench", "--count", "100000", "--repeats", "1", "--queries", "2000",
                "--threads", "1", "--data", f"{work}/bench-shard"])

    def ratio(pattern):
        match = re.search(pattern + r"[^\n]*\| ([\d.]+)x \|", text)
        if not match:
            raise SystemExit(f"cannot find {pattern!r} in:\n{text}")
        return float(match.group(1))

    return {"durable ingest / add": ratio(r"\| ingest \(vectors/s"),
            "sealed search / in-memory": ratio(r"\| search QPS, nprobe"),
            "compacted search / in-memory": ratio(r"\| search QPS, after compaction")}


def cnn(bin_dir, images):
    text = run([os.path.join(bin_dir, "pharos"), "cnn-bench", "--images", images, "--count", "8", "--height", "384", "--width", "512",
                "--threads", "1", "--rounds", "3"])
    match = re.search(r"([\d.]+) images/s", text)
    if not match:
        raise SystemExit(f"no images/s in:\n{text}")
    return {"images/s (512x384, 1 thread)": float(match.group(1))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="folder of build A's binaries (pharos, pharos-shard)")
    parser.add_argument("b", help="folder of build B's binaries")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="engine,storage,cnn", help="comma-separated subset of engine,storage,cnn")
    args = parser.parse_args()
    chosen = args.only.split(",")
    work = os.path.join(ROOT, "data", "builds-ab")
    os.makedirs(work, exist_ok=True)
    data_set = os.path.join(ROOT, "data", "synthetic-100k-64")
    if "engine" in chosen and not os.path.exists(f"{data_set}/truth-l2-100.ivecs"):
        run([os.path.join(args.b, "pharos"), "data", "synthetic", "--count", "100000", "--train-count", "20000", "--queries", "2000",
             "--dimension", "64", "--clusters", "500", "--out", data_set])
    images = os.path.join(ROOT, "data", "photos", "images")
    if "cnn" in chosen and not os.path.isdir(images):
        run([os.path.join(args.b, "pharos"), "data", "photos", "--out", os.path.join(ROOT, "data", "photos"), "--wallpaper-limit", "2"])
    benchmarks = {"engine": lambda b: engine(b, data_set), "storage": lambda b: storage(b, work), "cnn": lambda b: cnn(b, images)}
    results = {"A": [], "B": []}
    for r in range(args.rounds):
        order = (("A", args.a), ("B", args.b)) if r % 2 == 0 else (("B", args.b), ("A", args.a))
        rows = {}
        for name, bin_dir in order:
            rows[name] = {}
            for bench in chosen:
                rows[name].update(benchmarks[bench](bin_dir))
            print(f"round {r + 1} {name}: " + ", ".join(f"{k} {v:g}" for k, v in rows[name].items()), flush=True)
        results["A"].append(rows["A"])
        results["B"].append(rows["B"])
    print(f"\nmedians of {args.rounds} interleaved rounds (1 thread)")
    print_ab_table(results)


if __name__ == "__main__":
    sys.exit(main())

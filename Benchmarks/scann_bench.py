#!/usr/bin/env python3
"""The ScaNN side of the Pharos benchmark: the same files and parameters as `pharos index
bench`, printing the same JSON line, with the Pharos factory string mapped to ScaNN's
closest configuration:

  IVF<n>            tree(num_leaves=n), leaves_to_search = nprobe (spherical for ip)
  PQ<m>x4fs[_aq<T>] score_ah(dimensions_per_block = d / m, 16 centres per block (lut16),
                    anisotropic_quantization_threshold = T, or 0.2 for ip without _aq
                    (ScaNN's recommended value), nan (isotropic) for l2)
  Refine<kind>      reorder(refine_factor * k): Flat -> float32, SQ8 -> int8, FP16 -> bfloat16
  Flat              brute force

ScaNN has no 8-bit codes: factories without x4fs are refused (exit 2). ScaNN trains on a
sample of the base set (its builder takes no separate training set): the sample size is set
to the training file's row count. Build time covers training and adding together, so
train_s is the whole build and add_per_s is base rows / build seconds. With threads > 1 the
search is `search_batched_parallel` on that many threads, else `search_batched`."""
import json
import re
import sys
import time

import scann

from faiss_bench import bench_arguments, load_files, timed_row
from scann.scann_ops.py.scann_builder import ReorderType

# Pharos's refine codes and ScaNN's reordering data closest to them.
REORDER = {"RefineFlat": ReorderType.FLOAT32, "RefineSQ8": ReorderType.INT8, "RefineFP16": ReorderType.BFLOAT16}


def scann_config(factory, metric, dimension, train_rows, base_rows, k, refine_factor, threads):
    parts = factory.split(",")
    distance = "dot_product" if metric == "ip" else "squared_l2"
    if parts == ["Flat"]:
        return lambda data: scann.scann_ops_pybind.builder(data, k, distance).score_brute_force().build(), False
    leaves = None
    if parts[0].startswith("IVF"):
        leaves = int(parts[0][3:])
        parts = parts[1:]
    match = re.fullmatch(r"PQ(\d+)x4fs(?:_aq([0-9.eE+-]+))?", parts[0]) if parts else None
    if not match:
        sys.exit(f"scann_bench: no ScaNN configuration for '{factory}' (ScaNN's asymmetric hashing has 16 "
                 "centres per block: use PQ<m>x4fs)")
    m = int(match.group(1))
    threshold = float(match.group(2)) if match.group(2) else (0.2 if metric == "ip" else float("nan"))
    refine = parts[1] if len(parts) > 1 else None
    if refine and refine not in REORDER:
        sys.exit(f"scann_bench: unknown refine '{refine}' (RefineFlat, RefineSQ8 or RefineFP16)")
    sample = max(1, min(train_rows, base_rows))

    def build(data):
        b = scann.scann_ops_pybind.builder(data, k, distance)
        if leaves:
            b = b.tree(num_leaves=leaves, num_leaves_to_search=1, training_sample_size=sample,
                       spherical=(metric == "ip"))
        b = b.score_ah(dimension // m, anisotropic_quantization_threshold=threshold, training_sample_size=sample)
        if refine:
            b = b.reorder(refine_factor * k, quantize=REORDER[refine])
        return b.set_n_training_threads(threads).build()
    return build, bool(refine)


def main():
    a = bench_arguments("The ScaNN side of the Pharos benchmark.")
    train, base, queries, truth = load_files(a)
    build, refines = scann_config(a.factory, a.metric, base.shape[1], train.shape[0], base.shape[0], a.k,
                                  a.refine_factor, a.threads)
    t = time.perf_counter()
    searcher = build(base)
    build_s = time.perf_counter() - t
    if a.threads > 1:
        searcher.set_num_threads(a.threads)

    rows = []
    for nprobe in [int(x) for x in a.nprobe.split(",")]:
        options = {"final_num_neighbors": a.k}
        if "IVF" in a.factory:
            options["leaves_to_search"] = nprobe
        if refines:
            options["pre_reorder_num_neighbors"] = a.refine_factor * a.k
        search = searcher.search_batched_parallel if a.threads > 1 else searcher.search_batched
        rows.append(timed_row(nprobe, a.repeats, lambda: search(queries, **options)[0], queries, truth, a.k))
    print(json.dumps({"engine": "scann", "kernel": f"scann {getattr(scann, '__version__', '')}".strip(), "factory": a.factory,
                      "threads": a.threads, "train_s": round(build_s, 3), "add_per_s": round(base.shape[0] / build_s, 1),
                      "bytes_per_vector": -1, "rows": rows}))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The faiss side of the Pharos benchmark: the same phases, files and parameters as
`pharos index bench`, printing the same JSON line."""
import argparse
import json
import time

import faiss
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    rows = raw.reshape(-1, d + 1)
    assert (rows[:, 0] == d).all(), f"{path}: rows of unequal dimension"
    return np.ascontiguousarray(rows[:, 1:]).view(dtype)


def faiss_factory(pharos):
    """Pharos factory strings are faiss's, except the refine spelling."""
    parts = pharos.split(",")
    out = []
    for p in parts:
        if p == "RefineSQ8":
            out.append("Refine(SQ8)")
        elif p == "RefineFP16":
            out.append("Refine(SQfp16)")
        elif p == "RefineFlat":
            out.append("RFlat")
        else:
            out.append(p)
    return ",".join(out)


def recall(result, truth, r):
    hits = 0
    for row, t in zip(result[:, :r], truth[:, :r]):
        hits += len(set(row.tolist()) & set(t.tolist()))
    return hits / (result.shape[0] * r)


def bytes_per_vector(index):
    if isinstance(index, faiss.IndexRefine):
        return bytes_per_vector(faiss.downcast_index(index.base_index)) + faiss.downcast_index(index.refine_index).sa_code_size()
    if isinstance(index, faiss.IndexIVF):
        return index.code_size + 8
    return index.sa_code_size()


def bench_arguments(description):
    """The command line every runner shares with `pharos index bench`."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--factory", required=True)
    ap.add_argument("--metric", default="l2")
    ap.add_argument("--train", required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--truth", required=True)
    ap.add_argument("--nprobe", default="1")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--refine-factor", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--query-limit", type=int, default=0)
    return ap.parse_args()


def load_files(a):
    """Training, base, query vectors and exact neighbours (the first --query-limit queries)."""
    train = read_vecs(a.train, np.float32)
    base = read_vecs(a.base, np.float32)
    queries = read_vecs(a.queries, np.float32)
    truth = read_vecs(a.truth, np.int32)
    if a.query_limit > 0:
        queries, truth = queries[:a.query_limit], truth[:a.query_limit]
    return train, base, queries, truth


def timed_row(nprobe, repeats, search, queries, truth, k):
    """One JSON row: the median time of `repeats` calls of `search()` (which returns ids)."""
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        ids = search()
        times.append(time.perf_counter() - t)
    median = sorted(times)[len(times) // 2]
    ids = np.asarray(ids)
    return {"nprobe": nprobe, "qps": round(queries.shape[0] / median, 2),
            "recall1": round(recall(ids, truth, 1), 4),
            "recall10": round(recall(ids, truth, 10), 4) if k >= 10 else -1}


def main():
    a = bench_arguments("The faiss side of the Pharos benchmark.")
    faiss.omp_set_num_threads(a.threads)
    train, base, queries, truth = load_files(a)
    metric = faiss.METRIC_INNER_PRODUCT if a.metric == "ip" else faiss.METRIC_L2
    index = faiss.index_factory(base.shape[1], faiss_factory(a.factory), metric)

    t = time.perf_counter()
    index.train(train)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    index.add(base)
    add_s = time.perf_counter() - t

    ps = faiss.ParameterSpace()
    rows = []
    for nprobe in [int(x) for x in a.nprobe.split(",")]:
        settings = []
        if "IVF" in a.factory:
            settings.append(f"nprobe={nprobe}")
        if "Refine" in a.factory:
            settings.append(f"k_factor_rf={a.refine_factor}")
        if settings:
            ps.set_index_parameters(index, ",".join(settings))
        rows.append(timed_row(nprobe, a.repeats, lambda: index.search(queries, a.k)[1], queries, truth, a.k))
    print(json.dumps({"engine": "faiss", "kernel": faiss.get_compile_options(), "factory": a.factory,
                      "threads": a.threads, "train_s": round(train_s, 3),
                      "add_per_s": round(base.shape[0] / add_s, 1),
                      "bytes_per_vector": bytes_per_vector(index), "rows": rows}))


if __name__ == "__main__":
    main()

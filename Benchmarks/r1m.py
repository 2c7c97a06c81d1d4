#!/usr/bin/env python3
"""The R1M-scale benchmark's helpers (Benchmarks/r1m.sh runs them; see Benchmarks/README.md).

  generate  1,000,000 GeM-like distractors (1280-D, unit norm, non-negative) as noisy
            mixtures of the labelled photo set's real descriptors (of the photos that are no
            instance's view, as R1M holds none of the query landmarks), a separate training sample
            and held-out queries from the same generator; deterministic (fixed seeds, one
            generator per chunk, so the chunk size does not change the data)
  truth     exact top-10 of the queries in the collection's space (the whitening file the
            cluster uses, read here from its documented form, then L2 normalisation)
  combine   the photos and the distractors in one file, for the exact ranking
  recall    recall@10 of `pharos search --out hits.jsonl` against that truth
  faiss     the same factory in one faiss process: train on the same sample, time `add` of the
            same vectors (whitened here first, timed apart), search recall at nprobe 16, refine 4
  milvus    Milvus Lite (pip milvus-lite) on the same whitened vectors: insert, index build,
            single-query search QPS and recall
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

import numpy as np

COMPONENTS, DIRICHLET, NOISE = 4, 1.0, 0.4   # mixture size, weights' concentration, log-normal noise
CHUNK = 10_000


def mixtures(photos, count, seed, path):
    """`count` distractors into `path` (.npy, written aside then renamed)."""
    tmp = path + ".tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(count, photos.shape[1]))
    for chunk, start in enumerate(range(0, count, CHUNK)):
        n = min(CHUNK, count - start)
        rng = np.random.default_rng([seed, chunk])
        parts = rng.integers(0, len(photos), (n, COMPONENTS))
        weights = rng.dirichlet([DIRICHLET] * COMPONENTS, n).astype(np.float32)
        mixed = np.einsum("nk,nkd->nd", weights, photos[parts])
        mixed *= np.exp(NOISE * rng.standard_normal(mixed.shape, dtype=np.float32))
        mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
        out[start:start + n] = mixed
    out.flush()
    del out
    os.replace(tmp, path)


def cmd_generate(a):
    photos = np.load(a.photos).astype(np.float32)
    keys = open(a.photo_keys).read().split("\n")[:len(photos)]
    labels = json.load(open(a.labels))["labels"]
    views = {}
    for key in keys:
        views[labels.get(key, key)] = views.get(labels.get(key, key), 0) + 1
    # Like R1M, which was cleaned of the query landmarks: the mixtures are made of the photos
    # that belong to no instance with several views, never of an instance's own photos.
    pool = photos[[views[labels.get(key, key)] == 1 for key in keys]]
    os.makedirs(a.out, exist_ok=True)
    settings = {"components": COMPONENTS, "dirichlet": DIRICHLET, "noise": NOISE, "pool": len(pool)}
    stamp = f"{a.out}/generator.json"
    fresh = os.path.exists(stamp) and json.load(open(stamp)) == settings
    started = time.time()
    for name, count, seed in (("distractors", a.count, 1), ("train", a.train, 2), ("queries", a.queries, 3)):
        path = f"{a.out}/{name}.npy"
        if fresh and os.path.exists(path) and np.load(path, mmap_mode="r").shape == (count, photos.shape[1]):
            continue
        mixtures(pool, count, seed, path)
    json.dump(settings, open(stamp, "w"))
    print(f"generated {a.count} distractors, {a.train} training and {a.queries} query vectors "
          f"({photos.shape[1]}-D, mixtures of {len(pool)} photos) in {time.time() - started:.1f} s under {a.out}")
    # How the distractors sit among the photos, against how the photos' real non-matching
    # pairs do: the distractors should look like other photos, not like copies of these.
    same = np.array([[labels.get(p) is not None and labels.get(p) == labels.get(q) for q in keys] for p in keys])
    pairs = photos @ photos.T
    upper = np.triu_indices(len(photos), 1)
    negatives = pairs[upper][~same[upper]]
    sample = np.load(f"{a.out}/distractors.npy", mmap_mode="r")[:20_000]
    queried = [views[labels.get(key, key)] > 1 for key in keys]
    versus = (photos[queried] @ np.asarray(sample).T).ravel()
    q = [50, 90, 99, 99.9]
    fmt = lambda v: " / ".join(f"{x:.3f}" for x in np.percentile(v, q))
    print(f"cosine percentiles {q}: photo of an instance x distractor {fmt(versus)}; photo x other photo (not the same instance) {fmt(negatives)}")


def cmd_combine(a):
    """The photos, then the distractors, in one file (for the exact ranking of `pharos eval --database`)."""
    photos, distractors = np.load(a.photos), np.load(a.distractors, mmap_mode="r")
    tmp = a.out + ".tmp.npy"
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(photos) + len(distractors), photos.shape[1]))
    out[:len(photos)] = photos
    for start in range(0, len(distractors), 100_000):
        out[len(photos) + start:len(photos) + start + 100_000] = distractors[start:start + 100_000]
    out.flush()
    del out
    keys = open(a.photo_keys).read().split("\n")[:len(photos)] + [f"row-{i}" for i in range(len(distractors))]
    with open(a.out_keys, "w") as f:
        f.write("\n".join(keys) + "\n")
    os.replace(tmp, a.out)


def whitening(path):
    """(mean, projection) of a PHXWHITN file: magic, u32 version, u64 length, then the payload
    u32 kind, i64 in, i64 out, u32 power, u32 shrinkage, [i64 n, f32 mean], [i64 n, f32 projection]."""
    data = open(path, "rb").read()
    assert data[:8] == b"PHXWHITN", f"{path}: not a whitening file"
    _, length = struct.unpack_from("<IQ", data, 8)
    payload = data[20:20 + length]
    _, inputs, outputs, _, _ = struct.unpack_from("<IqqII", payload, 0)
    offset = 28
    (n,) = struct.unpack_from("<q", payload, offset)
    mean = np.frombuffer(payload, np.float32, n, offset + 8)
    offset += 8 + 4 * n
    (n,) = struct.unpack_from("<q", payload, offset)
    projection = np.frombuffer(payload, np.float32, n, offset + 8).reshape(outputs, inputs)
    return mean, projection


def whitened(rows, mean, projection):
    out = np.empty((len(rows), projection.shape[0]), np.float32)
    for start in range(0, len(rows), 50_000):
        part = (np.asarray(rows[start:start + 50_000], np.float32) - mean) @ projection.T
        out[start:start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def collection(a):
    """Whitened vectors and keys: the distractors (row-N), then the photos (their keys)."""
    mean, projection = whitening(a.whitening)
    base = whitened(np.load(a.distractors, mmap_mode="r"), mean, projection)
    keys = [f"row-{i}" for i in range(len(base))]
    if a.photos:
        base = np.vstack([base, whitened(np.load(a.photos), mean, projection)])
        keys += open(a.photo_keys).read().split("\n")[:len(base) - len(keys)]
    return base, keys, whitened(np.load(a.queries), mean, projection)


def exact_top(base, queries, k):
    best = np.full((len(queries), k), -np.inf, np.float32)
    ids = np.zeros((len(queries), k), np.int64)
    for start in range(0, len(base), 100_000):
        scores = queries @ base[start:start + 100_000].T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        merged = np.hstack([best, np.take_along_axis(scores, top, 1)])
        merged_ids = np.hstack([ids, top + start])
        order = np.argsort(-merged, axis=1)[:, :k]
        best, ids = np.take_along_axis(merged, order, 1), np.take_along_axis(merged_ids, order, 1)
    return ids


def cmd_truth(a):
    base, keys, queries = collection(a)
    ids = exact_top(base, queries, 10)
    with open(a.out, "w") as f:
        json.dump([[keys[i] for i in row] for row in ids], f)
    print(f"exact top-10 of {len(queries)} queries over {len(base)} vectors -> {a.out}")


def recall_at_10(found, truth):
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth)]))


def cmd_recall(a):
    truth = json.load(open(a.truth))
    hits = [json.loads(line) for line in open(a.hits)]
    found = [[h["key"] for h in row["hits"]] for row in sorted(hits, key=lambda r: r["query"])]
    assert len(found) == len(truth), f"{a.hits}: {len(found)} answers for {len(truth)} queries"
    print(f"recall@10 {recall_at_10(found, truth):.4f}")


def cmd_faiss(a):
    import faiss
    faiss.omp_set_num_threads(a.threads)
    mean, projection = whitening(a.whitening)
    started = time.time()
    base, keys, queries = collection(a)
    whiten_seconds = time.time() - started
    if os.path.exists(a.trained):
        index = faiss.read_index(a.trained)
        train_seconds = float("nan")
    else:
        sample = whitened(np.load(a.train, mmap_mode="r"), mean, projection)
        index = faiss.index_factory(base.shape[1], a.factory, faiss.METRIC_INNER_PRODUCT)
        started = time.time()
        index.train(sample)
        train_seconds = time.time() - started
        faiss.write_index(index, a.trained)
    started = time.time()
    index.add(base)
    add_seconds = time.time() - started
    faiss.extract_index_ivf(index).nprobe = 16
    faiss.downcast_index(index).k_factor = 4
    _, ids = index.search(queries, 10)
    truth = json.load(open(a.truth))
    print(json.dumps({"train_s": train_seconds, "whiten_s": whiten_seconds, "add_s": add_seconds,
                      "add_per_s": len(base) / add_seconds, "recall10": recall_at_10([[keys[i] for i in r] for r in ids], truth),
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def cmd_milvus(a):
    from pymilvus import DataType, MilvusClient
    base, keys, queries = collection(a)
    client = MilvusClient(a.db)
    if client.has_collection("r1m"):
        client.drop_collection("r1m")
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=base.shape[1])
    client.create_collection("r1m", schema=schema)
    started = time.time()
    for start in range(0, len(base), 10_000):
        rows = base[start:start + 10_000]
        client.insert("r1m", [{"id": start + i, "v": v} for i, v in enumerate(rows)])
    client.flush("r1m")   # sealed segments: without it every search scans the unsealed rows (about 1 s a query at 20k)
    insert_seconds = time.time() - started
    params = client.prepare_index_params()
    params.add_index(field_name="v", index_type=a.index, metric_type="IP", params={"nlist": 4096})
    started = time.time()
    client.create_index("r1m", params)
    client.load_collection("r1m")
    index_seconds = time.time() - started
    latencies, found = [], []
    for q in queries:
        started = time.perf_counter()
        answer = client.search("r1m", data=[q], limit=10, output_fields=["id"], search_params={"params": {"nprobe": 16}})
        latencies.append(time.perf_counter() - started)
        found.append([keys[hit["id"]] for hit in answer[0]])
    truth = json.load(open(a.truth))
    print(json.dumps({"index": client.describe_index("r1m", "v").get("index_type"), "insert_s": insert_seconds,
                      "insert_per_s": len(base) / insert_seconds, "index_s": index_seconds,
                      "p50_ms": 1e3 * float(np.median(latencies)), "p99_ms": 1e3 * float(np.percentile(latencies, 99)),
                      "qps": len(queries) / sum(latencies), "recall10": recall_at_10(found, truth)}))
    client.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--photos", required=True)
    g.add_argument("--photo-keys", required=True)
    g.add_argument("--labels", required=True)
    g.add_argument("--count", type=int, default=1_000_000)
    g.add_argument("--train", type=int, default=200_000)
    g.add_argument("--queries", type=int, default=1_000)
    g.add_argument("--out", required=True)
    for name in ("truth", "faiss", "milvus"):
        s = sub.add_parser(name)
        s.add_argument("--whitening", required=True)
        s.add_argument("--distractors", required=True)
        s.add_argument("--queries", required=True)
        s.add_argument("--photos", help="the photos' descriptors, stored after the distractors")
        s.add_argument("--photo-keys")
        if name == "truth":
            s.add_argument("--out", required=True)
        else:
            s.add_argument("--truth", required=True)
    f = sub.choices["faiss"]
    f.add_argument("--train", required=True)
    f.add_argument("--factory", default="IVF4096,PQ64x4fsr,Refine(SQ8)",
                   help="faiss spelling of Pharos IVF4096,PQ64x4fs,RefineSQ8 (residual codes, as Pharos encodes: faiss's x4fs alone encodes the vectors themselves)")
    f.add_argument("--trained", required=True, help="trained index cache (written on the first run)")
    f.add_argument("--threads", type=int, default=2)
    m = sub.choices["milvus"]
    m.add_argument("--db", required=True)
    m.add_argument("--index", default="IVF_SQ8")
    c = sub.add_parser("combine")
    for flag in ("--photos", "--photo-keys", "--distractors", "--out", "--out-keys"):
        c.add_argument(flag, required=True)
    r = sub.add_parser("recall")
    r.add_argument("--hits", required=True)
    r.add_argument("--truth", required=True)
    a = parser.parse_args()
    {"generate": cmd_generate, "combine": cmd_combine, "truth": cmd_truth, "recall": cmd_recall, "faiss": cmd_faiss, "milvus": cmd_milvus}[a.command](a)


if __name__ == "__main__":
    sys.exit(main())

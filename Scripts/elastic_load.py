#!/usr/bin/env python3
"""The load Scripts/elastic-test.sh runs against a cluster while it changes, written from
Protocols/README.md alone (Python protobuf):

  writer   upserts batches of its own keys (vectors far from the base set, so searches of
           the base set never meet them) and deletes some of them; records what was
           acknowledged, and what failed (its outcome is unknown), in a JSON file.
  searcher searches base queries over and over; records every answer that was partial or
           held a key twice.
  check    after the changes: every acknowledged key present with exactly its vector, every
           deleted one absent (keys whose last write failed are left out), and the counts.

Each loop stops at --seconds or when --stop-file exists, whichever is first, and sends at
most --max-requests requests.
"""
import argparse
import json
import os
import random
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pharos_client import Connection, protocol, read_fvecs  # noqa: E402

DIM = 32


def vector_of(i):
    """The writer's vector for key w-i, as float32 values (what the wire carries)."""
    rng = random.Random(i)
    raw = [50.0 + rng.uniform(-1, 1) for _ in range(DIM)]
    return list(struct.unpack(f"{DIM}f", struct.pack(f"{DIM}f", *raw)))


def connect(pb, address):
    host, port = address.rsplit(":", 1)
    return Connection(pb, int(port), host=host, timeout=30)


def done(args, start, sent):
    return time.time() - start > args.seconds or os.path.exists(args.stop_file) or sent >= args.max_requests


def writer(pb, args):
    conn = connect(pb, args.coordinator)
    state = {}          # key -> "live" | "deleted" | "unknown"
    acked_upserts = acked_deletes = failures = 0
    next_key, start, sent = 0, time.time(), 0
    rng = random.Random(7)
    while not done(args, start, sent):
        sent += 1
        live = [k for k, v in state.items() if v == "live"]
        if live and rng.random() < 0.3:
            keys = rng.sample(live, min(10, len(live)))
            def fill(e, keys=keys):
                e.delete.keys.extend(keys)
            outcome = "deleted"
        else:
            keys = [f"w-{next_key + j}" for j in range(50)]
            next_key += 50
            def fill(e, keys=keys):
                e.upsert.keys.extend(keys)
                for k in keys:
                    e.upsert.vectors.extend(vector_of(int(k[2:])))
                e.upsert.dimension = DIM
                e.upsert.deadline_ms = 10000
            outcome = "live"
        try:
            conn.send(fill)
            reply = conn.read()
        except OSError:
            conn = connect(pb, args.coordinator)
            reply = None
        if reply is not None and reply.WhichOneof("body") in ("upsert_result", "delete_result"):
            for k in keys:
                state[k] = outcome
            if outcome == "live":
                acked_upserts += 1
            else:
                acked_deletes += 1
        else:
            failures += 1
            for k in keys:
                state[k] = "unknown"
        time.sleep(0.01)
    json.dump({"state": state, "acked_upserts": acked_upserts, "acked_deletes": acked_deletes, "failures": failures},
              open(args.out, "w"))
    print(f"writer: {acked_upserts} upserts and {acked_deletes} deletes acknowledged, {failures} failed (outcome unknown)")


def searcher(pb, args):
    conn = connect(pb, args.coordinator)
    queries = read_fvecs(args.queries, 20)
    searches = partial = duplicates = errors = 0
    problems = []
    start, sent = time.time(), 0
    while not done(args, start, sent):
        sent += 1
        batch = queries[(searches * 5) % 20:(searches * 5) % 20 + 5]
        def fill(e, batch=batch):
            for q in batch:
                e.search.vectors.extend(q)
            e.search.dimension = DIM
            e.search.k = 10
            e.search.nprobe = 8
            e.search.deadline_ms = 3000
        try:
            conn.send(fill)
            reply = conn.read()
        except OSError as error:
            errors += 1
            problems.append(f"{time.time() - start:.1f}s: connection: {error}")
            conn = connect(pb, args.coordinator)
            continue
        searches += 1
        kind = reply.WhichOneof("body")
        if kind != "search_result":
            errors += 1
            problems.append(f"{time.time() - start:.1f}s: {reply.error.message if kind == 'error' else kind}")
            continue
        if reply.search_result.partial or len(reply.search_result.missing):
            partial += 1
            problems.append(f"{time.time() - start:.1f}s: partial: {[m.shard + ': ' + m.reason for m in reply.search_result.missing]}")
        for q in reply.search_result.queries:
            if len(set(q.keys)) != len(q.keys):
                duplicates += 1
        time.sleep(0.005)
    json.dump({"searches": searches, "partial": partial, "duplicates": duplicates, "errors": errors, "problems": problems[:20]},
              open(args.out, "w"))
    print(f"searcher: {searches} searches, {partial} partial, {duplicates} with a key twice, {errors} errors")


def check(pb, args):
    conn = connect(pb, args.coordinator)
    written = json.load(open(args.writer_log))["state"]
    live = sorted(k for k, v in written.items() if v == "live")
    deleted = sorted(k for k, v in written.items() if v == "deleted")
    wrong = []
    for start in range(0, len(live) + len(deleted), 1000):
        keys = (live + deleted)[start:start + 1000]
        reply = conn.call(lambda e, keys=keys: e.fetch.keys.extend(keys))
        for entry in reply.fetch_result.entries:
            if written[entry.key] == "live":
                if not entry.found:
                    wrong.append(f"{entry.key}: acknowledged, missing")
                elif list(entry.vector) != vector_of(int(entry.key[2:])):
                    wrong.append(f"{entry.key}: acknowledged, another vector")
            elif entry.found:
                wrong.append(f"{entry.key}: deleted, present")
    stats = conn.call(lambda e: e.stats.SetInParent()).stats_result
    unknown = sum(1 for v in written.values() if v == "unknown")
    expected_low, expected_high = args.base + len(live), args.base + len(live) + unknown
    count_ok = expected_low <= stats.live_entries <= expected_high
    print(f"check: {len(live)} acknowledged keys and {len(deleted)} deleted ones checked, {unknown} of unknown outcome; "
          f"{stats.live_entries} live entries (expected {expected_low}..{expected_high}); {len(wrong)} wrong")
    for w in wrong[:10]:
        print("  " + w)
    sys.exit(0 if not wrong and count_ok else 1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["writer", "searcher", "check"])
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--out", default="/dev/null")
    parser.add_argument("--queries")
    parser.add_argument("--writer-log")
    parser.add_argument("--base", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--stop-file", default="/nonexistent")
    parser.add_argument("--max-requests", type=int, default=100000)
    args = parser.parse_args()
    pb = protocol()
    {"writer": writer, "searcher": searcher, "check": check}[args.mode](pb, args)


if __name__ == "__main__":
    main()

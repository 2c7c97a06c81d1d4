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
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIM = 32


def protocol():
    out = tempfile.mkdtemp(prefix="pharos-pb-")
    subprocess.run(["protoc", f"--proto_path={ROOT}/Protocols", f"--python_out={out}", "pharos.proto"], check=True)
    sys.path.insert(0, out)
    import pharos_pb2  # noqa: E402
    return pharos_pb2


class Client:
    def __init__(self, pb, port):
        self.pb, self.next_id = pb, 1
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)

    def call(self, fill):
        envelope = self.pb.Envelope(request_id=self.next_id)
        fill(envelope)
        self.next_id += 1
        payload = envelope.SerializeToString()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)
        n = struct.unpack(">I", self._exactly(4))[0]
        reply = self.pb.Envelope()
        reply.ParseFromString(self._exactly(n))
        if reply.WhichOneof("body") == "error":
            raise SystemExit(f"refused: {reply.error}")
        return reply

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise SystemExit("connection closed")
            data += chunk
        return data

    def upsert(self, keys, vectors):
        def fill(e):
            e.upsert.keys.extend(keys)
            e.upsert.vectors.extend(v for row in vectors for v in row)
            e.upsert.dimension = DIM
        self.call(fill)

    def delete(self, keys):
        self.call(lambda e: e.delete.keys.extend(keys))

    def top(self, vector):
        def fill(e):
            e.search.vectors.extend(vector)
            e.search.dimension = DIM
            e.search.k = 1
            e.search.nprobe = 256
            e.search.refine_factor = 256
        hits = self.call(fill).search_result.queries[0]
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
    work = tempfile.mkdtemp(prefix="pharos-visibility-")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    log = open(f"{work}/log", "w+")
    cluster = subprocess.Popen([f"{args.bin}/pharos", "cluster", "up", "--shards", "1", "--dimension", str(DIM), "--metric", "ip",
                                "--factory", "IVF256,PQ16x4fs,RefineFlat", "--data", f"{work}/c", "--port", str(args.port)],
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(200):
            log.seek(0)
            if "cluster ready" in log.read():
                break
            time.sleep(0.1)
        with open(f"{work}/train.fvecs", "wb") as f:
            for _ in range(20000):
                f.write(struct.pack("<i", DIM) + struct.pack(f"<{DIM}f", *unit(rng)))
        subprocess.run([f"{args.bin}/pharos", "train", "--train", f"{work}/train.fvecs", "--cluster", f"{work}/c/cluster.json",
                        "--coordinator", f"127.0.0.1:{args.port}"], check=True, capture_output=True, env=env)
        client = Client(pb, args.port)
        total = 21000
        for start in range(0, total, 1000):
            client.upsert([f"key-{i}" for i in range(start, start + 1000)], [unit(rng) for _ in range(1000)])
        for _ in range(600):
            keys = sorted({f"key-{rng.randrange(total)}" for _ in range(10)})
            client.upsert(keys, [unit(rng) for _ in keys])
        for _ in range(600):
            client.delete(sorted({f"key-{rng.randrange(total)}" for _ in range(10)}))
        missed = []
        for i in range(args.fresh):
            key, vector = f"fresh-{i}", unit(rng)
            client.upsert([key], [vector])
            found, score = client.top(vector)
            if found != key:
                missed.append((key, found, score))
        print(f"{len(missed)} of {args.fresh} fresh keys not returned first for their own vector "
              f"(after 21,000 upserts, 600 replaced and 600 deleted batches; {args.bin})")
        for key, found, score in missed[:5]:
            print(f"  {key}: got {found} ({score})")
        return 1 if missed else 0
    finally:
        cluster.send_signal(signal.SIGINT)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

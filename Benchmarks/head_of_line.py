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
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def protocol():
    out = tempfile.mkdtemp(prefix="pharos-pb-")
    subprocess.run(["protoc", f"--proto_path={ROOT}/Protocols", f"--python_out={out}", "pharos.proto"], check=True)
    sys.path.insert(0, out)
    import pharos_pb2  # noqa: E402
    return pharos_pb2


class Connection:
    def __init__(self, pb, port):
        self.pb = pb
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1

    def send(self, fill):
        envelope = self.pb.Envelope(request_id=self.next_id)
        fill(envelope)
        self.next_id += 1
        payload = envelope.SerializeToString()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def read(self):
        head = self._exactly(4)
        envelope = self.pb.Envelope()
        envelope.ParseFromString(self._exactly(struct.unpack(">I", head)[0]))
        return envelope

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data


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


def read_fvecs(path, limit):
    rows = []
    with open(path, "rb") as f:
        while len(rows) < limit:
            head = f.read(4)
            if not head:
                break
            d = struct.unpack("<i", head)[0]
            rows.append(list(struct.unpack(f"<{d}f", f.read(4 * d))))
    return rows


def measure(pb, bin_dir, data_set, port, flood, k):
    work = tempfile.mkdtemp(prefix="pharos-hol-")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    log = open(os.path.join(work, "log"), "w+")
    cluster = subprocess.Popen([f"{bin_dir}/pharos", "cluster", "up", "--dimension", "64", "--factory", "IVF128,PQ16x4fs,RefineSQ8",
                                "--data", f"{work}/c", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for _ in range(200):
            log.seek(0)
            if "cluster ready" in log.read():
                break
            time.sleep(0.1)
        coordinator = ["--coordinator", f"127.0.0.1:{port}"]
        subprocess.run([f"{bin_dir}/pharos", "train", "--train", f"{data_set}/train.fvecs", "--cluster", f"{work}/c/cluster.json"] + coordinator,
                       check=True, capture_output=True, env=env)
        subprocess.run([f"{bin_dir}/pharos", "ingest", "--vectors", f"{data_set}/base.fvecs"] + coordinator,
                       check=True, capture_output=True, env=env)
        queries = read_fvecs(f"{data_set}/queries.fvecs", 100)
        alone = probes(pb, port, queries)
        flooder = Connection(pb, port)
        for i in range(flood):
            flooder.send(search(queries[i % len(queries)], k))
        under = probes(pb, port, queries)
        drained = [flooder.read() for _ in range(flood)]
        assert all(r.WhichOneof("body") in ("search_result", "error") for r in drained)
        return alone, under
    finally:
        cluster.send_signal(signal.SIGINT)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()
        shutil.rmtree(work, ignore_errors=True)


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

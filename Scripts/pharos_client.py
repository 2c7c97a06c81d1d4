"""A small Python client of the Pharos wire protocol, written from Protocols/README.md, and a
local cluster to point it at. Shared by Scripts/visibility-check.py, Benchmarks/head_of_line.py
and Benchmarks/cluster_ab.py.

The protocol module is generated at run time with Debian's protoc into a temporary folder
(python3-protobuf reads it); nothing generated is kept in the repository.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def protocol():
    """The `pharos_pb2` module generated from Protocols/pharos.proto."""
    out = tempfile.mkdtemp(prefix="pharos-pb-")
    subprocess.run(["protoc", f"--proto_path={ROOT}/Protocols", f"--python_out={out}", "pharos.proto"], check=True)
    sys.path.insert(0, out)
    import pharos_pb2  # noqa: E402
    return pharos_pb2


class Connection:
    """One TCP connection (loopback by default): frames are a u32 big-endian length and an Envelope."""

    def __init__(self, pb, port, host="127.0.0.1", timeout=60, token=""):
        self.pb = pb
        self.token = token  # the bearer token each request carries (servers started with --tokens)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1

    def send(self, fill):
        """Sends an Envelope with the next request id, its body set by `fill(envelope)`."""
        envelope = self.pb.Envelope(request_id=self.next_id)
        if self.token:
            envelope.auth_token = self.token
        fill(envelope)
        self.next_id += 1
        payload = envelope.SerializeToString()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def read(self):
        """The next Envelope from the server."""
        head = self._exactly(4)
        envelope = self.pb.Envelope()
        envelope.ParseFromString(self._exactly(struct.unpack(">I", head)[0]))
        return envelope

    def call(self, fill):
        """`send`, then the reply; an Error reply ends the program with its text."""
        self.send(fill)
        reply = self.read()
        if reply.WhichOneof("body") == "error":
            raise SystemExit(f"refused: {reply.error}")
        return reply

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data


class LocalCluster:
    """`pharos cluster up` from a build folder, in a temporary folder, for a `with` block."""

    def __init__(self, bin_dir, port, arguments):
        self.bin_dir, self.port, self.arguments = bin_dir, port, arguments
        self.env = dict(os.environ, OPENBLAS_NUM_THREADS="1")

    def __enter__(self):
        self.work = tempfile.mkdtemp(prefix="pharos-local-")
        self.cluster_file = f"{self.work}/c/cluster.json"
        log = open(f"{self.work}/cluster.log", "w+")
        self.process = subprocess.Popen([f"{self.bin_dir}/pharos", "cluster", "up", "--data", f"{self.work}/c",
                                         "--port", str(self.port)] + self.arguments,
                                        stdout=log, stderr=subprocess.STDOUT, env=self.env)
        for _ in range(200):
            log.seek(0)
            if "cluster ready" in log.read():
                return self
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise SystemExit("the cluster did not start:\n" + open(log.name).read())

    def pharos(self, *arguments, **options):
        """Runs `pharos ARGUMENTS --coordinator 127.0.0.1:PORT` (it must succeed)."""
        return subprocess.run([f"{self.bin_dir}/pharos", *arguments, "--coordinator", f"127.0.0.1:{self.port}"],
                              check=True, capture_output=True, text=True, env=self.env, **options)

    def __exit__(self, *_):
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.work, ignore_errors=True)


def print_ab_table(results, digits=3):
    """Prints medians of two builds' rows (results = {"A": [row, ...], "B": [...]}, each row a
    dict of measure -> value) and the B/A ratio of each, as a Markdown table."""
    import statistics
    print("| measure | A | B | B/A |\n|---|---|---|---|")
    for key in results["A"][0]:
        a = statistics.median(row[key] for row in results["A"])
        b = statistics.median(row[key] for row in results["B"])
        print(f"| {key} | {a:g} | {b:g} | {b / a:.{digits}f} |" if a else f"| {key} | {a:g} | {b:g} | - |")


def read_fvecs(path, limit):
    """The first `limit` rows of an .fvecs file, as lists of floats."""
    rows = []
    with open(path, "rb") as f:
        while len(rows) < limit:
            head = f.read(4)
            if not head:
                break
            d = struct.unpack("<i", head)[0]
            rows.append(list(struct.unpack(f"<{d}f", f.read(4 * d))))
    return rows

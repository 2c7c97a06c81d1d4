#!/usr/bin/env python3
"""Tokens from outside: two shard nodes that only the coordinator may use, a coordinator with a
read, a write and an admin token, all real processes on loopback. The public CLI trains,
ingests and searches with the right tokens; a client written from Protocols/README.md (Python
protobuf) checks that each message is refused UNAUTHORIZED without a token, with an unknown one
and with one whose role is too low, that nothing refused changed anything, and that the shards
refuse everyone but the coordinator. Bounded: about 15 s.

Usage: Scripts/token-test.py [BIN_DIR]   (default .build/debug)
"""
import json, os, random, shutil, signal, struct, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pharos_client import Connection, protocol  # noqa: E402

bin_dir = sys.argv[1] if len(sys.argv) > 1 else ".build/debug"
base_port = int(os.environ.get("PORT", "7970"))
pb = protocol()
work = tempfile.mkdtemp(prefix="pharos-tokens-")
processes = []
tokens = {"shard": "shard-admin-" + "a" * 20, "read": "reader-" + "b" * 20, "write": "writer-" + "c" * 20, "admin": "admin-" + "d" * 20}


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def start(arguments, log):
    process = subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=open(f"{work}/{log}.log", "w"), text=True)
    processes.append(process)
    line = process.stdout.readline()
    if "listening on" not in line:
        raise SystemExit(f"{log} did not start: {line}{open(f'{work}/{log}.log').read()}")
    return process


def refused(connection, fill, expected_role=None):
    connection.send(fill)
    reply = connection.read()
    assert reply.WhichOneof("body") == "error", f"served: {reply}"
    assert reply.error.code == pb.ERROR_UNAUTHORIZED, reply.error
    if expected_role:
        assert f"needs the {expected_role} role" in reply.error.message or f"with the {expected_role} role" in reply.error.message, reply.error.message
    return reply.error.message


try:
    shard_tokens = write(f"{work}/shard-tokens", f"# only the coordinator\nadmin {tokens['shard']}\n")
    coordinator_tokens = write(f"{work}/tokens", "".join(f"{role} {tokens[role]}\n" for role in ("read", "write", "admin")))
    token_files = {role: write(f"{work}/{role}.token", tokens[role] + "\n") for role in tokens}
    shards = []
    for i in range(2):
        port = base_port + 1 + i
        start([f"{bin_dir}/pharos-shard", "serve", "--data", f"{work}/s{i}", "--port", str(port), "--name", f"s{i}",
               "--tokens", shard_tokens, "--no-admin"], f"s{i}")
        shards.append({"name": f"s{i}", "host": "127.0.0.1", "port": port})
    write(f"{work}/cluster.json", json.dumps({"collection": {"dimension": 8, "metric": "l2", "factory": "IVF4,PQ4"},
                                              "buckets": 64, "shards": shards}))
    start([f"{bin_dir}/pharos-coordinator", "--cluster", f"{work}/cluster.json", "--port", str(base_port), "--state", f"{work}/state",
           "--tokens", coordinator_tokens, "--shard-token-file", token_files["shard"], "--no-admin"], "coordinator")

    random.seed(3)
    rows = [[random.gauss(0, 1) for _ in range(8)] for _ in range(500)]
    with open(f"{work}/base.fvecs", "wb") as f:
        for row in rows:
            f.write(struct.pack("<i8f", 8, *row))
    cli = [f"--coordinator", f"127.0.0.1:{base_port}"]

    def pharos(*arguments, token=None, check=True):
        flags = ["--token-file", token_files[token]] if token else []
        return subprocess.run([f"{bin_dir}/pharos", *arguments, *cli, *flags], capture_output=True, text=True, check=check)

    # The CLI: training needs admin, ingesting write; a read token cannot train.
    denied = pharos("train", "--train", f"{work}/base.fvecs", token="read", check=False)
    assert denied.returncode != 0 and "needs the admin role; the token has read" in denied.stderr + denied.stdout, denied
    pharos("train", "--train", f"{work}/base.fvecs", token="admin")
    denied = pharos("ingest", "--vectors", f"{work}/base.fvecs", check=False)
    assert denied.returncode != 0 and "needs a token with the write role" in denied.stderr + denied.stdout, denied
    pharos("ingest", "--vectors", f"{work}/base.fvecs", token="write")

    # A client from the protocol document.
    def connect(role=None):
        return Connection(pb, base_port, token=tokens[role] if role else "")

    anonymous, reader, writer, stranger = connect(), connect("read"), connect("write"), Connection(pb, base_port, token="x" * 24)
    hello = anonymous.call(lambda e: e.hello.CopyFrom(pb.Hello(protocol_version=1, role=pb.ROLE_CLIENT, node_name="token-test")))
    assert hello.WhichOneof("body") == "hello"

    def search(e):
        e.search.CopyFrom(pb.Search(vectors=rows[7], dimension=8, k=3, nprobe=4))

    def upsert(e):
        e.upsert.CopyFrom(pb.Upsert(keys=["intruder"], vectors=rows[0], dimension=8))

    def drop(e):
        e.drop.CopyFrom(pb.Drop(confirm="IVF4,PQ4"))

    refused(anonymous, search, "read")
    refused(stranger, search)
    refused(reader, upsert, "write")
    refused(reader, drop, "admin")
    refused(writer, drop, "admin")
    reply = reader.call(search)
    assert reply.search_result.queries[0].keys[0] == "row-7", reply
    stats = reader.call(lambda e: e.stats.CopyFrom(pb.Stats()))
    assert stats.stats_result.live_entries == 500, stats
    fetched = reader.call(lambda e: e.fetch.CopyFrom(pb.Fetch(keys=["intruder"])))
    assert not fetched.fetch_result.entries[0].found, "a refused upsert was stored"

    # The shards serve only the coordinator's token.
    for shard in shards:
        for token in ("", tokens["admin"], tokens["read"]):
            refused(Connection(pb, shard["port"], token=token), lambda e: e.stats.CopyFrom(pb.Stats()))
    print("token-test: anonymous, unknown and too-low tokens refused UNAUTHORIZED with the role named; "
          "nothing refused was stored; shards refuse all but the coordinator; the CLI works with its tokens")
finally:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    shutil.rmtree(work, ignore_errors=True)

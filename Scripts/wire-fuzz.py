#!/usr/bin/python3
"""Outside-in, structure-aware fuzzer for the Pharos wire protocol (Protocols/README.md).

Written only from Protocols/README.md and Protocols/pharos.proto: it talks to running servers
(the coordinator and shard nodes) over TCP like any client and judges their replies against the
documented protocol. Python 3.11, standard library + Debian's python3-protobuf:

    apt-get install -y protobuf-compiler python3-protobuf

Usage (loopback targets only: 127.0.0.0/8 or ::1):

    /usr/bin/python3 Scripts/wire-fuzz.py --coordinator 127.0.0.1:7900 \\
        --shard 127.0.0.1:7901 --shard 127.0.0.1:7902 [--pids 123,124,125] \\
        [--seed 1] [--frames 20000] [--seconds 120] [--timeout 5] [--max-rss-mb 2048] \\
        [--crash-dir /tmp/pharos-fuzz-crashes] [--report FILE.json]

    /usr/bin/python3 Scripts/wire-fuzz.py --replay /tmp/pharos-fuzz-crashes/crash-....replay \\
        [--replay-target 127.0.0.1:7901]

What it does:

- At start it generates the Python protobuf module from Protocols/pharos.proto with
  `protoc --python_out=<temporary folder>` (plus a lenient twin where every `string` is `bytes`,
  used to read what a server would see in a frame with invalid UTF-8). Nothing is written into
  the repository.
- Frames are `u32 big-endian length + Envelope`. Every connection starts with Hello
  (protocol_version 1, ROLE_CLIENT). Each target's dimension, metric and a few indexed keys are
  learnt with Stats and a Search.
- Random phase (until --frames or the time budget): for every Envelope body (the requests Hello,
  Search, Upsert, Delete, Fetch, Stats, Health, TrainedState and the reply types sent as
  requests), frames built by a hand-written protobuf encoder driven by the proto's descriptors:
  each field is, in turn and in random combinations, sane, absent, explicitly zero, an edge
  value (2^32-1, raw varints of 2^64-1 in uint32 fields, negative and out-of-range enums, NaN,
  +-inf, -0.0, denormals), huge (k=4294967295, dimension 2^31, up to 10^6 floats within
  --max-frame-bytes), repeated (many values, a non-repeated field twice, packed / unpacked /
  split floats), strings with NUL, invalid UTF-8, empty, 2000-byte keys, duplicated keys;
  unknown fields; unknown oneof bodies; two bodies; no body; request_id twice, non-minimal or
  at its extremes. A share (--mutate-share) is byte-flipped, truncated or garbage. Some frames
  go in bursts of several requests in flight. Every frame is classified by the reference
  protobuf parser: a frame it accepts must be answered with exactly its request_id.
- Adversarial connections (each bounded by time): a frame length over the documented 64 MiB
  limit; half a frame held open (the server must keep serving others); several connections
  that each announce a frame just under the limit and hold it after one byte
  (--partial-conns); a client that sends searches without ever reading its replies
  (--flood-seconds). RSS of the watched PIDs is sampled around each.
- Final checks (exit status 1 if any fails): every target answers Health on a fresh
  connection; every --pids process is the same process (PID and start time) with VmRSS below
  --max-rss-mb; no reply carried a request_id other than its request's; no crash or hang.
- A crash (connection refused after a working connection, or a watched PID gone) or a hang
  (a target that stops answering fresh connections) writes the last frames sent, as hex, to a
  replay file in --crash-dir; `--replay FILE` sends them again. Suspicious replies (INTERNAL
  errors, wrong reply types, invalid requests accepted, unexpected closes...) are listed at
  the end, each with example frames saved as replay files.

Replay file lines: `connect CID HOST:PORT`, `send CID HEX` (the whole frame, length prefix
included), `sleep SECONDS`, `close CID`, `flood CID SECONDS MAXFRAMES HEX` (HEX is an Envelope
without its request_id; each frame gets a fresh id), `# comments`.

Deterministic for a given --seed and server state (timing-dependent parts aside: the time
budget, timeouts and the flood).
"""

import argparse
import atexit
import collections
import errno
import importlib
import ipaddress
import json
import math
import os
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import warnings

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
DOC_FRAME_LIMIT = 64 * 1024 * 1024
MAX_KEY = 1024
MAX_META = 64 * 1024

ERROR_NAMES = {0: "UNSPECIFIED", 1: "MALFORMED", 2: "UNSUPPORTED", 3: "INVALID_ARGUMENT",
               4: "NOT_READY", 5: "OVERLOADED", 6: "DEADLINE_EXCEEDED", 7: "STORAGE",
               8: "UNAVAILABLE", 9: "INTERNAL"}
# request body -> reply body; derived from pharos.proto at start (derive_replies), this is the
# version-1 table of Protocols/README.md
REPLY_OF = {"hello": "hello", "search": "search_result", "upsert": "upsert_result",
            "delete": "delete_result", "fetch": "fetch_result", "stats": "stats_result",
            "health": "health_result", "trained_state": "trained_state_ack"}
# Protocols/README.md, "Limits"
LIMIT_QUERIES = 10000
LIMIT_K = 65536
LIMIT_NPROBE = 65536
LIMIT_REFINE = 256
LIMIT_K_TIMES_REFINE = 65536        # requests of at most LIMIT_DEEP_QUERIES queries
LIMIT_K_TIMES_REFINE_WIDE = 16384   # larger requests
LIMIT_DEEP_QUERIES = 32
LIMIT_ROWS = 100000
LIMIT_DIMENSION = 65536
LIMIT_DEADLINE_MS = 600000
LIMIT_TOP_N = 65536
LIMIT_ALPHA = 100.0
LIMIT_RERANK_SHORTLIST = 1000


def derive_replies(pb):
    """Request -> reply from the Envelope oneof: X answered by X_result or X_ack (Hello by Hello)."""
    names = {f.name for f in pb.Envelope.DESCRIPTOR.oneofs_by_name["body"].fields}
    out = {}
    for n in sorted(names):
        if n == "hello":
            out[n] = n
        elif n + "_result" in names:
            out[n] = n + "_result"
        elif n + "_ack" in names:
            out[n] = n + "_ack"
    REPLY_OF.clear()
    REPLY_OF.update(out)


def scalar_fields(lmsg, sdesc, path=""):
    """Every (name, field, values) of a non-message field at any depth of a parsed message."""
    for fd in sdesc.fields:
        name = path + fd.name
        if fd.type == fd.TYPE_MESSAGE:
            if fd.label == fd.LABEL_REPEATED:
                for sub in getattr(lmsg, fd.name):
                    yield from scalar_fields(sub, fd.message_type, "%s[]." % name)
            elif lmsg.HasField(fd.name):
                yield from scalar_fields(getattr(lmsg, fd.name), fd.message_type, name + ".")
        else:
            vals = getattr(lmsg, fd.name)
            yield name, fd, (list(vals) if fd.label == fd.LABEL_REPEATED else [vals])


def enum_problems(lmsg, sdesc):
    """Every enum field at any depth whose value is not one the proto names."""
    out = set()
    for name, fd, vals in scalar_fields(lmsg, sdesc):
        if fd.type == fd.TYPE_ENUM:
            known = {v.number for v in fd.enum_type.values}
            out.update("%s=%d out of range" % (name, v) for v in vals if v not in known)
    return sorted(out)


def string_problems(lmsg, sdesc):
    """Every string field at any depth (read leniently as bytes) with a NUL or invalid UTF-8."""
    out = set()
    for name, fd, vals in scalar_fields(lmsg, sdesc):
        if fd.type == fd.TYPE_STRING:
            for v in vals:
                if b"\x00" in v:
                    out.add("%s: NUL" % name)
                if not utf8_ok(v):
                    out.add("%s: not UTF-8" % name)
    return sorted(out)

# ----------------------------------------------------------------------------------------------
# protobuf wire encoding, by hand (for what the protobuf API refuses to write)

WT_VARINT, WT_I64, WT_LEN, WT_SGROUP, WT_EGROUP, WT_I32 = 0, 1, 2, 3, 4, 5


def enc_varint(v):
    v &= U64
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def enc_varint_padded(v, length):
    """A non-minimal (but valid, <= 10 bytes) encoding of v in `length` bytes."""
    v &= U64
    minimal = enc_varint(v)
    if length <= len(minimal) or length > 10:
        return minimal
    out = bytearray()
    for _ in range(length - 1):
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    if v > 0x7F:
        return minimal
    out.append(v)
    return bytes(out)


def enc_key(num, wt):
    return enc_varint((num << 3) | wt)


def f_varint(num, v, length=None):
    return enc_key(num, WT_VARINT) + (enc_varint_padded(v, length) if length else enc_varint(v))


def f_len(num, data):
    return enc_key(num, WT_LEN) + enc_varint(len(data)) + data


def f_i32(num, raw4):
    return enc_key(num, WT_I32) + raw4


def f_i64(num, raw8):
    return enc_key(num, WT_I64) + raw8


def f32(x):
    return struct.pack("<f", x)


def f32bits(bits):
    return struct.pack("<I", bits & U32)


FLOAT_EDGES = [
    ("nan", f32bits(0x7FC00000)), ("-nan", f32bits(0xFFC00000)), ("snan", f32bits(0x7F800001)),
    ("inf", f32bits(0x7F800000)), ("-inf", f32bits(0xFF800000)), ("-0.0", f32bits(0x80000000)),
    ("denorm", f32bits(0x00000001)), ("max", f32bits(0x7F7FFFFF)), ("-max", f32bits(0xFF7FFFFF)),
    ("minnormal", f32bits(0x00800000)), ("1e30", f32(1e30)),
]

STRING_EDGES = [
    ("empty", b""), ("nul", b"\x00"), ("nul-inside", b"img/a\x00b.jpg"), ("nul-end", b"img/x\x00"),
    ("ff", b"\xff"), ("overlong-nul", b"img/\xc0\x80"), ("surrogate", b"\xed\xa0\x80"),
    ("above-10ffff", b"\xf4\x90\x80\x80"), ("cut-multibyte", b"img/\xe2\x82"),
    ("latin1", b"caf\xe9"), ("1024", b"k" * 1024), ("1025", b"k" * 1025), ("2000", b"K" * 2000),
    ("1024-multibyte", "\u00e9".encode() * 512), ("1025-multibyte-cut", "\u00e9".encode() * 512 + b"x"),
    ("rtl", "\u202eimg".encode()), ("path", b"../../../etc/passwd"), ("fmt", b"%s%n%x%p"),
    ("space", b" "), ("newline", b"a\nb"), ("bom", b"\xef\xbb\xbfkey"),
]


def utf8_ok(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def read_varint(buf, i):
    shift = 0
    v = 0
    for n in range(10):
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v & U64, i
    raise ValueError("varint over 10 bytes")


def scan_request_ids(buf):
    """Values of top-level field 1 (request_id) readable before the first wire error."""
    ids = []
    i = 0
    try:
        while i < len(buf):
            tag, i = read_varint(buf, i)
            num, wt = tag >> 3, tag & 7
            if wt == WT_VARINT:
                v, i = read_varint(buf, i)
                if num == 1:
                    ids.append(v)
            elif wt == WT_I64:
                i += 8
            elif wt == WT_LEN:
                n, i = read_varint(buf, i)
                i += n
            elif wt == WT_I32:
                i += 4
            else:
                break
            if i > len(buf):
                break
    except ValueError:
        pass
    return ids


# ----------------------------------------------------------------------------------------------
# the generated protobuf modules


def load_protos(proto_path):
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if shutil.which("protoc") is None:
        sys.exit("wire-fuzz: protoc not found (apt-get install -y protobuf-compiler python3-protobuf)")
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        sys.exit("wire-fuzz: no google.protobuf for %s (apt-get install -y python3-protobuf; "
                 "run with /usr/bin/python3)" % sys.executable)
    tmp = tempfile.mkdtemp(prefix="pharos-wire-fuzz-pb-")
    atexit.register(shutil.rmtree, tmp, True)
    text = open(proto_path, encoding="utf-8").read()
    shutil.copy(proto_path, os.path.join(tmp, "pharos.proto"))
    lenient = re.sub(r"^(\s*)(repeated\s+)?string(\s+)", r"\1\2bytes\3", text, flags=re.M)
    lenient = re.sub(r"^package\s+pharos\s*;", "package pharos_lenient;", lenient, flags=re.M)
    with open(os.path.join(tmp, "pharos_lenient.proto"), "w", encoding="utf-8") as f:
        f.write(lenient)
    for name in ("pharos.proto", "pharos_lenient.proto"):
        r = subprocess.run(["protoc", "-I" + tmp, "--python_out=" + tmp, name],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit("wire-fuzz: protoc failed on %s:\n%s" % (name, r.stderr))
    sys.path.insert(0, tmp)
    pb = importlib.import_module("pharos_pb2")
    pbl = importlib.import_module("pharos_lenient_pb2")
    derive_replies(pb)
    return pb, pbl


class QuietStderr:
    """libprotobuf (C++) logs every invalid UTF-8 string it meets to fd 2: silence it."""
    devnull = None

    def __enter__(self):
        if QuietStderr.devnull is None:
            QuietStderr.devnull = os.open(os.devnull, os.O_WRONLY)
        sys.stderr.flush()
        self.saved = os.dup(2)
        os.dup2(QuietStderr.devnull, 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        return False


def parse_quietly(cls, data):
    with QuietStderr():
        return cls.FromString(data)


# ----------------------------------------------------------------------------------------------
# addresses and processes


def parse_addr(text):
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError("expected HOST:PORT, got %r" % text)
    port = int(port)
    if not 0 < port < 65536:
        raise ValueError("bad port in %r" % text)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ValueError("cannot resolve %r: %s" % (host, e))
    if not infos:
        raise ValueError("cannot resolve %r" % host)
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        loop = (ip.version == 4 and ip in ipaddress.ip_network("127.0.0.0/8")) or \
               (ip.version == 6 and ip == ipaddress.ip_address("::1"))
        if not loop:
            raise ValueError("refusing %r: %s is not a loopback address (127.0.0.0/8 or ::1)"
                             % (text, ip))
    fam, _, _, _, sa = infos[0]
    return fam, sa


def proc_starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
        return int(s[s.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def proc_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def listening_ports_of(pid):
    """Best effort: the TCP ports `pid` listens on (from /proc/net/tcp* and its fds)."""
    inodes = {}
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if len(p) > 9 and p[3] == "0A":
                        inodes[p[9]] = int(p[1].rsplit(":", 1)[1], 16)
        except (OSError, StopIteration):
            pass
    ports = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if link.startswith("socket:["):
                ino = link[8:-1]
                if ino in inodes:
                    ports.add(inodes[ino])
    except OSError:
        pass
    return sorted(ports)


# ----------------------------------------------------------------------------------------------
# connections


class Closed(Exception):
    pass


class Refused(Exception):
    pass


def frame_bytes(payload):
    return struct.pack(">I", len(payload)) + payload


class Conn:
    ids = 0

    def __init__(self, target, timeout):
        Conn.ids += 1
        self.cid = Conn.ids
        self.target = target
        self.buf = bytearray()
        self.pending = []          # Pending entries awaiting a reply
        self.late = {}             # request_id -> Pending that timed out
        self.received_any = False
        self.hello_bytes = b""
        self.closed = False
        self.prev = None
        self.no_hello = False
        s = socket.socket(target.family, socket.SOCK_STREAM)
        s.settimeout(min(timeout, 3.0))
        try:
            s.connect(target.sockaddr)
        except ConnectionRefusedError as e:
            s.close()
            raise Refused(str(e))
        except OSError as e:
            s.close()
            if e.errno in (errno.ECONNREFUSED,):
                raise Refused(str(e))
            raise Closed("connect: %s" % e)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s

    def send(self, data, timeout):
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise Closed("send timed out (server not reading)")
        except OSError as e:
            raise Closed("send: %s" % e)

    def recv_frame(self, timeout, max_len=1 << 30):
        """One frame's payload, or None when `timeout` passes; Closed at EOF."""
        end = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if n > max_len:
                    raise Closed("server sent a frame of %d bytes" % n)
                if len(self.buf) >= 4 + n:
                    p = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    self.received_any = True
                    return p
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                r, _, _ = select.select([self.sock], [], [], left)
            except (OSError, ValueError) as e:
                raise Closed("select: %s" % e)
            if not r:
                return None
            try:
                chunk = self.sock.recv(1 << 20)
            except (ConnectionResetError, OSError) as e:
                raise Closed("recv: %s" % e)
            if not chunk:
                raise Closed("EOF")
            self.buf += chunk

    def peek_eof(self):
        """True when the server has closed the connection (checked without waiting)."""
        try:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return False
            chunk = self.sock.recv(1 << 20)
        except (OSError, ValueError):
            return True
        if not chunk:
            return True
        self.buf += chunk
        return False

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


class Target:
    def __init__(self, name, role, family, sockaddr):
        self.name = name
        self.role = role            # "coordinator" or "shard"
        self.family = family
        self.sockaddr = sockaddr
        self.conn = None
        self.ever_connected = False
        self.dead = False
        self.dim = None
        self.metric = None
        self.factory = None
        self.keys = []              # harvested indexed keys
        self.fuzz_keys = []         # keys this fuzzer upserted successfully
        self.ready = None


# ----------------------------------------------------------------------------------------------
# recording (for crash files and replay)


class Recorder:
    def __init__(self, keep):
        self.events = collections.deque(maxlen=max(8, keep * 3))
        self.keep = keep
        self.conn_info = {}   # cid -> (addr, hello frame bytes)

    def connect(self, conn):
        self.conn_info[conn.cid] = (conn.target.name, b"")
        self.events.append(("connect", conn.cid, conn.target.name))

    def hello(self, conn, data):
        self.conn_info[conn.cid] = (conn.target.name, data)

    def send(self, conn, data, note):
        self.events.append(("send", conn.cid, data, note))

    def sleep(self, secs):
        self.events.append(("sleep", secs))

    def close(self, conn):
        self.events.append(("close", conn.cid))

    def flood(self, conn, secs, maxframes, body, note):
        self.events.append(("flood", conn.cid, secs, maxframes, body, note))

    def lines(self, extra=None):
        evs = list(self.events)
        # the last `keep` sends, and everything after the first of them
        idx = [i for i, e in enumerate(evs) if e[0] in ("send", "flood")]
        start = idx[-self.keep] if len(idx) >= self.keep else 0
        # pull back to include connect lines of the same connections when present
        evs = evs[start:]
        if extra:
            evs = evs + extra
        out = []
        opened = set()
        for e in evs:
            if e[0] == "connect":
                opened.add(e[1])
        pre = []
        seen = set()
        for e in evs:
            if e[0] in ("send", "flood", "close") and e[1] not in opened and e[1] not in seen:
                seen.add(e[1])
                addr, hello = self.conn_info.get(e[1], ("?", b""))
                pre.append("connect %d %s" % (e[1], addr))
                if hello and not (e[0] == "send" and e[2] == hello):
                    pre.append("send %d %s   # hello of this connection" % (e[1], hello.hex()))
        for e in evs:
            if e[0] == "connect":
                out.append("connect %d %s" % (e[1], e[2]))
            elif e[0] == "send":
                out.append("send %d %s   # %s" % (e[1], e[2].hex(), e[3]))
            elif e[0] == "sleep":
                out.append("sleep %.3f" % e[1])
            elif e[0] == "close":
                out.append("close %d" % e[1])
            elif e[0] == "flood":
                out.append("flood %d %.3f %d %s   # %s" % (e[1], e[2], e[3], e[4].hex(), e[5]))
        return pre + out


def write_replay(path, reason, lines, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("# pharos wire-fuzz replay file\n# reason: %s\n# seed: %s, written %s\n"
                % (reason.replace("\n", " "), seed, time.strftime("%Y-%m-%d %H:%M:%S")))
        for line in lines:
            f.write(line + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# generation


class Frame:
    def __init__(self, payload, label, body, mode, notes, nonstrict_wire=False, mutated=False):
        self.payload = payload
        self.wire = frame_bytes(payload)
        self.label = label        # summary bucket
        self.body = body          # intended body name
        self.mode = mode
        self.notes = notes
        self.nonstrict_wire = nonstrict_wire
        self.mutated = mutated
        self.reply_body = None
        self.reply_code = None
        self.same_twice = False
        self.huge = False
        self.strict = False
        self.sp = None            # reference (strict) parse
        self.lp = None            # lenient parse (strings as bytes)
        self.accept = set()
        self.primary = None
        self.expect_close = False

    def describe(self):
        return "%s [%s] %s" % (self.label, self.mode, ",".join(self.notes)[:300])


class Gen:
    def __init__(self, rng, pb, pbl, budget, mutate_share, huge_share):
        self.rng = rng
        self.pb = pb
        self.pbl = pbl
        self.budget = budget
        self.mutate_share = mutate_share
        self.huge_share = huge_share
        env = pb.Envelope.DESCRIPTOR
        self.env_desc = env
        self.bodies = list(env.oneofs_by_name["body"].fields)
        self.body_by_name = {f.name: f for f in self.bodies}
        self.max_env_field = max(f.number for f in env.fields)
        self.env_field_numbers = {f.number for f in env.fields}
        self.counter = rng.randrange(1, 1 << 20)
        self.exclude = None

    # -- ids --
    def next_id(self, conn, allow_special=True):
        busy = set()
        for p in conn.pending:
            busy |= p.frame.accept
        busy |= set(conn.late)
        r = self.rng.random()
        if allow_special and r < 0.06:
            cand = self.rng.choice([0, U64, 1 << 63, U32, 1 << 32, (1 << 63) - 1, 1])
            if cand not in busy:
                return cand
        self.counter += 1
        while self.counter in busy:
            self.counter += 1
        return self.counter

    # -- floats --
    def rand_floats(self, n):
        g = self.rng.gauss
        return struct.pack("<%df" % n, *[g(0.0, 1.0) for _ in range(n)])

    def big_float_block(self, n):
        pat = self.rand_floats(1024)
        reps = (n * 4) // len(pat) + 1
        return (pat * reps)[:n * 4]

    def packed_floats(self, num, raw, mode=None):
        """Encode raw little-endian float32 bytes as repeated field `num`."""
        rng = self.rng
        mode = mode or rng.choice(["packed", "packed", "packed", "unpacked", "split", "mixed"])
        if not raw:
            return [], mode
        if mode == "packed" or len(raw) > 400000:
            return [f_len(num, raw)], "packed"
        if mode == "unpacked":
            return [f_i32(num, raw[i:i + 4]) for i in range(0, len(raw), 4)], mode
        if mode == "split":
            cut = 4 * rng.randrange(0, len(raw) // 4 + 1)
            return [f_len(num, raw[:cut]), f_len(num, raw[cut:])], mode
        cut = 4 * rng.randrange(0, len(raw) // 4 + 1)
        return [f_len(num, raw[:cut])] + [f_i32(num, raw[i:i + 4]) for i in range(cut, len(raw), 4)], mode

    # -- keys --
    def sane_key(self, t):
        rng = self.rng
        return ("fuzz/%08x.jpg" % rng.getrandbits(32)).encode()

    def existing_key(self, t):
        rng = self.rng
        pool = t.keys + t.fuzz_keys
        if pool and rng.random() < 0.85:
            k = rng.choice(pool)
            return k if isinstance(k, bytes) else k.encode()
        return self.sane_key(t)

    def edge_string(self, notes, name):
        label, s = self.rng.choice(STRING_EDGES)
        notes.append("%s=%s" % (name, label))
        return s

    def budget_count(self, each, want):
        return max(1, min(want, (self.budget - 4096) // max(1, each)))

    # -- sane plans of the request messages: field name -> list of chunks --
    def sane(self, md, t, ctx):
        name = md.name
        rng = self.rng
        D = t.dim or 16
        num = {f.name: f.number for f in md.fields}
        c = {}
        if name == "Hello":
            c["protocol_version"] = [f_varint(num["protocol_version"], 1)]
            c["role"] = [f_varint(num["role"], 1)]
            c["node_name"] = [f_len(num["node_name"], b"wire-fuzz")]
        elif name == "Search":
            nq = rng.choice([1, 1, 1, 2, 3, 4])
            if ctx.get("small"):
                nq = 1
            ctx["nq"] = nq
            use_keys = rng.random() < 0.3
            use_vecs = not use_keys or rng.random() < 0.5
            if use_vecs:
                c["vectors"] = self.packed_floats(num["vectors"], self.rand_floats(nq * D))[0]
                c["dimension"] = [f_varint(num["dimension"], D)]
            if use_keys:
                c["query_keys"] = [f_len(num["query_keys"], self.existing_key(t))
                                   for _ in range(rng.randint(1, 2))]
            c["k"] = [f_varint(num["k"], rng.choice([1, 5, 10, 10, 20, 50, 100]))]
            if rng.random() < 0.7:
                c["nprobe"] = [f_varint(num["nprobe"], rng.choice([1, 4, 8, 16, 32]))]
            if rng.random() < 0.3:
                c["refine_factor"] = [f_varint(num["refine_factor"], rng.choice([1, 2, 4]))]
            if rng.random() < 0.3:
                ed = md.fields_by_name["expansion"].message_type
                en = {f.name: f.number for f in ed.fields}
                sub = f_varint(en["kind"], rng.choice([1, 2])) + \
                    f_varint(en["top_n"], rng.randint(1, 10)) + f_i32(en["alpha"], f32(rng.choice([1.0, 3.0, 5.0])))
                c["expansion"] = [f_len(num["expansion"], sub)]
            if rng.random() < 0.2:
                # Protocol version 4: diffusion over the shortlist (coordinator only), mostly
                # within its ranges, sometimes at or past their edges.
                rd = md.fields_by_name["rerank"].message_type
                rn = {f.name: f.number for f in rd.fields}
                sub = f_varint(rn["kind"], rng.choice([1, 1, 1, 2]))
                if rng.random() < 0.7:
                    sub += f_varint(rn["shortlist"], rng.choice([0, 1, 20, 100, 200, 1000, 1001]))
                if rng.random() < 0.5:
                    sub += f_varint(rn["neighbours"], rng.choice([0, 1, 5, 50, 2000]))
                if rng.random() < 0.4:
                    sub += f_i32(rn["alpha"], f32(rng.choice([0.0, 0.5, 0.99, 1.0, -0.5, float("nan")])))
                if rng.random() < 0.4:
                    sub += f_i32(rn["gamma"], f32(rng.choice([0.0, 1.0, 3.0, 100.0, 101.0, float("inf")])))
                c["rerank"] = [f_len(num["rerank"], sub)]
            if rng.random() < 0.2:
                c["deadline_ms"] = [f_varint(num["deadline_ms"], rng.choice([500, 1000, 5000]))]
            if rng.random() < 0.3:
                c["with_vectors"] = [f_varint(num["with_vectors"], 1)]
        elif name == "Upsert":
            n = rng.choice([1, 1, 2, 3, 4, 8])
            keys = [self.sane_key(t) for _ in range(n)]
            ctx["upsert_keys"] = keys
            c["keys"] = [f_len(num["keys"], k) for k in keys]
            c["vectors"] = self.packed_floats(num["vectors"], self.rand_floats(n * D))[0]
            c["dimension"] = [f_varint(num["dimension"], D)]
            if rng.random() < 0.4:
                c["metadata"] = [f_len(num["metadata"], bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 32))))
                                 for _ in range(n)]
            if rng.random() < 0.15:
                # Protocol version 3: codes instead of vectors (refused by a coordinator; a
                # shard takes only its own trained version and codes that state can make).
                rows = []
                for _ in range(rng.choice([n, n, n + 1, max(0, n - 1)])):
                    row = f_varint(1, rng.choice([0, 1, 63, 64, 2**31, 2**32 - 1])) \
                        + f_len(2, bytes(rng.randint(0, 20) for _ in range(rng.choice([0, 8, 8, 9, 16])))) \
                        + f_len(3, bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 16, 17]))))
                    rows.append(f_len(num["encoded"], row))
                c["encoded"] = rows
                c["trained_version"] = [f_varint(num["trained_version"], rng.choice([0, 1, rng.getrandbits(63)]))]
                if rng.random() < 0.7:
                    c.pop("vectors", None)
                    c.pop("dimension", None)
        elif name in ("Delete", "Fetch"):
            n = rng.randint(1, 4)
            keys = []
            for _ in range(n):
                if name == "Delete" and t.fuzz_keys and rng.random() < 0.7:
                    keys.append(rng.choice(t.fuzz_keys))
                elif name == "Delete" and rng.random() < 0.9:
                    keys.append(self.sane_key(t))
                else:
                    keys.append(self.existing_key(t))
            c["keys"] = [f_len(num["keys"], k if isinstance(k, bytes) else k.encode()) for k in keys]
        elif name == "Drop":
            # a guard test: near misses of the factory string only, never the string itself
            f = (t.factory or "IVF256,PQ32x4fs,RefineSQ8").encode()
            cands = [f + b"\x00", f + b"\x00x", f + b" ", b" " + f, f.lower(), f[:-1], f + f,
                     f.replace(b",", b", "), f + b"\n", f.replace(b"I", "\u0406".encode(), 1), b"", b"*",
                     f.upper() if f.upper() != f else f + b"X"]
            c["confirm"] = [f_len(num["confirm"], rng.choice([x for x in cands if x != f]))]
        elif name == "TrainedState":
            # never a real index: plausible-looking garbage only
            magic = rng.choice([b"PHAROSIX", b"PHAROSIX", b"PHAROSI", b"", b"\x00" * 8])
            c["index_file"] = [f_len(num["index_file"], magic + bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 4, 16, 64, 300]))))]
            if rng.random() < 0.4:
                c["whitening"] = [f_len(num["whitening"], rng.choice([b"PHXWHITN", b""]) + bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 8, 64]))))]
        else:
            # reply types, nested types, empty requests: plausible random values per field
            for fd in md.fields:
                if rng.random() < 0.6:
                    c[fd.name] = self.plain_field(fd, t, ctx)
        return c

    def plain_field(self, fd, t, ctx, depth=0):
        """A plausible value for any field (used for reply types sent as requests)."""
        rng = self.rng
        T = fd.type
        rep = fd.label == fd.LABEL_REPEATED
        n = rng.randint(1, 3) if rep else 1
        out = []
        for _ in range(n):
            if T in (fd.TYPE_UINT32, fd.TYPE_UINT64, fd.TYPE_INT32, fd.TYPE_INT64):
                out.append(f_varint(fd.number, rng.randint(0, 1000)))
            elif T == fd.TYPE_BOOL:
                out.append(f_varint(fd.number, rng.randint(0, 1)))
            elif T == fd.TYPE_ENUM:
                out.append(f_varint(fd.number, rng.choice([v.number for v in fd.enum_type.values])))
            elif T == fd.TYPE_FLOAT:
                if rep:
                    return self.packed_floats(fd.number, self.rand_floats(rng.randint(1, 32)))[0]
                out.append(f_i32(fd.number, f32(rng.gauss(0, 1))))
            elif T == fd.TYPE_DOUBLE:
                out.append(f_i64(fd.number, struct.pack("<d", rng.gauss(0, 1))))
            elif T == fd.TYPE_STRING:
                out.append(f_len(fd.number, self.existing_key(t) if rng.random() < 0.5 else b"fuzz-text"))
            elif T == fd.TYPE_BYTES:
                out.append(f_len(fd.number, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 16)))))
            elif T == fd.TYPE_MESSAGE:
                if depth < 3:
                    sub = b"".join(b"".join(self.plain_field(f, t, ctx, depth + 1))
                                   for f in fd.message_type.fields if rng.random() < 0.7)
                    out.append(f_len(fd.number, sub))
            elif T in (fd.TYPE_FIXED32, fd.TYPE_SFIXED32):
                out.append(f_i32(fd.number, struct.pack("<I", rng.getrandbits(32))))
            elif T in (fd.TYPE_FIXED64, fd.TYPE_SFIXED64):
                out.append(f_i64(fd.number, struct.pack("<Q", rng.getrandbits(64))))
            elif T in (fd.TYPE_SINT32, fd.TYPE_SINT64):
                out.append(f_varint(fd.number, rng.randint(0, 1000)))
        return out

    # -- fuzzed values --
    UINT_SPECIAL = {
        "k": [0, 1, 4096, 4097, 65535, 65536, 65537, 1 << 31, U32],
        "dimension": [0, 1, "D-1", "D+1", "2D", 1 << 31, U32],
        "nprobe": [0, 1, 1 << 16, 1 << 31, U32],
        "refine_factor": [0, 1, 100, 1 << 16, U32],
        "top_n": [0, 1, 4096, 65536, 65537, U32],
        "deadline_ms": [1, 2, 1 << 31, U32],
        "protocol_version": [0, 2, 255, U32],
    }

    def fuzz_field(self, fd, t, ctx, notes, depth):
        """Chunks for field `fd` with one fuzzing strategy; may set ctx['nonstrict_wire']."""
        rng = self.rng
        T = fd.type
        rep = fd.label == fd.LABEL_REPEATED
        name = fd.name
        num = fd.number
        D = t.dim or 16
        r = rng.random()
        if r < 0.08:
            notes.append("%s:absent" % name)
            return []
        if r < 0.13 and T != fd.TYPE_MESSAGE:
            notes.append("%s:explicit-zero" % name)
            if T == fd.TYPE_FLOAT:
                return [f_i32(num, f32(0.0))]
            if T == fd.TYPE_DOUBLE:
                return [f_i64(num, struct.pack("<d", 0.0))]
            if T in (fd.TYPE_STRING, fd.TYPE_BYTES):
                return [f_len(num, b"")]
            if T in (fd.TYPE_FIXED32, fd.TYPE_SFIXED32):
                return [f_i32(num, b"\0" * 4)]
            if T in (fd.TYPE_FIXED64, fd.TYPE_SFIXED64):
                return [f_i64(num, b"\0" * 8)]
            return [f_varint(num, 0)]
        if r < 0.16 and T != fd.TYPE_MESSAGE:
            # wrong wire type for a known field (peers may differ: not strict)
            ctx["nonstrict_wire"] = True
            notes.append("%s:wrong-wire-type" % name)
            return [rng.choice([f_varint(num, 7), f_len(num, b"\x01\x02\x03"), f_i32(num, b"\0\0\0\0"),
                                f_i64(num, b"\0" * 8)])]

        if T in (fd.TYPE_UINT32, fd.TYPE_UINT64, fd.TYPE_INT32, fd.TYPE_INT64, fd.TYPE_BOOL,
                 fd.TYPE_ENUM, fd.TYPE_SINT32, fd.TYPE_SINT64):
            vals = []
            count = rng.choice([1, 1, 1, 2, 3]) if not rep else rng.choice([1, 2, 5, 100])
            for _ in range(count):
                if T == fd.TYPE_BOOL:
                    v = rng.choice([1, 2, 255, U64, 1 << 32])
                elif T == fd.TYPE_ENUM:
                    mx = max(x.number for x in fd.enum_type.values)
                    v = rng.choice([0, mx, mx + 1, 99, (1 << 31) - 1, -1, -(1 << 31), 1 << 32])
                elif T == fd.TYPE_UINT64 or T == fd.TYPE_INT64:
                    v = rng.choice([0, 1, 1 << 32, 1 << 63, U64, (1 << 63) - 1])
                else:
                    pool = self.UINT_SPECIAL.get(name, [1, 127, 128, (1 << 31) - 1, 1 << 31, U32])
                    v = rng.choice(pool + ["raw64", "raw33"])
                    if v == "D-1":
                        v = max(0, D - 1)
                    elif v == "D+1":
                        v = D + 1
                    elif v == "2D":
                        v = 2 * D
                    elif v == "raw64":
                        v = U64          # "-1" as a uint32 on the wire: 10-byte varint
                    elif v == "raw33":
                        v = (1 << 32) + rng.choice([0, 1, 16])
                pad = rng.choice([None, None, None, None, 10, 6])
                vals.append(f_varint(num, v, pad))
                notes.append("%s=%s%s" % (name, v if v < (1 << 62) or v > U64 else hex(v & U64),
                                          "(pad%d)" % pad if pad else ""))
            if count > 1 and not rep:
                notes.append("%s:x%d" % (name, count))
            return vals

        if T == fd.TYPE_FLOAT and not rep:
            count = rng.choice([1, 1, 1, 2])
            out = []
            for _ in range(count):
                label, raw = rng.choice(FLOAT_EDGES + [("sane", f32(rng.uniform(0.5, 8)))])
                out.append(f_i32(num, raw))
                notes.append("%s=%s" % (name, label))
            return out

        if T == fd.TYPE_FLOAT and rep:
            mode = rng.choice(["edges", "edges", "not-multiple", "empty-packed", "huge", "many-small",
                               "bad-packed-len", "encodings"])
            if mode == "huge" and rng.random() > self.huge_share * 4:
                mode = "edges"
            nq = ctx.get("nq", 1)
            if mode == "edges":
                raw = bytearray(self.rand_floats(nq * D))
                for _ in range(rng.randint(1, 3)):
                    label, e = rng.choice(FLOAT_EDGES)
                    i = rng.randrange(0, nq * D)
                    raw[4 * i:4 * i + 4] = e
                    notes.append("%s[%d]=%s" % (name, i, label))
                chunks, enc = self.packed_floats(num, bytes(raw))
                notes.append("%s:%s" % (name, enc))
                return chunks
            if mode == "not-multiple":
                n = max(0, nq * D + rng.choice([-1, 1, D // 2 or 1]))
                notes.append("%s:count=%d" % (name, n))
                return self.packed_floats(num, self.rand_floats(n))[0]
            if mode == "empty-packed":
                notes.append("%s:empty-packed" % name)
                return [f_len(num, b"")]
            if mode == "huge":
                n = self.budget_count(4, 1000000)
                ctx["huge"] = True
                notes.append("%s:huge=%d" % (name, n))
                return [f_len(num, self.big_float_block(n))]
            if mode == "many-small":
                n = self.budget_count(4, rng.choice([D * 1000, D * 4096, 100001]))
                if n * 4 > self.budget // 4:
                    n = self.budget // 16
                ctx["huge"] = True
                notes.append("%s:many=%d" % (name, n))
                return [f_len(num, self.big_float_block(n))]
            if mode == "bad-packed-len":
                ctx["nonstrict_wire"] = True
                notes.append("%s:packed-len%%4!=0" % name)
                return [f_len(num, self.rand_floats(nq * D) + b"\x01\x02")]
            enc = rng.choice(["unpacked", "split", "mixed"])
            notes.append("%s:%s" % (name, enc))
            return self.packed_floats(num, self.rand_floats(nq * D), enc)[0]

        if T == fd.TYPE_DOUBLE:
            return [f_i64(num, struct.pack("<d", rng.choice([float("nan"), float("inf"), -0.0, 1e308])))]

        if T in (fd.TYPE_STRING, fd.TYPE_BYTES):
            is_key = name in ("keys", "query_keys", "key")
            if rep:
                mode = rng.choice(["edge-one", "edge-mix", "dups", "many", "long", "empty-strings",
                                   "none", "huge-one"])
                if T == fd.TYPE_BYTES and name == "metadata":
                    mode = rng.choice(["count-more", "count-less", "64k", "64k+1", "many-empty",
                                       "huge-one", "edge-one"])
                if mode == "edge-one":
                    return [f_len(num, self.edge_string(notes, name))]
                if mode == "edge-mix":
                    out = [f_len(num, self.existing_key(t)) for _ in range(rng.randint(1, 3))]
                    for _ in range(rng.randint(1, 3)):
                        out.insert(rng.randrange(len(out) + 1), f_len(num, self.edge_string(notes, name)))
                    return out
                if mode == "dups":
                    k = self.existing_key(t) if rng.random() < 0.5 else self.sane_key(t)
                    n = rng.choice([2, 3, 10, 1000])
                    notes.append("%s:dup-x%d" % (name, n))
                    ctx["dup_keys"] = n
                    if n >= 1000:
                        ctx["huge"] = True
                    return [f_len(num, k)] * n
                if mode == "many":
                    want = rng.choice([1024, 1025, 4096, 4097, 10000, 100000, 100001])
                    n = self.budget_count(16, want)
                    notes.append("%s:many=%d" % (name, n))
                    ctx["many_keys"] = n
                    ctx["huge"] = True
                    base = rng.getrandbits(24)
                    return [f_len(num, b"f/%06x/%07d" % (base, i)) for i in range(n)]
                if mode == "long":
                    ln = rng.choice([1024, 1025, 2000, 65536])
                    notes.append("%s:len=%d" % (name, ln))
                    return [f_len(num, b"L" * ln) for _ in range(rng.randint(1, 3))]
                if mode == "empty-strings":
                    notes.append("%s:empty-strings" % name)
                    return [f_len(num, b"")] * rng.randint(1, 3)
                if mode == "none":
                    notes.append("%s:none" % name)
                    return []
                if mode == "huge-one":
                    ln = min(self.budget - 4096, rng.choice([1 << 20, 4 << 20]))
                    notes.append("%s:one-of-%d-bytes" % (name, ln))
                    ctx["huge"] = True
                    return [f_len(num, b"H" * ln)]
                if mode in ("count-more", "count-less"):
                    n = len(ctx.get("upsert_keys", [b"x"])) + (1 if mode == "count-more" else -1)
                    notes.append("%s:count=%d" % (name, n))
                    return [f_len(num, b"m")] * max(0, n)
                if mode in ("64k", "64k+1"):
                    n = len(ctx.get("upsert_keys", [b"x"]))
                    ln = MAX_META + (1 if mode == "64k+1" else 0)
                    notes.append("%s:%s" % (name, mode))
                    return [f_len(num, b"\x00" * ln)] + [f_len(num, b"")] * max(0, n - 1)
                if mode == "many-empty":
                    notes.append("%s:many-empty" % name)
                    return [f_len(num, b"")] * 5000
            # singular string/bytes
            mode = rng.choice(["edge", "edge", "twice", "big", "magic"])
            if mode == "edge":
                return [f_len(num, self.edge_string(notes, name))]
            if mode == "twice":
                notes.append("%s:twice" % name)
                return [f_len(num, self.edge_string(notes, name)), f_len(num, self.edge_string(notes, name))]
            if mode == "big":
                ln = min(self.budget - 4096, rng.choice([MAX_META, MAX_META + 1, 1 << 20]))
                notes.append("%s:len=%d" % (name, ln))
                return [f_len(num, bytes([rng.getrandbits(8)]) * ln)]
            m = rng.choice([b"PHAROSIX", b"PHXWHITN", b"PHAROSIX\xff\xff\xff\xff\xff\xff\xff\xff",
                            b"PHAROSIX" + struct.pack("<I", U32) * 4, b"PHXWHITN" + struct.pack("<Q", U64) * 4])
            notes.append("%s:magic+garbage" % name)
            return [f_len(num, m + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))))]

        if T == fd.TYPE_MESSAGE:
            md = fd.message_type
            mode = rng.choice(["empty", "fuzzed", "fuzzed", "twice", "unknown-only", "many"
                               if rep else "fuzzed"])
            if depth >= 3:
                mode = "empty"
            if mode == "empty":
                notes.append("%s:empty" % name)
                return [f_len(num, b"")]
            if mode == "unknown-only":
                notes.append("%s:unknown-only" % name)
                return [f_len(num, self.unknown_fields(md, ctx, notes))]
            if mode == "twice":
                notes.append("%s:twice" % name)
                return [f_len(num, self.message(md, t, ctx, notes, depth + 1)),
                        f_len(num, self.message(md, t, ctx, notes, depth + 1))]
            if mode == "many":
                n = rng.choice([100, 1000, 10000])
                notes.append("%s:many=%d" % (name, n))
                one = f_len(num, self.message(md, t, ctx, notes, depth + 1)[:200])
                n = min(n, max(1, (self.budget // 2) // max(1, len(one))))
                return [one] * n
            return [f_len(num, self.message(md, t, ctx, notes, depth + 1))]

        # fixed-width integers, should a later proto use them
        if T in (fd.TYPE_FIXED32, fd.TYPE_SFIXED32):
            return [f_i32(num, struct.pack("<I", rng.choice([0, U32, 1 << 31])))]
        if T in (fd.TYPE_FIXED64, fd.TYPE_SFIXED64):
            return [f_i64(num, struct.pack("<Q", rng.choice([0, U64, 1 << 63])))]
        return []

    def unknown_fields(self, md, ctx, notes):
        rng = self.rng
        mx = max([f.number for f in md.fields] + [0])
        out = []
        for _ in range(rng.randint(1, 3)):
            num = rng.choice([mx + 1, mx + 2, mx + 7, 15, 16, 100, 1000, 2047, 2048, 1 << 16, (1 << 29) - 1])
            if num <= mx:
                num = mx + 1
            wt = rng.choice(["varint", "i64", "len", "i32", "len-msg", "group"])
            if wt == "varint":
                out.append(f_varint(num, rng.choice([0, 1, U64, 1 << 35])))
            elif wt == "i64":
                out.append(f_i64(num, struct.pack("<Q", rng.getrandbits(64))))
            elif wt == "i32":
                out.append(f_i32(num, struct.pack("<I", rng.getrandbits(32))))
            elif wt == "len":
                out.append(f_len(num, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))))
            elif wt == "len-msg":
                out.append(f_len(num, f_varint(1, 5) + f_len(2, b"nested")))
            else:
                ctx["nonstrict_wire"] = True     # groups: valid protobuf, not every parser skips them
                out.append(enc_key(num, WT_SGROUP) + f_varint(1, 1) + enc_key(num, WT_EGROUP))
            notes.append("unknown:%d/%s" % (num, wt))
        return b"".join(out)

    def message(self, md, t, ctx, notes, depth=0):
        rng = self.rng
        plan = self.sane(md, t, ctx)
        fields = list(md.fields)
        p = rng.choice([0.0, 0.12, 0.25, 0.5, 1.0]) if fields else 0
        fuzz = {f.name for f in fields if rng.random() < p}
        if fields and not fuzz and rng.random() < 0.6:
            fuzz = {rng.choice(fields).name}
        per = {}
        for fd in fields:
            was_huge = ctx.get("huge", False)
            if fd.name in fuzz:
                per[fd.name] = self.fuzz_field(fd, t, ctx, notes, depth)
                if ctx.get("huge") and not was_huge:
                    ctx["huge_field"] = (md.name, fd.name)
            else:
                per[fd.name] = plan.get(fd.name, [])
        if ctx.get("huge") and md.name == "Search":
            # a huge batch: keep the answer bounded (k small, no vectors, no expansion)
            hf = ctx.get("huge_field", (None, None))[1]
            num = {f.name: f.number for f in fields}
            for name in ("k", "with_vectors", "expansion", "rerank", "refine_factor", "nprobe", "deadline_ms"):
                if name != hf and name in num:
                    per[name] = [f_varint(num["k"], rng.choice([1, 5, 10]))] if name == "k" else []
            notes.append("(huge: other fields tamed)")
        chunks = []
        for fd in fields:
            chunks.extend(per[fd.name])
        if rng.random() < 0.12 or not fields and rng.random() < 0.5:
            chunks.append(self.unknown_fields(md, ctx, notes))
        if len(chunks) > 1 and rng.random() < 0.15:
            rng.shuffle(chunks)
            notes.append("%s:shuffled" % md.name)
        return b"".join(chunks)

    def pick_body(self, allow_hello=True):
        rng = self.rng
        weights = []
        for f in self.bodies:
            w = 3.0 if f.name in REPLY_OF else 0.8
            if f.name == "hello":
                w = 1.5 if allow_hello else 0.0
            weights.append(w)
        return rng.choices(self.bodies, weights)[0]

    def envelope(self, t, conn, allow_hello=True, allow_mutation=True):
        for _ in range(50):
            fr = self.envelope1(t, conn, allow_hello, allow_mutation)
            if self.exclude is None or not self.exclude.search(fr.describe()):
                return fr
        return fr

    def envelope1(self, t, conn, allow_hello=True, allow_mutation=True):
        rng = self.rng
        ctx = {}
        notes = []
        rid = self.next_id(conn)
        mode = rng.choices(["single", "none", "unknown-oneof", "double", "same-twice"],
                           [86, 2, 4, 4, 4])[0]
        body_chunks = []
        fd = self.pick_body(allow_hello)
        fd2 = self.pick_body(allow_hello) if mode == "double" else None
        if fd2 is not None and fd2.name == fd.name:
            mode = "same-twice"
        body_name = fd.name
        if mode == "single":
            body_chunks.append(f_len(fd.number, self.message(fd.message_type, t, ctx, notes)))
        elif mode == "none":
            body_name = "(none)"
        elif mode == "unknown-oneof":
            # Numbers the Envelope does not use (the protocol grows: a fixed small number may
            # become a real field, as 31 did).
            num = rng.choice([n for n in [self.max_env_field + 1, self.max_env_field + 2, 63, 100, 1 << 20, (1 << 29) - 1]
                              if n not in self.env_field_numbers])
            inner = self.message(fd.message_type, t, ctx, notes)
            body_chunks.append(f_len(num, inner))
            notes.append("body=unknown-field-%d(carrying %s)" % (num, fd.name))
            body_name = "(unknown-oneof)"
        elif mode == "double":
            first = []
            body_chunks.append(f_len(fd2.number, self.message(fd2.message_type, t, ctx, first)))
            body_chunks.append(f_len(fd.number, self.message(fd.message_type, t, ctx, notes)))
            notes.append("two-bodies:%s-then-%s" % (fd2.name, fd.name))
            notes.extend("first:" + n for n in first)
        else:
            ctx2 = {}
            first = []
            body_chunks.append(f_len(fd.number, self.message(fd.message_type, t, ctx2, first)))
            body_chunks.append(f_len(fd.number, self.message(fd.message_type, t, ctx, notes)))
            for flag in ("nonstrict_wire", "huge"):
                ctx[flag] = ctx.get(flag, False) or ctx2.get(flag, False)
            notes.append("same-body-twice(merged)")
            notes.extend("first:" + n for n in first)
        # request id
        r = rng.random()
        id_chunks = [f_varint(1, rid)]
        if r < 0.04:
            decoy = rng.choice([0, U64, rid + 1])
            id_chunks = [f_varint(1, decoy), f_varint(1, rid)]
            notes.append("request_id-twice")
        elif r < 0.08:
            id_chunks = [f_varint(1, rid, rng.choice([6, 10]))]
            notes.append("request_id-padded")
        elif r < 0.10 and rid == 0:
            id_chunks = []
            notes.append("request_id-absent")
        chunks = id_chunks + body_chunks
        if rng.random() < 0.08:
            chunks = body_chunks + id_chunks
            notes.append("id-after-body")
        if rng.random() < 0.08:
            chunks.insert(rng.randrange(len(chunks) + 1), self.unknown_fields(self.env_desc, ctx, notes))
        payload = b"".join(chunks)
        if rid in (0, U64, 1 << 63, U32, 1 << 32):
            notes.append("request_id=%d" % rid)
        huge = ctx.get("huge", False)
        label = body_name
        mutated = False
        mmode = mode
        if allow_mutation and not huge and body_name != "drop" and "drop" not in " ".join(notes) \
                and rng.random() < self.mutate_share:
            payload, how = self.mutate(payload)
            mutated = True
            mmode = "mutated:" + how
            label = "mutated"
            notes.append("mutated:" + how)
        fr = Frame(payload, label, body_name, mmode, notes, ctx.get("nonstrict_wire", False), mutated)
        fr.huge = huge
        fr.intended_id = rid
        fr.same_twice = mode == "same-twice"
        return fr

    def mutate(self, payload):
        rng = self.rng
        how = rng.choice(["flip", "flip", "flip", "truncate", "truncate", "garbage", "zero-length",
                          "append-garbage", "tag-wiretype"])
        b = bytearray(payload)
        if how == "flip" and b:
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256)
            return bytes(b), how
        if how == "truncate" and len(b) > 1:
            return bytes(b[:rng.randrange(1, len(b))]), how
        if how == "garbage":
            return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))), how
        if how == "append-garbage":
            return bytes(b) + bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 20))), how
        if how == "tag-wiretype" and b:
            b[0] = (b[0] & ~7) | rng.choice([1, 3, 4, 5, 6, 7])
            return bytes(b), how
        return b"", "zero-length"


# ----------------------------------------------------------------------------------------------
# the fuzzer


class Pending:
    def __init__(self, frame, t0):
        self.frame = frame
        self.t0 = t0


class Fuzzer:
    def __init__(self, args, pb, pbl, targets, pids):
        self.args = args
        self.pb = pb
        self.pbl = pbl
        self.targets = targets
        self.pids = pids
        self.rng = random.Random(args.seed)
        self.gen = Gen(self.rng, pb, pbl, args.max_frame_bytes, args.mutate_share, args.huge_share)
        if args.exclude:
            self.gen.exclude = re.compile(args.exclude)
        self.rec = Recorder(args.keep_frames)
        self.t_start = time.monotonic()
        self.deadline = self.t_start + args.seconds
        self.sent_by_type = collections.Counter()
        self.sent_by_mode = collections.Counter()
        self.replies_by_code = collections.Counter()
        self.replies_ok = collections.Counter()
        self.replies_by_req = collections.Counter()
        self.timeouts = 0
        self.timeouts_by = collections.Counter()
        self.closes = 0
        self.closes_by = collections.Counter()
        self.late = 0
        self.frames = 0
        self.mismatches = 0
        self.failures = []          # (what, detail)
        self.oddities = collections.OrderedDict()   # signature -> dict
        self.incidents = []         # crash/hang files
        self.adversarial = []       # results of the adversarial connections
        self.rss_start = {}
        self.rss_peak = {}
        self.rss_end = {}
        self.rss_mid = {}
        self.pid_start = {}
        self.pid_ports = {}
        self.last_pid_check = 0.0
        self.dead_pids = set()
        self.pid_cmd = {}
        self.example_no = 0
        self.slow_kinds = collections.Counter()
        os.makedirs(args.crash_dir, exist_ok=True)
        self.run_tag = "%s-seed%s" % (time.strftime("%Y%m%d-%H%M%S"), args.seed)

    # -- bookkeeping --
    def left(self):
        return self.deadline - time.monotonic()

    def fail(self, what, detail):
        self.failures.append((what, detail))
        print("FAIL: %s: %s" % (what, detail), flush=True)

    def oddity(self, severity, kind, target, detail, frame=None, reply=None):
        kind = re.sub(r'"[^"]*"', '"..."', kind)
        if frame is not None and getattr(frame, "same_twice", False):
            kind = "[same body twice] " + kind
        sig = "%s|%s|%s" % (severity, kind, target.role if target else "")
        o = self.oddities.get(sig)
        if o is None:
            o = {"severity": severity, "kind": kind, "role": target.role if target else "",
                 "count": 0, "examples": []}
            self.oddities[sig] = o
            print("%s: %s on %s: %s" % (severity.upper(), kind, target.name if target else "-",
                                        detail[:300]), flush=True)
        o["count"] += 1
        if len(o["examples"]) < self.args.examples:
            ex = {"target": target.name if target else "", "detail": detail[:2000]}
            if frame is not None:
                ex["frame"] = frame.describe()
                h = frame.wire.hex()
                ex["frame_hex"] = h if len(h) <= 4096 else h[:4096] + "...(%d bytes)" % len(frame.wire)
                lines = []
                hello = self.hello_frame(1)
                lines.append("connect 1 %s" % target.name)
                lines.append("send 1 %s   # hello" % hello.hex())
                lines.append("send 1 %s   # %s" % (frame.wire.hex(), frame.describe()))
                self.example_no += 1
                path = os.path.join(self.args.crash_dir, "oddities", self.run_tag,
                                    "%03d-%s.replay" % (self.example_no,
                                                        re.sub(r"[^a-zA-Z0-9]+", "-", kind).strip("-")[:70]))
                ex["replay"] = write_replay(path, "%s: %s" % (kind, detail[:300]), lines, self.args.seed)
            if reply is not None:
                ex["reply"] = reply[:2000]
            o["examples"].append(ex)

    def check_pids(self, force=False):
        now = time.monotonic()
        if not self.pids or (not force and now - self.last_pid_check < 0.5):
            return True
        self.last_pid_check = now
        ok = True
        for pid in self.pids:
            if pid in self.dead_pids:
                ok = False
                continue
            st = proc_starttime(pid)
            rss = proc_rss_kb(pid)
            if st is None or st != self.pid_start.get(pid):
                self.dead_pids.add(pid)
                ok = False
                path = self.save_incident("crash-pid%d" % pid,
                                          "process %d (%s, ports %s) is gone" %
                                          (pid, self.pid_cmd.get(pid, "?"), self.pid_ports.get(pid)))
                self.fail("crash", "PID %d (%s) is gone or was replaced; last frames in %s"
                          % (pid, self.pid_cmd.get(pid, "?"), path))
                continue
            if rss is not None:
                self.rss_peak[pid] = max(self.rss_peak.get(pid, 0), rss)
        return ok

    def save_incident(self, name, reason, extra=None):
        path = os.path.join(self.args.crash_dir, "%s-%s.replay" % (name, self.run_tag))
        write_replay(path, reason, self.rec.lines(extra), self.args.seed)
        self.incidents.append({"file": path, "reason": reason})
        print("  saved last frames to %s" % path, flush=True)
        return path

    # -- protocol helpers --
    def hello_frame(self, rid):
        pb = self.pb
        env = pb.Envelope(request_id=rid)
        env.hello.protocol_version = 1
        env.hello.role = pb.ROLE_CLIENT
        env.hello.node_name = "wire-fuzz"
        return frame_bytes(env.SerializeToString())

    def control_frame(self, rid, build):
        env = self.pb.Envelope(request_id=rid)
        build(env)
        return frame_bytes(env.SerializeToString())

    def open_conn(self, t, hello=True, record=True):
        """A fresh connection with the Hello exchange done; Refused / Closed on failure."""
        try:
            c = Conn(t, self.args.timeout)
        except Refused as e:
            if t.ever_connected and not t.dead:
                t.dead = True
                path = self.save_incident("crash-%s" % t.name.replace(":", "_"),
                                          "connection refused by %s (%s) after working connections"
                                          % (t.name, t.role))
                self.fail("crash", "%s (%s) refuses connections after working ones: %s; last frames in %s"
                          % (t.name, t.role, e, path))
                self.check_pids(force=True)
            raise
        if record:
            self.rec.connect(c)
        if hello:
            rid = self.gen.next_id(c, allow_special=False)
            hf = self.hello_frame(rid)
            c.hello_bytes = hf
            if record:
                self.rec.hello(c, hf)
                self.rec.send(c, hf, "hello")
            c.send(hf, self.args.timeout)
            end = time.monotonic() + self.args.timeout
            while True:
                p = c.recv_frame(max(0.0, end - time.monotonic()))
                if p is None:
                    c.close()
                    raise Closed("no Hello reply within %.1fs" % self.args.timeout)
                env = self.parse_reply(t, p, None)
                if env is None:
                    continue
                if env.request_id == rid:
                    body = env.WhichOneof("body")
                    if body != "hello":
                        self.oddity("bug?", "Hello answered with %s" % (
                            "Error " + ERROR_NAMES.get(env.error.code, "?") if body == "error" else body), t,
                                    "reply body %s: %s" % (body, str(env)[:200]))
                        if body == "error":
                            c.close()
                            raise Closed("Hello refused: %s" % str(env.error)[:200])
                    elif env.hello.protocol_version != 1:
                        self.oddity("bug?", "server Hello has protocol_version != 1", t, str(env.hello))
                    break
                if env.WhichOneof("body") == "hello" and env.request_id == 0:
                    continue   # a greeting
                self.oddity("fail", "reply to Hello with a wrong request_id", t,
                            "sent %d got %d: %s" % (rid, env.request_id, str(env)[:200]))
                self.mismatches += 1
        t.ever_connected = True
        return c

    def parse_reply(self, t, payload, frame):
        try:
            return parse_quietly(self.pb.Envelope, payload)
        except Exception as e:
            try:
                env = self.pbl.Envelope.FromString(payload)
            except Exception:
                self.oddity("bug?", "reply is not a valid Envelope", t,
                            "%s; reply hex %s" % (e, payload[:200].hex()), frame)
                return None
            self.oddity("bug?", "reply has invalid UTF-8 in a proto3 string field (%s)" % env.WhichOneof("body"), t,
                        "reply hex %s" % payload[:300].hex(), frame)
            return env

    def request(self, t, conn, build, timeout=None):
        """A control request on `conn`; returns the reply Envelope or None."""
        rid = self.gen.next_id(conn, allow_special=False)
        data = self.control_frame(rid, build)
        self.rec.send(conn, data, "control")
        conn.send(data, self.args.timeout)
        end = time.monotonic() + (timeout or self.args.timeout)
        while True:
            p = conn.recv_frame(max(0.0, end - time.monotonic()))
            if p is None:
                return None
            env = self.parse_reply(t, p, None)
            if env is not None and env.request_id == rid:
                return env
            if env is not None:
                self.dispatch(t, conn, env, p)

    def health_fresh(self, t, timeout=None):
        """(ok, detail): Health answered on a fresh connection."""
        try:
            c = self.open_conn(t, record=False)
        except (Refused, Closed) as e:
            return False, "connect/hello: %s" % e
        try:
            env = self.request(t, c, lambda e: e.health.SetInParent(), timeout)
            if env is None:
                return False, "no Health reply within %.1fs" % (timeout or self.args.timeout)
            b = env.WhichOneof("body")
            if b == "health_result":
                return True, "ready=%s status=%r" % (env.health_result.ready, env.health_result.status)
            if b == "error":
                return False, "Health answered with Error %s %r" % (ERROR_NAMES.get(env.error.code, env.error.code), env.error.message)
            return False, "Health answered with %s" % b
        except Closed as e:
            return False, "closed: %s" % e
        finally:
            c.close()

    # -- learning the targets --
    def learn(self, t):
        try:
            c = self.open_conn(t)
        except (Refused, Closed) as e:
            self.fail("start", "%s (%s) does not answer: %s" % (t.name, t.role, e))
            t.dead = True
            return
        try:
            env = self.request(t, c, lambda e: e.stats.SetInParent())
            if env is not None and env.WhichOneof("body") == "stats_result":
                s = env.stats_result
                t.dim = s.dimension or None
                t.metric = getattr(s, "metric", "") or None
                t.factory = s.factory or None
            if self.args.dimension:
                t.dim = self.args.dimension
            env = self.request(t, c, lambda e: e.health.SetInParent())
            if env is not None and env.WhichOneof("body") == "health_result":
                t.ready = env.health_result.ready
            if t.dim:
                vec = [self.rng.gauss(0, 1) for _ in range(t.dim)]

                def b(e):
                    e.search.vectors.extend(vec)
                    e.search.dimension = t.dim
                    e.search.k = 64
                    e.search.nprobe = 16
                env = self.request(t, c, b)
                if env is not None and env.WhichOneof("body") == "search_result":
                    for q in env.search_result.queries:
                        t.keys.extend(k for k in q.keys)
            print("target %s (%s): dimension %s, metric %s, ready %s, %d keys learnt"
                  % (t.name, t.role, t.dim, t.metric, t.ready, len(t.keys)), flush=True)
        except Closed as e:
            print("target %s: closed while learning: %s" % (t.name, e))
        finally:
            c.close()

    # -- judging replies --
    def key_problems(self, keys):
        out = []
        for k in keys:
            if len(k) == 0:
                out.append("empty key")
            elif len(k) > MAX_KEY:
                out.append("key of %d bytes" % len(k))
            if b"\x00" in k:
                out.append("NUL in key")
            if not utf8_ok(k):
                out.append("invalid UTF-8 key")
        return sorted(set(out))

    def request_problems(self, t, body, m):
        """Documented reasons (Protocols/README.md, table and "Limits") to refuse this request."""
        probs = []
        if body == "upsert":
            n = len(m.keys)
            if len(m.encoded) or m.trained_version:
                probs.append("encoded rows (a coordinator refuses them; a shard needs its own trained version)")
            if n == 0 and (len(m.vectors) or len(m.metadata)):
                probs.append("no keys")
            if n > LIMIT_ROWS:
                probs.append("%d rows" % n)
            probs += self.key_problems(m.keys)
            if len(set(m.keys)) != n:
                probs.append("key repeated in the batch")
            if n or len(m.vectors):
                if m.dimension == 0 or m.dimension > LIMIT_DIMENSION:
                    probs.append("dimension %d" % m.dimension)
                elif t.dim and m.dimension != t.dim:
                    probs.append("dimension %d != %d" % (m.dimension, t.dim))
            if len(m.vectors) != n * m.dimension:
                probs.append("%d floats for %d keys x dimension %d" % (len(m.vectors), n, m.dimension))
            if not all(map(math.isfinite, m.vectors)):
                probs.append("NaN or infinity")
            if len(m.metadata) not in (0, n):
                probs.append("%d metadata for %d keys" % (len(m.metadata), n))
            if any(len(x) > MAX_META for x in m.metadata):
                probs.append("metadata over 64 KiB")
        elif body == "search":
            nq = len(m.query_keys)
            if m.k == 0 or m.k > LIMIT_K:
                probs.append("k=%d" % m.k)
            if m.nprobe > LIMIT_NPROBE:
                probs.append("nprobe=%d" % m.nprobe)
            if m.refine_factor > LIMIT_REFINE:
                probs.append("refine_factor=%d" % m.refine_factor)
            if m.deadline_ms > LIMIT_DEADLINE_MS:
                probs.append("deadline_ms=%d" % m.deadline_ms)
            if m.HasField("expansion") and m.expansion.kind in (1, 2):
                if not 1 <= m.expansion.top_n <= LIMIT_TOP_N:
                    probs.append("expansion.top_n=%d" % m.expansion.top_n)
                if m.expansion.kind == 2 and not (0.0 <= m.expansion.alpha <= LIMIT_ALPHA):
                    probs.append("expansion.alpha=%r" % m.expansion.alpha)
            if len(m.vectors):
                if m.dimension == 0 or m.dimension > LIMIT_DIMENSION:
                    probs.append("vectors with dimension %d" % m.dimension)
                elif len(m.vectors) % m.dimension:
                    probs.append("%d floats not a multiple of dimension %d" % (len(m.vectors), m.dimension))
                else:
                    nq += len(m.vectors) // m.dimension
                    if t.dim and m.dimension != t.dim:
                        probs.append("dimension %d != %d" % (m.dimension, t.dim))
                if not all(map(math.isfinite, m.vectors)):
                    probs.append("NaN or infinity in vectors")
            if nq == 0 and not len(m.vectors):
                probs.append("no query")
            if nq > LIMIT_QUERIES:
                probs.append("%d queries" % nq)
            shortlist = LIMIT_K_TIMES_REFINE if nq <= LIMIT_DEEP_QUERIES else LIMIT_K_TIMES_REFINE_WIDE
            if m.refine_factor <= LIMIT_REFINE and 0 < m.k <= LIMIT_K and m.k * (m.refine_factor or 4) > shortlist:
                probs.append("k x refine_factor=%d" % (m.k * (m.refine_factor or 4)))
            if m.HasField("rerank") and m.rerank.kind != 0:
                r = m.rerank
                if r.kind != 1:
                    probs.append("rerank.kind=%d" % r.kind)
                else:
                    # Zero fields take the defaults (max(200, k), 5, 0.9, 3).
                    sl, nb = r.shortlist or max(200, m.k), r.neighbours or 5
                    alpha, gamma = r.alpha if r.alpha != 0 else 0.9, r.gamma if r.gamma != 0 else 3.0
                    if not 1 <= sl <= LIMIT_RERANK_SHORTLIST:
                        probs.append("rerank.shortlist=%d" % sl)
                    elif m.k > sl:
                        probs.append("k %d > rerank.shortlist %d" % (m.k, sl))
                    elif not 1 <= nb <= sl:
                        probs.append("rerank.neighbours=%d" % nb)
                    elif not (math.isfinite(alpha) and 0 < alpha < 1):
                        probs.append("rerank.alpha=%r" % alpha)
                    elif not (math.isfinite(gamma) and 0 <= gamma <= 100):
                        probs.append("rerank.gamma=%r" % gamma)
                    elif m.refine_factor <= LIMIT_REFINE and sl * (m.refine_factor or 4) > shortlist:
                        probs.append("rerank.shortlist x refine_factor=%d" % (sl * (m.refine_factor or 4)))
                    if t.role == "shard":
                        probs.append("rerank sent to a shard (the coordinator re-ranks)")
            probs += ["query key: " + p for p in self.key_problems(m.query_keys)]
        elif body in ("delete", "fetch"):
            if len(m.keys) > LIMIT_ROWS:
                probs.append("%d keys" % len(m.keys))
            probs += self.key_problems(m.keys)
        elif body == "hello":
            pass
        sd = self.pb.Envelope.DESCRIPTOR.fields_by_name[body].message_type if body else None
        if sd is not None:
            probs += ["string " + x for x in string_problems(m, sd)]
            # README threat model: "enum values ... out of range are refused"
            probs += ["enum " + x for x in enum_problems(m, sd)]
        return sorted(set(probs))

    def judge(self, t, frame, env, payload):
        """Check one reply against the request it answers."""
        body = env.WhichOneof("body")
        lp = frame.lp
        req_body = lp.WhichOneof("body") if lp is not None else None
        frame.reply_body = body
        frame.reply_code = env.error.code if body == "error" else None
        rb = req_body or ("undecodable" if lp is None else "no-body")
        if body == "error":
            e = env.error
            name = ERROR_NAMES.get(e.code, "code-%d" % e.code)
            self.replies_by_code[name] += 1
            self.replies_by_req[(rb, name)] += 1
            detail = "%s %r for %s" % (name, e.message, frame.describe())
            if e.request_id != env.request_id:
                self.oddity("bug?", "Error.request_id differs from the envelope's", t,
                            "envelope %d, Error.request_id %d; %s" % (env.request_id, e.request_id, detail), frame)
            if e.code not in ERROR_NAMES or e.code == 0:
                self.oddity("bug?", "undocumented error code", t, detail, frame, str(env))
            if e.code == 9:
                self.oddity("bug?", "INTERNAL error (\"a bug\")", t, detail, frame, str(env))
            if frame.strict and e.code == 1:
                self.oddity("bug?", "MALFORMED for a valid Envelope (%s)" % (req_body or "no body"), t, detail, frame, str(env))
            if lp is None and e.code != 1:
                self.oddity("bug?", "undecodable frame answered with %s, not MALFORMED" % name, t, detail, frame)
            if lp is not None and req_body is None and e.code not in (1, 2):
                self.oddity("info", "envelope without a known body answered with %s" % name, t, detail, frame)
            sprobs = string_problems(getattr(lp, req_body), self.pb.Envelope.DESCRIPTOR.fields_by_name[req_body].message_type) \
                if req_body is not None else []
            if sprobs and e.code != 3 and not frame.nonstrict_wire and not frame.mutated:
                self.oddity("info", "string with NUL / invalid UTF-8 in %s answered %s (README: INVALID_ARGUMENT)" % (req_body, name),
                            t, "%s; %s" % ("; ".join(sprobs)[:200], detail), frame)
            if req_body is not None and req_body not in REPLY_OF and e.code not in (1, 2) and not (sprobs and e.code == 3):
                self.oddity("info", "%s sent as a request answered with %s (expected UNSUPPORTED)" % (req_body, name), t, detail, frame)
            if e.code == 7:
                self.oddity("bug?", "STORAGE error (\"disk full, damaged file\") for %s: %s"
                            % (req_body, re.sub(r"\d+", "N", e.message)[:70]), t, detail, frame)
            if e.code == 8:
                self.oddity("info", "UNAVAILABLE for %s: %s" % (req_body, re.sub(r"\d+", "N", e.message)[:70]),
                            t, detail, frame)
            if req_body in REPLY_OF and e.code == 2 and not (req_body == "hello" and lp.hello.protocol_version != 1):
                self.oddity("bug?", "request %s answered UNSUPPORTED" % req_body, t, detail, frame)
            if req_body in ("search", "upsert", "fetch", "delete") and e.code == 3 and frame.strict:
                if not self.request_problems(t, req_body, getattr(lp, req_body)):
                    self.oddity("info", "%s with no documented problem refused INVALID_ARGUMENT: %s"
                                % (req_body, re.sub(r"\d+", "N", e.message)[:80]), t, detail, frame)
            return
        self.replies_ok[body] += 1
        self.replies_by_req[(rb, body)] += 1
        if lp is None:
            self.oddity("bug?", "undecodable frame answered with %s" % body, t, frame.describe(), frame, str(env)[:500])
            return
        if req_body is None:
            self.oddity("bug?", "envelope without a known body answered with %s" % body, t,
                        frame.describe(), frame, str(env)[:500])
            return
        want = REPLY_OF.get(req_body)
        if want is None:
            self.oddity("bug?", "%s sent as a request answered with %s" % (req_body, body), t,
                        frame.describe(), frame, str(env)[:500])
            return
        if body != want:
            self.oddity("bug?", "%s answered with %s" % (req_body, body), t, frame.describe(), frame, str(env)[:500])
            return
        m = getattr(lp, req_body)
        probs = self.request_problems(t, req_body, m)
        if probs:
            self.oddity("bug?", "invalid %s accepted: %s" % (req_body, "; ".join(re.sub(r"\d+", "N", p) for p in probs)),
                        t, frame.describe(), frame, str(env)[:500])
        r = getattr(env, body)
        if req_body == "hello":
            if m.protocol_version != 1:
                self.oddity("bug?", "Hello with protocol_version %d accepted" % m.protocol_version, t,
                            frame.describe(), frame, str(env)[:300])
        elif req_body == "search":
            self.check_search(t, frame, m, r)
        elif req_body == "upsert":
            n = len(m.keys)
            if r.written not in (n, len(set(m.keys))):
                self.oddity("bug?", "UpsertResult.written differs from the number of keys", t,
                            "written %d for %d keys (%d distinct)" % (r.written, n, len(set(m.keys))), frame)
            if getattr(r, "replaced", 0) > r.written:
                self.oddity("bug?", "UpsertResult.replaced > written", t, str(r), frame)
            if not probs and n < 50:
                for k in m.keys:
                    if len(t.fuzz_keys) < 2000:
                        t.fuzz_keys.append(bytes(k))
        elif req_body == "delete":
            if r.deleted > len(m.keys):
                self.oddity("bug?", "DeleteResult.deleted > number of keys", t, "%d > %d" % (r.deleted, len(m.keys)), frame)
        elif req_body == "fetch":
            if len(r.entries) != len(m.keys):
                self.oddity("bug?", "FetchResult has %s entries than keys" % ("more" if len(r.entries) > len(m.keys) else "fewer"), t,
                            "%d entries for %d keys" % (len(r.entries), len(m.keys)), frame)
            else:
                for i, (e, k) in enumerate(zip(r.entries, m.keys)):
                    ek = e.key if isinstance(e.key, bytes) else e.key.encode()
                    if ek != bytes(k):
                        self.oddity("bug?", "FetchResult entry key differs from the requested key", t,
                                    "entry %d: asked %r got %r" % (i, bytes(k)[:80], e.key[:80]), frame)
                        break
                    if e.found and t.dim and len(e.vector) not in (0, t.dim):
                        self.oddity("bug?", "fetched vector length differs from the dimension", t,
                                    "%d floats, dimension %d" % (len(e.vector), t.dim), frame)
                        break
                    if not e.found and (len(e.vector) or len(e.metadata)):
                        self.oddity("bug?", "FetchedEntry not found but with data", t, str(e)[:200], frame)
                        break
        elif req_body == "stats":
            mt = getattr(r, "metric", None)
            if mt is not None and mt not in ("l2", "ip", ""):
                self.oddity("bug?", "StatsResult.metric is neither l2 nor ip", t, repr(mt), frame)
        elif req_body == "trained_state":
            self.oddity("bug?", "garbage TrainedState acknowledged", t, frame.describe(), frame, str(env)[:300])
        elif req_body == "drop":
            self.oddity("fail", "Drop acknowledged although confirm is not the factory string", t,
                        "confirm %r, factory %r; %s" % (bytes(m.confirm)[:80], t.factory, str(env)[:200]), frame)
            self.fail("drop-guard", "%s dropped the collection for confirm %r (factory %r)" % (t.name, bytes(m.confirm)[:80], t.factory))

    def check_search(self, t, frame, m, r):
        nq = (len(m.vectors) // m.dimension if m.dimension else 0) + len(m.query_keys)
        if r.partial != (len(r.missing) > 0):
            self.oddity("bug?", "SearchResult.partial disagrees with missing", t,
                        "partial=%s missing=%d" % (r.partial, len(r.missing)), frame)
        if len(r.queries) != nq:
            self.oddity("bug?", "SearchResult has %s QueryHits than queries" % ("more" if len(r.queries) > nq else "fewer"), t,
                        "%d QueryHits for %d queries (%d floats / dimension %d + %d keys)"
                        % (len(r.queries), nq, len(m.vectors), m.dimension, len(m.query_keys)), frame)
        for qi, q in enumerate(r.queries):
            if len(q.keys) != len(q.scores):
                self.oddity("bug?", "QueryHits keys and scores differ in length", t,
                            "query %d: %d keys, %d scores" % (qi, len(q.keys), len(q.scores)), frame)
                return
            if len(q.keys) > m.k:
                self.oddity("bug?", "more hits than k", t, "query %d: %d hits, k=%d" % (qi, len(q.keys), m.k), frame)
                return
            if not all(map(math.isfinite, q.scores)):
                self.oddity("bug?", "non-finite score in hits", t, "query %d: %s" % (qi, list(q.scores)[:10]), frame)
                return
            if len(set(q.keys)) != len(q.keys):
                self.oddity("bug?", "duplicate key in one query's hits", t,
                            "query %d: %s" % (qi, [k for k, n in collections.Counter(q.keys).items() if n > 1][:5]), frame)
                return
            sc = list(q.scores)
            if t.metric == "l2" and any(a > b for a, b in zip(sc, sc[1:])):
                self.oddity("bug?", "l2 hits not in ascending order", t, "query %d: %s" % (qi, sc[:10]), frame)
                return
            if t.metric == "ip" and any(a < b for a, b in zip(sc, sc[1:])):
                self.oddity("bug?", "ip hits not in descending order", t, "query %d: %s" % (qi, sc[:10]), frame)
                return
            if m.with_vectors and q.keys and len(q.vectors) % len(q.keys):
                self.oddity("bug?", "with_vectors: vectors not a multiple of the hits", t,
                            "query %d: %d floats, %d hits" % (qi, len(q.vectors), len(q.keys)), frame)
                return
            if not m.with_vectors and len(q.vectors):
                self.oddity("info", "vectors returned without with_vectors", t, "query %d" % qi, frame)
                return

    def dispatch(self, t, conn, env, payload):
        """Match a reply to a pending request on `conn`."""
        rid = env.request_id
        hit = None
        for p in conn.pending:
            if p.frame.primary == rid:
                hit = p
                break
        if hit is None:
            for p in conn.pending:
                if not p.frame.strict and rid in p.frame.accept:
                    hit = p
                    break
        if hit is not None:
            conn.pending.remove(hit)
            self.judge(t, hit.frame, env, payload)
            if not hit.frame.strict and rid != hit.frame.primary and rid != 0 and hit.frame.lp is not None:
                self.oddity("info", "reply id is neither the decoded id nor 0", t,
                            "reply id %d, decoded %s" % (rid, hit.frame.primary), hit.frame)
            return hit
        if rid in conn.late:
            p = conn.late.pop(rid)
            self.late += 1
            self.judge(t, p.frame, env, payload)
            return p
        if env.WhichOneof("body") == "hello" and rid == 0 and not conn.received_any:
            return None
        self.mismatches += 1
        frames = [p.frame for p in conn.pending]
        self.oddity("fail", "reply with a request_id matching no request in flight", t,
                    "reply id %d (%s: %s); in flight: %s" % (
                        rid, env.WhichOneof("body"), str(env)[:200].replace("\n", " "),
                        ", ".join("%d=%s" % (f.primary if f.primary is not None else -1, f.describe()[:80]) for f in frames)),
                    frames[0] if frames else None, payload.hex()[:2000])
        return None

    # -- classification of a frame (reference parsers) --
    def classify(self, fr):
        pb, pbl = self.pb, self.pbl
        try:
            fr.sp = parse_quietly(pb.Envelope, fr.payload)
        except Exception:
            fr.sp = None
        try:
            fr.lp = pbl.Envelope.FromString(fr.payload)
        except Exception:
            fr.lp = None
        fr.strict = fr.sp is not None and not fr.nonstrict_wire and not fr.mutated
        if fr.strict:
            fr.primary = fr.sp.request_id
            fr.accept = {fr.primary}
        else:
            fr.primary = fr.lp.request_id if fr.lp is not None else None
            fr.accept = set(scan_request_ids(fr.payload)) | {0}
            if fr.primary is not None:
                fr.accept.add(fr.primary)
        if fr.lp is not None and fr.lp.WhichOneof("body") == "hello" and fr.lp.hello.protocol_version != 1:
            fr.expect_close = True

    # -- the main loop --
    def ensure_conn(self, t):
        if t.conn is not None and not t.conn.closed:
            return t.conn
        t.conn = None
        try:
            if self.rng.random() < 0.03:
                c = self.open_conn(t, hello=False)
                c.no_hello = True
            else:
                c = self.open_conn(t)
                c.no_hello = False
        except Refused:
            t.dead = True
            return None
        except Closed as e:
            self.oddity("bug?", "connection failed during Hello", t, str(e))
            return None
        t.conn = c
        return c

    def on_closed(self, t, conn, why, last):
        self.closes += 1
        key = (last.label if last else "?")
        self.closes_by[key] += 1
        self.rec.close(conn)
        conn.close()
        t.conn = None
        expected = last is not None and last.expect_close and getattr(last, "reply_code", None) != 1
        unanswered = list(conn.pending)
        conn.pending.clear()
        if last is not None and not expected and conn.no_hello:
            self.oddity("info", "connection without Hello closed after %s" % (
                last.lp.WhichOneof("body") if last.lp is not None else "an undecodable frame"), t, why, last)
        elif last is not None and not expected:
            if last.lp is None:
                kind = "connection closed after an undecodable payload (README: goes on with the next frame)"
                sev = "bug?"
            elif getattr(last, "huge", False):
                kind = "connection closed after a large frame"
                sev = "info"
            else:
                kind = "connection closed after %s" % (last.lp.WhichOneof("body") or "a body-less envelope")
                sev = "bug?"
            self.oddity(sev, kind, t, "%s; %d request(s) unanswered; %s" % (why, len(unanswered), last.describe()), last)
        elif last is not None and last.expect_close and unanswered:
            self.oddity("bug?", "Hello with another version: closed without UNSUPPORTED", t, last.describe(), last)

    def send_frame(self, t, conn, fr):
        if fr.sp is None and fr.lp is None:
            self.classify(fr)
        self.frames += 1
        self.sent_by_type[fr.label] += 1
        self.sent_by_mode[fr.mode.split(":")[0]] += 1
        conn.pending.append(Pending(fr, time.monotonic()))
        self.rec.send(conn, fr.wire, fr.describe())
        conn.send(fr.wire, max(self.args.timeout, 10.0 if fr.huge else self.args.timeout))

    def await_replies(self, t, conn, timeout):
        end = time.monotonic() + timeout
        while conn.pending:
            left = end - time.monotonic()
            if left <= 0:
                return False
            p = conn.recv_frame(left)
            if p is None:
                return False
            env = self.parse_reply(t, p, conn.pending[0].frame if conn.pending else None)
            if env is not None:
                self.dispatch(t, conn, env, p)
        return True

    def on_timeout(self, t, conn):
        """Requests on `conn` got no reply in time: find out whether the server still works."""
        stuck = list(conn.pending)
        conn.pending.clear()
        for p in stuck:
            self.timeouts += 1
            self.timeouts_by[p.frame.label] += 1
            self.slow_kinds[p.frame.body] += 1
            for i in p.frame.accept:
                conn.late[i] = p
        # the same connection
        try:
            env = self.request(t, conn, lambda e: e.health.SetInParent(), min(self.args.timeout, 3.0))
        except Closed:
            env = None
        if env is not None:
            for p in stuck:
                if p.frame.lp is not None and p.frame.lp.WhichOneof("body") not in REPLY_OF:
                    sev = "info"
                    kind = "no reply to %s" % (p.frame.lp.WhichOneof("body") or "an envelope without a known body")
                else:
                    sev = "bug?"
                    kind = "no reply to %s (connection still serves)" % (
                        p.frame.lp.WhichOneof("body") if p.frame.lp is not None else "an undecodable frame")
                self.oddity(sev, kind, t, p.frame.describe(), p.frame)
            return
        ok, detail = self.health_fresh(t, min(self.args.timeout, 5.0))
        if ok:
            for p in stuck:
                self.oddity("bug?", "connection wedged after a frame (fresh connections still served)",
                            t, p.frame.describe(), p.frame)
            self.rec.close(conn)
            conn.close()
            t.conn = None
            return
        if not t.dead:
            path = self.save_incident("hang-%s" % t.name.replace(":", "_"),
                                      "%s stopped answering (%s)" % (t.name, detail))
            self.fail("hang", "%s (%s) stopped answering after %s: %s; last frames in %s"
                      % (t.name, t.role, stuck[0].frame.describe() if stuck else "?", detail, path))
        self.rec.close(conn)
        conn.close()
        t.conn = None
        ok, detail = self.health_fresh(t, 2 * self.args.timeout)
        if not ok:
            t.dead = True
        self.check_pids(force=True)

    def step(self, t):
        conn = self.ensure_conn(t)
        if conn is None:
            return
        burst = self.rng.random() < self.args.burst_share
        frames = []
        if burst:
            for _ in range(self.rng.randint(2, 12)):
                for _try in range(5):
                    fr = self.gen.envelope(t, conn, allow_hello=False, allow_mutation=False)
                    self.classify(fr)
                    if fr.strict and not fr.huge and fr.primary not in {x.primary for x in frames} \
                            and fr.primary not in {p.frame.primary for p in conn.pending}:
                        frames.append(fr)
                        break
        else:
            frames.append(self.gen.envelope(t, conn))
        if conn.peek_eof():
            self.on_closed(t, conn, "closed after the previous reply", conn.prev)
            return
        last = None
        try:
            for fr in frames:
                if self.frames >= self.args.frames:
                    break
                last = fr
                self.send_frame(t, conn, fr)
                if not burst:
                    break
            big = any(getattr(f, "huge", False) for f in frames)
            to = self.args.timeout * (3 if big else 1)
            if self.slow_kinds[frames[0].body] >= 3 and not burst:
                to = min(to, 0.5)
            if not self.await_replies(t, conn, to):
                self.on_timeout(t, conn)
                return
            conn.prev = last
            if last is not None and last.expect_close and getattr(last, "reply_code", None) == 2:
                # another protocol version: README says UNSUPPORTED, then closed
                try:
                    p = conn.recv_frame(2.0)
                    self.oddity("bug?", "Hello with protocol_version %d answered but the connection stays open"
                                % last.lp.hello.protocol_version, t, last.describe(), last)
                    self.rec.close(conn)
                    conn.close()
                    t.conn = None
                except Closed as e:
                    self.on_closed(t, conn, str(e), last)
        except Closed as e:
            self.on_closed(t, conn, str(e), last)

    def run_random(self, frames_budget_deadline):
        alive = [t for t in self.targets if not t.dead]
        last_report = time.monotonic()
        while self.frames < self.args.frames and time.monotonic() < frames_budget_deadline:
            alive = [t for t in self.targets if not t.dead]
            if not alive:
                break
            self.check_pids()
            t = self.rng.choice(alive)
            self.step(t)
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                print("  %d frames, %d timeouts, %d closes, %.0fs" % (
                    self.frames, self.timeouts, self.closes, time.monotonic() - self.t_start), flush=True)
        for t in self.targets:
            if t.conn is not None:
                self.rec.close(t.conn)
                t.conn.close()
                t.conn = None

    # -- adversarial connections --
    def search_body(self, t, nq, k, with_vectors):
        D = t.dim or 16
        env = self.pb.Envelope()
        env.search.vectors.extend(self.rng.gauss(0, 1) for _ in range(nq * D))
        env.search.dimension = D
        env.search.k = k
        env.search.nprobe = 16
        env.search.with_vectors = with_vectors
        return env.SerializeToString()   # no request_id: prepend it per frame

    def adv_oversize(self, t):
        for n in (self.args.frame_limit + 1, 0x80000000, U32):
            if self.left() < 5:
                return
            res = {"target": t.name, "test": "length prefix %d (limit %d)" % (n, self.args.frame_limit)}
            rss0 = {p: proc_rss_kb(p) for p in self.pids}
            try:
                c = self.open_conn(t)
            except (Refused, Closed) as e:
                res["result"] = "connect failed: %s" % e
                self.adversarial.append(res)
                continue
            data = struct.pack(">I", n)
            self.rec.send(c, data, "length prefix over the limit")
            got = []
            closed = False
            try:
                c.send(data, self.args.timeout)
                end = time.monotonic() + self.args.timeout
                while time.monotonic() < end:
                    p = c.recv_frame(max(0.0, end - time.monotonic()))
                    if p is None:
                        break
                    env = self.parse_reply(t, p, None)
                    if env is not None:
                        got.append(env)
            except Closed:
                closed = True
            self.rec.close(c)
            c.close()
            codes = [ERROR_NAMES.get(e.error.code, e.error.code) if e.WhichOneof("body") == "error"
                     else e.WhichOneof("body") for e in got]
            rss1 = {p: proc_rss_kb(p) for p in self.pids}
            res["result"] = "replies %s (ids %s), %s" % (codes, [e.request_id for e in got],
                                                         "closed" if closed else "NOT closed within %.0fs" % self.args.timeout)
            res["rss_kb_before_after"] = {p: (rss0[p], rss1[p]) for p in self.pids}
            self.adversarial.append(res)
            print("  oversize %s: %s" % (t.name, res["result"]), flush=True)
            if not closed:
                self.oddity("bug?", "length prefix over the limit: connection not closed", t, res["test"])
            if "MALFORMED" not in codes:
                self.oddity("info", "length prefix over the limit: no MALFORMED reply", t,
                            "%s: %s" % (res["test"], res["result"]))
            for e in got:
                if e.request_id != 0:
                    self.oddity("bug?", "reply to an over-limit prefix with a non-zero request_id", t, str(e)[:200])

    def adv_half_frame(self, t):
        for variant in ("half payload", "two bytes of the prefix"):
            if self.left() < self.args.hold_seconds + 5:
                return
            res = {"target": t.name, "test": "%s held %.1fs" % (variant, self.args.hold_seconds)}
            try:
                c = self.open_conn(t)
            except (Refused, Closed) as e:
                res["result"] = "connect failed: %s" % e
                self.adversarial.append(res)
                continue
            rid = self.gen.next_id(c, allow_special=False)
            data = frame_bytes(enc_varint(0x08) + enc_varint(rid) + self.search_body(t, 1, 10, False))
            cut = len(data) // 2 if variant == "half payload" else 2
            notes = []
            try:
                self.rec.send(c, data[:cut], "first %d of %d bytes, then held" % (cut, len(data)))
                c.send(data[:cut], self.args.timeout)
                self.rec.sleep(self.args.hold_seconds)
                t0 = time.monotonic()
                # others must still be served meanwhile
                ok, detail = self.health_fresh(t)
                notes.append("other connection during hold: %s" % ("served" if ok else "NOT served: " + detail))
                if not ok:
                    self.oddity("bug?", "a held half frame blocks other connections", t, detail)
                while time.monotonic() - t0 < self.args.hold_seconds:
                    p = c.recv_frame(self.args.hold_seconds - (time.monotonic() - t0))
                    if p is not None:
                        env = self.parse_reply(t, p, None)
                        notes.append("got during hold: %s" % (str(env)[:120].replace("\n", " ") if env else "?"))
                self.rec.send(c, data[cut:], "rest of the frame")
                c.send(data[cut:], self.args.timeout)
                c.pending.clear()
                p = c.recv_frame(self.args.timeout)
                if p is None:
                    notes.append("no reply after completing the frame")
                    self.oddity("bug?", "no reply after a held frame was completed", t, variant)
                else:
                    env = self.parse_reply(t, p, None)
                    if env is not None:
                        notes.append("completed: reply %s id %s" % (env.WhichOneof("body"), "ok" if env.request_id == rid else "WRONG %d" % env.request_id))
                        if env.request_id != rid:
                            self.mismatches += 1
                            self.oddity("fail", "wrong request_id after a held frame", t, "sent %d got %d" % (rid, env.request_id))
            except Closed as e:
                notes.append("closed: %s" % e)
            self.rec.close(c)
            c.close()
            res["result"] = "; ".join(notes)
            self.adversarial.append(res)
            print("  half frame %s: %s" % (t.name, res["result"]), flush=True)

    def adv_partial_budget(self, t):
        """Several connections each announce a frame just under the limit and send 1 byte of it."""
        n = self.args.partial_conns
        if n <= 0 or self.left() < self.args.hold_seconds + 10:
            return
        res = {"target": t.name, "test": "%d connections each holding 1 byte of a %d-byte frame for %.1fs"
               % (n, self.args.frame_limit - 1, self.args.hold_seconds)}
        rss0 = {p: proc_rss_kb(p) for p in self.pids}
        conns = []
        notes = []
        closed_at = []
        try:
            for i in range(n):
                try:
                    c = self.open_conn(t)
                except (Refused, Closed) as e:
                    notes.append("connection %d: %s" % (i, e))
                    break
                data = struct.pack(">I", self.args.frame_limit - 1) + b"\x08"
                self.rec.send(c, data, "announce %d bytes, send 1" % (self.args.frame_limit - 1))
                try:
                    c.send(data, self.args.timeout)
                    p = c.recv_frame(0.3)
                    if p is not None:
                        env = self.parse_reply(t, p, None)
                        notes.append("connection %d got %s" % (i, str(env)[:100].replace("\n", " ") if env else "?"))
                    if c.peek_eof():
                        closed_at.append(i)
                except Closed:
                    closed_at.append(i)
                conns.append(c)
            self.rec.sleep(self.args.hold_seconds)
            ok, detail = self.health_fresh(t)
            notes.append("Health on a fresh connection while held: %s" % ("served" if ok else "NOT served: " + detail))
            if not ok:
                self.oddity("bug?", "partial frames announced just under the limit stop others being served", t,
                            "%d connections; %s" % (len(conns), detail))
            time.sleep(max(0.0, self.args.hold_seconds - 1))
        finally:
            for c in conns:
                self.rec.close(c)
                c.close()
        rss1 = {p: proc_rss_kb(p) for p in self.pids}
        time.sleep(0.5)
        ok, detail = self.health_fresh(t)
        res["result"] = "%d opened, closed by the server: %s; %s; afterwards Health: %s" % (
            len(conns), closed_at or "none", "; ".join(notes), detail)
        res["rss_kb_before_after"] = {p: (rss0.get(p), rss1.get(p)) for p in self.pids}
        self.adversarial.append(res)
        print("  partial frames %s: %s" % (t.name, res["result"]), flush=True)
        for p in self.pids:
            if rss0.get(p) and rss1.get(p) and rss1[p] - rss0[p] > 256 * 1024:
                self.oddity("bug?", "RSS grew by over 256 MB while partial frames were held", t,
                            "pid %d: %d -> %d kB" % (p, rss0[p], rss1[p]))
        if not ok:
            self.fail("partial-frames", "%s does not answer Health after the partial frames: %s" % (t.name, detail))

    def adv_flood(self, t):
        secs = min(self.args.flood_seconds, max(0.0, self.left() - 10))
        if secs <= 0.5:
            return
        res = {"target": t.name, "test": "searches without reading replies for %.1fs" % secs}
        rss0 = {p: proc_rss_kb(p) for p in self.pids}
        try:
            c = self.open_conn(t)
        except (Refused, Closed) as e:
            res["result"] = "connect failed: %s" % e
            self.adversarial.append(res)
            return
        body = self.search_body(t, self.args.flood_queries, self.args.flood_k, True)
        self.rec.flood(c, secs, self.args.flood_max_frames, body, "flood")
        c.sock.setblocking(False)
        sent = 0
        sent_bytes = 0
        out = b""
        stalled_at = None
        peak = dict(rss0)
        stop_reason = "time"
        t0 = time.monotonic()
        rid = 1 << 40
        probe = None
        stalled = 0.0
        last_rss = 0.0
        try:
            while time.monotonic() - t0 < secs and sent < self.args.flood_max_frames:
                if not out:
                    rid += 1
                    out = frame_bytes(enc_varint(0x08) + enc_varint(rid) + body)
                    sent += 1
                if probe is None and time.monotonic() - t0 > secs / 2:
                    tp = time.monotonic()
                    ok, detail = self.health_fresh(t)
                    probe = "Health on another connection mid-flood: %s in %.2fs" % ("served" if ok else "NOT served (%s)" % detail, time.monotonic() - tp)
                    if not ok:
                        self.oddity("bug?", "a flooding client stops others being served", t, detail)
                now = time.monotonic()
                if now - last_rss > 0.2:
                    last_rss = now
                    for p in self.pids:
                        r = proc_rss_kb(p)
                        if r:
                            peak[p] = max(peak.get(p) or 0, r)
                            self.rss_peak[p] = max(self.rss_peak.get(p, 0), r)
                            if (r - (rss0.get(p) or 0)) // 1024 > self.args.flood_rss_stop_mb:
                                stop_reason = "RSS of %d grew by over %d MB" % (p, self.args.flood_rss_stop_mb)
                    if stop_reason != "time":
                        break
                _, w, _ = select.select([], [c.sock], [], 0.2)
                if not w:
                    stalled += time.monotonic() - now
                    if stalled_at is None:
                        stalled_at = (sent, sent_bytes, time.monotonic() - t0)
                    continue
                try:
                    n = c.sock.send(out)
                except BlockingIOError:
                    continue
                sent_bytes += n
                out = out[n:]
        except OSError as e:
            stop_reason = "send failed: %s" % e
        self.rec.close(c)
        c.close()
        time.sleep(1.0)
        rss1 = {p: proc_rss_kb(p) for p in self.pids}
        ok, detail = self.health_fresh(t)
        res["result"] = ("%d frames / %d bytes sent in %.1fs (stopped: %s); %s; %s; afterwards Health: %s"
                         % (sent, sent_bytes, time.monotonic() - t0, stop_reason,
                            ("first send stall after %d frames / %d bytes at %.1fs, %.1fs stalled in all" % (stalled_at + (stalled,)))
                            if stalled_at else "server kept reading",
                            probe or "no mid-flood probe", detail))
        res["rss_kb_before_peak_after"] = {p: (rss0.get(p), peak.get(p), rss1.get(p)) for p in self.pids}
        self.adversarial.append(res)
        print("  flood %s: %s" % (t.name, res["result"]), flush=True)
        for p in self.pids:
            if rss0.get(p) and peak.get(p) and peak[p] - rss0[p] > 256 * 1024:
                self.oddity("bug?", "RSS grew by over 256 MB while a client did not read its replies", t,
                            "pid %d: %d -> %d kB (after close: %s kB)" % (p, rss0[p], peak[p], rss1.get(p)))
        if not ok:
            self.fail("flood", "%s does not answer Health after the flood: %s" % (t.name, detail))

    # -- the whole run --
    def run(self):
        a = self.args
        for pid in self.pids:
            st = proc_starttime(pid)
            if st is None:
                self.fail("start", "PID %d does not exist" % pid)
                continue
            self.pid_start[pid] = st
            self.rss_start[pid] = proc_rss_kb(pid)
            self.rss_peak[pid] = self.rss_start[pid] or 0
            self.pid_ports[pid] = listening_ports_of(pid)
        self.pid_cmd = {p: proc_cmdline(p)[:160] for p in self.pids}
        for pid in self.pids:
            print("pid %d: %s; listens on %s; VmRSS %s kB" % (pid, self.pid_cmd[pid], self.pid_ports.get(pid), self.rss_start.get(pid)))
        for t in self.targets:
            self.learn(t)
        n_adv = len(self.targets) if not a.no_adversarial else 0
        reserve = n_adv * (a.flood_seconds + 3 * a.hold_seconds + 3 * min(a.timeout, 5) + 15)
        reserve = min(reserve, a.seconds * 0.5)
        self.run_random(self.deadline - reserve)
        self.rss_mid = {p: proc_rss_kb(p) for p in self.pids}
        if not a.no_adversarial:
            print("adversarial connections", flush=True)
            for t in self.targets:
                if t.dead:
                    continue
                self.adv_oversize(t)
                self.check_pids(force=True)
                if not t.dead:
                    self.adv_half_frame(t)
                    self.check_pids(force=True)
                if not t.dead:
                    self.adv_partial_budget(t)
                    self.check_pids(force=True)
                if not t.dead:
                    self.adv_flood(t)
                    self.check_pids(force=True)
        return self.finish()

    def finish(self):
        a = self.args
        print("\nfinal checks", flush=True)
        time.sleep(0.5)
        health = {}
        for t in self.targets:
            ok, detail = self.health_fresh(t)
            health[t.name] = (ok, detail)
            print("  Health %s (%s): %s %s" % (t.name, t.role, "ok" if ok else "FAILED", detail))
            if not ok:
                self.fail("health", "%s (%s): %s" % (t.name, t.role, detail))
                if not any(i["reason"].startswith(t.name) for i in self.incidents):
                    self.save_incident("final-%s" % t.name.replace(":", "_"), "%s does not answer Health at the end: %s" % (t.name, detail))
        for pid in self.pids:
            st = proc_starttime(pid)
            rss = proc_rss_kb(pid)
            self.rss_end[pid] = rss
            if st is None or st != self.pid_start.get(pid):
                if pid not in self.dead_pids:
                    self.dead_pids.add(pid)
                    path = self.save_incident("crash-pid%d" % pid, "process %d is gone at the end" % pid)
                    self.fail("crash", "PID %d (%s) is gone or replaced; last frames in %s" % (pid, self.pid_cmd.get(pid), path))
            elif rss is not None and rss > a.max_rss_mb * 1024:
                self.fail("rss", "PID %d VmRSS %d MB > %d MB" % (pid, rss // 1024, a.max_rss_mb))
        if self.mismatches:
            self.fail("request_id", "%d replies with a request_id matching no request" % self.mismatches)
        elapsed = time.monotonic() - self.t_start
        print("\n== summary (seed %s)" % a.seed)
        print("elapsed %.1fs, %d frames sent" % (elapsed, self.frames))
        print("frames by body: " + ", ".join("%s %d" % kv for kv in sorted(self.sent_by_type.items())))
        print("frames by mode: " + ", ".join("%s %d" % kv for kv in sorted(self.sent_by_mode.items())))
        print("replies ok by type: " + ", ".join("%s %d" % kv for kv in sorted(self.replies_ok.items())))
        print("replies by error code: " + ", ".join("%s %d" % kv for kv in sorted(self.replies_by_code.items())))
        print("replies by request body: " + ", ".join("%s->%s %d" % (a, b, n) for (a, b), n in sorted(self.replies_by_req.items())))
        print("timeouts %d (%s), late replies %d" % (self.timeouts, ", ".join("%s %d" % kv for kv in self.timeouts_by.items()), self.late))
        print("closes %d (%s)" % (self.closes, ", ".join("after %s %d" % kv for kv in self.closes_by.items())))
        print("request_id mismatches %d" % self.mismatches)
        for pid in self.pids:
            print("pid %d VmRSS start %s kB, after the random phase %s kB, peak %s kB, end %s kB (%s)" % (
                pid, self.rss_start.get(pid), self.rss_mid.get(pid), self.rss_peak.get(pid), self.rss_end.get(pid),
                self.pid_cmd.get(pid, "")[:80]))
        if self.adversarial:
            print("adversarial connections:")
            for r in self.adversarial:
                print("  %s %s: %s" % (r["target"], r["test"], r.get("result")))
        if self.oddities:
            print("oddities (severity, kind, count; example replay files):")
            for o in self.oddities.values():
                print("  [%s] %s (%s) x%d" % (o["severity"], o["kind"], o["role"], o["count"]))
                for ex in o["examples"][:2]:
                    print("      %s %s" % (ex["target"], ex["detail"][:200].replace("\n", " ")))
                    if ex.get("replay"):
                        print("      replay: %s" % ex["replay"])
        if self.incidents:
            print("incidents:")
            for i in self.incidents:
                print("  %s: %s" % (i["file"], i["reason"]))
        report = {
            "seed": a.seed, "elapsed": elapsed, "frames": self.frames,
            "sent_by_type": self.sent_by_type, "sent_by_mode": self.sent_by_mode,
            "replies_ok": self.replies_ok, "replies_by_code": self.replies_by_code,
            "replies_by_request": {"%s->%s" % k: v for k, v in self.replies_by_req.items()},
            "timeouts": self.timeouts, "timeouts_by": self.timeouts_by, "late": self.late,
            "closes": self.closes, "closes_by": self.closes_by, "mismatches": self.mismatches,
            "rss_kb": {p: {"start": self.rss_start.get(p), "after_random": self.rss_mid.get(p), "peak": self.rss_peak.get(p), "end": self.rss_end.get(p),
                           "cmd": self.pid_cmd.get(p)} for p in self.pids},
            "health": health, "adversarial": self.adversarial, "oddities": list(self.oddities.values()),
            "incidents": self.incidents, "failures": self.failures,
        }
        path = a.report or os.path.join(a.crash_dir, "report-%s.json" % self.run_tag)
        with open(path, "w") as f:
            json.dump(report, f, indent=1, default=lambda o: dict(o) if isinstance(o, collections.Counter) else str(o))
        print("report: %s" % path)
        if self.failures:
            print("\nFAILED (%d): %s" % (len(self.failures), "; ".join(w for w, _ in self.failures)))
            return 1
        print("\nOK")
        return 0


# ----------------------------------------------------------------------------------------------
# replay


def replay(args, pb):
    override = None
    if args.replay_target:
        override = args.replay_target
        parse_addr(override)
    lines = open(args.replay).read().splitlines()
    conns = {}
    addrs = set()
    refused = False

    def show(cid, sock, wait):
        buf = bytearray()
        end = time.monotonic() + wait
        got = 0
        while time.monotonic() < end:
            r, _, _ = select.select([sock], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            try:
                chunk = sock.recv(1 << 20)
            except OSError as e:
                print("  [%d] recv: %s" % (cid, e))
                return False
            if not chunk:
                print("  [%d] closed by the server" % cid)
                return False
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                n = struct.unpack(">I", buf[:4])[0]
                p = bytes(buf[4:4 + n])
                del buf[:4 + n]
                got += 1
                try:
                    env = parse_quietly(pb.Envelope, p)
                    print("  [%d] <- %s" % (cid, str(env).replace("\n", " ")[:300]))
                except Exception:
                    print("  [%d] <- undecodable %s" % (cid, p[:100].hex()))
                end = min(end, time.monotonic() + 0.1)
        return True

    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        op = parts[0]
        try:
            if op == "connect":
                cid, addr = int(parts[1]), override or parts[2]
                fam, sa = parse_addr(addr)
                addrs.add(addr)
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.settimeout(3)
                try:
                    s.connect(sa)
                except ConnectionRefusedError:
                    print("[%d] connect %s: REFUSED" % (cid, addr))
                    refused = True
                    continue
                conns[cid] = s
                print("[%d] connected to %s" % (cid, addr))
            elif op == "send":
                cid, data = int(parts[1]), bytes.fromhex(parts[2])
                s = conns.get(cid)
                if s is None:
                    continue
                print("[%d] -> %d bytes: %s%s" % (cid, len(data), data[:48].hex(), "..." if len(data) > 48 else ""))
                try:
                    s.settimeout(args.timeout)
                    s.sendall(data)
                except OSError as e:
                    print("  [%d] send: %s" % (cid, e))
                    conns.pop(cid).close()
                    continue
                if not show(cid, s, args.replay_wait):
                    conns.pop(cid).close()
            elif op == "sleep":
                time.sleep(min(float(parts[1]), 60.0))
            elif op == "close":
                s = conns.pop(int(parts[1]), None)
                if s:
                    s.close()
            elif op == "flood":
                cid, secs, maxf, body = int(parts[1]), float(parts[2]), int(parts[3]), bytes.fromhex(parts[4])
                s = conns.get(cid)
                if s is None:
                    continue
                s.setblocking(False)
                t0 = time.monotonic()
                n = 0
                rid = 1 << 40
                out = b""
                while time.monotonic() - t0 < min(secs, 60.0) and n < maxf:
                    if not out:
                        rid += 1
                        out = frame_bytes(enc_varint(0x08) + enc_varint(rid) + body)
                        n += 1
                    _, w, _ = select.select([], [s], [], 0.2)
                    if w:
                        try:
                            out = out[s.send(out):]
                        except BlockingIOError:
                            pass
                        except OSError as e:
                            print("  [%d] flood send: %s" % (cid, e))
                            break
                print("[%d] flooded %d frames in %.1fs" % (cid, n, time.monotonic() - t0))
        except (ValueError, IndexError) as e:
            print("bad line %r: %s" % (line, e))
    for s in conns.values():
        s.close()
    time.sleep(0.5)
    # does everything named still answer?
    bad = refused
    for addr in sorted(addrs):
        fam, sa = parse_addr(addr)
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(3)
            s.connect(sa)
            for rid, build in ((1, lambda e: (setattr(e.hello, "protocol_version", 1), setattr(e.hello, "role", pb.ROLE_CLIENT))),
                               (2, lambda e: e.health.SetInParent())):
                env = pb.Envelope(request_id=rid)
                build(env)
                s.sendall(frame_bytes(env.SerializeToString()))
            s.settimeout(args.timeout)
            buf = b""
            answered = False
            end = time.monotonic() + args.timeout
            while time.monotonic() < end and not answered:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
                    n = struct.unpack(">I", buf[:4])[0]
                    env = pb.Envelope.FromString(buf[4:4 + n])
                    buf = buf[4 + n:]
                    if env.request_id == 2 and env.WhichOneof("body") == "health_result":
                        answered = True
            s.close()
            print("after replay: %s %s" % (addr, "answers Health" if answered else "does NOT answer Health"))
            bad = bad or not answered
        except OSError as e:
            print("after replay: %s unreachable: %s" % (addr, e))
            bad = True
    return 1 if bad else 0


# ----------------------------------------------------------------------------------------------


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="Structure-aware wire fuzzer for Pharos servers (loopback only).",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--shard", action="append", default=[], metavar="HOST:PORT", help="a shard node (repeatable)")
    ap.add_argument("--coordinator", metavar="HOST:PORT", help="the coordinator")
    ap.add_argument("--pids", default="", help="comma-separated PIDs of the server processes to watch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--frames", type=int, default=20000, help="fuzzed frames to send in the random phase")
    ap.add_argument("--seconds", type=float, default=120.0, help="time budget of the whole run")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each reply")
    ap.add_argument("--max-rss-mb", type=int, default=2048)
    ap.add_argument("--crash-dir", default="/tmp/pharos-fuzz-crashes")
    ap.add_argument("--report", help="JSON report path (default: in --crash-dir)")
    ap.add_argument("--replay", metavar="FILE", help="send the frames of a replay file again, then check Health")
    ap.add_argument("--replay-target", metavar="HOST:PORT", help="with --replay: send everything here instead")
    ap.add_argument("--replay-wait", type=float, default=1.0, help="with --replay: seconds to wait for replies after each frame")
    ap.add_argument("--proto", default=os.path.join(here, "..", "Protocols", "pharos.proto"))
    ap.add_argument("--dimension", type=int, default=0, help="override the dimension learnt from Stats")
    ap.add_argument("--max-frame-bytes", type=int, default=8 << 20, help="budget for one generated frame")
    ap.add_argument("--frame-limit", type=int, default=DOC_FRAME_LIMIT, help="the servers' documented frame limit")
    ap.add_argument("--mutate-share", type=float, default=0.10, help="share of byte-flipped/truncated frames")
    ap.add_argument("--huge-share", type=float, default=0.05, help="relative weight of huge payloads")
    ap.add_argument("--burst-share", type=float, default=0.08, help="share of steps sending several requests in flight")
    ap.add_argument("--keep-frames", type=int, default=24, help="frames kept for crash files")
    ap.add_argument("--examples", type=int, default=3, help="example frames kept per oddity")
    ap.add_argument("--exclude", metavar="REGEX",
                    help="do not send generated frames whose description matches (e.g. to step over a known crash)")
    ap.add_argument("--no-adversarial", action="store_true", help="skip the flood / half-frame / oversize connections")
    ap.add_argument("--flood-seconds", type=float, default=5.0)
    ap.add_argument("--flood-max-frames", type=int, default=200000)
    ap.add_argument("--flood-k", type=int, default=1000)
    ap.add_argument("--flood-queries", type=int, default=4)
    ap.add_argument("--flood-rss-stop-mb", type=int, default=1024, help="stop a flood when a watched RSS grows by this much")
    ap.add_argument("--hold-seconds", type=float, default=4.0)
    ap.add_argument("--partial-conns", type=int, default=10,
                    help="connections that each announce a frame just under the limit and hold it (0: skip)")
    args = ap.parse_args()

    if args.max_frame_bytes >= args.frame_limit:
        ap.error("--max-frame-bytes must be below --frame-limit")
    pb, pbl = load_protos(os.path.abspath(args.proto))
    if args.replay:
        sys.exit(replay(args, pb))

    targets = []
    try:
        if args.coordinator:
            fam, sa = parse_addr(args.coordinator)
            targets.append(Target(args.coordinator, "coordinator", fam, sa))
        for s in args.shard:
            fam, sa = parse_addr(s)
            targets.append(Target(s, "shard", fam, sa))
    except ValueError as e:
        ap.error(str(e))
    if not targets:
        ap.error("give --coordinator and/or --shard")
    try:
        pids = [int(p) for p in args.pids.split(",") if p.strip()]
    except ValueError:
        ap.error("--pids takes comma-separated integers")
    fz = Fuzzer(args, pb, pbl, targets, pids)
    sys.exit(fz.run())


if __name__ == "__main__":
    main()

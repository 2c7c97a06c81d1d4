#!/usr/bin/env python3
"""The peer of a bucket move: N bytes over a plain loopback TCP socket, written to a file and
fsynced at the end (what a move does with the bytes it carries, minus everything else).

    python3 Benchmarks/socket_copy.py --bytes 50000000 [--repeats 3]

Prints one line: 'plain socket copy: MB/s (median of R)'.
"""
import argparse
import os
import socket
import statistics
import tempfile
import threading
import time


def copy_once(total: int) -> float:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    received = [0]

    def receive() -> None:
        conn, _ = server.accept()
        fd, path = tempfile.mkstemp(prefix="socket-copy-")
        try:
            while True:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    break
                os.write(fd, chunk)
                received[0] += len(chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(path)
            conn.close()

    thread = threading.Thread(target=receive)
    thread.start()
    payload = os.urandom(1 << 20)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as out:
        sent = 0
        while sent < total:
            n = min(len(payload), total - sent)
            out.sendall(payload[:n])
            sent += n
    thread.join()
    elapsed = time.perf_counter() - start
    server.close()
    assert received[0] == total, (received[0], total)
    return total / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bytes", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates = [copy_once(max(1, args.bytes)) for _ in range(args.repeats)]
    print(f"plain socket copy: {statistics.median(rates):.1f} MB/s (median of {args.repeats})")


if __name__ == "__main__":
    main()

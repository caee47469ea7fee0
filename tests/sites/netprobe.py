"""A tiny TCP tool that the site-network tests run inside namespaces (`python netprobe.py MODE ...`).

- ``echo HOST PORT``: print "ready", then echo every connection back until killed.
- ``sink HOST PORT``: print "ready", take one connection, read to its end, print JSON
  {"bytes", "seconds"} (first byte to last) and exit.
- ``send HOST PORT NBYTES``: send NBYTES and wait for the sink to close.
- ``ask HOST PORT TIMEOUT``: connect, send "ping", expect it back; print "ok", or "fail <error>"
  and exit 1.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time


def _listen(host: str, port: int) -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(16)
    print("ready", flush=True)
    return server


def echo(host: str, port: int) -> None:
    server = _listen(host, port)

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


def sink(host: str, port: int) -> None:
    server = _listen(host, port)
    conn, _ = server.accept()
    total, first, last = 0, None, None
    while data := conn.recv(1 << 16):
        now = time.monotonic()
        first = now if first is None else first
        last = now
        total += len(data)
    conn.close()
    print(json.dumps({"bytes": total, "seconds": (last - first) if first is not None else 0.0}), flush=True)


def send(host: str, port: int, nbytes: int) -> None:
    conn = socket.create_connection((host, port), timeout=60)
    chunk = b"x" * (1 << 16)
    sent = 0
    while sent < nbytes:
        sent += conn.send(chunk[: min(len(chunk), nbytes - sent)])
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)  # the sink closes once it has read everything
    conn.close()


def ask(host: str, port: int, timeout: float) -> int:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"ping")
            reply = conn.recv(4)
    except OSError as exc:
        print(f"fail {type(exc).__name__}: {exc}", flush=True)
        return 1
    if reply != b"ping":
        print(f"fail reply {reply!r}", flush=True)
        return 1
    print("ok", flush=True)
    return 0


def main(argv: list[str]) -> int:
    mode, host, port = argv[0], argv[1], int(argv[2])
    if mode == "echo":
        echo(host, port)
    elif mode == "sink":
        sink(host, port)
    elif mode == "send":
        send(host, port, int(argv[3]))
    elif mode == "ask":
        return ask(host, port, float(argv[3]))
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Sends large client frames to a running herald, one at a time, for syscall counts.

Each frame is a `ping` padded with JSON whitespace to exactly --size bytes, so herald
answers `pong` only after reading the whole frame; the next frame goes once the pong
is back. Standard library only (a raw RFC 6455 client with the all-zero mask key, which
is a valid mask that leaves the payload as is). Used for BENCHMARKS.md's "large client
frames" section, under `strace -c -f -p <herald pid>`:

    python3 bench/large_frames.py --addr 127.0.0.1:8080 --frames 200 --size 65536
"""

import argparse
import base64
import os
import socket
import struct
import time


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit("herald closed the connection")
        data += chunk
    return data


def handshake(sock, host):
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n"
            f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {key}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += recv_exact(sock, 1)
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(head.decode(errors="replace"))


def text_frame(payload):
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return header + b"\0\0\0\0" + payload


def read_frame(sock):
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", recv_exact(sock, 8))
    return b0 & 0x0F, recv_exact(sock, n)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default="127.0.0.1:8080")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", type=int, default=65536)
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    handshake(sock, a.addr)
    ping = b'{"type":"ping"}'
    frame = text_frame(ping + b" " * (a.size - len(ping)))
    start = time.monotonic()
    for _ in range(a.frames):
        sock.sendall(frame)
        while True:
            opcode, payload = read_frame(sock)
            if opcode == 1 and payload == b'{"type":"pong"}':
                break
            if opcode == 8:
                raise SystemExit(f"closed: {payload!r}")
    took = time.monotonic() - start
    print(f"{a.frames} frames of {a.size} bytes answered in {took:.3f}s")


if __name__ == "__main__":
    main()

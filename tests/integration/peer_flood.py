#!/usr/bin/python3
"""Keeps COUNT silent TCP connections open to HOST:PORT and opens a new one
whenever the other side drops one (a flood of unauthenticated clients that
reconnect), until SIGTERM. Prints one line of statistics at the end:
"opened=N dropped=N busy=N". Only the standard library: it runs in a
test's network namespace with Debian's /usr/bin/python3."""

import selectors
import signal
import socket
import sys
import time


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "dropped": 0, "busy": 0}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    def open_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except BlockingIOError:
            pass
        sel.register(s, selectors.EVENT_READ)
        stats["opened"] += 1

    for _ in range(count):
        open_one()
    print("flood: %d connections open" % count, flush=True)
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(256)
            except OSError:
                data = b""
            if data.startswith(b"MIGRATIOND-BUSY"):
                stats["busy"] += 1
            sel.unregister(s)
            s.close()
            stats["dropped"] += 1
            open_one()
        # A reconnecting client, not a CPU burner: at most ~2000/s.
        time.sleep(0.0005)
    print("opened=%(opened)d dropped=%(dropped)d busy=%(busy)d" % stats, flush=True)


if __name__ == "__main__":
    main()

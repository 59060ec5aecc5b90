#!/usr/bin/python3
"""A Peer1 client for tests: what a peer holding a valid certificate can
send to a migrationd peer port, without a migrationd of its own.

    peer_client.py SPEC_JSON

SPEC_JSON: {"address": "HOST:PORT", "tls_dir": DIR (client-cert.pem,
client-key.pem, ca-cert.pem), "calls": [[METHOD, GVARIANT_TEXT], ...],
"nbd_write": DATA (optional)}. Each call's parameters are GVariant text,
e.g. "(uint32 1, 'uuid', 'name', @a{sv} {})". The calls run in order on
one TLS connection (ALPN migrationd-control/1, D-Bus ANONYMOUS as the
daemons do). When a Prepare answers with an nbd-port and nbd_write is
given, DATA is written with nbdcopy over TLS to the first export of the
call's disks-info while the connection (and so the prepared QEMU) lives:
the route by which a peer would overwrite a file. Prints a JSON list, one
entry per call: {"reply": TEXT} or {"error": NAME, "message": TEXT}, and
for a Prepare with nbd_write {"nbd_write": returncode, "stderr": TEXT}.
The pseudo-call ["@reconnect", ""] opens a new connection (the earlier
ones stay open); "{token}" in a call's text is replaced by the "token" of
the last Prepare that answered one. The pseudo-call ["@data-stream", WHAT]
opens a tunnel data stream (ALPN migrationd-data/1) and presents a token:
WHAT "forged" (64 random hex digits), "none" (sends nothing and waits for
the refusal), "garbage" (a header that is not one) or "migration:N" (the
Nth tunnel-migration-token of the last Prepare); the entry is {"answer":
the server's first line}. ["@flood-data", "N SECONDS"] keeps N silent data
streams (TLS done, no token) open, reopening them every 4 s, for SECONDS;
the entry is {"opened": count}.
"""

import json
import os
import subprocess
import sys

import gi

gi.require_version("Gio", "2.0")
gi.require_version("GLib", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

PEER_PATH = "/org/migrationd/peer"
PEER_IFACE = "org.migrationd.Peer1"


def tls_connect(address, tls_dir, alpn):
    host, port = address.rsplit(":", 1)
    client = Gio.SocketClient.new()
    client.set_timeout(20)
    base = client.connect_to_host(address, int(port), None)
    tls = Gio.TlsClientConnection.new(base, Gio.NetworkAddress.new(host, int(port)))
    tls.set_certificate(Gio.TlsCertificate.new_from_files(tls_dir + "/client-cert.pem",
                                                          tls_dir + "/client-key.pem"))
    tls.set_database(Gio.TlsFileDatabase.new(tls_dir + "/ca-cert.pem"))
    tls.set_advertised_protocols([alpn])
    tls.handshake(None)
    return tls


def connect(address, tls_dir):
    tls = tls_connect(address, tls_dir, "migrationd-control/1")
    observer = Gio.DBusAuthObserver.new()
    observer.connect("allow-mechanism", lambda _o, mechanism: mechanism == "ANONYMOUS")
    return Gio.DBusConnection.new_sync(tls, None, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT,
                                       observer, None)


def data_stream(address, tls_dir, token):
    """A tunnel data stream presenting @token (None: nothing) and the
    server's answer line (OK, or NO and why)."""
    tls = tls_connect(address, tls_dir, "migrationd-data/1")
    if token is not None:
        tls.get_output_stream().write_all(token.encode(), None)
    try:
        answer = tls.get_input_stream().read_bytes(512, None).get_data().decode(errors="replace")
    except GLib.Error as e:
        answer = "error: " + e.message
    # Kept open until the end: an admitted stream holds its token.
    return tls, {"answer": answer.strip()}


def flood_data(address, tls_dir, text):
    """Silent data streams, @count at a time, for @seconds."""
    import time
    count, seconds = (int(x) for x in text.split())
    deadline = time.monotonic() + seconds
    opened = 0
    def one(_):
        try:
            return tls_connect(address, tls_dir, "migrationd-data/1")
        except GLib.Error:
            return None

    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(max_workers=count)
    while time.monotonic() < deadline:
        # All handshakes at once, so that the gate holds them together.
        streams = [tls for tls in pool.map(one, range(count)) if tls is not None]
        opened += len(streams)
        time.sleep(4)
        for tls in streams:
            try:
                tls.close(None)
            except GLib.Error:
                pass
    return {"opened": opened}


def stream_token(what, prepared):
    if what == "forged":
        return "MDSTREAM1 %s\n" % os.urandom(32).hex()
    if what == "garbage":
        return "GET / HTTP/1.1\r\nHost: x\r\n\r\n" + "x" * 64
    if what == "none":
        return None
    index = int(what.split(":", 1)[1])
    return "MDSTREAM1 %s\n" % prepared["tunnel-migration-tokens"][index]


def nbd_write(address, port, export, tls_dir, data):
    host = address.rsplit(":", 1)[0]
    uri = "nbds://%s:%d/%s?tls-certificates=%s" % (host, port, export, tls_dir)
    proc = subprocess.run(["nbdcopy", "-", uri], input=data.encode(), capture_output=True,
                          timeout=60)
    return {"nbd_write": proc.returncode, "stderr": proc.stderr.decode(errors="replace")}


def main():
    spec = json.loads(sys.argv[1])
    conn = connect(spec["address"], spec["tls_dir"])
    connections = [conn]
    results = []
    token = ""
    prepared = {}
    for method, text in spec["calls"]:
        if method == "@flood-data":
            results.append(flood_data(spec["address"], spec["tls_dir"], text))
            continue
        if method == "@data-stream":
            stream, entry = data_stream(spec["address"], spec["tls_dir"], stream_token(text, prepared))
            connections.append(stream)
            results.append(entry)
            continue
        if method == "@reconnect":
            conn = connect(spec["address"], spec["tls_dir"])
            connections.append(conn)
            results.append({"reply": "reconnected"})
            continue
        params = GLib.Variant.parse(None, text.replace("{token}", token), None, None)
        try:
            reply = conn.call_sync(None, PEER_PATH, PEER_IFACE, method, params, None,
                                   Gio.DBusCallFlags.NONE, 60000, None)
            entry = {"reply": reply.print_(True)}
            if method == "Prepare":
                token = reply.unpack()[0].get("token", token)
                prepared = reply.unpack()[0]
            if method == "Prepare" and spec.get("nbd_write") is not None:
                result = reply.unpack()[0]
                if result.get("nbd-port"):
                    export = params.unpack()[2]["disks-info"][0]["target"]
                    entry.update(nbd_write(spec["address"], result["nbd-port"], export,
                                           spec["tls_dir"], spec["nbd_write"]))
        except GLib.Error as e:
            entry = {"error": Gio.DBusError.get_remote_error(e), "message": e.message}
        results.append(entry)
    print(json.dumps(results))
    for conn in connections:
        try:
            if isinstance(conn, Gio.DBusConnection):
                conn.close_sync(None)
            else:
                conn.close(None)
        except GLib.Error:
            pass  # the daemon closed it first (e.g. no Hello in time)


if __name__ == "__main__":
    main()

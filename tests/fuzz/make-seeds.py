#!/usr/bin/python3
"""Writes the GVariant and QMP seed inputs of tests/fuzz/corpus/ (the
domain-xml seeds are copies of tests/domain/{good,bad}/*.xml). Run from
anywhere with Debian's python3-gi: /usr/bin/python3 tests/fuzz/make-seeds.py"""

import os

from gi.repository import GLib

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = ["Hello", "Prepare", "Finish", "Abort", "CheckPaths"]

OPTIONS = [
    {},
    {"live": GLib.Variant("b", True), "tls": GLib.Variant("b", False),
     "bandwidth": GLib.Variant("t", 4 << 20), "max-downtime": GLib.Variant("t", 300)},
    {"parallel-connections": GLib.Variant("u", 4), "compression": GLib.Variant("s", "zstd")},
    {"copy-storage": GLib.Variant("s", "all"), "disks": GLib.Variant("as", ["vda", "vdb"]),
     "nbd-port": GLib.Variant("q", 49160), "nbd-address": GLib.Variant("s", "192.0.2.2")},
    {"migration-port": GLib.Variant("q", 49153), "migration-address": GLib.Variant("s", "::1"),
     "destination-name": GLib.Variant("s", "web-01"), "abort-after": GLib.Variant("u", 60)},
    {"postcopy": GLib.Variant("b", True), "auto-converge": GLib.Variant("b", True),
     "persist-destination": GLib.Variant("b", True), "undefine-source": GLib.Variant("b", True),
     "paused-on-destination": GLib.Variant("b", True), "verify": GLib.Variant("b", True),
     "offline": GLib.Variant("b", False), "auth.no_user_interaction": GLib.Variant("b", True)},
    {"destination-xml": GLib.Variant("s", "<domain type='kvm'><name>a</name></domain>")},
    {"max-downtime": GLib.Variant("t", 2 ** 64 - 1), "parallel-connections": GLib.Variant("u", 100000)},
]
PEER_OPTIONS = [
    {"source-host": GLib.Variant("s", "hostA"), "source-persistent": GLib.Variant("b", True),
     "source-migration": GLib.Variant("s", "/org/migrationd/migration/1"),
     "migration-port": GLib.Variant("q", 49160)},
    {"copy-storage": GLib.Variant("s", "incremental"), "disks-info": GLib.Variant("aa{sv}", [
        {"target": GLib.Variant("s", "vdb"), "path": GLib.Variant("s", "/var/lib/x.qcow2"),
         "format": GLib.Variant("s", "qcow2"), "virtual-size": GLib.Variant("t", 1 << 30),
         "backing": GLib.Variant("s", "/var/lib/base.qcow2"),
         "backing-format": GLib.Variant("s", "qcow2")}])},
]
XML = open(os.path.join(HERE, "..", "domain", "good", "dumpxml.xml")).read()


def write(kind, name, data):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def variant(sig, value):
    return GLib.Variant(sig, value).get_data_as_bytes().get_data()


for i, o in enumerate(OPTIONS + PEER_OPTIONS):
    write("options", "options-%02d" % i, variant("a{sv}", o))

calls = [
    ("Hello", "(ussa{sv})", (1, "11111111-2222-3333-4444-aaaaaaaaaaaa", "hostA",
                             {"capabilities": GLib.Variant("as", [])})),
    ("Finish", "(sba{sv})", ("hostA:/org/migrationd/migration/1", True, {})),
    ("Finish", "(sba{sv})", ("hostA:/org/migrationd/migration/1", False,
                             {"error-name": GLib.Variant("s", "org.migrationd.Error.Cancelled"),
                              "error-message": GLib.Variant("s", "cancelled by the user")})),
    ("Abort", "(ss)", ("hostA:/org/migrationd/migration/1", "cancelled")),
    ("CheckPaths", "(as)", (["/var/lib/migrationd/images/a.qcow2", "/srv/b.raw"],)),
]
for i, o in enumerate(OPTIONS + PEER_OPTIONS):
    calls.append(("Prepare", "(ssa{sv})", ("hostA:/org/migrationd/migration/%d" % i, XML, o)))
for i, (method, sig, args) in enumerate(calls):
    write("peer-call", "%s-%02d" % (method.lower(), i), bytes([METHODS.index(method)]) + variant(sig, args))

QMP = {
    "return-empty": '{"return": {}, "id": "md-ID"}',
    "return-migrate": '{"return": {"status": "active", "setup-time": 4, "total-time": 1234, '
                      '"expected-downtime": 300, "ram": {"transferred": 1048576, "remaining": 0, '
                      '"total": 67108864, "duplicate": 10, "normal": 256, "dirty-pages-rate": 0, '
                      '"mbps": 900.5, "dirty-sync-count": 1}}, "id": "md-ID"}',
    "error": '{"error": {"class": "GenericError", "desc": "Parameter \'downtime-limit\' expects '
             'an integer in the range of 0 to 2000 seconds"}, "id": "md-ID"}',
    "error-no-id": '{"error": {"class": "GenericError", "desc": "JSON parse error"}}',
    "event-stop": '{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "STOP"}',
    "event-migration": '{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", '
                       '"data": {"status": "completed"}}\n{"return": [], "id": "md-ID"}',
    "block-jobs": '{"return": [{"device": "mirror-vdb", "len": 67108864, "offset": 1024, '
                  '"busy": true, "paused": false, "speed": 0, "ready": false, "status": "running", '
                  '"type": "mirror"}], "id": "md-ID"}',
    "greeting-again": '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, '
                      '"capabilities": []}}',
    "two-lines": '{"event": "RESUME", "timestamp": {"seconds": 3, "microseconds": 0}}\n'
                 '{"return": {"running": true, "status": "running"}, "id": "md-ID"}',
}
for name, text in QMP.items():
    write("qmp", name, text.encode())

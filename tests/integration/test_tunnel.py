#!/usr/bin/python3
"""transport=tunnel (issue 10): every migration stream — QEMU's main
channel, its multifd channels, the NBD connections of disk mirrors and of
offline disk copies (libnbd copier to qemu-storage-daemon) — goes
as a TLS data stream through the destination's one peer port, each
admitted by a one-time token from Prepare. The destination listens on no
other port, RAM and disks arrive intact and disks stay sparse, forged,
reused and missing tokens are refused without disturbing a migration, and
a broken stream fails the migration naming it, leaving nothing on B."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE, GLib  # noqa: E402

MIB = 1024 * 1024
PEER_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_client.py")
VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)")
DATA_DISK_XML = """<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{path}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    """


def with_serial(xml, serial):
    return re.sub(r"(<serial type='file'>\s*<source path=')[^']*(')", r"\g<1>%s\g<2>" % serial, xml)


def qemu_img(*args):
    proc = subprocess.run(["qemu-img"] + list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError("qemu-img %s: %s" % (" ".join(args), proc.stderr))
    return proc.stdout


def allocated_bytes(path):
    """Bytes the file really occupies on disk."""
    return os.stat(path).st_blocks * 512


def data_bytes(path):
    """Bytes of data extents (qemu-img map), holes and zero ranges excluded."""
    extents = json.loads(qemu_img("map", "--output=json", "-f", "raw", path))
    return sum(e["length"] for e in extents if e.get("data") and not e.get("zero"))


def write_random(path, offset_mib, size_mib):
    subprocess.run(["dd", "if=/dev/urandom", "of=" + path, "bs=1M", "seek=%d" % offset_mib,
                    "count=%d" % size_mib, "conv=notrunc,fsync", "status=none"], check=True)


def gv_string(value):
    return GLib.Variant("s", value).print_(False)


class Sampler:
    """Samples something about a host every 50 ms while a migration runs
    (listening ports, data streams), in a thread of its own."""

    def __init__(self, probe):
        self.probe = probe
        self.samples = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                self.samples.append(self.probe())
            except AssertionError:
                pass
            self.stop.wait(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.samples


class Tunnel(twohosts.TwoHostsTestCase):

    def guest(self, name, **kwargs):
        return harness.TestGuest(self.scratch, name, **kwargs)

    def start_on_a(self, guest):
        path = self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(r"MDGUEST (VERIFY pass=\d+ .* ok|DIRTY round=[1-9])", timeout=60)
        return path

    def get_xml(self, name):
        return self.client_a.call(harness.guest_path(name), GUEST_IFACE, "GetXML", "(a{sv})", ({},),
                                  "(s)")[0]

    def data_streams(self, host):
        """Established TCP connections to @host's peer port, as its
        daemon sees them (the control connection is one of them)."""
        proc = host.run_in_netns(["ss", "-tnH", "state", "established",
                                  "( sport = :%d )" % host.peer_port])
        if proc.returncode != 0:
            raise AssertionError("ss failed: " + proc.stderr)
        return len([line for line in proc.stdout.splitlines() if line.strip()])

    def tunnel_dirs(self, host):
        return glob.glob(os.path.join(host.daemon.runtime_dir, "tunnel-*"))

    def assert_ram_arrived(self, guest, serial_b, expected):
        passes_a = [int(m.group(1)) for m in VERIFY_RE.finditer(guest.serial_text())]
        self.assertTrue(passes_a)
        last_a = max(passes_a)
        guest_b = harness.TestGuest.__new__(harness.TestGuest)
        guest_b.name, guest_b.serial = guest.name, serial_b
        harness.wait_until(
            lambda: [m for m in VERIFY_RE.finditer(guest_b.serial_text()) if int(m.group(1)) > last_a],
            timeout=30, what="a VERIFY line on hostB after pass %d" % last_a)
        self.assertNotIn("MDGUEST READY", guest_b.serial_text(), "the guest rebooted on B")
        for m in VERIFY_RE.finditer(guest_b.serial_text()):
            self.assertEqual((m.group(2), m.group(3)), (expected, "ok"), guest_b.serial_text())

    def migrate_live(self, name, guest, options, sample_b=None):
        """Migrates @name with @options (the serial log moved for B),
        sampling hostB while it runs; returns (samples, serial_b)."""
        serial_b = self.scratch.join(name + "-serial-B.log")
        options = dict(options)
        options["destination-xml"] = with_serial(options.get("destination-xml") or self.get_xml(name),
                                                 serial_b)
        sampler = Sampler(sample_b) if sample_b else None
        path = self.hosts.migrate(name, options=options)
        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 120)
        samples = sampler.finish() if sampler else []
        self.assertTrue(success, "%s: %s\n%s" % (error_name, message, self.hosts.logs()))
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=20, what="hostA's QEMU to exit")
        self.assertEqual(self.hosts.guest_state(self.client_b, name), "running")
        return path, samples, serial_b

    def assert_tunnel_gone(self):
        """No socket directory, no data stream left on either host."""
        try:
            harness.wait_until(lambda: not self.tunnel_dirs(self.a) and not self.tunnel_dirs(self.b),
                               timeout=20, what="the tunnel socket directories to go")
        except AssertionError:
            left = {d: os.listdir(d) for d in self.tunnel_dirs(self.a) + self.tunnel_dirs(self.b)}
            related = [line for line in self.b.log().splitlines()
                       if re.search(r"tunnel|stream|Refused|abort", line, re.I)]
            raise AssertionError("tunnel socket directories left: %s\n%s" % (left, "\n".join(related)))
        # At most the control connection, kept for the next migration.
        try:
            harness.wait_until(lambda: self.data_streams(self.b) <= 1, timeout=20,
                               what="hostB's data streams to close")
        except AssertionError:
            ss = self.b.run_in_netns(["ss", "-tnpi"]).stdout
            raise AssertionError("hostB kept data streams open:\n%s\n%s" % (ss, self.hosts.logs()))

    # -- acceptance ---------------------------------------------------------

    def test_live_migration_listens_on_the_peer_port_only(self):
        guest = self.guest("tun", size_mib=16, seed=7, memory=128)
        expected = harness.expected_sum(16, 7)
        self.start_on_a(guest)
        _path, ports, serial_b = self.migrate_live(
            "tun", guest, {"transport": "tunnel", "bandwidth": 6 * MIB},
            sample_b=self.b.listening_ports)
        self.assertGreater(len(ports), 5, "too few samples of hostB's listening ports")
        seen = set().union(*ports)
        self.assertEqual(seen, {self.b.peer_port},
                         "hostB listened on more than its peer port during the migration")
        self.assert_ram_arrived(guest, serial_b, expected)
        self.assertEqual(len(self.b.qemu_pids()), 1)
        log_b = self.b.log()
        self.assertIn("data stream 'migration' of migration", log_b)
        self.assertNotIn("Refused data stream", log_b)
        self.assert_tunnel_gone()

    def test_parallel_connections_are_separate_streams(self):
        guest = self.guest("tunpar", size_mib=16, seed=3, memory=128)
        expected = harness.expected_sum(16, 3)
        self.start_on_a(guest)
        _path, streams, serial_b = self.migrate_live(
            "tunpar", guest, {"transport": "tunnel", "parallel-connections": 2, "bandwidth": 6 * MIB},
            sample_b=lambda: self.data_streams(self.b))
        # Control + main channel + 2 multifd channels at the busiest moment.
        self.assertGreaterEqual(max(streams), 4, "hostB held only %s connections" % sorted(set(streams)))
        log_b = self.b.log()
        for name in ("migration", "multifd-0", "multifd-1"):
            self.assertIn("data stream '%s' of migration" % name, log_b)
        self.assert_ram_arrived(guest, serial_b, expected)
        self.assert_tunnel_gone()

    def test_copy_storage_through_the_tunnel_keeps_holes(self):
        disk_a, disk_b = self.scratch.join("vdb-A.raw"), self.scratch.join("vdb-B.raw")
        with open(disk_a, "wb") as f:
            f.truncate(256 * MIB)
        for offset in (1, 40, 100, 250):
            write_random(disk_a, offset, 3)
        guest = self.guest("tundisk", size_mib=8, seed=11)
        guest.xml = guest.xml.replace("<serial type='file'>",
                                      DATA_DISK_XML.format(path=disk_a) + "<serial type='file'>", 1)
        self.start_on_a(guest)
        xml = self.get_xml("tundisk").replace(disk_a, disk_b)
        path, ports, _serial_b = self.migrate_live(
            "tundisk", guest, {"transport": "tunnel", "copy-storage": "all", "disks": ["vdb"],
                               "destination-xml": xml, "bandwidth": 32 * MIB},
            sample_b=self.b.listening_ports)
        self.assertEqual(set().union(*ports), {self.b.peer_port},
                         "hostB opened a port besides its peer port (an NBD port?)")
        self.client_b.call(harness.guest_path("tundisk"), GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        self.assertEqual(qemu_img("compare", "-f", "raw", "-F", "raw", disk_a, disk_b).strip(),
                         "Images are identical.")
        print("allocated: A %d, B %d; data: A %d, B %d" % (allocated_bytes(disk_a), allocated_bytes(disk_b),
                                                          data_bytes(disk_a), data_bytes(disk_b)))
        self.assertLessEqual(allocated_bytes(disk_b), allocated_bytes(disk_a))
        props = self.hosts.migration_props(self.client_a, path)
        # Progress counts what moved: the 12 MiB of data, not the 256 MiB disk.
        self.assertLessEqual(props["DiskProcessed"], 2 * data_bytes(disk_a), props)
        self.assertGreaterEqual(props["DiskProcessed"], data_bytes(disk_a), props)
        self.assertIn("data stream 'nbd-vdb' of migration", self.b.log())
        self.assert_tunnel_gone()

    def peer(self, calls):
        """peer_client.py in hostA's namespace with hostA's certificate."""
        spec = {"address": self.b.peer_address, "tls_dir": self.a.tls_dir, "calls": calls}
        proc = self.a.run_in_netns([sys.executable, PEER_CLIENT, json.dumps(spec)], timeout=120)
        if proc.returncode != 0:
            raise AssertionError("peer_client.py failed: %s\n%s" % (proc.stderr, self.hosts.logs()))
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def test_bad_tokens_are_refused_and_the_migration_goes_on(self):
        guest = self.guest("tuntok", size_mib=16, seed=5, memory=128)
        expected = harness.expected_sum(16, 5)
        self.start_on_a(guest)
        serial_b = self.scratch.join("tuntok-serial-B.log")
        path = self.hosts.migrate("tuntok", options={
            "transport": "tunnel", "bandwidth": 2 * MIB,
            "destination-xml": with_serial(self.get_xml("tuntok"), serial_b)})
        self.hosts.wait_property(self.client_a, path, "MemoryProcessed", lambda v: v > 1 * MIB, timeout=60)

        # A peer of our own (hostA's valid certificate) prepares a decoy
        # migration to get real tokens, then tries every bad token on the
        # same peer port while the real migration runs.
        decoy = self.guest("decoy", size_mib=8)
        hello = ["Hello", "(uint32 1, %s, 'evil-peer', @a{sv} {})" % gv_string(str(uuid.uuid4()))]
        prepare = ["Prepare", "('/org/migrationd/migration/91', %s, {'transport': <'tunnel'>})"
                   % gv_string(decoy.xml)]
        results = self.peer([hello, prepare, ["@data-stream", "forged"], ["@data-stream", "garbage"],
                             ["@data-stream", "none"], ["@data-stream", "migration:0"],
                             ["@data-stream", "migration:0"]])
        self.assertIn("reply", results[1], results)
        self.assertIn("tunnel-migration-tokens", results[1]["reply"])
        forged, garbage, none, first, reused = [r["answer"] for r in results[2:]]
        self.assertRegex(forged, r"^NO host hostB refuses the data stream: unknown token")
        self.assertRegex(garbage, r"^NO .*no token \(malformed")
        self.assertRegex(none, r"^NO .*no token within 5 s")
        self.assertEqual(first, "OK")
        self.assertRegex(reused, r"^NO .*already used")
        log_b = self.b.log()
        self.assertGreaterEqual(log_b.count("Refused data stream"), 4, log_b)

        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 120)
        self.assertTrue(success, "%s: %s\n%s" % (error_name, message, self.hosts.logs()))
        self.assert_ram_arrived(guest, serial_b, expected)

    def test_flood_of_silent_streams_does_not_keep_a_migration_out(self):
        guest = self.guest("tunflood", size_mib=16, seed=13, memory=128)
        expected = harness.expected_sum(16, 13)
        self.start_on_a(guest)
        # 48 silent data streams (TLS done, no token) at a time, for 25 s:
        # more than the 32 the gate lets wait.
        spec = {"address": self.b.peer_address, "tls_dir": self.a.tls_dir,
                "calls": [["@flood-data", "48 25"]]}
        argv = [sys.executable, PEER_CLIENT, json.dumps(spec)]
        if self.a.netns:
            argv = ["ip", "netns", "exec", self.a.netns] + argv
        flood = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(flood.kill)
        harness.wait_until(lambda: self.data_streams(self.b) >= 32, timeout=60,
                           what="the flood's streams pending on hostB")
        _path, _samples, serial_b = self.migrate_live(
            "tunflood", guest, {"transport": "tunnel", "parallel-connections": 2})
        self.assert_ram_arrived(guest, serial_b, expected)
        out, err = flood.communicate(timeout=60)
        self.assertEqual(flood.returncode, 0, err)
        self.assertGreater(json.loads(out.strip().splitlines()[-1])[0]["opened"], 48)
        log_b = self.b.log()
        self.assertIn("dropped the oldest", log_b)
        self.assertIn("Refused data stream", log_b)
        self.assert_tunnel_gone()

    def test_killed_destination_qemu_fails_naming_the_stream(self):
        guest = self.guest("tunkill", size_mib=16, seed=9, memory=128)
        self.start_on_a(guest)
        path = self.hosts.migrate("tunkill", options={"transport": "tunnel", "bandwidth": 2 * MIB})
        self.hosts.wait_property(self.client_a, path, "MemoryProcessed", lambda v: v > 1 * MIB, timeout=60)
        self.assertGreaterEqual(self.data_streams(self.b), 2)
        pids = self.b.qemu_pids()
        self.assertEqual(len(pids), 1)
        os.kill(pids[0], 9)
        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 60)
        self.assertFalse(success)
        print("error message: " + message)
        # The main channel or a multifd one: whichever broke first.
        self.assertRegex(message, r"data stream '(migration|multifd-\d+)'")
        self.assertIn("hostB", message)
        self.assertIn("perform", message)
        # The guest runs on A; B has no QEMU and no stream; no socket is left.
        self.assertEqual(self.hosts.guest_state(self.client_a, "tunkill"), "running", self.hosts.logs())
        length = len(guest.serial_text())
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok", timeout=30, start=length)
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="no QEMU on hostB")
        harness.wait_until(lambda: not self.hosts.guest_exists(self.client_b, "tunkill"), timeout=30,
                           what="no guest on hostB")
        self.assert_tunnel_gone()

    # -- offline copies -----------------------------------------------------

    def offline_guest(self, name, disk_a, disk_b):
        """A shut-off guest on A with data disk vdb at @disk_a; returns the
        destination XML, with @disk_b in its place."""
        guest = self.guest(name, size_mib=8, seed=11)
        guest.xml = guest.xml.replace("<serial type='file'>",
                                      DATA_DISK_XML.format(path=disk_a) + "<serial type='file'>", 1)
        self.hosts.define(self.client_a, guest.xml)
        xml = self.get_xml(name)
        self.assertIn(disk_a, xml)
        return xml.replace(disk_a, disk_b)

    def storage_daemons(self, host):
        """@host's qemu-storage-daemons (their QMP sockets are in its
        runtime directory)."""
        return harness.storage_daemon_pids(host.daemon.runtime_dir)

    def start_offline_copy_held_mid_stream(self, name, disk_a, disk_b, data_mib):
        """Restarts A's daemon to stop once a disk's data stream is open,
        starts an offline tunnelled migration of @name and waits for that
        moment: B is mid-copy. Returns the migration's path."""
        with open(disk_a, "wb") as f:
            f.truncate(512 * MIB)
        for offset in (0, 100, 300, 500):
            write_random(disk_a, offset, data_mib)
        self.hosts.restart_daemon(self.a, env={"MD_TEST_STOP_AT": "source-disk-stream-open"})
        xml = self.offline_guest(name, disk_a, disk_b)
        path = self.hosts.migrate(name, options={
            "offline": True, "transport": "tunnel", "copy-storage": "all", "disks": ["vdb"],
            "verify": True, "destination-xml": xml})
        self.a.daemon.wait_fault_point("source-disk-stream-open")
        return path

    def test_offline_copy_through_the_tunnel_opens_no_port_and_keeps_holes(self):
        disk_a, disk_b = self.scratch.join("off-A.raw"), self.scratch.join("off-B.raw")
        path = self.start_offline_copy_held_mid_stream("tunoff", disk_a, disk_b, 8)
        # Mid-copy: B's qemu-storage-daemon serves the image, and only the
        # peer port listens; the disk's data stream is one of its connections.
        self.assertEqual(self.b.listening_ports(), {self.b.peer_port},
                         "hostB opened a port besides its peer port (an NBD port?)")
        self.assertEqual(len(self.storage_daemons(self.b)), 1, "no qemu-storage-daemon on hostB")
        self.assertGreaterEqual(self.data_streams(self.b), 2)
        self.a.daemon.sigcont()
        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 120)
        self.assertTrue(success, "%s: %s\n%s" % (error_name, message, self.hosts.logs()))
        self.assertEqual(qemu_img("compare", "-f", "raw", "-F", "raw", disk_a, disk_b).strip(),
                         "Images are identical.")
        print("allocated: A %d, B %d; data: A %d, B %d" % (allocated_bytes(disk_a), allocated_bytes(disk_b),
                                                          data_bytes(disk_a), data_bytes(disk_b)))
        self.assertLessEqual(allocated_bytes(disk_b), allocated_bytes(disk_a))
        stats = self.client_a.call(path, harness.MIGRATION_IFACE, "GetStatistics", reply="(a{sv})")[0]
        # Only the data moved: the holes were neither sent nor written.
        self.assertGreaterEqual(stats["disk-bytes-copied"], data_bytes(disk_a))
        self.assertLess(stats["disk-bytes-copied"], data_bytes(disk_a) + 4 * MIB)
        self.assertIn("data stream 'nbd-vdb' of migration", self.b.log())
        self.assertEqual(self.hosts.guest_state(self.client_b, "tunoff"), "shut-off")
        # Nothing left: no qemu-storage-daemon on either host, no socket, no stream.
        harness.wait_until(lambda: not harness.storage_daemon_pids(self.scratch.path), timeout=20,
                           what="the qemu-storage-daemons to exit")
        self.assertEqual(self.b.qemu_pids(), [])
        self.assert_tunnel_gone()

    def test_offline_copy_fails_naming_the_stream_when_b_storage_daemon_dies(self):
        disk_a, disk_b = self.scratch.join("offk-A.raw"), self.scratch.join("offk-B.raw")
        path = self.start_offline_copy_held_mid_stream("tunoffk", disk_a, disk_b, 4)
        self.assertTrue(os.path.exists(disk_b))
        pids = self.storage_daemons(self.b)
        self.assertEqual(len(pids), 1)
        os.kill(pids[0], signal.SIGKILL)
        self.a.daemon.sigcont()
        success, error_name, message = self.hosts.wait_completed(self.client_a, path, 60)
        self.assertFalse(success)
        print("error message: " + message)
        self.assertIn("data stream 'nbd-vdb'", message)
        self.assertIn("hostB", message)
        self.assertIn("copy-disks", message)
        # The guest stays on A, shut off, its disk untouched; B has no
        # guest, no image Prepare created, no qemu-storage-daemon, no stream.
        try:
            harness.wait_until(lambda: self.hosts.guest_state(self.client_a, "tunoffk") == "shut-off",
                               timeout=30, what="the guest back to shut-off on hostA")
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.hosts.logs()))
        self.assertTrue(os.path.exists(disk_a))
        harness.wait_until(lambda: not harness.storage_daemon_pids(self.scratch.path), timeout=30,
                           what="the qemu-storage-daemons to exit")
        harness.wait_until(lambda: not self.hosts.guest_exists(self.client_b, "tunoffk"), timeout=30,
                           what="no guest on hostB")
        self.assertFalse(self.b.has_definition("tunoffk"))
        harness.wait_until(lambda: not os.path.exists(disk_b), timeout=30,
                           what="the image Prepare created on hostB to go")
        self.assert_tunnel_gone()

    # -- options ------------------------------------------------------------

    def test_tunnel_with_native_only_options_is_refused(self):
        guest = self.guest("tunopt", size_mib=8)
        self.start_on_a(guest)
        for extra, word in (({"nbd-port": self.b.migration_ports[0]}, "nbd-port"),
                            # An offline copy too: the tunnel or an NBD port, not both.
                            ({"nbd-port": self.b.migration_ports[0], "offline": True}, "nbd-port"),
                            ({"migration-port": self.b.migration_ports[0]}, "migration-port"),
                            ({"tls": False}, "tls=false")):
            options = dict(extra, transport="tunnel")
            with self.assertRaises(GLib.Error) as ctx:
                self.hosts.migrate("tunopt", options=options)
            self.assertEqual(harness.dbus_error_name(ctx.exception), "org.migrationd.Error.InvalidArgument")
            self.assertIn(word, ctx.exception.message)
            self.assertIn("transport", ctx.exception.message)
        with self.assertRaises(GLib.Error) as ctx:
            self.hosts.migrate("tunopt", options={"transport": "carrier-pigeon"})
        self.assertIn("native, tunnel", ctx.exception.message)
        # Nothing changed: the guest runs on A, nothing started on B.
        self.assertEqual(self.hosts.guest_state(self.client_a, "tunopt"), "running")
        self.assertEqual(self.b.qemu_pids(), [])
        self.assertEqual(harness.dbus_error_name(ctx.exception), "org.migrationd.Error.InvalidArgument")


if __name__ == "__main__":
    harness.main()

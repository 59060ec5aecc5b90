#!/usr/bin/python3
"""Non-shared storage between two hosts: disks mirrored over NBD during a
live migration, and copied with the libnbd copier for a shut-off guest.

Both "hosts" share this machine's filesystem, so a disk that is not shared
is one at a path the other host does not use: each test gives the
destination its own image path with the destination-xml option, which may
change host-side paths but nothing of the guest ABI."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE, MIGRATION_IFACE  # noqa: E402

MIB = 1024 * 1024
DATA_DISK_XML = """<disk type='file' device='disk'>
      <driver name='qemu' type='{format}'/>
      <source file='{path}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    """


def qemu_img(*args):
    proc = subprocess.run(["qemu-img"] + list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError("qemu-img %s: %s" % (" ".join(args), proc.stderr))
    return proc.stdout


def write_random(path, offset_mib, size_mib):
    subprocess.run(["dd", "if=/dev/urandom", "of=" + path, "bs=1M", "seek=%d" % offset_mib,
                    "count=%d" % size_mib, "conv=notrunc,fsync", "status=none"], check=True)


def allocated_bytes(path):
    """Bytes of data the image really holds (qemu-img map: data extents)."""
    import json
    extents = json.loads(qemu_img("map", "--output=json", path))
    return sum(e["length"] for e in extents if e.get("data"))


class Storage(twohosts.TwoHostsTestCase):

    def make_guest(self, name, disk_a, fmt="raw"):
        """The test guest with a data disk vdb at @disk_a on host A; the
        boot disk is shared (the same path on both hosts)."""
        guest = harness.TestGuest(self.scratch, name, size_mib=8, seed=11)
        guest.xml = guest.xml.replace("<serial type='file'>",
                                      DATA_DISK_XML.format(format=fmt, path=disk_a) + "<serial type='file'>", 1)
        return guest

    def destination_xml(self, path, disk_a, disk_b):
        xml = self.client_a.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        self.assertIn(disk_a, xml)
        return xml.replace(disk_a, disk_b)

    def assert_nothing_left_on_b(self, guest_name, images):
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="no QEMU on hostB")
        self.assertFalse(self.hosts.guest_exists(self.client_b, guest_name))
        self.assertFalse(self.b.has_definition(guest_name))
        for image in images:
            self.assertFalse(os.path.exists(image), "%s, created by Prepare, was left on hostB" % image)
        self.assertEqual(harness.storage_daemon_pids(self.scratch.path), [])
        self.assertEqual(self.b.listening_migration_ports(), [])

    def test_running_guest_disk_with_data_and_holes_is_mirrored(self):
        disk_a, disk_b = self.scratch.join("vdb-A.raw"), self.scratch.join("vdb-B.raw")
        with open(disk_a, "wb") as f:
            f.truncate(256 * MIB)
        for offset in (1, 40, 100, 250):
            write_random(disk_a, offset, 3)
        guest = self.make_guest("mirror", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok")
        migration = self.hosts.migrate("mirror", options={
            "copy-storage": "all", "disks": ["vdb"],
            "destination-xml": self.destination_xml(path, disk_a, disk_b)})
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        props = self.hosts.migration_props(self.client_a, migration)
        # Through the tunnel (the default) progress counts what moved: the
        # 12 MiB of data and NBD's requests, not the 256 MiB of the disk.
        self.assertEqual(props["DiskProcessed"], props["DiskTotal"])
        self.assertGreaterEqual(props["DiskTotal"], 12 * MIB)
        self.assertLess(props["DiskTotal"], 24 * MIB)
        phases = [c["Phase"] for c in self.hosts.watcher_a.changes.get(migration, []) if "Phase" in c]
        self.assertIn("mirror-disks", phases)
        self.assertLess(phases.index("mirror-disks"), phases.index("perform"))
        # The guest runs on B with its disk there; A's QEMU is gone.
        self.assertEqual(self.hosts.guest_state(self.client_b, "mirror"), "running")
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=30, what="A's QEMU gone")
        start = len(guest.serial_text())
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok", start=start)
        self.client_b.call(harness.guest_path("mirror"), GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        self.assertEqual(qemu_img("compare", "-f", "raw", "-F", "raw", disk_a, disk_b).strip(),
                         "Images are identical.")
        self.assertEqual(harness.storage_daemon_pids(self.scratch.path), [])

    def test_nbd_port_is_used_and_plaintext_nbd_is_refused(self):
        disk_a, disk_b = self.scratch.join("vdb-A.raw"), self.scratch.join("vdb-B.raw")
        with open(disk_a, "wb") as f:
            f.truncate(64 * MIB)
        write_random(disk_a, 0, 48)
        guest = self.make_guest("nbdport", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        # Inside hostB's migration port range (the only ports it accepts), but not the first
        # one, which it would pick by itself.
        nbd_port = self.b.migration_ports[1]
        # 4 MiB/s: the mirror of 48 MiB takes long enough to look at B.
        migration = self.hosts.migrate("nbdport", options={
            "copy-storage": "all", "disks": ["vdb"], "nbd-port": nbd_port, "bandwidth": 4 * MIB,
            "destination-xml": self.destination_xml(path, disk_a, disk_b)})
        self.hosts.wait_property(self.client_a, migration, "Phase", lambda p: p == "mirror-disks")
        harness.wait_until(lambda: nbd_port in self.b.listening_ports(), timeout=10,
                           what="hostB's NBD server on port %d" % nbd_port)
        # TLS is on (the default): a plaintext NBD client is turned away.
        proc = self.a.run_in_netns(["nbdinfo", "--size", "nbd://%s:%d/vdb" % (self.b.address, nbd_port)],
                                   timeout=30)
        self.assertNotEqual(proc.returncode, 0, proc.stdout)
        self.assertRegex(proc.stderr, r"(?i)tls")
        self.client_a.call(migration, MIGRATION_IFACE, "SetBandwidth", "(t)", (0,))
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assertNotIn(nbd_port, self.b.listening_ports())
        self.client_b.call(harness.guest_path("nbdport"), GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        self.assertEqual(qemu_img("compare", "-f", "raw", "-F", "raw", disk_a, disk_b).strip(),
                         "Images are identical.")

    def test_incremental_copies_only_the_top_layer(self):
        base = self.scratch.join("base.raw")
        with open(base, "wb") as f:
            f.truncate(128 * MIB)
        write_random(base, 0, 64)
        top_a, top_b = self.scratch.join("top-A.qcow2"), self.scratch.join("top-B.qcow2")
        qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", top_a)
        subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 80M 2M", top_a], check=True,
                       capture_output=True)
        guest = self.make_guest("incr", top_a, fmt="qcow2")
        path = self.hosts.define_and_start_on_a(guest)
        migration = self.hosts.migrate("incr", options={
            "copy-storage": "incremental", "disks": ["vdb"],
            "destination-xml": self.destination_xml(path, top_a, top_b)})
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.client_b.call(harness.guest_path("incr"), GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="B's QEMU gone")
        # B's top layer refers to the same base and holds only the top's
        # data (2 MiB written), not the base's 64 MiB.
        info = qemu_img("info", top_b)
        self.assertIn("backing file: " + base, info)
        top_data = allocated_bytes(top_b) - allocated_bytes(base)
        self.assertLess(top_data, 8 * MIB, info)
        self.assertGreaterEqual(top_data, 2 * MIB, info)
        self.assertEqual(qemu_img("compare", top_a, top_b).strip(), "Images are identical.")

    def test_destination_qemu_killed_mid_mirror(self):
        disk_a, disk_b = self.scratch.join("vdb-A.raw"), self.scratch.join("vdb-B.raw")
        with open(disk_a, "wb") as f:
            f.truncate(64 * MIB)
        write_random(disk_a, 0, 48)
        guest = self.make_guest("killb", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        migration = self.hosts.migrate("killb", options={
            "copy-storage": "all", "disks": ["vdb"], "bandwidth": 4 * MIB,
            "destination-xml": self.destination_xml(path, disk_a, disk_b)})
        self.hosts.wait_property(self.client_a, migration, "Phase", lambda p: p == "mirror-disks")
        # Mid-mirror: data is flowing (4 MiB/s of 48 MiB leaves seconds).
        # Killing B's QEMU while A's QEMU is still connecting its NBD client
        # once left A's QEMU silent inside blockdev-add (not understood;
        # see the issue note), a different case from this one.
        self.hosts.wait_property(self.client_a, migration, "DiskProcessed", lambda d: d > 0)
        self.assertTrue(os.path.exists(disk_b))
        for pid in self.b.qemu_pids():
            os.kill(pid, 9)
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertFalse(success)
        self.assertTrue(name.startswith("org.migrationd.Error."), name)
        self.assertIn("hostB", message)
        self.assertEqual(self.hosts.guest_state(self.client_a, "killb"), "running")
        start = len(guest.serial_text())
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok", start=start)
        self.assert_nothing_left_on_b("killb", [disk_b])
        self.assertTrue(os.path.exists(disk_a))

    def test_disk_neither_copied_nor_shared_fails_prepare(self):
        disk_a = self.scratch.join("vdb-A.raw")
        with open(disk_a, "wb") as f:
            f.truncate(16 * MIB)
        guest = self.make_guest("unshared", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        missing = self.scratch.join("nowhere", "vdb.raw")
        migration = self.hosts.migrate("unshared", options={
            "destination-xml": self.destination_xml(path, disk_a, missing)})
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertFalse(success)
        self.assertEqual(name, "org.migrationd.Error.StorageFailed")
        self.assertIn("vdb", message)
        self.assertIn("copy-storage", message)
        self.assertEqual(self.hosts.guest_state(self.client_a, "unshared"), "running")
        self.assert_nothing_left_on_b("unshared", [missing])

    def test_offline_shared_disk_reports_no_memory(self):
        disk = self.scratch.join("shared.raw")
        with open(disk, "wb") as f:
            f.truncate(16 * MIB)
        guest = self.make_guest("offshared", disk)
        self.hosts.define(self.client_a, guest.xml)
        migration = self.hosts.migrate("offshared", options={"offline": True})
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        props = self.client_a.get_all(migration, MIGRATION_IFACE)
        # Nothing was copied (the disk is shared): no made-up byte of memory.
        self.assertEqual({k: props[k] for k in ("MemoryTotal", "MemoryProcessed", "MemoryRemaining",
                                                "DiskTotal", "DiskProcessed", "Rate")},
                         dict.fromkeys(("MemoryTotal", "MemoryProcessed", "MemoryRemaining", "DiskTotal",
                                        "DiskProcessed", "Rate"), 0))
        self.assertEqual((props["State"], props["Progress"], props["ProgressValid"]), ("completed", 1.0, True))
        # migrationctl shows no memory figures for it.
        out = subprocess.run([harness.CTL, "--address", self.a.bus.address, "migrations"],
                             capture_output=True, text=True, check=True).stdout
        self.assertNotIn("1 byte", out)
        self.assertEqual(self.hosts.guest_state(self.client_b, "offshared"), "shut-off")

    def test_offline_sparse_4g_moves_only_its_data(self):
        # transport=native: the copier to qemu-storage-daemon's NBD port
        # (TLS); test_tunnel covers the same copy through the peer port.
        disk_a, disk_b = self.scratch.join("big-A.raw"), self.scratch.join("big-B.raw")
        with open(disk_a, "wb") as f:
            f.truncate(4096 * MIB)
        for i in range(16):  # 16 x 64 MiB = 1 GiB, scattered
            write_random(disk_a, i * 250 + 3, 64)
        guest = self.make_guest("offline", disk_a)
        path = self.hosts.define(self.client_a, guest.xml)
        migration = self.hosts.migrate("offline", options={
            "offline": True, "copy-storage": "all", "disks": ["vdb"], "verify": True,
            "transport": "native", "destination-xml": self.destination_xml(path, disk_a, disk_b)})
        success, name, message = self.hosts.wait_completed(self.client_a, migration, timeout=300)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        stats = self.client_a.call(migration, MIGRATION_IFACE, "GetStatistics", reply="(a{sv})")[0]
        copied = stats["disk-bytes-copied"]
        self.assertGreaterEqual(copied, 1024 * MIB)
        self.assertLess(copied, 1100 * MIB)
        self.assertEqual(stats["DiskTotal"], 4096 * MIB)
        # Disk figures, and no memory figures: a shut-off guest has none.
        props = self.client_a.get_all(migration, MIGRATION_IFACE)
        self.assertEqual((props["DiskProcessed"], props["Progress"], props["ProgressValid"]),
                         (4096 * MIB, 1.0, True))
        self.assertEqual((props["MemoryTotal"], props["MemoryProcessed"], props["Rate"]), (0, 0, 0))
        self.assertEqual(qemu_img("compare", "-f", "raw", "-F", "raw", disk_a, disk_b).strip(),
                         "Images are identical.")
        # Defined (offline means persist) and shut off on B; nothing runs.
        self.assertTrue(self.b.has_definition("offline"))
        self.assertEqual(self.hosts.guest_state(self.client_b, "offline"), "shut-off")
        self.assertEqual(harness.storage_daemon_pids(self.scratch.path), [])
        self.assertEqual(self.b.qemu_pids(), [])


if __name__ == "__main__":
    time.tzset()
    harness.main()

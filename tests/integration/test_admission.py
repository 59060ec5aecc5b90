#!/usr/bin/python3
"""The destination trusts nothing it did not create (issue 9): disk paths
only in [storage] image-dirs, never an existing file unless reuse is
allowed by both sides, no symbolic link followed, CheckPaths answers only
inside the image directories, a migration is controlled only by the peer
that prepared it, concurrent Prepares never collide on a port, and a full
disk says so.

Tried both through the public API (Guest1.Migrate on hostA with a
destination-xml) and directly as a peer holding a valid certificate
(peer_client.py speaks Peer1 over TLS, inside hostA's namespace)."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE, GLib  # noqa: E402

MIB = 1024 * 1024
PEER_CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_client.py")
VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)")
VICTIM_CONTENT = b"root:secret-hash-that-must-not-change:19000:0:99999:7:::\n" * 64
DATA_DISK_XML = """<disk type='file' device='disk'>
      <driver name='qemu' type='{format}'/>
      <source file='{path}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    """


def write_random(path, offset_mib, size_mib):
    subprocess.run(["dd", "if=/dev/urandom", "of=" + path, "bs=1M", "seek=%d" % offset_mib,
                    "count=%d" % size_mib, "conv=notrunc,fsync", "status=none"], check=True)


def gv_string(value):
    """A GVariant text literal of a string."""
    return GLib.Variant("s", value).print_(False)


class Victim:
    """A root-only 0600 file outside every image directory, as /etc/shadow
    would be: its content and mtime must survive every attempt."""

    def __init__(self, test, name="shadow"):
        self.dir = tempfile.mkdtemp(prefix="md-victim-", dir="/var/tmp")
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, name)
        with open(self.path, "wb") as f:
            f.write(VICTIM_CONTENT)
        os.chmod(self.path, 0o600)
        # An mtime in the past, so a write now would show.
        os.utime(self.path, (1000000000, 1000000000))
        self.stat = os.stat(self.path)

    def assert_intact(self, test):
        with open(self.path, "rb") as f:
            test.assertEqual(f.read(), VICTIM_CONTENT, "the victim file was written")
        st = os.stat(self.path)
        test.assertEqual((st.st_mtime_ns, st.st_size, st.st_mode), (self.stat.st_mtime_ns, self.stat.st_size,
                                                                       self.stat.st_mode))


class Admission(twohosts.TwoHostsTestCase):

    start_hosts = False

    def setUp(self):
        super().setUp()
        self.make_hosts(start=False)
        # hostB allows one image directory; the test guests' boot disks
        # (shared by both "hosts") live in a second one.
        self.images_b = self.scratch.join("images-B")
        os.makedirs(self.images_b, mode=0o700)
        self.shared = self.scratch.join("shared")
        os.makedirs(self.shared, mode=0o755)
        self.b.image_dirs = [self.images_b, self.shared]

    def start(self, storage_config=""):
        self.b.storage_config = storage_config
        self.hosts.start()

    # -- guests ------------------------------------------------------------

    def make_guest(self, name, disk_a=None, fmt="raw", memory=64, size_mib=8, seed=11):
        """The test guest (boot disk in the shared directory), with a data
        disk vdb at @disk_a on hostA when given."""
        shared = twohosts.HostDir(self.shared)
        guest = harness.TestGuest(shared, name, size_mib=size_mib, seed=seed, memory=memory)
        if disk_a is not None:
            guest.xml = guest.xml.replace("<serial type='file'>",
                                          DATA_DISK_XML.format(format=fmt, path=disk_a) + "<serial type='file'>", 1)
        return guest

    def data_disk(self, name, size_mib=16, data_mib=4):
        path = self.scratch.join(name)
        with open(path, "wb") as f:
            f.truncate(size_mib * MIB)
        if data_mib:
            write_random(path, 0, data_mib)
        return path

    def destination_xml(self, path, old, new):
        xml = self.client_a.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        self.assertIn(old, xml)
        return xml.replace(old, new)

    def migrate_expect_failure(self, name, options):
        path = self.hosts.migrate(name, options=options)
        success, error_name, message = self.hosts.wait_completed(self.client_a, path)
        self.assertFalse(success, "the migration succeeded\n" + self.hosts.logs())
        print("error: %s: %s" % (error_name, message))
        return error_name, message

    def assert_guest_runs_on_a(self, guest):
        self.assertEqual(self.hosts.guest_state(self.client_a, guest.name), "running", self.hosts.logs())
        start = len(guest.serial_text())
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok", start=start)

    def assert_nothing_on_b(self, name):
        harness.wait_until(lambda: not self.b.qemu_pids(), timeout=30, what="no QEMU on hostB")
        harness.wait_until(lambda: not self.hosts.guest_exists(self.client_b, name), timeout=30,
                           what="no guest %s on hostB" % name)
        self.assertEqual(self.b.listening_migration_ports(), [])

    # -- a peer of our own ---------------------------------------------------

    def peer(self, calls, tls_dir=None, nbd_write=None):
        """Runs peer_client.py in hostA's namespace with hostA's
        certificate (or @tls_dir's): a list of per-call results."""
        spec = {"address": self.b.peer_address, "tls_dir": tls_dir or self.a.tls_dir, "calls": calls,
                "nbd_write": nbd_write}
        proc = self.a.run_in_netns([sys.executable, PEER_CLIENT, json.dumps(spec)], timeout=120)
        if proc.returncode != 0:
            raise AssertionError("peer_client.py failed: %s\n%s" % (proc.stderr, self.hosts.logs()))
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def hello(self, name="evil-peer"):
        return ["Hello", "(uint32 1, %s, %s, @a{sv} {})" % (gv_string(str(uuid.uuid4())), gv_string(name))]

    # -- 1. no file outside the image directories ---------------------------

    def test_destination_xml_cannot_overwrite_a_root_file(self):
        victim = Victim(self)
        self.start()
        disk_a = self.data_disk("vdb-A.raw")
        guest = self.make_guest("overwrite", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok")
        name, message = self.migrate_expect_failure("overwrite", {
            "copy-storage": "all", "disks": ["vdb"],
            "destination-xml": self.destination_xml(path, disk_a, victim.path)})
        victim.assert_intact(self)
        self.assertEqual(name, "org.migrationd.Error.NotAuthorized")
        self.assertIn(victim.path, message)
        self.assertIn("[storage] image-dirs", message)
        self.assertIn("hostB", message)
        self.assert_guest_runs_on_a(guest)
        self.assert_nothing_on_b("overwrite")

    def test_existing_file_inside_image_dir_is_not_overwritten(self):
        self.start()
        existing = os.path.join(self.images_b, "taken.raw")
        with open(existing, "wb") as f:
            f.write(VICTIM_CONTENT)
        os.utime(existing, (1000000000, 1000000000))
        disk_a = self.data_disk("vdb-A.raw")
        guest = self.make_guest("taken", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        name, message = self.migrate_expect_failure("taken", {
            "copy-storage": "all", "disks": ["vdb"],
            "destination-xml": self.destination_xml(path, disk_a, existing)})
        with open(existing, "rb") as f:
            self.assertEqual(f.read(), VICTIM_CONTENT)
        self.assertEqual(os.stat(existing).st_mtime, 1000000000)
        self.assertEqual(name, "org.migrationd.Error.AlreadyExists")
        self.assertIn(existing, message)
        self.assertIn("reuse-existing-images", message)
        self.assert_guest_runs_on_a(guest)
        self.assert_nothing_on_b("taken")

    def test_peer_prepare_and_nbd_cannot_reach_a_root_file(self):
        victim = Victim(self)
        self.start()
        guest = self.make_guest("peerattack", "/dev/null")
        xml = guest.xml.replace("/dev/null", victim.path)
        disks_info = "[{'target': <'vdb'>, 'format': <'raw'>, 'virtual-size': <uint64 %d>}]" % len(VICTIM_CONTENT)
        prepare = ["Prepare", "('/org/migrationd/migration/77', %s, {'disks-info': <@aa{sv} %s>, "
                   "'copy-storage': <'all'>})" % (gv_string(xml), disks_info)]
        results = self.peer([self.hello(), prepare], nbd_write="OVERWRITTEN BY A PEER\n" * 64)
        self.assertIn("reply", results[0], results)
        victim.assert_intact(self)
        self.assertEqual(results[1].get("error"), "org.migrationd.Error.NotAuthorized", results)
        self.assertIn(victim.path, results[1]["message"])
        self.assertNotIn("nbd_write", results[1])
        self.assert_nothing_on_b("peerattack")

    def test_peer_definition_cannot_choose_programs_or_overwrite_via_serial_log(self):
        victim = Victim(self)
        self.start()
        guest = self.make_guest("hostfiles")
        emulator = guest.xml.replace("<devices>", "<devices>\n    <emulator>/bin/sh</emulator>", 1)
        serial = guest.xml.replace(guest.serial, victim.path)
        rng = guest.xml.replace("</devices>", "<rng model='virtio'><backend model='random'>%s</backend></rng>"
                                "</devices>" % victim.path, 1)
        calls = [self.hello()]
        for n, xml in enumerate((emulator, serial, rng)):
            calls.append(["Prepare", "('%s:/org/migrationd/migration/%d', %s, @a{sv} {})"
                          % (uuid.uuid4(), n, gv_string(xml))])
        results = self.peer(calls)
        victim.assert_intact(self)
        for result, fragment in zip(results[1:], ("/bin/sh", victim.path, victim.path)):
            self.assertEqual(result.get("error"), "org.migrationd.Error.NotAuthorized", results)
            self.assertIn(fragment, result["message"])
        self.assert_nothing_on_b("hostfiles")

    def test_symlink_inside_image_dir_pointing_outside_is_refused(self):
        victim = Victim(self)
        self.start()
        link = os.path.join(self.images_b, "vdb-link.raw")
        os.symlink(victim.path, link)
        # A directory link too: creating a new file through it would land
        # outside.
        outside_dir = tempfile.mkdtemp(prefix="md-outside-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, outside_dir, True)
        os.symlink(outside_dir, os.path.join(self.images_b, "sub"))
        disk_a = self.data_disk("vdb-A.raw")
        guest = self.make_guest("links", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        for target, component in ((link, "vdb-link.raw"), (os.path.join(self.images_b, "sub", "new.raw"), "sub")):
            name, message = self.migrate_expect_failure("links", {
                "copy-storage": "all", "disks": ["vdb"],
                "destination-xml": self.destination_xml(path, disk_a, target)})
            self.assertEqual(name, "org.migrationd.Error.NotAuthorized")
            self.assertIn("'%s' is a symbolic link" % component, message)
            self.assert_nothing_on_b("links")
        # Even with reuse allowed on both sides, a link is not followed.
        victim.assert_intact(self)
        self.assertEqual(os.listdir(outside_dir), [])
        self.assert_guest_runs_on_a(guest)

    def test_check_paths_answers_only_inside_image_dirs(self):
        self.start()
        inside = os.path.join(self.images_b, "present.raw")
        with open(inside, "wb") as f:
            f.truncate(MIB)
        missing = os.path.join(self.images_b, "absent.raw")
        paths = ["/etc/shadow", "/etc/does-not-exist", "/var/tmp/../../etc/shadow",
                 self.images_b + "/../../../etc/shadow", inside, missing]
        results = self.peer([self.hello(), ["CheckPaths", "(%s,)" % GLib.Variant("as", paths).print_(False)]])
        answer = GLib.Variant.parse(None, results[1]["reply"], None, None).unpack()[0]
        self.assertEqual(answer, {inside: True, missing: False})

    def test_offline_copy_and_backing_files_obey_the_same_rules(self):
        victim = Victim(self)
        self.start()
        # Offline: the qemu-storage-daemon would serve the victim writable.
        disk_a = self.data_disk("off-A.raw")
        guest = self.make_guest("offline", disk_a)
        path = self.hosts.define(self.client_a, guest.xml)
        name, message = self.migrate_expect_failure("offline", {
            "offline": True, "copy-storage": "all", "disks": ["vdb"],
            "destination-xml": self.destination_xml(path, disk_a, victim.path)})
        self.assertEqual(name, "org.migrationd.Error.NotAuthorized")
        self.assertIn(victim.path, message)
        victim.assert_intact(self)
        self.assertEqual(harness.storage_daemon_pids(self.scratch.path), [])
        # Incremental: the backing file must lie in an image directory too.
        outside = tempfile.mkdtemp(prefix="md-base-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, outside, True)
        base = os.path.join(outside, "base.raw")
        with open(base, "wb") as f:
            f.truncate(16 * MIB)
        top_a = self.scratch.join("top-A.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", top_a],
                       check=True)
        guest2 = self.make_guest("incr", top_a, fmt="qcow2")
        path2 = self.hosts.define_and_start_on_a(guest2)
        top_b = os.path.join(self.images_b, "top-B.qcow2")
        name, message = self.migrate_expect_failure("incr", {
            "copy-storage": "incremental", "disks": ["vdb"],
            "destination-xml": self.destination_xml(path2, top_a, top_b)})
        self.assertEqual(name, "org.migrationd.Error.NotAuthorized")
        self.assertIn(base, message)
        self.assertFalse(os.path.exists(top_b))
        self.assert_guest_runs_on_a(guest2)

    def test_reuse_needs_both_sides_and_a_matching_image(self):
        self.start("reuse-existing-images=true\n")
        disk_a = self.data_disk("vdb-A.raw", size_mib=16, data_mib=8)
        guest = self.make_guest("reuse", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        pre = os.path.join(self.images_b, "pre.raw")
        with open(pre, "wb") as f:
            f.truncate(8 * MIB)  # the wrong size
        xml = self.destination_xml(path, disk_a, pre)
        name, message = self.migrate_expect_failure("reuse", {
            "copy-storage": "all", "disks": ["vdb"], "destination-xml": xml})
        self.assertEqual(name, "org.migrationd.Error.AlreadyExists")  # the caller did not allow it
        name, message = self.migrate_expect_failure("reuse", {
            "copy-storage": "all", "disks": ["vdb"], "destination-xml": xml, "reuse-existing-images": True})
        self.assertEqual(name, "org.migrationd.Error.InvalidArgument")
        self.assertIn("8388608", message)
        self.assertTrue(os.path.exists(pre), "a pre-created image was removed")
        with open(pre, "wb") as f:
            f.truncate(16 * MIB)
        migration = self.hosts.migrate("reuse", options={
            "copy-storage": "all", "disks": ["vdb"], "destination-xml": xml, "reuse-existing-images": True})
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.client_b.call(harness.guest_path("reuse"), GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        proc = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", disk_a, pre],
                              capture_output=True, text=True)
        self.assertEqual(proc.stdout.strip(), "Images are identical.", proc.stderr)

    # -- 2. a migration belongs to the peer that prepared it ---------------

    def test_abort_from_another_peer_is_refused_and_the_migration_completes(self):
        # hostC: a third host with a certificate from the same CA, allowed
        # on hostB like hostA.
        twohosts.TLS(self.hosts.tls.out, {"hostC": "192.0.2.3"})
        tls_c = os.path.join(self.hosts.tls.out, "hostC")
        dn_c = subprocess.run(["certtool", "-i", "--infile", os.path.join(tls_c, "client-cert.pem")],
                              capture_output=True, text=True, check=True).stdout
        dn_c = re.search(r"Subject: (.*)", dn_c).group(1).strip()
        self.b.allowed_dns = self.b.allowed_dns + [dn_c]
        self.start()
        guest = self.make_guest("owned", size_mib=16, seed=5)
        self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok")
        expected = harness.expected_sum(16, 5)
        serial_b = os.path.join(self.shared, "owned-serial-B.log")
        xml = self.client_a.call(harness.guest_path("owned"), GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        xml = xml.replace(guest.serial, serial_b)
        # 2 MiB/s: the RAM transfer lasts long enough to interfere with.
        path = self.hosts.migrate("owned", options={"destination-xml": xml, "bandwidth": 2 * MIB})
        self.hosts.wait_property(self.client_a, path, "Phase", lambda p: p == "perform")
        # The id hostA's daemon gave the migration in Prepare (hostB logs it).
        found = harness.wait_until(
            lambda: re.search(r"incoming migration (\S+): QEMU for owned listens", self.b.log()),
            timeout=30, what="hostB's log of the prepared migration")
        migration_id = found.group(1)
        calls = [self.hello("hostC"), ["Abort", "(%s, 'hostile')" % gv_string(migration_id)],
                 ["Finish", "(%s, false, @a{sv} {})" % gv_string(migration_id)]]
        other = self.peer(calls, tls_dir=tls_c)
        for result in other[1:]:
            self.assertEqual(result.get("error"), "org.migrationd.Error.NotAuthorized", other)
            self.assertIn("prepared by peer", result["message"])
        # The same identity on another connection, without the token.
        same = self.peer([self.hello("hostA-again"), ["Abort", "(%s, 'stale')" % gv_string(migration_id)],
                          ["Finish", "(%s, false, {'token': <'0000'>})" % gv_string(migration_id)]])
        for result in same[1:]:
            self.assertEqual(result.get("error"), "org.migrationd.Error.NotAuthorized", same)
            self.assertIn("token", result["message"])
        self.client_a.call(path, harness.MIGRATION_IFACE, "SetBandwidth", "(t)", (0,))
        success, name, message = self.hosts.wait_completed(self.client_a, path)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        self.assertEqual(self.hosts.guest_state(self.client_b, "owned"), "running")
        guest_b = harness.TestGuest.__new__(harness.TestGuest)
        guest_b.name, guest_b.serial = "owned", serial_b
        match = guest_b.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=([0-9a-f]{8}) (ok|BAD)", timeout=60)
        self.assertEqual((match.group(1), match.group(2)), (expected, "ok"))

    def test_reconnect_resumes_control_only_with_the_token(self):
        self.start()
        guest = self.make_guest("resume")
        migration_id = "%s:/org/migrationd/migration/5" % uuid.uuid4()
        prepare = ["Prepare", "(%s, %s, @a{sv} {})" % (gv_string(migration_id), gv_string(guest.xml))]
        finish = "(%s, false, {'error-message': <'the source gave up'>, 'token': <%%s>})" % gv_string(migration_id)
        results = self.peer([self.hello("hostA"), prepare, ["@reconnect", ""], self.hello("hostA"),
                             ["Abort", "(%s, 'no token')" % gv_string(migration_id)],
                             ["Finish", finish % "'wrong'"],
                             ["Finish", finish % "'{token}'"]])
        self.assertIn("token", GLib.Variant.parse(None, results[1]["reply"], None, None).unpack()[0],
                      results)
        self.assertEqual(results[4].get("error"), "org.migrationd.Error.NotAuthorized", results)
        self.assertEqual(results[5].get("error"), "org.migrationd.Error.NotAuthorized", results)
        self.assertIn("token is wrong", results[5]["message"])
        self.assertIn("reply", results[6], results)
        # The token-bearing Finish(false) ended it: nothing left on B.
        self.assert_nothing_on_b("resume")
        incoming = self.client_b.call(harness.MANAGER_PATH, harness.MANAGER_IFACE, "ListMigrations",
                                      None, None, "(ao)")[0]
        props = self.client_b.get_all(incoming[0], harness.MIGRATION_IFACE)
        self.assertEqual(props["State"], "failed")
        self.assertIn("the source gave up", props["ErrorMessage"])

    # -- 5. a hung file system never blocks the daemon ------------------------

    def test_hung_mount_times_out_naming_the_path_and_the_daemon_answers(self):
        hung = self.scratch.join("hung")
        os.makedirs(hung)
        fs = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(PEER_CLIENT), "hung_fs.py"), hung],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def stop_fs():
            if fs.poll() is None:
                fs.kill()  # blocked calls then fail with ENOTCONN
                fs.wait()
                subprocess.run(["umount", "-l", hung], capture_output=True)
        self.addCleanup(stop_fs)
        harness.wait_until(lambda: any(line.split()[1] == hung for line in open("/proc/mounts")),
                           what="the hung FUSE mount")
        self.b.image_dirs.append(hung)
        self.start("fs-check-timeout=8\n")
        # Before the daemons are stopped: a thread blocked in the mount
        # keeps a killed process from being reaped.
        self.addCleanup(stop_fs)
        guest = self.make_guest("hung")
        path = self.hosts.define_and_start_on_a(guest)
        # The boot disk "shared" at a path on the hung mount on B.
        on_hung = os.path.join(hung, "boot.img")
        started = time.monotonic()
        migration = self.hosts.migrate("hung", options={
            "destination-xml": self.destination_xml(path, guest.image, on_hung)})
        # While the check hangs in the mount (Prepare has not answered),
        # B's daemon answers other calls: its main loop is not blocked.
        self.hosts.wait_property(self.client_a, migration, "Phase", lambda p: p == "prepare")
        harness.wait_until(lambda: "Peer 192" in self.b.log() or "connected: host hostA" in self.b.log(),
                           timeout=20, what="hostA connected to hostB")
        self.client_b.call(harness.MANAGER_PATH, harness.MANAGER_IFACE, "ListGuests", None, None, "(ao)")
        self.assertEqual(self.client_a.get_property(migration, harness.MIGRATION_IFACE, "Phase"), "prepare")
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertFalse(success)
        print("error: %s: %s (after %.1f s)" % (name, message, time.monotonic() - started))
        self.assertEqual(name, "org.migrationd.Error.Timeout")
        self.assertIn(on_hung, message)
        self.assertIn("fs-check-timeout", message)
        self.assert_guest_runs_on_a(guest)
        self.assert_nothing_on_b("hung")

    # -- 4. concurrent Prepares never collide on a port ----------------------

    def run_concurrent(self, count):
        self.start()
        guests = []
        for i in range(count):
            guest = self.make_guest("conc%d" % i, size_mib=4, seed=20 + i)
            self.hosts.define_and_start_on_a(guest)
            guests.append(guest)
        for guest in guests:
            guest.wait_serial(r"MDGUEST VERIFY pass=\d+ .* ok", timeout=120)
        migrations = []
        for guest in guests:
            serial_b = os.path.join(self.shared, guest.name + "-serial-B.log")
            xml = self.client_a.call(harness.guest_path(guest.name), GUEST_IFACE, "GetXML", "(a{sv})",
                                     ({},), "(s)")[0].replace(guest.serial, serial_b)
            path = self.hosts.migrate(guest.name, options={"destination-xml": xml, "bandwidth": 32 * MIB})
            migrations.append((guest, path, serial_b))
        for guest, path, _serial in migrations:
            success, name, message = self.hosts.wait_completed(self.client_a, path, timeout=240)
            self.assertTrue(success, "%s: %s: %s\n%s" % (guest.name, name, message, self.hosts.logs()))
        for guest, _path, serial_b in migrations:
            self.assertEqual(self.hosts.guest_state(self.client_b, guest.name), "running")
            guest_b = harness.TestGuest.__new__(harness.TestGuest)
            guest_b.name, guest_b.serial = guest.name, serial_b
            match = guest_b.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=([0-9a-f]{8}) (ok|BAD)", timeout=120)
            self.assertEqual((match.group(1), match.group(2)), (harness.expected_sum(4, guest.seed), "ok"),
                             guest.name)
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=60, what="no QEMU left on hostA")
        self.assertEqual(len(self.b.qemu_pids()), count)
        self.assertEqual(self.b.listening_migration_ports(), [])

    def test_four_concurrent_migrations_to_one_host(self):
        self.run_concurrent(4)

    def test_eight_concurrent_migrations_to_one_host(self):
        self.run_concurrent(8)

    # -- 5. a full destination disk says so ---------------------------------

    def test_full_destination_disk_says_no_space_left(self):
        full = os.path.join(self.images_b, "small")
        os.makedirs(full)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "md-test-full", full], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", full])
        self.start()
        disk_a = self.data_disk("big-A.raw", size_mib=64, data_mib=32)
        guest = self.make_guest("full", disk_a)
        path = self.hosts.define_and_start_on_a(guest)
        target = os.path.join(full, "big-B.raw")
        name, message = self.migrate_expect_failure("full", {
            "copy-storage": "all", "disks": ["vdb"],
            "destination-xml": self.destination_xml(path, disk_a, target)})
        self.assertEqual(name, "org.migrationd.Error.StorageFailed")
        self.assertIn("no space left on device", message.lower())
        self.assertIn("hostB", message)
        self.assertIn(target, message)
        self.assert_guest_runs_on_a(guest)
        self.assert_nothing_on_b("full")
        harness.wait_until(lambda: os.listdir(full) == [], timeout=20,
                           what="the target image removed from the full disk (%s)" % os.listdir(full))


if __name__ == "__main__":
    time.tzset()
    harness.main()

#!/usr/bin/python3
"""Save, restore and managed save on real QEMU: the guest's RAM survives a
trip through a file (compressed or not, across two daemons), every bad
input or full disk is a clear error that leaves the guest running and no
partial file, a bad file leaves no QEMU behind; and migration addresses
with shell metacharacters are refused."""

import os
import re
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE, GLib  # noqa: E402

VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)")
MAGIC = b"MIGRATIOND-SAVE\n"


def live_processes():
    """(pid, comm, parent pid) of every process that is not a zombie."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm = fields[fields.index("(") + 1:fields.rindex(")")]
        rest = fields[fields.rindex(")") + 2:].split()
        if rest[0] != "Z":
            yield int(entry), comm, int(rest[1])


def children_named(parent_pid, name):
    return [pid for pid, comm, ppid in live_processes() if comm == name and ppid == parent_pid]


class SaveTestCase(harness.MigrationdTestCase):

    def setUp(self):
        super().setUp()
        self.polkitd.set_allowed(harness.ACTIONS)

    def define(self, client, guest):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "DefineGuest", "(sa{sv})", (guest.xml, {}), "(o)")[0]

    def state(self, client, path):
        return client.get_property(path, GUEST_IFACE, "State")

    def start_guest(self, client, guest):
        path = self.define(client, guest)
        client.call(path, GUEST_IFACE, "Start", "(a{sv})", ({},))
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok")
        return path

    def save(self, client, path, file, options=None):
        return client.call(path, GUEST_IFACE, "Save", "(sa{sv})", (file, options or {}), "(o)")[0]

    def wait_done(self, client, migration, timeout=120):
        harness.wait_until(
            lambda: client.get_property(migration, MIGRATION_IFACE, "State") in ("completed", "failed", "cancelled"),
            timeout=timeout, what="the save to finish")
        return client.get_all(migration, MIGRATION_IFACE)

    def last_pass(self, guest):
        passes = [int(m.group(1)) for m in VERIFY_RE.finditer(guest.serial_text())]
        self.assertTrue(passes, guest.serial_text())
        return max(passes)

    def assert_ram_continues(self, guest, after_pass, serial=None):
        """The guest did not reboot and verifies its RAM sum after @after_pass."""
        expected = harness.expected_sum(guest.size_mib, guest.seed)
        reader = guest
        if serial is not None:
            reader = harness.TestGuest.__new__(harness.TestGuest)
            reader.name, reader.serial = guest.name, serial
        harness.wait_until(
            lambda: [m for m in VERIFY_RE.finditer(reader.serial_text()) if int(m.group(1)) > after_pass],
            timeout=60, what="a VERIFY line after pass %d" % after_pass)
        text = reader.serial_text()
        later = [m for m in VERIFY_RE.finditer(text) if int(m.group(1)) > after_pass]
        for m in later:
            self.assertEqual((m.group(2), m.group(3)), (expected, "ok"), text)
        # The serial log is appended to: the one READY is from the first
        # boot (none in a fresh log); a rebooted guest would add another.
        self.assertEqual(text.count("MDGUEST READY"), 0 if serial is not None else 1, text)

    def assert_guest_keeps_running(self, client, path, guest):
        self.assertEqual(self.state(client, path), "running")
        self.assertEqual(client.get_property(path, GUEST_IFACE, "Migration"), "/")
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1)
        length = len(guest.serial_text())
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", start=length)


class SaveRestore(SaveTestCase):

    def test_save_zstd_and_restore_ram_intact(self):
        daemon = self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "zsave", size_mib=16, seed=11)
        path = self.start_guest(client, guest)
        target = self.scratch.join("zsave.state")
        fds_before = len(os.listdir("/proc/%d/fd" % daemon.proc.pid))
        migration = self.save(client, path, target, {"compression": GLib.Variant("s", "zstd")})
        self.assertTrue(migration.startswith("/org/migrationd/migration/"), migration)
        props = self.wait_done(client, migration)
        self.assertEqual(props["State"], "completed", "%s: %s" % (props["ErrorName"], props["ErrorMessage"]))
        self.assertEqual((props["Direction"], props["Peer"], props["Progress"]), ("save", target, 1.0))
        last = self.last_pass(guest)

        # Saved: QEMU gone, state "saved", the file is ours and private.
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU to exit")
        self.assertEqual(self.state(client, path), "saved")
        mode = os.stat(target).st_mode
        self.assertEqual(stat.S_IMODE(mode), 0o600)
        with open(target, "rb") as f:
            head = f.read(4096 + 4)
        self.assertEqual(head[:16], MAGIC)
        self.assertIn(b"<name>zsave</name>", head)
        self.assertEqual(head[4096:4100], b"\x28\xb5\x2f\xfd", "the stream is not zstd")
        self.assertEqual(children_named(daemon.proc.pid, "zstd"), [])
        self.assertEqual([n for n in os.listdir(self.scratch.path) if "partial" in n], [])

        restored = client.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (target, {}), "(o)")[0]
        self.assertEqual(restored, path)
        self.assertEqual(self.state(client, path), "running")
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1)
        self.assert_ram_continues(guest, last)
        self.assertEqual(children_named(daemon.proc.pid, "zstd"), [])
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        # No descriptor of the file, the pipes or QEMU's socket stays open.
        harness.wait_until(lambda: len(os.listdir("/proc/%d/fd" % daemon.proc.pid)) <= fds_before,
                           what="the daemon's fd count to drop back to %d" % fds_before)
        self.assertEqual(daemon.terminate(), 0)  # and, under VALGRIND=1, no memory errors

    def test_bypass_cache_writes_with_o_direct(self):
        daemon = self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "direct", size_mib=16, seed=23)
        path = self.start_guest(client, guest)
        target = self.scratch.join("direct.state")
        migration = self.save(client, path, target, {"bypass-cache": GLib.Variant("b", True),
                                                     "compression": GLib.Variant("s", "zstd"),
                                                     "bandwidth": GLib.Variant("t", 4 * 1024 * 1024)})
        # While the stream flows, the daemon's descriptor of the file has
        # O_DIRECT on: the page cache is bypassed, not just dropped later.
        O_DIRECT = 0o40000

        def direct_flags():
            for fd in os.listdir("/proc/%d/fd" % daemon.proc.pid):
                try:
                    if "partial" not in os.readlink("/proc/%d/fd/%s" % (daemon.proc.pid, fd)):
                        continue
                    with open("/proc/%d/fdinfo/%s" % (daemon.proc.pid, fd)) as f:
                        flags = int(f.read().split("flags:")[1].split()[0], 8)
                except (FileNotFoundError, IndexError):
                    continue
                if flags & O_DIRECT:
                    return True
            return False
        harness.wait_until(direct_flags, timeout=60, interval=0.05, what="an O_DIRECT descriptor of the file")
        props = self.wait_done(client, migration)
        self.assertEqual(props["State"], "completed", "%s: %s" % (props["ErrorName"], props["ErrorMessage"]))
        last = self.last_pass(guest)
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU to exit")
        with open(target, "rb") as f:
            head = f.read(4096 + 4)
        self.assertEqual(head[4096:4100], b"\x28\xb5\x2f\xfd", "the stream is not zstd")
        # Every byte arrived, the unaligned tail too: the guest comes back.
        client.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (target, {}), "(o)")
        self.assert_ram_continues(guest, last)
        self.assertEqual(daemon.terminate(), 0)

    def test_save_paused_option_restores_paused(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "psave", size_mib=8, seed=3)
        path = self.start_guest(client, guest)
        target = self.scratch.join("psave.state")
        props = self.wait_done(client, self.save(client, path, target, {"paused": GLib.Variant("b", True)}))
        self.assertEqual(props["State"], "completed", props["ErrorMessage"])
        with open(target, "rb") as f:
            self.assertEqual(f.read(16), MAGIC)
        client.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (target, {}), "(o)")
        self.assertEqual(self.state(client, path), "paused")
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))

    def test_managed_save_then_start(self):
        daemon = self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "managed", size_mib=16, seed=5)
        path = self.start_guest(client, guest)
        self.assertFalse(client.get_property(path, GUEST_IFACE, "HasManagedSave"))
        migration = client.call(path, GUEST_IFACE, "ManagedSave", "(a{sv})", ({},), "(o)")[0]
        props = self.wait_done(client, migration)
        self.assertEqual(props["State"], "completed", props["ErrorMessage"])
        last = self.last_pass(guest)
        managed = os.path.join(daemon.state_dir, "save", "managed.save")
        self.assertTrue(os.path.isfile(managed))
        self.assertTrue(client.get_property(path, GUEST_IFACE, "HasManagedSave"))
        self.assertEqual(self.state(client, path), "saved")
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU to exit")

        # A daemon restart still knows about it.
        daemon.terminate()
        daemon = self.start_daemon()
        client = self.client()
        self.assertTrue(client.get_property(path, GUEST_IFACE, "HasManagedSave"))
        self.assertEqual(self.state(client, path), "saved")

        client.call(path, GUEST_IFACE, "Start", "(a{sv})", ({},))
        self.assertEqual(self.state(client, path), "running")
        self.assert_ram_continues(guest, last)
        self.assertFalse(os.path.exists(managed))
        self.assertFalse(client.get_property(path, GUEST_IFACE, "HasManagedSave"))

        # Undefining a guest removes its managed save with it.
        props = self.wait_done(client, client.call(path, GUEST_IFACE, "ManagedSave", "(a{sv})", ({},), "(o)")[0])
        self.assertEqual(props["State"], "completed", props["ErrorMessage"])
        self.assertTrue(os.path.isfile(managed))
        client.call(path, GUEST_IFACE, "Undefine", "(a{sv})", ({},))
        self.assertFalse(os.path.exists(managed))

    def test_managed_save_of_transient_guest_refused(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "transient", size_mib=8)
        path = client.call(MANAGER_PATH, MANAGER_IFACE, "CreateGuest", "(sa{sv})", (guest.xml, {}), "(o)")[0]
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok")
        message = self.assertDBusError("org.migrationd.Error.InvalidState", client.call, path, GUEST_IFACE,
                                       "ManagedSave", "(a{sv})", ({},), "(o)")
        self.assertIn("transient", message)
        self.assert_guest_keeps_running(client, path, guest)


class SaveErrors(SaveTestCase):

    def test_existing_file_without_overwrite(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "exists", size_mib=8)
        path = self.start_guest(client, guest)
        target = self.scratch.join("exists.state")
        with open(target, "w") as f:
            f.write("precious")
        message = self.assertDBusError("org.migrationd.Error.AlreadyExists", self.save, client, path, target)
        self.assertIn("overwrite", message)
        with open(target) as f:
            self.assertEqual(f.read(), "precious")
        self.assert_guest_keeps_running(client, path, guest)
        # With overwrite it is replaced.
        props = self.wait_done(client, self.save(client, path, target, {"overwrite": GLib.Variant("b", True)}))
        self.assertEqual(props["State"], "completed", props["ErrorMessage"])
        with open(target, "rb") as f:
            self.assertEqual(f.read(16), MAGIC)

    def test_missing_directory(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "nodir", size_mib=8)
        path = self.start_guest(client, guest)
        missing = self.scratch.join("no", "such", "dir")
        message = self.assertDBusError("org.migrationd.Error.NotFound", self.save, client, path,
                                       os.path.join(missing, "x.state"))
        self.assertIn("does not exist", message)
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", reply="(ao)")[0], [])
        self.assertFalse(os.path.exists(self.scratch.join("no")))
        self.assert_guest_keeps_running(client, path, guest)

    def test_relative_path_and_bad_options(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "badopt", size_mib=8)
        path = self.start_guest(client, guest)
        self.assertDBusError("org.migrationd.Error.InvalidArgument", self.save, client, path, "relative.state")
        message = self.assertDBusError("org.migrationd.Error.InvalidArgument", self.save, client, path,
                                       self.scratch.join("x"), {"compression": GLib.Variant("s", "xz; rm")})
        self.assertIn("compression", message)
        self.assertDBusError("org.migrationd.Error.InvalidArgument", self.save, client, path,
                             self.scratch.join("x"), {"frobnicate": GLib.Variant("b", True)})
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", reply="(ao)")[0], [])
        self.assertFalse(os.path.exists(self.scratch.join("x")))
        self.assert_guest_keeps_running(client, path, guest)

    def test_full_filesystem(self):
        self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "full", size_mib=16, seed=9)
        path = self.start_guest(client, guest)
        small = self.scratch.join("small")
        os.makedirs(small)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", small])
        for compression in ("none", "zstd"):
            migration = self.save(client, path, os.path.join(small, "full.state"),
                                  {"compression": GLib.Variant("s", compression)})
            props = self.wait_done(client, migration)
            self.assertEqual((props["State"], props["ErrorName"]),
                             ("failed", "org.migrationd.Error.StorageFailed"), props["ErrorMessage"])
            self.assertIn("full.state", props["ErrorMessage"])
            harness.wait_until(lambda: os.listdir(small) == [], what="the partial file to go")
            self.assert_guest_keeps_running(client, path, guest)

    def test_cancel_during_save(self):
        daemon = self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "cancel", size_mib=24, seed=13)
        path = self.start_guest(client, guest)
        target = self.scratch.join("cancel.state")
        migration = self.save(client, path, target, {"bandwidth": GLib.Variant("t", 1024 * 1024),
                                                     "compression": GLib.Variant("s", "gzip")})
        harness.wait_until(lambda: client.get_property(migration, MIGRATION_IFACE, "MemoryProcessed") > 0,
                           what="the save to move data")
        self.assertEqual(self.state(client, path), "migrating-out")
        client.call(migration, MIGRATION_IFACE, "Cancel", "(a{sv})", ({},))
        props = self.wait_done(client, migration)
        self.assertEqual((props["State"], props["ErrorName"]), ("cancelled", "org.migrationd.Error.Cancelled"))
        harness.wait_until(lambda: self.state(client, path) == "running", what="the guest to run again")
        self.assertFalse(os.path.exists(target))
        harness.wait_until(lambda: [n for n in os.listdir(self.scratch.path) if "partial" in n] == [],
                           what="the partial file to go")
        harness.wait_until(lambda: children_named(daemon.proc.pid, "gzip") == [], what="gzip to exit")
        self.assert_guest_keeps_running(client, path, guest)
        self.assertEqual(daemon.terminate(), 0)


def writers_of(directory):
    """Live processes with a partial file in @directory open (an orphaned
    compressor of a killed daemon is no child of anyone we know)."""
    found = []
    for pid, _, _ in live_processes():
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith(directory + "/") and "partial" in target:
                found.append(pid)
                break
    return found


class SaveCrash(SaveTestCase):
    """The daemon dies (SIGKILL, at a fault point) in the middle of a save:
    the restarted daemon leaves the guest in exactly one state, with no
    partial file, compressor or journal record behind."""

    def crashing_daemon(self, point):
        return self.start_daemon(env={"MD_TEST_STOP_AT": point, "MD_TEST_STOP_ACTION": "kill"})

    def restart(self, daemon):
        daemon.env = {}
        daemon.start()
        return self.client()

    def journal_records(self, daemon):
        directory = os.path.join(daemon.state_dir, "migrations")
        return os.listdir(directory) if os.path.isdir(directory) else []

    def save_until_killed(self, daemon, client, path, target, options):
        try:
            self.save(client, path, target, options)
        except GLib.Error:
            pass  # the daemon may die before its answer leaves
        harness.wait_until(lambda: daemon.proc.poll() is not None, what="the daemon to die at its fault point")
        daemon.kill()

    def test_killed_while_qemu_writes_the_file(self):
        daemon = self.crashing_daemon("save-streaming")
        client = self.client()
        guest = harness.TestGuest(self.scratch, "crash", size_mib=24, seed=17)
        path = self.start_guest(client, guest)
        before = self.last_pass(guest)
        target = self.scratch.join("crash.state")
        self.save_until_killed(daemon, client, path, target,
                               {"bandwidth": GLib.Variant("t", 1024 * 1024),
                                "compression": GLib.Variant("s", "gzip")})
        # What the crash left: QEMU stopped for the save, a partial file
        # that gzip still writes, and the save's journal record.
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1)
        self.assertTrue([n for n in os.listdir(self.scratch.path) if "partial" in n])
        self.assertTrue(writers_of(self.scratch.path), "no process writes the partial file")
        self.assertEqual(len(self.journal_records(daemon)), 1)

        client = self.restart(daemon)
        harness.wait_until(lambda: self.state(client, path) == "running", what="the guest to run again")
        self.assert_ram_continues(guest, before)
        harness.wait_until(lambda: [n for n in os.listdir(self.scratch.path) if "partial" in n] == [],
                           what="the partial file to go")
        harness.wait_until(lambda: writers_of(self.scratch.path) == [], what="the old compressor to go")
        self.assertFalse(os.path.exists(target))
        self.assertEqual(self.journal_records(daemon), [])
        self.assert_guest_keeps_running(client, path, guest)

        # The daemon is not stuck on the old save: a new one completes.
        migration = self.save(client, path, target, {})
        props = self.wait_done(client, migration)
        self.assertEqual(props["State"], "completed", "%s: %s" % (props["ErrorName"], props["ErrorMessage"]))
        self.assertEqual(daemon.terminate(), 0)

    def test_killed_after_the_file_was_complete(self):
        daemon = self.crashing_daemon("save-committed")
        client = self.client()
        guest = harness.TestGuest(self.scratch, "done", size_mib=16, seed=19)
        path = self.start_guest(client, guest)
        target = self.scratch.join("done.state")
        self.save_until_killed(daemon, client, path, target, {"compression": GLib.Variant("s", "zstd")})
        last = self.last_pass(guest)
        self.assertTrue(os.path.exists(target))
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1, "the saved guest's QEMU is gone already")

        # The save had happened: the restarted daemon ends it as the save
        # would have, and the file restores the guest with its RAM intact.
        client = self.restart(daemon)
        harness.wait_until(lambda: self.state(client, path) == "saved", what="the guest to be saved")
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="the stale QEMU to go")
        self.assertEqual(self.journal_records(daemon), [])
        restored = client.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (target, {}), "(o)")[0]
        self.assertEqual(restored, path)
        self.assert_ram_continues(guest, last)
        self.assertEqual(daemon.terminate(), 0)


class RestoreErrors(SaveTestCase):

    def saved_file(self, client, name, compression="none"):
        guest = harness.TestGuest(self.scratch, name, size_mib=8, seed=2)
        path = self.start_guest(client, guest)
        target = self.scratch.join(name + ".state")
        props = self.wait_done(client, self.save(client, path, target,
                                                 {"compression": GLib.Variant("s", compression)}))
        self.assertEqual(props["State"], "completed", props["ErrorMessage"])
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU to exit")
        return guest, path, target

    def check_refused(self, client, target, error_name, fragment, options=None):
        message = self.assertDBusError(error_name, client.call, MANAGER_PATH, MANAGER_IFACE, "Restore",
                                       "(sa{sv})", (target, options or {}), "(o)")
        self.assertIn(fragment, message)
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])
        return message

    def test_truncated_file(self):
        daemon = self.start_daemon()
        client = self.client()
        for compression in ("none", "zstd"):
            name = "trunc-" + compression
            _guest, path, target = self.saved_file(client, name, compression)
            size = os.path.getsize(target)
            os.truncate(target, 4096 + (size - 4096) // 2)
            if compression == "zstd":
                # Unknown here: the restore would create it, and must not
                # leave it behind.
                client.call(path, GUEST_IFACE, "Undefine", "(a{sv})", ({},))
            self.check_refused(client, target, "org.migrationd.Error.QemuFailed", target)
            if compression == "zstd":
                self.assertNotIn(path, client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)")[0])
            else:
                self.assertIn(self.state(client, path), ("shut-off", "saved"))
            self.assertEqual(os.listdir(daemon.runtime_dir), [])
            # Only the header left: refused before any QEMU starts.
            os.truncate(target, 4096)
            self.check_refused(client, target, "org.migrationd.Error.InvalidArgument", "truncated")
            os.truncate(target, 100)
            self.check_refused(client, target, "org.migrationd.Error.InvalidArgument", "truncated")
        self.assertEqual(daemon.terminate(), 0)

    def test_bad_magic_and_corrupt_header(self):
        self.start_daemon()
        client = self.client()
        _guest, _path, target = self.saved_file(client, "magic")
        with open(target, "rb") as f:
            data = bytearray(f.read())
        foreign = self.scratch.join("foreign.state")
        with open(foreign, "wb") as f:
            f.write(b"QEVM" + bytes(data[4:]))
        self.check_refused(client, foreign, "org.migrationd.Error.InvalidArgument", "not a migrationd save file")
        data[80] ^= 0x20  # inside the definition
        corrupt = self.scratch.join("corrupt.state")
        with open(corrupt, "wb") as f:
            f.write(bytes(data))
        self.check_refused(client, corrupt, "org.migrationd.Error.InvalidArgument", "checksum")
        self.check_refused(client, self.scratch.join("absent.state"), "org.migrationd.Error.NotFound", "absent")

    def test_changed_definition_must_keep_abi(self):
        self.start_daemon()
        client = self.client()
        guest, path, target = self.saved_file(client, "abi")
        xml = client.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        bigger = re.sub(r"<memory unit='KiB'>\d+</memory>", "<memory unit='KiB'>131072</memory>", xml)
        self.assertNotEqual(bigger, xml)
        message = self.check_refused(client, target, "org.migrationd.Error.InvalidArgument", "ABI",
                                     {"xml": GLib.Variant("s", bigger)})
        self.assertIn("memory", message)
        # A host-side change (the serial log path) is fine.
        serial = self.scratch.join("abi-serial-2.log")
        moved = xml.replace(guest.serial, serial)
        self.assertNotEqual(moved, xml)
        client.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (target, {"xml": GLib.Variant("s", moved)}),
                    "(o)")
        self.assertEqual(self.state(client, path), "running")
        self.assert_ram_continues(guest, 0, serial=serial)
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))

    def test_guest_restore_checks_the_file_belongs_to_it(self):
        self.start_daemon()
        client = self.client()
        guest, path, target = self.saved_file(client, "mine")
        other_path = self.define(client, harness.TestGuest(self.scratch, "other", size_mib=8))
        message = self.assertDBusError("org.migrationd.Error.InvalidArgument", client.call, other_path,
                                       GUEST_IFACE, "Restore", "(sa{sv})", (target, {}))
        self.assertIn("mine", message)
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])
        self.assertEqual(self.state(client, other_path), "shut-off")
        client.call(path, GUEST_IFACE, "Restore", "(sa{sv})", (target, {"paused": GLib.Variant("b", True)}))
        self.assertEqual(self.state(client, path), "paused")
        client.call(path, GUEST_IFACE, "Resume", "(a{sv})", ({},))
        self.assert_ram_continues(guest, 0)
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))

    def test_restore_running_guest_refused(self):
        self.start_daemon()
        client = self.client()
        guest, path, target = self.saved_file(client, "twice")
        client.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (target, {}), "(o)")
        message = self.assertDBusError("org.migrationd.Error.InvalidState", client.call, MANAGER_PATH,
                                       MANAGER_IFACE, "Restore", "(sa{sv})", (target, {}), "(o)")
        self.assertIn("running", message)
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1)
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))


class CrossHost(SaveTestCase):

    def test_save_on_a_restore_on_b(self):
        self.start_daemon(name="hostA")
        client_a = self.client()
        guest = harness.TestGuest(self.scratch, "travel", size_mib=16, seed=21)
        path = self.start_guest(client_a, guest)
        target = self.scratch.join("travel.state")
        props = self.wait_done(client_a, self.save(client_a, path, target, {"compression": GLib.Variant("s", "gzip")}))
        self.assertEqual(props["State"], "completed", props["ErrorMessage"])
        last = self.last_pass(guest)
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU on A to exit")

        # Host B: its own bus, polkit, state directory; the file is copied.
        bus_b = harness.Bus(self.scratch)
        self.addCleanup(bus_b.stop)
        polkit_b = harness.MockPolkit(bus_b, self.scratch)
        self.addCleanup(polkit_b.stop)
        polkit_b.set_allowed(harness.ACTIONS)
        daemon_b = harness.Daemon(bus_b, self.scratch, name="hostB")
        self.addCleanup(daemon_b.kill)
        client_b = harness.Client(bus_b)
        self.addCleanup(client_b.close)
        copy = self.scratch.join("hostB", "travel.state")
        shutil.copyfile(target, copy)
        restored = client_b.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (copy, {}), "(o)")[0]
        self.assertEqual(restored, harness.guest_path("travel"))
        self.assertEqual(client_b.get_property(restored, GUEST_IFACE, "State"), "running")
        self.assertFalse(client_b.get_property(restored, GUEST_IFACE, "Persistent"))
        self.assert_ram_continues(guest, last)
        client_b.call(restored, GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        # A transient guest is gone with its QEMU.
        harness.wait_until(lambda: client_b.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", reply="(ao)")[0] == [],
                           what="the transient guest to go")


class OnStop(SaveTestCase):
    """[daemon] on-stop = managed-save: guests survive a daemon stop (host
    shutdown) and come back when it starts."""

    CONFIG = "[daemon]\nhost-name=hostA\nlisten-address=\naccelerator=tcg\non-stop=managed-save\n"

    def test_stop_saves_and_start_restores(self):
        daemon = self.start_daemon(config=self.CONFIG)
        client = self.client()
        guest = harness.TestGuest(self.scratch, "boot", size_mib=16, seed=8)
        path = self.start_guest(client, guest)
        other = harness.TestGuest(self.scratch, "kept", size_mib=8, seed=1)
        kept_path = self.define(client, other)  # defined, shut off: left alone
        last_before = self.last_pass(guest)

        self.assertEqual(daemon.terminate(), 0)
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])
        self.assertTrue(os.path.isfile(os.path.join(daemon.state_dir, "save", "boot.save")))
        self.assertFalse(os.path.exists(os.path.join(daemon.state_dir, "save", "kept.save")))
        self.assertIn("boot", open(os.path.join(daemon.state_dir, "save", "restore-at-start")).read())
        last = self.last_pass(guest)
        self.assertGreaterEqual(last, last_before)

        daemon = self.start_daemon(config=self.CONFIG)
        client = self.client()
        harness.wait_until(lambda: self.state(client, path) == "running", timeout=60,
                           what="the guest to be restored at start")
        self.assert_ram_continues(guest, last)
        self.assertFalse(client.get_property(path, GUEST_IFACE, "HasManagedSave"))
        harness.wait_until(lambda: sorted(os.listdir(os.path.join(daemon.state_dir, "save"))) == [],
                           what="the managed save and the list to go")
        self.assertEqual(self.state(client, kept_path), "shut-off")
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))

    def test_bad_on_stop_value_is_a_config_error(self):
        config = self.CONFIG.replace("managed-save", "hibernate")
        with self.assertRaises(AssertionError) as ctx:
            self.start_daemon(config=config)
        self.assertIn("on-stop", str(ctx.exception))


class Migrationctl(SaveTestCase):
    """migrationctl save / restore / managedsave against the real daemon."""

    def ctl(self, *args):
        return subprocess.run([harness.CTL, "--address", self.bus.address] + list(args),
                              capture_output=True, text=True, timeout=120)

    def test_save_restore_managedsave(self):
        daemon = self.start_daemon()
        client = self.client()
        guest = harness.TestGuest(self.scratch, "ctl", size_mib=8, seed=4)
        path = self.start_guest(client, guest)

        usage = self.ctl("save", "ctl", self.scratch.join("x"), "--compress", "xz")
        self.assertEqual(usage.returncode, 2, usage.stderr)
        self.assertIn("--compress", usage.stderr)
        self.assertFalse(os.path.exists(self.scratch.join("x")))

        target = self.scratch.join("ctl.state")
        done = self.ctl("save", "ctl", target, "--compress", "zstd", "--paused")
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("saved ctl to " + target, done.stdout)
        self.assertEqual(self.state(client, path), "saved")
        again = self.ctl("save", "ctl", target)
        self.assertEqual(again.returncode, 1)

        bad = self.scratch.join("bad.state")
        with open(bad, "wb") as f:
            f.write(b"not a save file" * 1000)
        refused = self.ctl("restore", bad)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("not a migrationd save file", refused.stderr)

        restored = self.ctl("restore", target)
        self.assertEqual(restored.returncode, 0, restored.stderr)
        self.assertIn("restored ctl from " + target, restored.stdout)
        self.assertEqual(self.state(client, path), "paused")  # --paused was recorded
        client.call(path, GUEST_IFACE, "Resume", "(a{sv})", ({},))

        managed = self.ctl("managedsave", "ctl")
        self.assertEqual(managed.returncode, 0, managed.stdout + managed.stderr)
        self.assertTrue(client.get_property(path, GUEST_IFACE, "HasManagedSave"))
        started = self.ctl("start", "ctl")
        self.assertEqual(started.returncode, 0, started.stderr)
        self.assertEqual(self.state(client, path), "running")
        self.assertFalse(os.path.exists(os.path.join(daemon.state_dir, "save", "ctl.save")))
        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))


class MigrationAddress(SaveTestCase):

    BAD = ["host;reboot", "$(reboot)", "`id`", "a b", "x" * 4096, "host|nc", "[::1", "-oProxyCommand=x",
           "exa mple.com:1"]
    GOOD = ["192.0.2.1", "::1", "2001:db8::1"]

    def test_bad_migration_addresses_are_invalid_argument(self):
        self.start_daemon()
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "addr", size_mib=8))
        for key in ("migration-address", "nbd-address"):
            for value in self.BAD:
                message = self.assertDBusError(
                    "org.migrationd.Error.InvalidArgument", client.call, path, GUEST_IFACE, "Migrate",
                    "(sa{sv})", ("127.0.0.1:1", {key: GLib.Variant("s", value)}), "(o)")
                self.assertIn(key, message)
            for value in self.GOOD:
                # Accepted: the call gets past validation (and fails later,
                # the guest being shut off).
                message = self.assertDBusError(
                    "org.migrationd.Error.InvalidState", client.call, path, GUEST_IFACE, "Migrate",
                    "(sa{sv})", ("127.0.0.1:1", {key: GLib.Variant("s", value)}), "(o)")
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", reply="(ao)")[0], [])


if __name__ == "__main__":
    harness.main()

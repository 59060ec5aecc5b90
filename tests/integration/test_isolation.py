#!/usr/bin/python3
"""Guest isolation on real QEMU: every guest's QEMU runs as a uid of its own
from [qemu] uid-range (or the shared [qemu] user), without capabilities,
with no-new-privileges and seccomp, in its own mount namespace (minimal
/dev, private /tmp) and cgroup; its files arrive as descriptors, so no
image path is on its command line and, as its uid, nothing of another
guest, of the daemon's state or of the TLS keys can be opened. The uid of a
QEMU survives a daemon SIGKILL: a new guest never gets it."""

import os
import random
import re
import signal
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE  # noqa: E402
from test_storage import DATA_DISK_XML  # noqa: E402

MiB = 1024 * 1024
PASS_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)")

READY_RE = r"MDGUEST READY mode=fill .*sum=([0-9a-f]{8})"
VERIFY_RE = r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok"


def uid_range(size=20):
    """A range of its own for each test (tests run in parallel; the uid
    locks would keep them apart anyway, the assertions are simpler so)."""
    first = 3000000 + random.randrange(0, 90000) * 100
    return first, first + size - 1


def assert_ram_continues(test, guest, after_pass):
    """VERIFY lines after pass @after_pass, all with the expected sum."""
    expected = harness.expected_sum(guest.size_mib, guest.seed)
    harness.wait_until(lambda: [m for m in PASS_RE.finditer(guest.serial_text()) if int(m.group(1)) > after_pass],
                       timeout=60, what="a VERIFY line after pass %d" % after_pass)
    for m in PASS_RE.finditer(guest.serial_text()):
        test.assertEqual((m.group(2), m.group(3)), (expected, "ok"), guest.serial_text())


def last_pass(guest):
    return max(int(m.group(1)) for m in PASS_RE.finditer(guest.serial_text()))


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def cmdline(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().decode(errors="replace").split("\0")


def run_as(uid, gid, code, *args):
    """Runs @code (python, imports nothing of the clone, which may sit in
    a 0700 home) as @uid:@gid with no groups; its stdout."""
    proc = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups",
                           "--no-new-privs", sys.executable, "-I", "-c", code] + list(args),
                          capture_output=True, text=True, cwd="/", timeout=60)
    if proc.returncode != 0:
        raise AssertionError("as uid %d: %s" % (uid, proc.stderr))
    return proc.stdout


OPEN_EACH = """
import os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDONLY))
        print("OPENED", path)
    except PermissionError:
        print("DENIED", path)
    except OSError as e:
        print("ERROR", path, e)
"""


class IsolationTestCase(harness.MigrationdTestCase):

    def setUp(self):
        super().setUp()
        self.polkitd.set_allowed(harness.ACTIONS)
        self.range = uid_range()
        # Paths below the scratch directory must be reachable by the test
        # uids, so that "cannot open" is about the files, not the 0700
        # directory around them.
        os.chmod(self.scratch.path, 0o755)

    def config(self, extra=""):
        return ("[daemon]\nhost-name=hostA\nlisten-address=\naccelerator=tcg\n"
                "[qemu]\nuid-range=%d-%d\n%s" % (self.range[0], self.range[1], extra))

    def define(self, client, guest):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "DefineGuest", "(sa{sv})", (guest.xml, {}),
                           "(o)")[0]

    def start(self, client, guest):
        path = self.define(client, guest)
        client.call(path, GUEST_IFACE, "Start", "(a{sv})", ({},), timeout=120000)
        return path, client.get_property(path, GUEST_IFACE, "PID")

    def assert_confined(self, pid, low=None, high=None):
        status = proc_status(pid)
        uids = {int(x) for x in status["Uid"].split()}
        gids = {int(x) for x in status["Gid"].split()}
        self.assertEqual(len(uids), 1, status["Uid"])
        self.assertEqual(len(gids), 1, status["Gid"])
        uid, gid = uids.pop(), gids.pop()
        self.assertNotEqual(uid, 0)
        self.assertNotEqual(gid, 0)
        if low is not None:
            self.assertTrue(low <= uid <= high, "uid %d not in %d-%d" % (uid, low, high))
            self.assertEqual(gid, uid)
        self.assertEqual(status["Groups"].strip(), "")
        for cap in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
            self.assertEqual(int(status[cap], 16), 0, "%s of QEMU %d: %s" % (cap, pid, status[cap]))
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        self.assertEqual(status["Seccomp"].strip(), "2")
        return uid, gid


class Identity(IsolationTestCase):

    def test_qemu_runs_as_a_range_uid_without_capabilities(self):
        self.start_daemon(config=self.config())
        client = self.client()
        guest = harness.TestGuest(self.scratch, "iso", size_mib=8, seed=3)
        path, pid = self.start(client, guest)
        match = guest.wait_serial(READY_RE)
        self.assertEqual(match.group(1), harness.expected_sum(8, 3))
        uid, _gid = self.assert_confined(pid, *self.range)

        # Its own mount namespace: a minimal /dev and an empty private /tmp.
        self.assertNotEqual(os.stat("/proc/%d/ns/mnt" % pid).st_ino, os.stat("/proc/self/ns/mnt").st_ino)
        dev = set(os.listdir("/proc/%d/root/dev" % pid))
        self.assertTrue({"null", "zero", "urandom", "ptmx", "pts"} <= dev, dev)
        self.assertLessEqual(dev, {"null", "zero", "full", "random", "urandom", "ptmx", "pts", "kvm",
                                   "net", "fd"}, dev)
        self.assertEqual(os.listdir("/proc/%d/root/tmp" % pid), [])
        tmp = os.stat("/proc/%d/root/tmp" % pid)
        self.assertEqual((tmp.st_uid, stat.S_IMODE(tmp.st_mode)), (uid, 0o700))
        self.assertTrue(os.path.exists("/tmp"), "the host's /tmp is untouched")

        # Limits: open files, and its own cgroup with memory and tasks limits.
        with open("/proc/%d/limits" % pid) as f:
            limits = f.read()
        self.assertRegex(limits, r"Max open files\s+8192\s+8192")
        with open("/proc/%d/cgroup" % pid) as f:
            cgroups = f.read()
        groups = re.findall(r"^\d+:[^:]*(?:memory|pids)[^:]*:(.*/migrationd-%d-[0-9a-f]{8})$" % uid,
                            cgroups, re.M)
        self.assertTrue(groups, cgroups)
        memory = "/sys/fs/cgroup/memory" + groups[0]
        if os.path.exists(memory + "/memory.limit_in_bytes"):
            with open(memory + "/memory.limit_in_bytes") as f:
                self.assertEqual(int(f.read()), (64 + 1024) * 1024 * 1024)
        pids = [g for g in groups if os.path.exists("/sys/fs/cgroup/pids" + g + "/pids.max")]
        if pids:
            with open("/sys/fs/cgroup/pids" + pids[0] + "/pids.max") as f:
                self.assertEqual(f.read().strip(), "1024")

        client.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU gone")
        # The cgroup went with QEMU.
        harness.wait_until(lambda: not os.path.exists(memory), what="the guest cgroup removed")

    def test_disk_reaches_qemu_as_a_descriptor(self):
        self.start_daemon(config=self.config())
        client = self.client()
        guest = harness.TestGuest(self.scratch, "fdboot", size_mib=8, seed=5)
        os.chmod(guest.image, 0o600)
        _path, pid = self.start(client, guest)
        guest.wait_serial(READY_RE)
        guest.wait_serial(VERIFY_RE)
        args = cmdline(pid)
        line = " ".join(args)
        self.assertNotIn(guest.image, line)
        self.assertNotIn(guest.serial, line)
        self.assertNotIn(self.scratch.path, line)
        self.assertIn("-add-fd", args)
        self.assertIn('"filename": "/dev/fdset/', line.replace('":"', '": "'))
        # QEMU holds the image open through the descriptor the daemon gave it.
        targets = set()
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                targets.add(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
            except FileNotFoundError:
                continue
        self.assertIn(guest.image, targets)
        # The image stays root's, mode 0600: QEMU needs no permission on it.
        st = os.stat(guest.image)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600))

    def test_two_guests_cannot_reach_each_other_nor_the_daemon(self):
        daemon = self.start_daemon(config=self.config())
        client = self.client()
        one = harness.TestGuest(self.scratch, "one", size_mib=8, seed=1)
        two = harness.TestGuest(self.scratch, "two", size_mib=8, seed=2)
        for g in (one, two):
            os.chmod(g.image, 0o600)
        _p1, pid1 = self.start(client, one)
        _p2, pid2 = self.start(client, two)
        uid1, gid1 = self.assert_confined(pid1, *self.range)
        uid2, _gid2 = self.assert_confined(pid2, *self.range)
        self.assertNotEqual(uid1, uid2)

        tls = self.scratch.join("tls")
        os.makedirs(tls, mode=0o700)
        key = os.path.join(tls, "server-key.pem")
        subprocess.run(["certtool", "--generate-privkey", "--outfile", key], check=True,
                       capture_output=True)
        os.chmod(key, 0o600)
        definition = os.path.join(daemon.state_dir, "guests", "two.xml")
        self.assertTrue(os.path.exists(definition))
        out = run_as(uid1, gid1, OPEN_EACH, two.image, one.image, definition, daemon.state_dir, key,
                     two.serial)
        for target in (two.image, one.image, definition, daemon.state_dir, key, two.serial):
            self.assertIn("DENIED " + target, out)
        # Nor its processes: no signal reaches the other QEMU.
        out = run_as(uid1, gid1, "import os, sys\ntry:\n    os.kill(int(sys.argv[1]), 0)\n"
                     "    print('SIGNALLED')\nexcept PermissionError:\n    print('EPERM')\n", str(pid2))
        self.assertEqual(out.strip(), "EPERM")
        for g in (one, two):
            g.wait_serial(VERIFY_RE)


class Reattach(IsolationTestCase):

    def test_sigkill_restart_keeps_the_uid_reserved(self):
        daemon = self.start_daemon(config=self.config())
        client = self.client()
        first = harness.TestGuest(self.scratch, "first", size_mib=8, seed=1)
        path1, pid1 = self.start(client, first)
        uid1, _ = self.assert_confined(pid1, *self.range)

        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        daemon.log.close()
        daemon.start()
        client = self.client()
        self.assertEqual(client.get_property(path1, GUEST_IFACE, "State"), "running")
        self.assertEqual(client.get_property(path1, GUEST_IFACE, "PID"), pid1)
        self.assert_confined(pid1, *self.range)

        second = harness.TestGuest(self.scratch, "second", size_mib=8, seed=2)
        path2, pid2 = self.start(client, second)
        uid2, _ = self.assert_confined(pid2, *self.range)
        self.assertNotEqual(uid2, uid1)
        second.wait_serial(VERIFY_RE)
        length = len(first.serial_text())
        first.wait_serial(VERIFY_RE, start=length)

        # Once the first QEMU is gone, its uid is free again.
        client.call(path1, GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        third = harness.TestGuest(self.scratch, "third", size_mib=8, seed=3)
        _path3, pid3 = self.start(client, third)
        uid3, _ = self.assert_confined(pid3, *self.range)
        self.assertEqual(uid3, uid1)
        client.call(path2, GUEST_IFACE, "Destroy", "(a{sv})", ({},))


class SaveRestore(IsolationTestCase):

    def test_save_and_restore_with_an_unprivileged_qemu(self):
        self.start_daemon(config=self.config())
        client = self.client()
        guest = harness.TestGuest(self.scratch, "saved", size_mib=16, seed=9)
        path, pid = self.start(client, guest)
        self.assert_confined(pid, *self.range)
        guest.wait_serial(VERIFY_RE)
        target = self.scratch.join("saved.state")
        migration = client.call(path, GUEST_IFACE, "Save", "(sa{sv})", (target, {}), "(o)")[0]
        harness.wait_until(lambda: client.get_property(migration, MIGRATION_IFACE, "State")
                           in ("completed", "failed", "cancelled"), timeout=120, what="the save")
        props = client.get_all(migration, MIGRATION_IFACE)
        self.assertEqual(props["State"], "completed", props["ErrorMessage"])
        # The file is the daemon's, private: QEMU wrote it through a descriptor.
        st = os.stat(target)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600))
        last = last_pass(guest)
        harness.wait_until(lambda: not harness.qemu_pids_in(self.scratch.path), what="QEMU to exit")

        restored = client.call(MANAGER_PATH, MANAGER_IFACE, "Restore", "(sa{sv})", (target, {}), "(o)")[0]
        self.assertEqual(client.get_property(restored, GUEST_IFACE, "State"), "running")
        pid = client.get_property(restored, GUEST_IFACE, "PID")
        self.assert_confined(pid, *self.range)
        assert_ram_continues(self, guest, last)
        client.call(restored, GUEST_IFACE, "Destroy", "(a{sv})", ({},))


class Migration(twohosts.TwoHostsTestCase):
    """Both ends unprivileged: the source QEMU from A's range, the
    destination's from B's."""

    start_hosts = False

    def test_live_migration_with_storage_copy_between_unprivileged_qemus(self):
        ranges = {"hostA": uid_range(), "hostB": uid_range()}
        while set(range(*ranges["hostA"])) & set(range(*ranges["hostB"])):
            ranges["hostB"] = uid_range()
        self.make_hosts(start=False)
        self.hosts.start(extra_config={name: "[qemu]\nuid-range=%d-%d\n" % r for name, r in ranges.items()})
        os.chmod(self.scratch.path, 0o755)
        disk_a, disk_b = self.scratch.join("vdb-A.raw"), self.scratch.join("vdb-B.raw")
        with open(disk_a, "wb") as f:
            f.truncate(32 * MiB)
        subprocess.run(["dd", "if=/dev/urandom", "of=" + disk_a, "bs=1M", "count=4", "seek=3",
                        "conv=notrunc"], check=True, capture_output=True)
        os.chmod(disk_a, 0o600)
        guest = harness.TestGuest(self.scratch, "moving", size_mib=16, seed=13)
        guest.xml = guest.xml.replace("<serial type='file'>",
                                      DATA_DISK_XML.format(format="raw", path=disk_a) + "<serial type='file'>", 1)
        path = self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(VERIFY_RE)
        [pid_a] = self.a.qemu_pids()
        IsolationTestCase.assert_confined(self, pid_a, *ranges["hostA"])

        xml = self.client_a.call(path, GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        migration = self.hosts.migrate("moving", options={
            "copy-storage": "all", "disks": ["vdb"], "destination-xml": xml.replace(disk_a, disk_b)})
        last = last_pass(guest)
        success, name, message = self.hosts.wait_completed(self.client_a, migration)
        self.assertTrue(success, "%s: %s\n%s" % (name, message, self.hosts.logs()))
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=30, what="A's QEMU gone")
        [pid_b] = self.b.qemu_pids()
        self.assertEqual(self.hosts.guest_state(self.client_b, "moving"), "running")
        IsolationTestCase.assert_confined(self, pid_b, *ranges["hostB"])
        # RAM intact on B; the disk copied; the image B created is root's,
        # 0600, and QEMU holds it through a descriptor.
        assert_ram_continues(self, guest, last)
        st = os.stat(disk_b)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (0, 0o600))
        self.assertNotIn(disk_b, " ".join(cmdline(pid_b)))
        self.client_b.call(harness.guest_path("moving"), GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        proc = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", disk_a, disk_b],
                              capture_output=True, text=True)
        self.assertEqual(proc.stdout.strip(), "Images are identical.", proc.stderr)


class Bridge(twohosts.TwoHostsTestCase):
    """A bridged interface: the setuid qemu-bridge-helper cannot run under
    no-new-privs, so the daemon makes the tap on the bridge and passes it."""

    start_hosts = False

    def test_bridged_guest_gets_a_tap_from_the_daemon(self):
        if not twohosts.use_netns():
            raise AssertionError("needs root and network namespaces (a bridge of the test's own)")
        self.make_hosts(start=False)
        first, last = uid_range()
        self.hosts.start(extra_config={"hostA": "[qemu]\nuid-range=%d-%d\n" % (first, last)})
        bridge = "mdbr%d" % random.randrange(1000)
        proc = self.a.run_in_netns(["ip", "link", "add", bridge, "type", "bridge"])
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.a.run_in_netns(["ip", "link", "set", bridge, "up"])
        guest = harness.TestGuest(self.scratch, "bridged", size_mib=8)
        guest.xml = guest.xml.replace("<serial type='file'>",
                                      "<interface type='bridge'><source bridge='%s'/>"
                                      "<model type='virtio'/></interface>\n    <serial type='file'>" % bridge, 1)
        path = self.hosts.define_and_start_on_a(guest)
        guest.wait_serial(VERIFY_RE)
        [pid] = self.a.qemu_pids()
        IsolationTestCase.assert_confined(self, pid, first, last)
        args = cmdline(pid)
        self.assertTrue(any(re.match(r"tap,id=hostnet0,fd=\d+$", a) for a in args), args)
        self.assertIn("spawn=deny", " ".join(args))
        ports = self.a.run_in_netns(["ip", "-o", "link", "show", "master", bridge]).stdout
        self.assertRegex(ports, r"mdtap\d+.*state UP|mdtap\d+.*,UP")
        self.client_a.call(path, GUEST_IFACE, "Destroy", "(a{sv})", ({},))
        harness.wait_until(lambda: "mdtap" not in self.a.run_in_netns(["ip", "-o", "link"]).stdout,
                           what="the tap gone with QEMU")


class Config(IsolationTestCase):

    def test_shared_user_runs_every_guest_as_it(self):
        import pwd
        nobody = pwd.getpwnam("nobody")
        self.start_daemon(config=self.config("user=nobody\n"))
        client = self.client()
        pids = [self.start(client, harness.TestGuest(self.scratch, name, size_mib=8))[1]
                for name in ("s1", "s2")]
        for pid in pids:
            uid, gid = self.assert_confined(pid)
            self.assertEqual((uid, gid), (nobody.pw_uid, nobody.pw_gid))

    def test_exhausted_range_is_a_clear_error_and_leaves_nothing(self):
        self.range = (self.range[0], self.range[0])
        self.start_daemon(config=self.config())
        client = self.client()
        self.start(client, harness.TestGuest(self.scratch, "only", size_mib=8))
        guest = harness.TestGuest(self.scratch, "more", size_mib=8)
        path = self.define(client, guest)
        message = self.assertDBusError("org.migrationd.Error.Failed", client.call, path, GUEST_IFACE,
                                       "Start", "(a{sv})", ({},))
        self.assertIn("uid-range %d-%d" % self.range, message)
        self.assertIn("hostA", message)
        self.assertEqual(client.get_property(path, GUEST_IFACE, "State"), "shut-off")
        self.assertEqual(len(harness.qemu_pids_in(self.scratch.path)), 1)

    def test_bad_settings_are_named(self):
        for extra, text in (("uid-range=10-5\n", "[qemu] uid-range: '10-5'"),
                            ("uid-range=0-100\n", "[qemu] uid-range: '0-100'"),
                            ("uid-range=60000-70000\n", "not containing 65534"),
                            ("user=root\n", "QEMU never runs as root"),
                            ("users=x\n", "unknown key 'users'")):
            config = self.scratch.join("bad.conf")
            with open(config, "w") as f:
                f.write(self.config(extra))
            proc = subprocess.run([harness.DAEMON, "--config", config, "--state-dir",
                                   self.scratch.join("state"), "--runtime-dir", self.scratch.join("run")],
                                  capture_output=True, text=True, timeout=30)
            self.assertEqual(proc.returncode, 1, extra)
            self.assertIn(text, proc.stderr, extra)

    def test_missing_shared_user_is_named_at_start(self):
        self.start_daemon(config=self.config("user=md-no-such-user\n"))
        client = self.client()
        path = self.define(client, harness.TestGuest(self.scratch, "nouser", size_mib=8))
        message = self.assertDBusError("org.migrationd.Error.Config", client.call, path, GUEST_IFACE,
                                       "Start", "(a{sv})", ({},))
        self.assertIn("no user 'md-no-such-user'", message)
        self.assertEqual(client.get_property(path, GUEST_IFACE, "State"), "shut-off")
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])


if __name__ == "__main__":
    harness.main()

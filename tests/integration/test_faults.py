#!/usr/bin/python3
"""Fault injection: the promise "a guest runs in exactly one place and
nothing is lost or leaked, whatever fails", tried cell by cell.

The matrix is {SIGKILL of the source daemon, SIGKILL of the destination
daemon, kill of the destination QEMU, link down briefly, link down for
longer than peer-timeout, the client that called Migrate gone} x
{Prepare, disk mirroring, RAM transfer, postcopy, Finish, Confirm}; each
cell is its own test (Faults.test_<fault>_in_<phase>).

A cell stops one daemon at an exact transition with the test-only fault
points (MD_TEST_STOP_AT, docs/HACKING.md), injects its fault while that
daemon is stopped, lets it go on, brings every killed daemon back and the
link up, and then asserts, for every cell:

- both daemons answer;
- every migration on both hosts ended;
- the guest runs in exactly one place, with its RAM checksum intact (fresh
  VERIFY ok lines with the sum the host computed, no BAD line); or, where
  the killed QEMU held the only up-to-date copy, it runs nowhere, no stale
  copy is left, and the loss is reported with its reason;
- nothing is left: no other QEMU and no qemu-storage-daemon of the test, no
  image the destination created for a guest that did not arrive, no
  listening port besides the peer ports, and in the surviving QEMU no TLS
  object, NBD block node, block job or block export of the migration;
- a second migration of the same guest (from where it runs to the other
  host) then succeeds.

Guests are small (64 MiB) and the bandwidth is limited where a phase must
last; peer-timeout is 6 s so a long outage is noticed quickly.

Cells that make no sense are not in the matrix, with the reason in
SKIPPED_CELLS below (a missing test, not a skipped one).
"""

import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
import twohosts  # noqa: E402
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE, GLib  # noqa: E402

MiB = 1024 * 1024
PEER_TIMEOUT = 6          # s, [daemon] peer-timeout of both daemons
SHORT_OUTAGE = 1.5        # s, well under PEER_TIMEOUT even with TCP's back-off
VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)")
DATA_DISK_XML = """<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{path}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    """

FAULTS = ("kill_source_daemon", "kill_dest_daemon", "kill_dest_qemu", "link_down_short",
          "link_down_long", "client_gone")
PHASES = ("prepare", "mirror", "ram", "postcopy", "finish", "confirm")

# Where each phase is held: (host, fault point). The daemon stops there
# (SIGSTOP); the fault is injected while it is stopped, so it lands in that
# phase and no later.
#  prepare:  B has made its QEMU (and listens) and is about to answer
#            Prepare; A waits for the answer.
#  mirror:   A's disk mirrors (copy-storage) are in sync; RAM is next. The
#            NBD server, exports and client nodes all exist.
#  ram:      QEMU accepted `migrate`; RAM moves at 2 MiB/s meanwhile.
#  postcopy: QEMU on A switched to postcopy-active; A has not yet told B.
#  finish:   B received Finish: RAM is all there, B has not resumed.
#  confirm:  B runs the guest; A is about to remove its own QEMU.
HOLD = {
    "prepare": ("hostB", "dest-prepare-done"),
    "mirror": ("hostA", "source-mirrors-ready"),
    "ram": ("hostA", "source-ram-started"),
    "postcopy": ("hostA", "source-postcopy-started"),
    "finish": ("hostB", "dest-finish-received"),
    "confirm": ("hostA", "source-confirm"),
    # Not a column of the matrix: B has all the RAM and is about to send
    # `cont`. A QEMU that dies here never ran the guest (no RESUME event),
    # so the source's paused copy is the guest and must run again.
    "resume": ("hostB", "dest-resume"),
}

# Killing the destination QEMU loses the guest where that QEMU held the only
# up-to-date copy: in postcopy (the newest pages are on B) and in Confirm
# (the guest already ran on B). Then the rule is: it runs nowhere, no
# stale copy is resumed or left behind on A, and the loss is reported.
LOST = {("kill_dest_qemu", "postcopy"), ("kill_dest_qemu", "confirm")}

# Cells left out of the matrix, and why (none at present: link_down_long
# in postcopy, once left out, runs on a shaped link so the cut lands in a
# postcopy still under way; see shape_link()).
SKIPPED_CELLS = {}


def qmp_socket_of(host, pid):
    """The QMP socket of guest f's QEMU: on its command line, or (when the
    daemon bound it and passed the fd) <runtime dir>/f.qmp."""
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        args = f.read().decode(errors="replace").split("\0")
    for arg in args:
        match = re.search(r"id=charmonitor,path=([^,]+)", arg)
        if match:
            return match.group(1)
    # The daemon binds the QMP socket itself and hands QEMU the listening
    # descriptor (fd=3): the socket is <runtime dir>/<name>.qmp, next to
    # the -pidfile.
    if any(re.search(r"id=charmonitor,fd=\d+", arg) for arg in args) and "-pidfile" in args:
        pidfile = args[args.index("-pidfile") + 1]
        return pidfile[: -len(".pid")] + ".qmp"
    # A confined QEMU has no -pidfile: the socket is named after the guest.
    name = "f"
    if "-name" in args:
        match = re.match(r"guest=([^,]+)", args[args.index("-name") + 1])
        if match:
            name = match.group(1)
    path = os.path.join(host.daemon.runtime_dir, name + ".qmp")
    if os.path.exists(path):
        return path
    raise AssertionError("no QMP socket for QEMU %d: not on its command line %s, no %s" % (pid, args, path))


class QMP:
    """A plain QMP client, for looking into a QEMU whose daemon is down."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.buf = b""
        self._read()  # greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command, **args):
        self.sock.sendall(json.dumps({"execute": command, "arguments": args}).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise AssertionError("QMP %s: %s" % (command, reply["error"]))

    def close(self):
        self.sock.close()


class Faults(twohosts.TwoHostsTestCase):
    start_hosts = False

    # -- set-up -------------------------------------------------------------

    def start_hosts_holding(self, phase):
        host, point = HOLD[phase]
        config = "[daemon]\npeer-timeout=%d\n" % PEER_TIMEOUT
        self.make_hosts(start=False)
        self.hosts.start(env={host: {"MD_TEST_STOP_AT": point}},
                         extra_config={"hostA": config, "hostB": config})
        self.held = self.hosts.hosts[host]
        self.point = point

    def make_guest(self, phase):
        guest = harness.TestGuest(self.scratch, "f", size_mib=8, seed=5, memory=64)
        self.expected_sum = harness.expected_sum(8, 5)
        self.disk_a = self.disk_b = None
        if phase == "mirror":
            self.disk_a = self.scratch.join("data-a.img")
            self.disk_b = self.scratch.join("data-b.img")
            with open(self.disk_a, "wb") as f:
                f.write(os.urandom(4 * MiB))
                f.truncate(16 * MiB)
            guest.xml = guest.xml.replace("<serial type='file'>",
                                          DATA_DISK_XML.format(path=self.disk_a) + "<serial type='file'>", 1)
        return guest

    def migrate_options(self, phase):
        options = {}
        if phase == "mirror":
            xml = self.client_a.call(harness.guest_path("f"), GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
            options.update({"copy-storage": "all", "disks": ["vdb"],
                            "destination-xml": xml.replace(self.disk_a, self.disk_b)})
        if phase == "ram":
            options["bandwidth"] = 2 * MiB
        if phase == "postcopy":
            options.update({"bandwidth": 1 * MiB, "postcopy": True, "convergence": "manual"})
        return options

    def shape_link(self):
        """QEMU sends postcopy pages at full speed (bandwidth limits only
        precopy): on a bare veth the rest of the guest arrives before the
        link can be cut. At 1 MiB/s the cut lands in a postcopy that still
        moves pages, the case the cell is about."""
        for name in ("hostA", "hostB"):
            twohosts.run(["tc", "-n", self.hosts.netns[name], "qdisc", "add", "dev", self.hosts.veth[name],
                          "root", "tbf", "rate", "8mbit", "burst", "64kb", "latency", "500ms"])

    def last_pass(self, guest):
        passes = [int(m.group(1)) for m in VERIFY_RE.finditer(guest.serial_text())]
        return max(passes) if passes else 0

    # -- the cell -------------------------------------------------------------

    def run_cell(self, fault, phase):
        self.problems = []
        self.start_hosts_holding(phase)
        guest = self.make_guest(phase)
        self.guest = guest
        self.hosts.define_and_start_on_a(guest)
        ready = guest.wait_serial(r"MDGUEST READY mode=fill .*sum=([0-9a-f]{8})", timeout=60)
        self.assertEqual(ready.group(1), self.expected_sum)
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=60)

        # The Migrate caller: its own connection, so "client gone" can close it.
        caller = harness.Client(self.a.bus)
        self.addCleanup(self._close_quietly, caller)
        if phase == "postcopy" and fault.startswith("link_down"):
            self.shape_link()
        path = self.hosts.migrate("f", options=self.migrate_options(phase), client=caller)
        if phase == "postcopy":
            self.hosts.wait_property(caller, path, "Phase", lambda p: p == "perform", timeout=60)
            self.hosts.wait_property(caller, path, "MemoryProcessed", lambda v: v > 1 * MiB, timeout=60)
            caller.call(path, MIGRATION_IFACE, "StartPostcopy", "(a{sv})", ({},))
        self.held.daemon.wait_fault_point(self.point, timeout=90)
        self.pass_before = self.last_pass(guest)
        self.inject(fault, caller)
        self.recover(fault)
        self.check_invariant(fault, phase, path)
        self.second_migration(phase)
        if self.problems:
            self.fail("%s in %s:\n- %s\n%s" % (fault, phase, "\n- ".join(self.problems),
                                                "\n".join(self.migration_report())))

    def expect(self, condition, message):
        """A broken promise that does not stop the cell: the rest is still
        checked (and the second migration tried), all are reported."""
        if not condition:
            self.problems.append(message)

    @staticmethod
    def _close_quietly(client):
        try:
            client.close()
        except GLib.Error:
            pass

    def inject(self, fault, caller):
        """The fault, while the held daemon is stopped; then it goes on."""
        if fault == "kill_source_daemon":
            self.a.daemon.sigkill()
        elif fault == "kill_dest_daemon":
            self.b.daemon.sigkill()
        elif fault == "kill_dest_qemu":
            pids = self.b.qemu_pids()
            self.assertEqual(len(pids), 1, "hostB should have the incoming QEMU\n" + self.hosts.logs())
            os.kill(pids[0], 9)
        elif fault in ("link_down_short", "link_down_long"):
            self.hosts.link(False)
            self.addCleanup(self.hosts.link, True)
        elif fault == "client_gone":
            caller.close()
        self.held.daemon.sigcont()
        if fault == "link_down_short":
            time.sleep(SHORT_OUTAGE)
            self.hosts.link(True)
        elif fault == "link_down_long":
            self.wait_both_gave_up()
            self.hosts.link(True)

    def wait_both_gave_up(self):
        """With the link down, each daemon declares the other gone after
        peer-timeout (md-peer-liveness logs it). What each may do then
        depends on the phase: before the switch-over the source resumes
        and B cleans up; in Finish or postcopy neither can know alone and
        they settle once the link is back; the checks after recovery
        decide. A host whose migrations all ended (Confirm needs no peer)
        has nothing to notice."""
        for host, client in ((self.a, self.client_a), (self.b, self.client_b)):
            harness.wait_until(lambda: "no sign of life from" in host.log() or self.all_migrations_ended(client),
                               timeout=PEER_TIMEOUT * 3 + 20,
                               what="%s to notice the link is down (peer-timeout %d s)\n%s"
                               % (host.name, PEER_TIMEOUT, self.hosts.logs()))

    def recover(self, fault):
        """Killed daemons come back (without fault points)."""
        for host in (self.a, self.b):
            if host.daemon.proc.poll() is not None:
                host.daemon.env = {}
                host.daemon.start()
                self.hosts.wait_peer_listener(host)
        self.client_a = self.hosts.client(self.a)
        self.client_b = self.hosts.client(self.b)

    # -- what must hold afterwards -------------------------------------------

    def migrations(self, client):
        return client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]

    def all_migrations_ended(self, client):
        for path in self.migrations(client):
            try:
                state = client.get_property(path, MIGRATION_IFACE, "State")
            except GLib.Error:
                continue  # removed meanwhile
            # needs-attention: the daemon stopped trying; the checks say
            # whether that was right.
            if state not in twohosts.TERMINAL_STATES + ("needs-attention",):
                return False
        return True

    def migration_report(self):
        lines = []
        for name, client in (("hostA", self.client_a), ("hostB", self.client_b)):
            for path in self.migrations(client):
                try:
                    props = client.get_all(path, MIGRATION_IFACE)
                except GLib.Error:
                    continue
                lines.append("%s %s: state %s phase %s: %s %s" % (
                    name, path, props.get("State"), props.get("Phase"), props.get("ErrorName"),
                    props.get("ErrorMessage")))
        return lines

    def where(self):
        """{host name: guest state} for hosts that have guest f."""
        result = {}
        for host, client in ((self.a, self.client_a), (self.b, self.client_b)):
            state = self.hosts.guest_state(client, "f")
            if state is not None:
                result[host.name] = state
        return result

    def settled(self, lost):
        states = self.where()
        running = [h for h, s in states.items() if s == "running"]
        qemus = {h.name: len(h.qemu_pids()) for h in (self.a, self.b)}
        if lost:
            return not running and not any(qemus.values())
        return len(running) == 1 and qemus[running[0]] == 1 and sum(qemus.values()) == 1

    def check_invariant(self, fault, phase, path):
        lost = (fault, phase) in LOST
        # Both daemons answer.
        for client in (self.client_a, self.client_b):
            client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", None, None, "(ao)")
        # Every migration ends (on its own: peer-timeout, autokill, journal).
        for host, client in ((self.a, self.client_a), (self.b, self.client_b)):
            harness.wait_until(lambda: self.all_migrations_ended(client), timeout=PEER_TIMEOUT * 3 + 20,
                               what="every migration on %s to end\n%s\n%s"
                               % (host.name, "\n".join(self.migration_report()), self.hosts.logs()))
        for line in self.migration_report():
            self.expect(" state needs-attention " not in line,
                        "with both daemons up and the link back, a migration still needs attention: " + line)
        try:
            harness.wait_until(lambda: self.settled(lost), timeout=20, what="the guest in one place")
        except AssertionError:
            self.fail("%s in %s: the guest is not in exactly one place%s: states %s, QEMUs A %s B %s\n%s\n%s"
                      % (fault, phase, " (lost: expected nowhere)" if lost else "", self.where(),
                         self.a.qemu_pids(), self.b.qemu_pids(), "\n".join(self.migration_report()),
                         self.hosts.logs()))
        self.expect(sorted(harness.qemu_pids_in(self.scratch.path + os.sep))
                    == sorted(self.a.qemu_pids() + self.b.qemu_pids()), "a QEMU of this test outside both hosts")
        self.expect(harness.storage_daemon_pids(self.scratch.path) == [], "qemu-storage-daemon left behind")
        for host in (self.a, self.b):
            extra = sorted(host.listening_ports() - {host.peer_port})
            self.expect(extra == [], "%s still listens on ports %s besides its peer port" % (host.name, extra))
        if lost:
            self.check_lost_reported(fault, phase)
            self.home = None
            return
        self.home = self.a if self.where().get("hostA") == "running" else self.b
        self.check_ram_intact()
        self.check_images()
        self.check_qemu_clean(self.home)

    def check_lost_reported(self, fault, phase):
        """Nothing runs; the loss is reported with its reason: a failed
        migration or a crashed guest naming the QEMU."""
        reports = [line for line in self.migration_report() if "failed" in line and "QEMU" in line]
        crashed = self.where().get("hostB") == "crashed"
        # A transient guest whose QEMU died is gone from B's Guest1 list;
        # then B's log is where the loss and its reason are said.
        logged = re.search(r"guest f on host hostB: QEMU exited unexpectedly", self.b.log())
        self.expect(reports or crashed or logged, "%s in %s: the lost guest is not reported\n%s"
                    % (fault, phase, "\n".join(self.migration_report())))

    def check_ram_intact(self):
        before = self.pass_before
        guest = self.guest
        match = harness.wait_until(
            lambda: [m for m in VERIFY_RE.finditer(guest.serial_text()) if int(m.group(1)) > before + 1],
            timeout=60, what="fresh VERIFY lines from the running guest")
        self.expect(" BAD" not in guest.serial_text(), "a VERIFY BAD line in the serial log")
        self.expect(match[-1].group(2) == self.expected_sum and match[-1].group(3) == "ok",
                    "RAM checksum: %s, expected %s ok" % (match[-1].group(0), self.expected_sum))

    def check_images(self):
        if self.disk_b is None:
            return
        if self.home is self.a:
            self.expect(not os.path.exists(self.disk_b),
                        "hostB left the image it created for a guest that stayed on hostA")
        else:
            self.expect(os.path.exists(self.disk_b), "the guest runs on hostB without its disk image")

    def check_qemu_clean(self, host):
        """Looks into the surviving QEMU (its daemon stopped for that, as
        QMP takes one client) for what the migration added, then brings
        the daemon back; it re-attaches to the QEMU."""
        pid = host.qemu_pids()[0]
        host.daemon.sigkill()
        qmp = QMP(qmp_socket_of(host, pid))
        try:
            objects = [o["name"] for o in qmp.execute("qom-list", path="/objects")]
            nodes = [n for n in qmp.execute("query-named-block-nodes", flat=True) if n.get("drv") == "nbd"]
            jobs = qmp.execute("query-block-jobs")
            exports = qmp.execute("query-block-exports")
            status = qmp.execute("query-status")
            migrate = qmp.execute("query-migrate")
        finally:
            qmp.close()
        leftover = [o for o in objects if o.startswith("md-")]
        self.expect(leftover == [], "QEMU objects of the migration left in %s's QEMU: %s" % (host.name, leftover))
        self.expect(nodes == [], "NBD block nodes left in %s's QEMU: %s" % (host.name, nodes))
        self.expect(jobs == [], "block jobs left in %s's QEMU: %s" % (host.name, jobs))
        self.expect(exports == [], "block exports left in %s's QEMU: %s" % (host.name, exports))
        self.expect(status["running"], "the guest's QEMU on %s is not running: %s" % (host.name, status))
        self.expect(migrate.get("status") not in ("active", "postcopy-active", "setup", "device"),
                    "a migration is still under way in %s's QEMU: %s" % (host.name, migrate))
        host.daemon.env = {}
        host.daemon.start()
        self.hosts.wait_peer_listener(host)
        client = self.hosts.client(host)
        harness.wait_until(lambda: self.hosts.guest_state(client, "f") == "running", timeout=30,
                           what="%s's daemon re-attached to the guest" % host.name)
        if host is self.a:
            self.client_a = client
        else:
            self.client_b = client

    def second_migration(self, phase):
        if self.home is None:
            # Lost: the definition is still on A; a fresh boot moves too.
            self.client_a.call(harness.guest_path("f"), GUEST_IFACE, "Start", "(a{sv})", ({},), timeout=120000)
            self.guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=60,
                                   start=len(self.guest.serial_text()))
            self.home = self.a
            self.pass_before = 0
        source, target = (self.a, self.b) if self.home is self.a else (self.b, self.a)
        client = self.client_a if source is self.a else self.client_b
        self.hosts.watcher(client)
        path = client.call(harness.guest_path("f"), GUEST_IFACE, "Migrate", "(sa{sv})",
                           (target.peer_address, {}), "(o)")[0]
        success, name, message = self.hosts.wait_completed(client, path, timeout=60)
        self.assertTrue(success, "the second migration failed: %s %s\n%s" % (name, message, self.hosts.logs()))
        target_client = self.client_b if target is self.b else self.client_a
        harness.wait_until(lambda: self.hosts.guest_state(target_client, "f") == "running", timeout=30,
                           what="the guest running on %s after the second migration" % target.name)
        harness.wait_until(lambda: not source.qemu_pids(), timeout=30,
                           what="no QEMU left on %s after the second migration" % source.name)
        self.assertEqual(len(target.qemu_pids()), 1)
        self.pass_before = self.last_pass(self.guest)
        self.check_ram_intact()


def _kill_dest_qemu_at_resume(self):
    self.run_cell("kill_dest_qemu", "resume")


Faults.test_kill_dest_qemu_at_resume = _kill_dest_qemu_at_resume

for _fault in FAULTS:
    for _phase in PHASES:
        if (_fault, _phase) in SKIPPED_CELLS:
            continue
        setattr(Faults, "test_%s_in_%s" % (_fault, _phase),
                lambda self, f=_fault, p=_phase: self.run_cell(f, p))


if __name__ == "__main__":
    harness.main()

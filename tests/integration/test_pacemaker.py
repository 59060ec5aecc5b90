#!/usr/bin/python3
"""ocf:migrationd:guest: ocf-tester on the agent, its return codes, and a
real two-node Pacemaker cluster (cluster.py) in the two hosts' network
namespaces with migrationd on each node: crm_resource --move live-migrates
a guest, standby drains a node within migration-limit, and a migration
whose destination QEMU dies leaves the guest running on the source with the
failure recorded."""

import os
import re
import shutil
import signal
import subprocess
import threading
import time

import cluster
import harness
import twohosts
from harness import GUEST_IFACE, MANAGER_IFACE, MANAGER_PATH, MIGRATION_IFACE

VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]+) (ok|BAD)")
OCF_SUCCESS, OCF_ERR_GENERIC, OCF_ERR_ARGS, OCF_ERR_UNIMPLEMENTED = 0, 1, 2, 3
OCF_ERR_INSTALLED, OCF_ERR_CONFIGURED, OCF_NOT_RUNNING = 5, 6, 7


def agent_copy(scratch):
    """The built agent, where nobody can run it (ocf-tester runs meta-data
    as nobody; the build tree may sit in a 0700 home)."""
    path = scratch.join("ocf-guest")
    shutil.copyfile(cluster.AGENT, path)
    os.chmod(path, 0o755)
    return path


def write_config(scratch, guest):
    path = scratch.join(guest.name + ".xml")
    with open(path, "w") as f:
        f.write(guest.xml)
    os.chmod(path, 0o644)
    return path


class Agent(harness.MigrationdTestCase):
    """The agent against one migrationd, without a cluster."""

    def setUp(self):
        super().setUp()
        self.agent = agent_copy(self.scratch)

    def run_agent(self, action, **params):
        env = dict(os.environ)
        env["OCF_ROOT"] = "/usr/lib/ocf"
        env["OCF_RESOURCE_INSTANCE"] = "vm"
        env["OCF_RESKEY_migrationctl"] = harness.CTL
        env["OCF_RESKEY_CRM_meta_timeout"] = "20000"
        for key, value in params.items():
            env["OCF_RESKEY_" + key] = value
        return subprocess.run([self.agent, action], env=env, capture_output=True, text=True,
                              timeout=60)

    def test_ocf_tester_passes(self):
        self.polkitd.set_allowed(harness.ACTIONS)
        self.start_daemon()
        guest = harness.TestGuest(self.scratch, "ocfvm", memory=64)
        config = write_config(self.scratch, guest)
        proc = subprocess.run(
            ["ocf-tester", "-n", "ocfvm", "-o", "name=ocfvm", "-o", "config=" + config,
             "-o", "shutdown_timeout=1", "-o", "migrationctl=" + harness.CTL, self.agent],
            capture_output=True, text=True, timeout=200)
        print(proc.stdout, proc.stderr)
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        self.assertIn("passed all tests", proc.stdout)
        # ocf-tester ends with the resource stopped: no QEMU left.
        self.assertEqual(harness.qemu_pids_in(self.scratch.path), [])

    def test_unreachable_daemon_is_an_error_never_not_running(self):
        # No migrationd on the bus: Pacemaker must not conclude "stopped"
        # (it would start a second copy elsewhere).
        for action in ("monitor", "stop", "start", "migrate_to"):
            proc = self.run_agent(action, name="vm", CRM_meta_interval="10000",
                                  CRM_meta_migrate_target="hostB")
            self.assertEqual(proc.returncode, OCF_ERR_GENERIC, "%s: %s" % (action, proc.stderr))
            self.assertIn("cannot ask migrationd", proc.stderr)

    def test_bad_parameters_are_configuration_errors(self):
        self.start_daemon()
        cases = [
            ({}, "the name parameter is required"),
            ({"name": "../etc"}, "is not a migrationd guest name"),
            ({"name": "vm", "transport": "udp"}, "transport='udp': use one of tunnel, native, tcp, tls, multifd"),
            ({"name": "vm", "convergence": "magic"}, "convergence='magic'"),
            ({"name": "vm", "copy_storage": "some"}, "copy_storage='some'"),
            ({"name": "vm", "parallel_connections": "0"}, "from 1 to 255"),
            ({"name": "vm", "bandwidth": "fast"}, "bandwidth='fast'"),
            ({"name": "vm", "node_map": "hostA"}, "node_map entry 'hostA': use NODE=PEER"),
        ]
        for params, message in cases:
            for action in ("validate-all", "start", "migrate_to"):
                proc = self.run_agent(action, **params)
                self.assertEqual(proc.returncode, OCF_ERR_CONFIGURED, "%s %s: %s" % (action, params, proc.stderr))
                self.assertIn(message, proc.stderr)
        # Nothing was defined or started.
        client = self.client()
        self.assertEqual(client.call(MANAGER_PATH, MANAGER_IFACE, "ListGuests", None, None, "(ao)")[0], [])
        # A guest this node does not know and cannot define: not installed
        # here (Pacemaker bans the node), and a probe says not running.
        proc = self.run_agent("start", name="ghost")
        self.assertEqual(proc.returncode, OCF_ERR_INSTALLED, proc.stderr)
        self.assertIn("not defined on this node and no config is given", proc.stderr)
        self.assertEqual(self.run_agent("monitor", name="ghost", CRM_meta_interval="0").returncode,
                         OCF_NOT_RUNNING)
        proc = self.run_agent("start", name="vm", config=self.scratch.join("missing.xml"))
        self.assertEqual(proc.returncode, OCF_ERR_INSTALLED, proc.stderr)
        self.assertEqual(self.run_agent("frobnicate", name="vm").returncode, OCF_ERR_UNIMPLEMENTED)
        proc = self.run_agent("migrate_to", name="vm")
        self.assertEqual(proc.returncode, OCF_ERR_ARGS, proc.stderr)


def guest_params(guest, config, **extra):
    params = {"name": guest.name, "config": config, "migrationctl": harness.CTL,
              "shutdown_timeout": "1",
              "node_map": "hostA=%s:%d hostB=%s:%d" % (twohosts.NETNS_ADDRESSES["hostA"], twohosts.PEER_PORT,
                                                      twohosts.NETNS_ADDRESSES["hostB"], twohosts.PEER_PORT)}
    params.update(extra)
    return params


OPS = [("monitor", "5s", "30s", None), ("start", "0", "60s", None), ("stop", "0", "60s", None),
       ("migrate_to", "0", "120s", None), ("migrate_from", "0", "60s", None)]


class Pacemaker(twohosts.TwoHostsTestCase):

    def guests(self, names, **extra):
        out = []
        for i, name in enumerate(names):
            guest = harness.TestGuest(self.scratch, name, size_mib=16, seed=10 + i, memory=64)
            out.append((guest, write_config(self.scratch, guest)))
        return out

    def outgoing_running(self, client):
        """Migrations of this host running now (Manager1.ListMigrations)."""
        n = 0
        for path in client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]:
            try:
                props = client.get_all(path, MIGRATION_IFACE)
            except Exception:
                continue
            if props.get("Direction") == "outgoing" and props.get("State") not in twohosts.TERMINAL_STATES:
                n += 1
        return n

    def wait_location(self, pcmk, rid, nodes, timeout=120):
        harness.wait_until(lambda: pcmk.where(rid) == nodes, timeout=timeout, interval=0.5,
                           what="%s on %s in Pacemaker's view\n%s\n%s" % (rid, nodes, pcmk.a.agent_log(),
                                                                       pcmk.b.agent_log()))

    def last_pass(self, guest):
        passes = [int(m.group(1)) for m in VERIFY_RE.finditer(guest.serial_text())]
        return max(passes) if passes else 0

    def assert_arrived_intact(self, guest, host, last_pass):
        """The guest runs on @host (its only QEMU there), and its RAM
        checksum keeps verifying after the migration without a reboot."""
        client = self.hosts.client(host)
        self.assertEqual(self.hosts.guest_state(client, guest.name), "running", self.hosts.logs())
        pid = client.get_property(harness.guest_path(guest.name), GUEST_IFACE, "PID")
        self.assertIn(pid, host.qemu_pids())
        length = len(guest.serial_text())
        harness.wait_until(lambda: [m for m in VERIFY_RE.finditer(guest.serial_text(), length)
                                    if int(m.group(1)) > last_pass],
                           timeout=40, what="a VERIFY pass after %d of %s on %s" % (last_pass, guest.name, host.name))
        text = guest.serial_text()
        self.assertNotIn(" BAD", text)
        self.assertEqual(text.count("MDGUEST READY"), 1, "%s rebooted" % guest.name)

    def test_move_and_standby_migrate_live_within_migration_limit(self):
        guests = self.guests(["pm1", "pm2", "pm3"])
        # Each transport the agent offers: migrationd's default (the tunnel),
        # native QEMU TLS, and the tunnel with two streams.
        transports = [{}, {"transport": "native"}, {"transport": "tunnel", "parallel_connections": "2"}]
        resources = [cluster.primitive(g.name, guest_params(g, cfg, **extra), OPS)
                     for (g, cfg), extra in zip(guests, transports)]
        constraints = "\n".join(cluster.prefer(g.name, "hostA", 50) for g, _ in guests)
        pcmk = cluster.Cluster(self, self.hosts, resources, constraints, migration_limit=1)
        pcmk.wait_online()
        for g, _ in guests:
            self.wait_location(pcmk, g.name, ["hostA"])
        for g, _ in guests:
            g.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=60)
        self.assertEqual(len(self.a.qemu_pids()), 3, "A %s B %s all %s %s" % (
            self.a.qemu_pids(), self.b.qemu_pids(), harness.qemu_pids_in(self.scratch.path),
            [os.readlink("/proc/%d/ns/net" % p) for p in harness.qemu_pids_in(self.scratch.path)]))

        # crm_resource --move: a live migration, RAM intact on B, A's QEMU gone.
        pm1 = guests[0][0]
        pid_a = self.client_a.get_property(harness.guest_path("pm1"), GUEST_IFACE, "PID")
        last = self.last_pass(pm1)
        pcmk.crm_resource("--move", "-r", "pm1", "-N", "hostB")
        self.wait_location(pcmk, "pm1", ["hostB"])
        harness.wait_until(lambda: pid_a not in self.a.qemu_pids(), timeout=30, what="pm1's QEMU on A to exit")
        self.assert_arrived_intact(pm1, self.b, last)
        self.assertNotEqual(self.hosts.guest_state(self.client_a, "pm1"), "running")
        pcmk.crm_resource("--clear", "-r", "pm1")

        # Standby A: every guest leaves A, one migration at a time.
        samples = []
        stop = threading.Event()
        sampler_client = self.hosts.client(self.a)

        def sample():
            while not stop.is_set():
                samples.append(self.outgoing_running(sampler_client))
                time.sleep(0.1)
        lasts = {g.name: self.last_pass(g) for g, _ in guests[1:]}
        thread = threading.Thread(target=sample)
        thread.start()
        try:
            pcmk.standby("hostA")
            for g, _ in guests:
                self.wait_location(pcmk, g.name, ["hostB"])
        finally:
            stop.set()
            thread.join()
        self.assertTrue(samples and max(samples) >= 1, "no migration was seen running: %s" % samples)
        self.assertLessEqual(max(samples), 1, "migration-limit=1 exceeded: %s" % samples)
        harness.wait_until(lambda: not self.a.qemu_pids(), timeout=30, what="no QEMU left on A")
        for g, _ in guests[1:]:
            self.assert_arrived_intact(g, self.b, lasts[g.name])
        # Every migration went through migrate_to (live), none stop+start.
        ops = [f for f in pcmk.failures()]
        self.assertEqual(ops, [], "Pacemaker recorded failures: %s" % ops)

    def test_failed_migration_leaves_guest_on_source_with_failure_recorded(self):
        (guest, config), = self.guests(["pmf"])
        # A slow migration (4 MiB/s) so the destination QEMU can be killed
        # mid-way; a failed migrate_to blocks the resource where it is
        # rather than having Pacemaker restart the guest cold elsewhere.
        ops = [op for op in OPS if op[0] != "migrate_to"] + [
            ("migrate_to", "0", "120s", {"on-fail": "block"})]
        params = guest_params(guest, config, bandwidth="4M")
        pcmk = cluster.Cluster(self, self.hosts, [cluster.primitive("pmf", params, ops)],
                               cluster.prefer("pmf", "hostA", 50))
        t0 = time.monotonic()
        pcmk.wait_online()
        print("online after %.1fs" % (time.monotonic() - t0), flush=True)
        self.wait_location(pcmk, "pmf", ["hostA"])
        print("started after %.1fs" % (time.monotonic() - t0), flush=True)
        guest.wait_serial(r"MDGUEST VERIFY pass=\d+ sum=[0-9a-f]+ ok", timeout=60)
        pid_a = self.client_a.get_property(harness.guest_path("pmf"), GUEST_IFACE, "PID")

        pcmk.crm_resource("--move", "-r", "pmf", "-N", "hostB")
        harness.wait_until(lambda: self.b.qemu_pids(), timeout=60, what="the destination QEMU on B")
        # Mid-way: the stream is flowing.
        path = harness.wait_until(lambda: self.running_migration(self.client_a), timeout=30,
                                  what="pmf's migration on A")
        self.hosts.wait_property(self.client_a, path, "MemoryProcessed", lambda v: v > 0, timeout=30)
        for pid in self.b.qemu_pids():
            os.kill(pid, signal.SIGKILL)
        print("killed after %.1fs" % (time.monotonic() - t0), flush=True)

        # Pacemaker: migrate_to failed on A (rc 1), recorded; the resource
        # is still on A and nothing runs on B.
        harness.wait_until(lambda: any(f[1] == "hostA" and f[2] == "migrate_to" for f in pcmk.failures("pmf")),
                           timeout=90, interval=0.5, what="the failed migrate_to in Pacemaker's status\n"
                           + pcmk.a.agent_log())
        print("failure seen after %.1fs" % (time.monotonic() - t0), flush=True)
        fails = [f for f in pcmk.failures("pmf") if f[2] == "migrate_to"]
        self.assertEqual(fails[0][3], str(OCF_ERR_GENERIC), fails)
        # on-fail=block: Pacemaker leaves it on A, failed and blocked,
        # until an administrator cleans up; nothing was restarted.
        # It cannot know whether the half-done migration left anything on
        # B until it probes again, so it lists both and acts on neither.
        self.assertIn("hostA", pcmk.where("pmf"))
        res = pcmk.resource("pmf")
        self.assertEqual((res.get("failed"), res.get("blocked")), ("true", "true"), res.attrib)
        print("recorded: %s, %s" % (fails, res.attrib), flush=True)
        pcmk.crm_resource("--clear", "-r", "pmf")
        pcmk.crm_resource("--cleanup", "-r", "pmf")
        self.wait_location(pcmk, "pmf", ["hostA"])
        pcmk.wait_idle()
        print("idle after %.1fs" % (time.monotonic() - t0), flush=True)
        self.assertEqual(pcmk.where("pmf"), ["hostA"])
        # The same QEMU as before: resumed, not restarted.
        self.assertEqual(self.hosts.guest_state(self.client_a, "pmf"), "running")
        self.assertEqual(self.client_a.get_property(harness.guest_path("pmf"), GUEST_IFACE, "PID"), pid_a)
        self.assertEqual(self.b.qemu_pids(), [])
        self.assertNotEqual(self.hosts.guest_state(self.client_b, "pmf"), "running")
        self.assert_arrived_intact(guest, self.a, self.last_pass(guest))

    def running_migration(self, client):
        for path in client.call(MANAGER_PATH, MANAGER_IFACE, "ListMigrations", None, None, "(ao)")[0]:
            props = client.get_all(path, MIGRATION_IFACE)
            if props.get("State") not in twohosts.TERMINAL_STATES:
                return path
        return None


if __name__ == "__main__":
    harness.main()

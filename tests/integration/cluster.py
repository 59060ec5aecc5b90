"""A real two-node Pacemaker cluster on the two hosts of twohosts.TwoHosts.

Each node runs corosync and pacemakerd inside its host's network namespace
and in a mount + UTS namespace of its own (hostname = the host's name, which
is the Pacemaker node name), without systemd: private bind mounts over
corosync's and Pacemaker's state and log directories, fresh tmpfs on /run
and /dev/shm, the host's private bus socket bound to
/run/dbus/system_bus_socket (so the agent's migrationctl reaches that host's
migrationd as it would the system bus), and a tmpfs over
/usr/lib/ocf/resource.d holding only ocf:migrationd:guest from the build.
The CIB is pre-seeded (stonith off, dc-deadtime 2s): both nodes are online
in seconds instead of ~25. Facts measured in shared/notes/pacemaker-testing.md.

CLI tools (crm_mon, crm_resource, cibadmin) run in the node's network and
mount namespaces (nsenter): libqb uses abstract sockets and /dev/shm.

Run with /usr/bin/python3, like harness.py.
"""

import os
import secrets
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

import harness

AGENT = os.path.join(harness.BUILD_ROOT, "ocf", "guest")
STATE_DIRS = ("/etc/corosync", "/var/lib/corosync", "/var/log/corosync", "/var/lib/pacemaker",
              "/var/log/pacemaker")
PACEMAKER_SUBDIRS = ("blackbox", "cib", "cores", "pengine")

# The node's mounts, then corosync, then pacemakerd; the PIDs go to files
# so the test can stop them (no PID namespace: they are ordinary PIDs).
NODE_SCRIPT = r"""
set -eu
root=$1 node=$2 bus=$3 agent=$4
hostname "$node"
for d in /etc/corosync /var/lib/corosync /var/log/corosync /var/lib/pacemaker /var/log/pacemaker; do
  mount --bind "$root$d" "$d"
done
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p /run/crm /run/resource-agents /run/dbus /run/corosync
chown hacluster:haclient /run/crm
touch /run/dbus/system_bus_socket
mount --bind "$bus" /run/dbus/system_bus_socket
mount -t tmpfs -o mode=0755 tmpfs /usr/lib/ocf/resource.d
mkdir /usr/lib/ocf/resource.d/migrationd
cp "$agent" /usr/lib/ocf/resource.d/migrationd/guest
chmod 0755 /usr/lib/ocf/resource.d/migrationd/guest
corosync -f >"$root/corosync.out" 2>&1 &
echo $! >"$root/corosync.pid"
i=0
until corosync-cfgtool -s >/dev/null 2>&1; do
  i=$((i + 1))
  [ $i -lt 300 ] || { echo "corosync did not answer" >&2; exit 1; }
  sleep 0.1
done
pacemakerd >"$root/pacemakerd.out" 2>&1 &
echo $! >"$root/pacemakerd.pid"
wait
"""

COROSYNC_CONF = """totem {{
  version: 2
  cluster_name: mdtest{tag}
  transport: knet
  crypto_cipher: aes256
  crypto_hash: sha256
  token: 3000
}}
nodelist {{
{nodes}
}}
quorum {{
  provider: corosync_votequorum
  two_node: 1
}}
logging {{
  to_logfile: yes
  logfile: /var/log/corosync/corosync.log
  to_stderr: no
  to_syslog: no
  timestamp: on
}}
"""

CIB = """<cib validate-with="pacemaker-3.9" epoch="1" num_updates="0"
     admin_epoch="0">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="opt-stonith" name="stonith-enabled" value="false"/>
        <nvpair id="opt-dc-deadtime" name="dc-deadtime" value="2s"/>
        <nvpair id="opt-migration-limit" name="migration-limit" value="{migration_limit}"/>
        <nvpair id="opt-recheck" name="cluster-recheck-interval" value="1min"/>
      </cluster_property_set>
    </crm_config>
    <nodes/>
    <resources>
{resources}
    </resources>
    <constraints>
{constraints}
    </constraints>
    <rsc_defaults>
      <meta_attributes id="rsc-defaults">
        <nvpair id="rsc-stickiness" name="resource-stickiness" value="100"/>
      </meta_attributes>
    </rsc_defaults>
  </configuration>
  <status/>
</cib>
"""


def primitive(rid, params, ops=(), meta=None):
    """An ocf:migrationd:guest primitive with allow-migrate=true. @ops:
    (name, interval, timeout, extra attributes dict or None)."""
    attrs = "\n".join('          <nvpair id="%s-p-%s" name="%s" value="%s"/>' % (rid, k, k, v)
                      for k, v in params.items())
    meta = dict({"allow-migrate": "true"}, **(meta or {}))
    metas = "\n".join('          <nvpair id="%s-m-%s" name="%s" value="%s"/>' % (rid, k, k, v)
                      for k, v in meta.items())
    op_lines = []
    for name, interval, timeout, extra in ops:
        more = "".join(' %s="%s"' % kv for kv in (extra or {}).items())
        op_lines.append('          <op id="%s-%s-%s" name="%s" interval="%s" timeout="%s"%s/>'
                        % (rid, name, interval, name, interval, timeout, more))
    return ("      <primitive id=\"%s\" class=\"ocf\" provider=\"migrationd\" type=\"guest\">\n"
            "        <instance_attributes id=\"%s-params\">\n%s\n        </instance_attributes>\n"
            "        <meta_attributes id=\"%s-meta\">\n%s\n        </meta_attributes>\n"
            "        <operations>\n%s\n        </operations>\n      </primitive>"
            % (rid, rid, attrs, rid, metas, "\n".join(op_lines)))


def prefer(rid, node, score):
    return ('      <rsc_location id="loc-%s-%s" rsc="%s" node="%s" score="%d"/>'
            % (rid, node, rid, node, score))


class Node:
    def __init__(self, cluster, host, nodeid):
        self.cluster = cluster
        self.host = host
        self.name = host.name
        self.nodeid = nodeid
        self.root = cluster.scratch.join("pcmk-" + host.name)
        self.proc = None

    def prepare(self, corosync_conf, authkey, cib):
        for d in STATE_DIRS:
            os.makedirs(self.root + d, exist_ok=True)
        for sub in PACEMAKER_SUBDIRS:
            os.makedirs(os.path.join(self.root + "/var/lib/pacemaker", sub), exist_ok=True)
        with open(self.root + "/etc/corosync/corosync.conf", "w") as f:
            f.write(corosync_conf)
        key = self.root + "/etc/corosync/authkey"
        with open(key, "wb") as f:
            f.write(authkey)
        os.chmod(key, 0o400)
        cib_path = self.root + "/var/lib/pacemaker/cib/cib.xml"
        with open(cib_path, "w") as f:
            f.write(cib)
        os.chmod(cib_path, 0o600)
        for d in ("/var/lib/pacemaker", "/var/log/pacemaker"):
            subprocess.run(["chown", "-R", "hacluster:haclient", self.root + d], check=True)

    def start(self):
        argv = ["ip", "netns", "exec", self.host.netns, "unshare", "-m", "-u", "--propagation",
                "private", "sh", "-c", NODE_SCRIPT, "node", self.root, self.name,
                self.host.bus.socket, AGENT]
        self.out = open(os.path.join(self.root, "node.out"), "w")
        # The agent must find this host's bus where the system bus is, not
        # through the address harness.Bus left in the environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)

    def _pid(self, name):
        try:
            with open(os.path.join(self.root, name + ".pid")) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    @property
    def pacemakerd_pid(self):
        return self._pid("pacemakerd")

    def run(self, argv, check=True, timeout=60):
        """A Pacemaker CLI tool in this node's namespaces."""
        pid = self.pacemakerd_pid or self._pid("corosync")
        if pid is None:
            raise AssertionError("node %s has no pacemakerd yet:\n%s" % (self.name, self.output()))
        proc = subprocess.run(["nsenter", "-t", str(pid), "-n", "-m", "-u"] + list(argv),
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError("%s on %s failed (%d): %s\n%s"
                                 % (" ".join(argv), self.name, proc.returncode,
                                    proc.stderr.strip() or proc.stdout.strip(), self.output()))
        return proc

    def output(self):
        text = []
        for name in ("node.out", "corosync.out", "pacemakerd.out"):
            try:
                with open(os.path.join(self.root, name), errors="replace") as f:
                    text.append("--- %s %s:\n%s" % (self.name, name, f.read()[-2000:]))
            except FileNotFoundError:
                pass
        return "\n".join(text)

    def agent_log(self, lines=60):
        """The executor's log lines of our agent (its stderr is logged)."""
        try:
            with open(self.root + "/var/log/pacemaker/pacemaker.log", errors="replace") as f:
                wanted = [ln for ln in f if "guest" in ln and ("execd" in ln or "controld" in ln)]
        except FileNotFoundError:
            return ""
        return "".join(wanted[-lines:])

    def stop(self):
        # pacemakerd first (it stops its children and the resources'
        # monitors), then corosync; the namespaces go with the processes.
        for name, timeout in (("pacemakerd", 30), ("corosync", 15)):
            pid = self._pid(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                _kill_tree(pid)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.out.close()


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return not f.read().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return False


def _kill_tree(pid):
    """SIGKILL @pid and its descendants (the Pacemaker daemons)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().split(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    to_kill = [pid]
    while to_kill:
        p = to_kill.pop()
        to_kill.extend(children.get(p, []))
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Cluster:
    """Pacemaker on hostA and hostB of @hosts (a twohosts.TwoHosts with
    network namespaces); @resources and @constraints are CIB XML snippets."""

    def __init__(self, test, hosts, resources, constraints="", migration_limit=1):
        if not hosts.netns:
            raise AssertionError("a Pacemaker cluster needs network namespaces (root)")
        self.test = test
        self.scratch = hosts.scratch
        self.nodes = [Node(self, hosts.a, 1), Node(self, hosts.b, 2)]
        tag = secrets.token_hex(3)
        nodes = "\n".join("  node {\n    ring0_addr: %s\n    name: %s\n    nodeid: %d\n  }"
                          % (n.host.address, n.name, n.nodeid) for n in self.nodes)
        conf = COROSYNC_CONF.format(tag=tag, nodes=nodes)
        authkey = secrets.token_bytes(256)
        cib = CIB.format(resources="\n".join(resources), constraints=constraints,
                         migration_limit=migration_limit)
        for node in self.nodes:
            node.prepare(conf, authkey, cib)
        for node in self.nodes:
            node.start()
            test.addCleanup(node.stop)
        self.a, self.b = self.nodes

    def wait_online(self, timeout=90):
        def online():
            for node in self.nodes:
                if node.proc.poll() is not None:
                    raise AssertionError("node %s exited:\n%s" % (node.name, node.output()))
            if self.a.pacemakerd_pid is None:
                return False
            status = self.status(check=False)
            if status is None:
                return False
            names = {n.get("name") for n in status.iter("node")
                     if n.get("online") == "true" and n.get("standby") == "false"}
            return names >= {"hostA", "hostB"} and status.find("summary/current_dc") is not None \
                and status.find("summary/current_dc").get("present") == "true"
        harness.wait_until(online, timeout=timeout, interval=0.3,
                           what="both Pacemaker nodes online\n" + self.output())

    def output(self):
        return "\n".join(n.output() for n in self.nodes)

    def status(self, check=True):
        """crm_mon's XML, or None when it cannot answer yet."""
        proc = self.a.run(["crm_mon", "--one-shot", "--output-as=xml", "--inactive"], check=check)
        if proc.returncode != 0:
            return None
        try:
            return ET.fromstring(proc.stdout)
        except ET.ParseError:
            return None

    def where(self, rid):
        """The nodes Pacemaker says resource @rid is active on."""
        status = self.status()
        for res in status.iter("resource"):
            if res.get("id") == rid:
                return sorted(n.get("name") for n in res.findall("node"))
        return []

    def resource(self, rid):
        status = self.status()
        for res in status.iter("resource"):
            if res.get("id") == rid:
                return res
        return None

    def failures(self, rid=None):
        """crm_mon's failed operations: [(resource, node, task, rc)]."""
        status = self.status()
        out = []
        for f in status.iter("failure"):
            op_key = f.get("op_key", "")
            if rid is None or op_key.startswith(rid + "_"):
                out.append((op_key.split("_", 1)[0], f.get("node"), f.get("task"), f.get("exitcode")))
        return out

    def crm_resource(self, *args):
        return self.a.run(["crm_resource"] + list(args))

    def standby(self, node, on=True):
        self.a.run(["crm_attribute", "--node", node, "--name", "standby", "--update",
                    "on" if on else "off", "--lifetime", "forever"])

    def wait_idle(self, timeout=120):
        """Until the DC has nothing left to do (crm_resource --wait)."""
        self.a.run(["crm_resource", "--wait", "--timeout", "%ds" % timeout], timeout=timeout + 10)

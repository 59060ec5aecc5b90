#!/usr/bin/python3
"""Benchmark: live migration through migrationd against QEMU driven directly.

One invocation migrates the same guest (default 1 GiB of RAM, of which
memory minus 64 MiB is filled with non-zero pseudo-random data by the test
guest's fill mode) N times for each selected mode and transport:

  qemu-direct  two qemu-system-x86_64 (TCG) started by this script and
               driven over QMP: the floor. max-bandwidth is set to the value
               migrationd uses (UNLIMITED_BANDWIDTH in
               src/md-migration-source.c), TLS uses tls-creds-x509 objects
               on the PKI made by data/migrationd-tls-setup, as the daemon
               does.
  migrationd   two daemons on 127.0.0.1 (private buses, mock polkitd);
               Guest1.Migrate() with tls false/true, waiting for
               Migration1.Completed.

Each run migrates to a fresh destination QEMU; the destination becomes the
source of the next run (so runs alternate direction), and every run starts
only after the guest has finished a new RAM verify pass on its current host
(the guest is running, settled and its RAM intact).

Prints a table: QEMU's own migration time (query-migrate total-time), the
wall time from the migrate command / Migrate() call to completion, the
overhead between the two, throughput (guest RAM / QEMU time) and downtime.

Not part of the test suite. Usage (run with /usr/bin/python3):

    bench/migrate-bench.py [--build DIR] [--runs 3] [--memory-mib 1024]
                           [--fill-mib N] [--modes qemu-direct,migrationd]
                           [--transports tcp,tls] [--keep] [--poll-ms 10]

See bench/README.md for what the columns mean.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# Must match UNLIMITED_BANDWIDTH in src/md-migration-source.c: QEMU 7.2
# caps max-bandwidth at 128 MiB/s unless it is set.
UNLIMITED_BANDWIDTH = 1 << 40
FILL_START_MIB = 2
GUEST_NAME = "bench"
MODES = ("qemu-direct", "migrationd")
# tcp: plain TCP; tls: QEMU's own TLS, one stream (native); tls-N: the same
# with N multifd streams; tunnel / tunnel-N: migrationd's data streams
# through the peer port, one or N streams (migrationd only).
TRANSPORTS = ("tcp", "tls", "tls-N", "tunnel", "tunnel-N")
DIRECT_TRANSPORTS = ("tcp", "tls")


def transport_streams(transport, n):
    """Multifd channels of a transport name (0: one stream)."""
    return n if transport.endswith("-N") else 0


def daemon_options(transport, n):
    from gi.repository import GLib
    options = {"tls": GLib.Variant("b", transport != "tcp")}
    if transport != "tcp":
        options["transport"] = GLib.Variant("s", "tunnel" if transport.startswith("tunnel") else "native")
    # Always said: the daemon's default is several streams.
    options["parallel-connections"] = GLib.Variant("u", transport_streams(transport, n))
    return options
SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
MKGUEST = os.path.join(SOURCE_ROOT, "tests", "guest", "mkguest.py")
TLS_SETUP = os.path.join(SOURCE_ROOT, "data", "migrationd-tls-setup")
VERIFY_RE = re.compile(r"MDGUEST VERIFY pass=(\d+) sum=([0-9a-f]{8}) (ok|BAD)")


class BenchError(Exception):
    pass


def fmt(value):
    return "?" if value is None else "%.0f" % value


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_until(predicate, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise BenchError("timed out after %.0f s waiting for %s" % (timeout, what))


def free_ports(count):
    """@count consecutive TCP ports free on 127.0.0.1 now."""
    for base in range(30000, 60000 - count, count + 7):
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise BenchError("no %d consecutive free TCP ports on 127.0.0.1" % count)


class Cleanup:
    """Callbacks run last-in first-out; each failure is reported, the rest
    still run."""

    def __init__(self):
        self.stack = []

    def push(self, func, *args):
        self.stack.append((func, args))

    def depth(self):
        return len(self.stack)

    def run(self, down_to=0):
        while len(self.stack) > down_to:
            func, args = self.stack.pop()
            try:
                func(*args)
            except Exception as e:  # keep cleaning up
                log("cleanup: %s failed: %s" % (getattr(func, "__name__", func), e))


# ---- the guest ---------------------------------------------------------------


class Serial:
    """The guest's serial log: every QEMU of one mode writes it (append)."""

    def __init__(self, path):
        self.path = path

    def text(self):
        try:
            with open(self.path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def last_pass(self):
        """Highest VERIFY pass number so far (0: none); a BAD line fails."""
        text = self.text()
        best = 0
        for m in VERIFY_RE.finditer(text):
            if m.group(3) == "BAD":
                raise BenchError("the guest's RAM verify failed after a migration: %s (serial log %s)"
                                 % (m.group(0), self.path))
            best = max(best, int(m.group(1)))
        return best

    def wait_ready(self, timeout):
        def ready():
            text = self.text()
            if "MDGUEST ERROR" in text:
                raise BenchError("test guest failed: " + text[text.index("MDGUEST ERROR"):].splitlines()[0])
            return "MDGUEST READY" in text and self.last_pass() >= 1
        wait_until(ready, timeout, "the guest's READY line and a first VERIFY pass in " + self.path, 0.2)

    def wait_pass_above(self, n, timeout):
        """Waits for a VERIFY ok with pass > @n: the guest runs where it was
        migrated to and its RAM arrived intact."""
        wait_until(lambda: self.last_pass() > n, timeout,
                   "a VERIFY pass above %d in %s (guest running and settled)" % (n, self.path), 0.1)


def make_image(build, out, fill_mib, seed):
    proc = subprocess.run([sys.executable, MKGUEST, "--base", os.path.join(build, "tests", "guest", "testguest.img"),
                           "--out", out, "--mode", "fill", "--start-mib", str(FILL_START_MIB),
                           "--size-mib", str(fill_mib), "--seed", str(seed)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError("mkguest.py failed: " + (proc.stderr or proc.stdout).strip())
    return out


def make_pki(out):
    proc = subprocess.run([TLS_SETUP, "--out", out, "hostA=127.0.0.1", "hostB=127.0.0.1"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError("%s failed: %s" % (TLS_SETUP, (proc.stderr or proc.stdout).strip()))
    dns = {}
    for name in ("hostA", "hostB"):
        m = re.search(r"to /etc/migrationd/tls/ on %s\b.*\n.*allowed-dns on the other hosts: (.*)" % name,
                      proc.stdout)
        dns[name] = m.group(1).strip() if m else "CN=%s,O=migrationd" % name
    return dns


# ---- (a) QEMU over QMP -------------------------------------------------------


class QMP:
    """A tiny synchronous QMP client on a unix socket."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        wait_until(lambda: self._connect(path), timeout, "QMP socket " + path)
        self.sock.settimeout(60)
        self.file = self.sock.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise BenchError("no QMP greeting on %s: %s" % (path, greeting))
        self.execute("qmp_capabilities")

    def _connect(self, path):
        try:
            self.sock.connect(path)
            return True
        except (FileNotFoundError, ConnectionRefusedError):
            return False

    def _read(self):
        line = self.file.readline()
        if not line:
            raise BenchError("QEMU closed its QMP socket")
        return json.loads(line)

    def execute(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise BenchError("QMP %s failed: %s" % (command, reply["error"].get("desc", reply["error"])))
            return reply.get("return")

    def close(self):
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


class DirectQemu:
    """One qemu-system-x86_64 process of the floor runs."""

    count = 0

    def __init__(self, bench, incoming):
        DirectQemu.count += 1
        self.name = "q%d" % DirectQemu.count
        self.qmp_path = os.path.join(bench.scratch, self.name + ".qmp")
        argv = ["qemu-system-x86_64", "-name", "guest=%s,debug-threads=on" % GUEST_NAME, "-no-user-config",
                "-nodefaults", "-machine", "pc,accel=tcg,usb=off,dump-guest-core=off",
                "-m", "size=%dM" % bench.args.memory_mib, "-smp", "1", "-display", "none",
                "-no-shutdown", "-drive", "file=%s,format=raw,if=ide" % bench.image,
                "-chardev", "file,id=s0,path=%s,append=on" % bench.serial.path,
                "-device", "isa-serial,chardev=s0",
                "-chardev", "socket,id=mon,path=%s,server=on,wait=off" % self.qmp_path,
                "-mon", "chardev=mon,mode=control"]
        if incoming:
            argv += ["-incoming", "defer"]
        self.log = open(os.path.join(bench.scratch, self.name + ".log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        bench.cleanup.push(self.kill)
        try:
            self.qmp = QMP(self.qmp_path)
        except BenchError as e:
            raise BenchError("%s (QEMU %s: %s)" % (e, self.name, self.log_text()))

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read().strip()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        try:
            os.unlink(self.qmp_path)
        except FileNotFoundError:
            pass


def direct_runs(bench, transport, runs):
    """@runs migrations between direct QEMUs; the guest on bench.direct_src."""
    tls = transport == "tls"
    results = []
    for i in range(runs):
        src = bench.direct_src
        dst = DirectQemu(bench, incoming=True)
        port = free_ports(1)
        caps = [{"capability": c, "state": c == "events"}
                for c in ("events", "auto-converge", "postcopy-ram", "multifd", "pause-before-switchover")]
        dst.qmp.execute("migrate-set-capabilities", capabilities=caps)
        src.qmp.execute("migrate-set-capabilities", capabilities=caps)
        # Both sides always get their TLS objects and parameters set, as the
        # daemon does ("" turns TLS off).
        dst_creds = src_creds = ""
        if tls:
            dst_creds, src_creds = "tls-in-%s" % dst.name, "tls-out-%s" % dst.name
            dst.qmp.execute("object-add", **{"qom-type": "tls-creds-x509", "id": dst_creds,
                                             "dir": bench.pki("hostB"), "endpoint": "server",
                                             "verify-peer": True})
            src.qmp.execute("object-add", **{"qom-type": "tls-creds-x509", "id": src_creds,
                                             "dir": bench.pki("hostA"), "endpoint": "client",
                                             "verify-peer": True})
        dst.qmp.execute("migrate-set-parameters", **{"tls-creds": dst_creds})
        dst.qmp.execute("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        src.qmp.execute("migrate-set-parameters", **{"max-bandwidth": UNLIMITED_BANDWIDTH, "tls-creds": src_creds,
                                                     "tls-hostname": "hostB" if tls else ""})
        before = bench.serial.last_pass()
        t0 = time.monotonic()
        src.qmp.execute("migrate", uri="tcp:127.0.0.1:%d" % port)
        while True:
            info = src.qmp.execute("query-migrate")
            status = info.get("status")
            if status == "completed":
                wall = (time.monotonic() - t0) * 1000
                # QEMU 7.2 reports "completed" a moment before it sets
                # total-time and downtime (migration_calculate_complete()):
                # ask again until they are there.
                wait_until(lambda: src.qmp.execute("query-migrate").get("total-time", 0) > 0, 10,
                           "query-migrate total-time after completion", 0.01)
                info = src.qmp.execute("query-migrate")
                break
            if status in ("failed", "cancelled"):
                raise BenchError("qemu-direct %s run %d: migration %s: %s (destination QEMU: %s)"
                                 % (transport, i + 1, status, info.get("error-desc", "no error-desc"),
                                    dst.log_text() or "no output"))
            if time.monotonic() - t0 > bench.args.timeout:
                raise BenchError("qemu-direct %s run %d: still %s after %d s" % (transport, i + 1, status,
                                                                                bench.args.timeout))
            time.sleep(bench.args.poll_ms / 1000)
        result = {"qemu": float(info["total-time"]), "wall": wall, "downtime": float(info.get("downtime", 0))}
        results.append(result)
        log("  qemu-direct %s run %d: qemu %.0f ms, wall %.0f ms, downtime %.0f ms"
            % (transport, i + 1, result["qemu"], result["wall"], result["downtime"]))
        src.qmp.close()
        src.kill()
        bench.direct_src = dst
        bench.serial.wait_pass_above(max(before, bench.serial.last_pass()), bench.args.timeout)
    return results


# ---- (b) through migrationd ------------------------------------------------------


class BusDir:
    """What harness.Bus and harness.MockPolkit need of a scratch dir."""

    def __init__(self, path):
        self.path = path
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o755)

    def join(self, *parts):
        return os.path.join(self.path, *parts)


class Host:
    def __init__(self, bench, name, peer_port, ports, allowed_dn):
        harness = bench.harness
        self.name = name
        self.peer_port = peer_port
        busdir = BusDir(os.path.join(bench.scratch, name + "-bus"))
        self.bus = harness.Bus(busdir)
        bench.cleanup.push(self.bus.stop)
        # MockPolkit talks to DBUS_SYSTEM_BUS_ADDRESS, which Bus() just set.
        self.polkit = harness.MockPolkit(self.bus, busdir)
        bench.cleanup.push(self.polkit.stop)
        self.polkit.set_allowed(harness.ACTIONS)
        config = ("[daemon]\nhost-name=%s\nlisten-address=127.0.0.1\npeer-port=%d\naccelerator=tcg\n"
                  "migration-port-min=%d\nmigration-port-max=%d\n\n[tls]\ndirectory=%s\nallowed-dns=%s\n"
                  # The guest's image and serial log are in the bench's
                  # scratch directory, shared by both "hosts".
                  "\n[storage]\nimage-dirs=%s\n"
                  % (name, peer_port, ports[0], ports[1], bench.pki(name), allowed_dn, bench.scratch))
        scratch = BusDir(bench.scratch)
        self.daemon = harness.Daemon(self.bus, scratch, name=name, config=config)
        bench.cleanup.push(self.daemon.kill)
        self.client = harness.Client(self.bus)
        bench.cleanup.push(self.client.close)
        self.completed = {}
        harness.wait_until(lambda: self.get(harness.MANAGER_PATH, harness.MANAGER_IFACE, "PeerAddress") != "",
                           timeout=10, what="%s's peer listener" % name)
        self.phases = {}  # path -> [(monotonic time, Phase)]
        conn = self.client.connection
        flags = harness.Gio.DBusSignalFlags.NONE
        conn.signal_subscribe(None, harness.MIGRATION_IFACE, "Completed", None, None, flags,
                              self._on_completed)
        conn.signal_subscribe(None, "org.freedesktop.DBus.Properties", "PropertiesChanged", None,
                              harness.MIGRATION_IFACE, flags, self._on_changed)

    def _on_completed(self, _conn, _sender, path, _iface, _signal, params):
        self.completed.setdefault(path, (time.monotonic(), tuple(params.unpack())))

    def _on_changed(self, _conn, _sender, path, _iface, _signal, params):
        changed = params.unpack()[1]
        if "Phase" in changed:
            self.phases.setdefault(path, []).append((time.monotonic(), changed["Phase"]))

    def phase_times(self, path, t0, t1):
        """{phase: ms} from the Phase changes seen: each phase lasts until
        the next one; the first starts at @t0, the last ends at @t1."""
        changes = self.phases.get(path, [])
        result = {}
        for n, (t, phase) in enumerate(changes):
            start = t0 if n == 0 else t
            end = changes[n + 1][0] if n + 1 < len(changes) else t1
            result[phase] = result.get(phase, 0.0) + (end - start) * 1000
        return result

    def get(self, path, iface, prop):
        return self.client.get_property(path, iface, prop)

    def log_tail(self, lines=30):
        """The daemon log's last lines, without GIO's socket debug noise."""
        kept = [line for line in self.daemon.read_log().splitlines() if "GLib-GIO-DEBUG" not in line]
        return "\n".join(kept[-lines:])


DATA_DISK_XML = """<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='%s'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    """


def make_sparse_disk(path, data_mib):
    """A raw image four times @data_mib, with @data_mib of random data in
    64 chunks spread over it and holes between."""
    size = 4 * data_mib * 1024 * 1024
    chunk = data_mib * 1024 * 1024 // 64
    with open(path, "wb") as f:
        f.truncate(size)
        for i in range(64):
            f.seek(i * (size // 64))
            f.write(os.urandom(chunk))
    return path


def allocated(path):
    return os.stat(path).st_blocks * 512


def nbdcopy_row(bench):
    """nbdcopy of the same image to a fresh local file: the floor for the
    disk-mirror row."""
    out = os.path.join(bench.scratch, "nbdcopy-target.raw")
    t0 = time.monotonic()
    subprocess.run(["nbdcopy", "--", "[", "qemu-nbd", "-r", "-f", "raw", bench.disk, "]", out], check=True)
    seconds = time.monotonic() - t0
    row = (seconds, os.path.getsize(bench.disk), allocated(out))
    os.unlink(out)
    return row


def daemon_setup(bench):
    harness = bench.harness
    base = free_ports(42)
    hosts = {}
    for i, (name, other) in enumerate((("hostA", "hostB"), ("hostB", "hostA"))):
        lo = base + 2 + 20 * i
        hosts[name] = Host(bench, name, base + i, (lo, lo + 19), bench.dns[other])
    a = hosts["hostA"]
    xml = harness.GUEST_XML.format(name=GUEST_NAME, memory=bench.args.memory_mib, image=bench.image,
                                   serial=bench.serial.path)
    if bench.args.disk_mib:
        bench.disk = make_sparse_disk(os.path.join(bench.scratch, "disk-hostA.raw"), bench.args.disk_mib)
        bench.disk_floor = nbdcopy_row(bench)
        xml = xml.replace("<serial type='file'>", DATA_DISK_XML % bench.disk + "<serial type='file'>", 1)
    path = a.client.call(harness.MANAGER_PATH, harness.MANAGER_IFACE, "DefineGuest", "(sa{sv})", (xml, {}),
                         "(o)")[0]
    a.client.call(path, harness.GUEST_IFACE, "Start", "(a{sv})", ({},), timeout=120000)
    bench.md_hosts = hosts
    bench.md_src = a
    bench.md_guest = path


# The fixed cost of a migration, split with the daemons' time-<event>-ms
# statistics (ms from the start of each Migration1; md_migration_mark_time):
# source: peer-connected, prepared, migrate-started, qemu-completed,
# finish-sent, finished; destination: qemu-starting, qemu-ready, prepared,
# finish-received, resumed.
BREAKDOWN = ("connect+hello", "dest qemu->qmp", "prepare", "transfer-qemu", "finish->resume", "confirm")


def incoming_statistics(dst, stats):
    """GetStatistics() of the destination's Migration1 of this run."""
    path = stats.get("peer-migration")
    if not path:
        return {}
    try:
        return dst.client.call(path, "org.migrationd.Migration1", "GetStatistics", None, None, "(a{sv})")[0]
    except Exception as e:  # an older daemon or a removed object: no split
        log("    no destination statistics for %s: %s" % (path, e))
        return {}


def overhead_breakdown(src, dst, result):
    """{part: ms} of the wall time around QEMU's own migration time:
    connect+hello  Migrate() to the authenticated peer connection (TLS + Hello);
    dest qemu->qmp destination QEMU spawned to its QMP ready (part of prepare);
    prepare        peer connected to Prepare answered (includes dest qemu);
    transfer-qemu  Prepare answered to QEMU completed, minus QEMU's total-time:
                   source QMP set-up (TLS object, capabilities, parameters)
                   and the delay in noticing completion;
    finish->resume QEMU completed to Finish answered (destination resumed);
    confirm        Finish answered to Completed seen by the client."""
    def t(stats, name):
        value = stats.get("time-%s-ms" % name)
        return None if value is None else float(value)

    needed = [t(src, n) for n in ("peer-connected", "prepared", "qemu-completed", "finished")]
    if None in needed or result["qemu"] is None:
        return {}
    connected, prepared, completed, finished = needed
    ready, starting = t(dst, "qemu-ready"), t(dst, "qemu-starting")
    return {
        "connect+hello": connected,
        "dest qemu->qmp": ready - starting if ready is not None and starting is not None else None,
        "prepare": prepared - connected,
        "transfer-qemu": completed - prepared - result["qemu"],
        "finish->resume": finished - completed,
        "confirm": result["wall"] - finished,
    }


def thread_cpu(scratch):
    """{(process, thread name): CPU seconds} of this bench's QEMUs and
    daemons: the daemons' command line names the scratch directory; their
    QEMUs (which get their files as descriptors, so their command line
    names none) are the daemons' children."""
    ticks = os.sysconf("SC_CLK_TCK")
    result = {}
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open("/proc/%s/stat" % pid) as f:
                ppid = f.read().rsplit(")", 1)[1].split()[1]
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        procs[pid] = (cmdline, ppid)
    daemons = {pid for pid, (cmdline, _) in procs.items() if scratch in cmdline and "migrationd" in cmdline}
    for pid, (cmdline, ppid) in procs.items():
        if pid in daemons:
            kind = "migrationd"
        elif "qemu-system" in cmdline and (scratch in cmdline or ppid in daemons):
            kind = "qemu"
        else:
            continue
        try:
            for tid in os.listdir("/proc/%s/task" % pid):
                with open("/proc/%s/task/%s/stat" % (pid, tid)) as f:
                    stat = f.read()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2:].split()
                key = (kind + " " + pid, tid, name)
                result[key] = (int(fields[11]) + int(fields[12])) / ticks
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return result


def cpu_report(before, after, label):
    """Per-thread CPU of one run, summed by thread name, busiest first."""
    by_name = {}
    for key, seconds in after.items():
        spent = seconds - before.get(key, 0.0)
        if spent > 0.005:
            name = "%s %s" % (key[0].split()[0], re.sub(r"\d+$", "N", key[2]))
            by_name[name] = by_name.get(name, 0.0) + spent
    parts = ["%s %.2f" % (n, t) for n, t in sorted(by_name.items(), key=lambda x: -x[1])[:10]]
    log("  CPU s by thread (%s): %s" % (label, ", ".join(parts)))


def daemon_runs(bench, transport, runs):
    from gi.repository import GLib
    harness = bench.harness
    results = []
    context = GLib.MainContext.default()
    for i in range(runs):
        src = bench.md_src
        dst = bench.md_hosts["hostB" if src.name == "hostA" else "hostA"]
        before = bench.serial.last_pass()
        options = daemon_options(transport, bench.args.streams)
        if bench.args.disk_mib:
            # The disk moves with the guest: a fresh target on the other side.
            target = os.path.join(bench.scratch, "disk-%s.raw" % dst.name)
            if os.path.exists(target):
                os.unlink(target)
            live = src.client.call(bench.md_guest, harness.GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
            source_disk = os.path.join(bench.scratch, "disk-%s.raw" % src.name)
            options.update({"copy-storage": GLib.Variant("s", "all"), "disks": GLib.Variant("as", ["vdb"]),
                            "destination-xml": GLib.Variant("s", live.replace(source_disk, target))})
        src.completed.clear()
        src.phases.clear()
        cpu_before = thread_cpu(bench.scratch) if bench.args.cpu else None
        cpu_seen, cpu_sampled = dict(cpu_before or {}), 0.0
        t0 = time.monotonic()
        try:
            mig = src.client.call(bench.md_guest, harness.GUEST_IFACE, "Migrate", "(sa{sv})",
                                  ("127.0.0.1:%d" % dst.peer_port, options), "(o)")[0]
        except GLib.Error as e:
            raise BenchError("migrationd %s run %d: Migrate() on %s failed: %s\n--- %s log:\n%s"
                             % (transport, i + 1, src.name, e.message, src.name, src.log_tail()))
        # Completed is dispatched from this thread's default main context;
        # a 200 ms timer wakes the loop to check the deadline.
        timer = GLib.timeout_add(200, lambda: True)
        try:
            while mig not in src.completed:
                if time.monotonic() - t0 > bench.args.timeout:
                    props = src.client.get_all(mig, harness.MIGRATION_IFACE)
                    raise BenchError("migrationd %s run %d: no Completed after %d s (state %s, phase %s)\n"
                                     "--- %s log:\n%s\n--- %s log:\n%s"
                                     % (transport, i + 1, bench.args.timeout, props["State"], props["Phase"],
                                        src.name, src.log_tail(), dst.name, dst.log_tail()))
                context.iteration(True)
                if cpu_before is not None and time.monotonic() - cpu_sampled > 0.2:
                    # The source QEMU exits before Completed: keep what
                    # its threads had spent when last seen.
                    cpu_seen.update(thread_cpu(bench.scratch))
                    cpu_sampled = time.monotonic()
        finally:
            GLib.source_remove(timer)
        t1, (success, error_name, error_message) = src.completed[mig]
        if not success:
            raise BenchError("migrationd %s run %d (%s -> %s) failed: %s: %s\n--- %s log:\n%s\n--- %s log:\n%s"
                             % (transport, i + 1, src.name, dst.name, error_name, error_message,
                                src.name, src.log_tail(), dst.name, dst.log_tail()))
        if cpu_before is not None:
            cpu_seen.update(thread_cpu(bench.scratch))
            cpu_report(cpu_before, cpu_seen, "migrationd %s run %d" % (transport, i + 1))
        props = src.client.get_all(mig, harness.MIGRATION_IFACE)
        stats = src.client.call(mig, harness.MIGRATION_IFACE, "GetStatistics", None, None, "(a{sv})")[0]
        if "qemu-total-time-ms" not in stats:
            raise BenchError("migrationd %s run %d: GetStatistics() has no qemu-total-time-ms: %s"
                             % (transport, i + 1, sorted(stats)))
        result = {"qemu": float(stats["qemu-total-time-ms"]), "wall": (t1 - t0) * 1000,
                  "downtime": float(props["Downtime"]), "md-total": float(props["TotalTime"]),
                  "phases": src.phase_times(mig, t0, t1)}
        dst_stats = incoming_statistics(dst, stats)
        result["breakdown"] = overhead_breakdown(stats, dst_stats, result)
        if bench.args.disk_mib:
            result["disk"] = (result["phases"].get("mirror-disks", 0.0), float(props["DiskProcessed"]),
                              allocated(target), allocated(source_disk))
            log("    disk: mirror %.0f ms, moved %d MiB, target allocates %d MiB (source %d MiB)"
                % (result["disk"][0], result["disk"][1] / 2**20, result["disk"][2] / 2**20,
                   result["disk"][3] / 2**20))
        if result["qemu"] == 0:
            # The daemon read query-migrate in the moment QEMU 7.2 says
            # "completed" but has not yet set total-time and downtime: the
            # sample has no QEMU time; it counts for wall time only.
            result["qemu"] = result["downtime"] = None
        results.append(result)
        log("  migrationd %s run %d (%s -> %s): qemu %s ms, wall %.0f ms, TotalTime %.0f ms, downtime %s ms"
            % (transport, i + 1, src.name, dst.name, fmt(result["qemu"]), result["wall"], result["md-total"],
               fmt(result["downtime"])))
        log("    phases (ms, as the client saw Migration1.Phase change): "
            + ", ".join("%s %.0f" % kv for kv in result["phases"].items()))
        if result["breakdown"]:
            log("    overhead breakdown (ms, daemon time-*-ms statistics): "
                + ", ".join("%s %s" % (k, fmt(v)) for k, v in result["breakdown"].items()))
        for side, side_stats in (("source", stats), ("destination", dst_stats)):
            marks = sorted((int(v), k[5:-3]) for k, v in side_stats.items()
                           if k.startswith("time-") and k.endswith("-ms"))
            log("    %s marks (ms from its Migration1's start): %s; journal %s writes, waited %s ms"
                % (side, ", ".join("%s %d" % (k, v) for v, k in marks),
                   side_stats.get("journal-writes", "?"), side_stats.get("journal-wait-ms", "?")))
        bench.md_src = dst
        bench.serial.wait_pass_above(max(before, bench.serial.last_pass()), bench.args.timeout)
    return results


def offline_runs(bench, transport, runs):
    """Offline migrations (a shut-off guest, copy-storage=all) of a disk
    like the live rows' one, through the peer port (tunnel) or to
    qemu-storage-daemon's NBD port (native): [(copy ms, bytes moved,
    target allocated, source allocated)]. A fresh guest name per run; the
    definitions stay on both hosts until the bench ends."""
    from gi.repository import GLib
    harness = bench.harness
    src = bench.md_src
    dst = bench.md_hosts["hostB" if src.name == "hostA" else "hostA"]
    source_disk = os.path.join(bench.scratch, "offline-source.raw")
    if not os.path.exists(source_disk):
        make_sparse_disk(source_disk, bench.args.disk_mib)
    context = GLib.MainContext.default()
    rows = []
    for i in range(runs):
        name = "offline-%s-%d" % (transport, i + 1)
        target = os.path.join(bench.scratch, "offline-target.raw")
        if os.path.exists(target):
            os.unlink(target)
        xml = harness.GUEST_XML.format(name=name, memory=64, image=bench.image,
                                       serial=os.path.join(bench.scratch, name + "-serial.log"))
        xml = xml.replace("<serial type='file'>", DATA_DISK_XML % source_disk + "<serial type='file'>", 1)
        path = src.client.call(harness.MANAGER_PATH, harness.MANAGER_IFACE, "DefineGuest", "(sa{sv})",
                               (xml, {}), "(o)")[0]
        # The definition as the daemon completed it (its UUID), the disk elsewhere.
        xml = src.client.call(path, harness.GUEST_IFACE, "GetXML", "(a{sv})", ({},), "(s)")[0]
        options = {"offline": GLib.Variant("b", True), "transport": GLib.Variant("s", transport),
                   "copy-storage": GLib.Variant("s", "all"), "disks": GLib.Variant("as", ["vdb"]),
                   "destination-xml": GLib.Variant("s", xml.replace(source_disk, target))}
        t0 = time.monotonic()
        mig = src.client.call(path, harness.GUEST_IFACE, "Migrate", "(sa{sv})",
                              ("127.0.0.1:%d" % dst.peer_port, options), "(o)")[0]
        timer = GLib.timeout_add(200, lambda: True)
        try:
            while mig not in src.completed:
                if time.monotonic() - t0 > bench.args.timeout:
                    raise BenchError("offline %s run %d: no Completed after %d s\n--- %s log:\n%s"
                                     % (transport, i + 1, bench.args.timeout, src.name, src.log_tail()))
                context.iteration(True)
        finally:
            GLib.source_remove(timer)
        t1, (success, error_name, error_message) = src.completed[mig]
        if not success:
            raise BenchError("offline %s run %d failed: %s: %s\n--- %s log:\n%s\n--- %s log:\n%s"
                             % (transport, i + 1, error_name, error_message, src.name, src.log_tail(),
                                dst.name, dst.log_tail()))
        stats = src.client.call(mig, harness.MIGRATION_IFACE, "GetStatistics", None, None, "(a{sv})")[0]
        rows.append(((t1 - t0) * 1000, float(stats.get("disk-bytes-copied", 0)), allocated(target),
                     allocated(source_disk)))
        log("  offline %s run %d: %.0f ms, moved %d MiB, target allocates %d MiB (source %d MiB)"
            % (transport, i + 1, rows[-1][0], rows[-1][1] / 2**20, rows[-1][2] / 2**20, rows[-1][3] / 2**20))
    return rows


# ---- driver ----------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.cleanup = Cleanup()
        self.scratch = tempfile.mkdtemp(prefix="md-migbench-")
        os.chmod(self.scratch, 0o755)
        if args.keep:
            self.cleanup.push(log, "kept the logs, serial logs and PKI in " + self.scratch)
        else:
            self.cleanup.push(shutil.rmtree, self.scratch, True)
        # Runs after every other cleanup but the removal: no QEMU survives,
        # including those the daemons started.
        self.cleanup.push(self.kill_qemus)
        self.harness = None
        self.dns = make_pki(os.path.join(self.scratch, "pki"))
        self.serial = None
        self.image = None
        self.direct_src = None
        self.md_hosts = None
        self.disk = None
        self.disk_floor = None
        self.offline = {}  # transport -> offline_runs() rows

    def pki(self, host):
        return os.path.join(self.scratch, "pki", host)

    def kill_qemus(self):
        if self.harness is not None:
            self.harness.kill_qemus_in(self.scratch)
            return
        for entry in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % entry, "rb") as f:
                    cmdline = f.read().decode(errors="replace")
            except (OSError, ValueError):
                continue
            if "qemu-system" in cmdline and self.scratch in cmdline:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def new_guest(self, tag):
        """A fresh image and serial log (a new fill seed per mode)."""
        self.image = make_image(self.args.build, os.path.join(self.scratch, tag + ".img"), self.args.fill_mib,
                                seed=len(tag) * 7919 + 1)
        self.serial = Serial(os.path.join(self.scratch, tag + "-serial.log"))

    def run_mode(self, mode, transports):
        depth = self.cleanup.depth()
        try:
            return self._run_mode(mode, transports)
        finally:
            # Nothing of one mode (QEMUs, daemons, buses) runs during the next.
            self.cleanup.run(depth)
            self.kill_qemus()
            self.direct_src = None

    def _run_mode(self, mode, transports):
        t = time.monotonic()
        self.new_guest(mode)
        if mode == "qemu-direct":
            self.direct_src = DirectQemu(self, incoming=False)
        else:
            import harness
            self.harness = harness
            daemon_setup(self)
        self.serial.wait_ready(self.args.timeout)
        log("%s: guest running, %d MiB filled (%.0f s)" % (mode, self.args.fill_mib, time.monotonic() - t))
        results = {}
        for transport in transports:
            if mode == "qemu-direct" and transport not in DIRECT_TRANSPORTS:
                continue
            try:
                if mode == "qemu-direct":
                    results[transport] = direct_runs(self, transport, self.args.runs)
                else:
                    results[transport] = daemon_runs(self, transport, self.args.runs)
            except Exception as e:  # BenchError, GLib.Error, harness's AssertionError
                results[transport] = str(getattr(e, "message", None) or e)
                log("FAILED: %s" % e)
                break  # the guest's whereabouts are unknown now
        if mode == "migrationd" and self.args.disk_mib and not any(isinstance(r, str) for r in results.values()):
            for transport in ("tunnel", "native"):
                try:
                    self.offline[transport] = offline_runs(self, transport, self.args.runs)
                except Exception as e:
                    log("FAILED: offline %s: %s" % (transport, getattr(e, "message", None) or e))
        return results


def header(args):
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    git = subprocess.run(["git", "-C", SOURCE_ROOT, "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    lines = [
        "command: %s" % shlex.join([sys.executable] + sys.argv),
        "machine: %d CPUs (nproc), %s, load average %.2f %.2f %.2f"
        % ((len(os.sched_getaffinity(0)), qemu.splitlines()[0].strip()) + os.getloadavg()),
        "source: %s (git %s), build %s" % (SOURCE_ROOT, git or "?", os.path.abspath(args.build)),
        "guest: %d MiB RAM, %d MiB filled (test guest fill mode), 1 vCPU, TCG; %d runs per row; "
        "max-bandwidth %d B/s" % (args.memory_mib, args.fill_mib, args.runs, UNLIMITED_BANDWIDTH),
    ]
    return "\n".join(lines)


def disk_table(args, all_results, floor, offline):
    """The disk-mirror rows: mirror time, bytes moved, what the target
    allocates; nbdcopy of the same image as the floor."""
    lines = ["", "disk: %d MiB raw image, %d MiB of it random data, the rest holes"
             % (4 * args.disk_mib, args.disk_mib),
             "%-26s %10s %10s %14s" % ("copy", "time ms", "moved MiB", "allocated MiB")]
    for mode, per_transport in all_results:
        for transport, results in per_transport.items():
            disks = [r["disk"] for r in results if isinstance(results, list) and "disk" in r]
            if disks:
                lines.append("%-26s %10.0f %10.0f %14.0f"
                             % ("%s %s mirror" % (mode, transport), statistics.mean(d[0] for d in disks),
                                statistics.mean(d[1] for d in disks) / 2**20,
                                statistics.mean(d[2] for d in disks) / 2**20))
    for transport, rows in offline.items():
        lines.append("%-26s %10.0f %10.0f %14.0f"
                     % ("migrationd offline %s" % transport, statistics.mean(r[0] for r in rows),
                        statistics.mean(r[1] for r in rows) / 2**20, statistics.mean(r[2] for r in rows) / 2**20))
    lines.append("%-26s %10.0f %10s %14.0f" % ("nbdcopy (qemu-nbd -> file)", floor[0] * 1000, "-",
                                                floor[2] / 2**20))
    if offline:
        lines.append("offline rows: Guest1.Migrate(offline) of a shut-off guest to Completed (wall time, "
                     "including Prepare and qemu-storage-daemon on both hosts); moved = disk-bytes-copied")
    return "\n".join(lines)


def table(args, all_results):
    rows = [("mode", "transport", "runs", "qemu mean", "qemu min", "wall mean", "wall min", "overhead",
             "MiB/s", "downtime", "md TotalTime")]
    notes = []
    for mode, per_transport in all_results:
        for transport, results in per_transport.items():
            if isinstance(results, str):
                rows.append((mode, transport, "FAILED") + ("-",) * 8)
                notes.append("FAILED %s/%s: %s (details above)" % (mode, transport, results.splitlines()[0]))
                continue
            timed = [r for r in results if r["qemu"] is not None]
            qemu = [r["qemu"] for r in timed]
            wall = [r["wall"] for r in results]
            over = [r["wall"] - r["qemu"] for r in timed]
            md = [r["md-total"] for r in results if "md-total" in r]
            runs = str(len(results))
            if len(timed) < len(results):
                runs += " (%d)" % len(timed)
                notes.append("NOTE %s/%s: %d of %d runs reported no QEMU total-time (0 ms): the daemon read "
                             "query-migrate as QEMU said completed, before QEMU set total-time and "
                             "downtime; qemu, overhead, MiB/s and downtime use the other %d"
                             % (mode, transport, len(results) - len(timed), len(results), len(timed)))
            mean = (lambda v: "%.0f" % statistics.mean(v) if v else "-")
            rows.append((mode, transport, runs, mean(qemu), "%.0f" % min(qemu) if qemu else "-",
                         mean(wall), "%.0f" % min(wall), mean(over),
                         "%.0f" % (args.memory_mib / (statistics.mean(qemu) / 1000)) if qemu else "-",
                         mean([r["downtime"] for r in timed]), mean(md)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        out.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    out.append("times in ms; qemu = QEMU's query-migrate total-time (migrationd: GetStatistics() "
               "qemu-total-time-ms); wall = migrate command (qemu-direct) or Guest1.Migrate() call "
               "(migrationd) to completion seen by the client (query-migrate polled every 10 ms / "
               "Migration1.Completed); overhead = wall - qemu, mean; MiB/s = guest RAM / mean qemu time; "
               "downtime = QEMU's, mean; md TotalTime = Migration1.TotalTime, mean.")
    for mode, per_transport in all_results:
        for transport, results in per_transport.items():
            if isinstance(results, str) or not any(r.get("phases") for r in results):
                continue
            names = []
            for r in results:
                names += [n for n in r["phases"] if n not in names]
            out.append("%s/%s phases, mean ms (Migration1.Phase changes as the client saw them): %s"
                       % (mode, transport, ", ".join("%s %.0f" % (n, statistics.mean(r["phases"].get(n, 0)
                                                                                    for r in results))
                                                     for n in names)))
    for mode, per_transport in all_results:
        for transport, results in per_transport.items():
            if isinstance(results, str):
                continue
            split = [r["breakdown"] for r in results if r.get("breakdown")]
            if not split:
                continue
            parts = []
            for name in BREAKDOWN:
                values = [b[name] for b in split if b.get(name) is not None]
                parts.append("%s %s" % (name, "%.0f" % statistics.mean(values) if values else "?"))
            overhead = statistics.mean(r["wall"] - r["qemu"] for r in results
                                       if r.get("breakdown") and r["qemu"] is not None)
            out.append("%s/%s overhead %.0f ms = %s (mean over %d runs; dest qemu->qmp is part of prepare)"
                       % (mode, transport, overhead, " + ".join(p for p in parts if not p.startswith("dest")),
                          len(split)))
            out.append("    of which dest qemu->qmp %s" % [p for p in parts if p.startswith("dest")][0].split()[-1])
    out.extend(notes)
    return "\n".join(out)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Live migration of one guest: QEMU over QMP (the floor) "
                                "against migrationd, plain TCP and TLS.")
    p.add_argument("--build", default="build", help="meson build dir with src/migrationd and "
                   "tests/guest/testguest.img (default ./build)")
    p.add_argument("--runs", type=int, default=3, help="migrations per mode and transport (default 3)")
    p.add_argument("--memory-mib", type=int, default=1024, help="guest RAM (default 1024)")
    p.add_argument("--fill-mib", type=int, help="RAM the guest fills with pseudo-random data "
                   "(default memory minus 64)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of %s" % ",".join(MODES))
    p.add_argument("--transports", default=",".join(TRANSPORTS),
                   help="comma-separated subset of %s" % ",".join(TRANSPORTS))
    p.add_argument("--streams", type=int, default=min(os.cpu_count() or 1, 4),
                   help="N of the tls-N and tunnel-N rows (default: CPUs, at most 4)")
    p.add_argument("--disk-mib", type=int, default=0,
                   help="migrationd: give the guest a raw disk of 4x this size holding this much random "
                   "data (the rest holes) and copy it (copy-storage=all) on every run; an nbdcopy row of "
                   "the same image follows the table, with offline copies of it (tunnel and native)")
    p.add_argument("--cpu", action="store_true",
                   help="migrationd: print the CPU time of each QEMU and daemon thread per run")
    p.add_argument("--poll-ms", type=int, default=10, help="qemu-direct: query-migrate interval (default 10)")
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (daemon and QEMU logs)")
    p.add_argument("--timeout", type=int, default=600, help="seconds any one step may take (default 600)")
    args = p.parse_args(argv)
    args.modes = [m for m in args.modes.split(",") if m]
    args.transports = [t for t in args.transports.split(",") if t]
    for m in args.modes:
        if m not in MODES:
            p.error("unknown mode %r: choose from %s" % (m, ", ".join(MODES)))
    for t in args.transports:
        if t not in TRANSPORTS:
            p.error("unknown transport %r: choose from %s" % (t, ", ".join(TRANSPORTS)))
    if not args.modes or not args.transports:
        p.error("--modes and --transports need at least one entry")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.fill_mib is None:
        args.fill_mib = args.memory_mib - 64
    # The fill range must lie between 1 MiB and the top of RAM below 4 GiB
    # (tests/guest/README.md); the pc machine keeps at most 3 GiB low when
    # RAM exceeds 3.5 GiB.
    top = args.memory_mib if args.memory_mib <= 3584 else 3072
    if args.fill_mib < 1 or FILL_START_MIB + args.fill_mib > top:
        p.error("--fill-mib %d does not fit: the fill range starts at %d MiB and must end below %d MiB "
                "(--memory-mib %d); use at most %d" % (args.fill_mib, FILL_START_MIB, top, args.memory_mib,
                                                       top - FILL_START_MIB))
    build = os.path.abspath(args.build)
    missing = [f for f in (os.path.join(build, "src", "migrationd"),
                           os.path.join(build, "tests", "guest", "testguest.img")) if not os.path.exists(f)]
    if missing:
        p.error("missing in the build dir %s: %s; build it first (meson setup %s && ninja -C %s) or "
                "pass --build DIR" % (build, ", ".join(missing), args.build, args.build))
    if shutil.which("qemu-system-x86_64") is None:
        p.error("qemu-system-x86_64 not found on PATH")
    args.build = build
    # harness.py reads these when imported (daemon binary, image, policy).
    os.environ["MD_BUILD_ROOT"] = build
    os.environ["MD_SOURCE_ROOT"] = SOURCE_ROOT
    os.environ["MD_TESTGUEST_IMG"] = os.path.join(build, "tests", "guest", "testguest.img")
    sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
    return args


def on_sigterm(_signum, _frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGHUP, on_sigterm)
    print(header(args), flush=True)
    bench = None
    all_results = []
    status = 0
    try:
        bench = Bench(args)
        for mode in args.modes:
            all_results.append((mode, bench.run_mode(mode, args.transports)))
    except KeyboardInterrupt:
        log("interrupted, cleaning up")
        status = 130
    except BenchError as e:
        log("FAILED: %s" % e)
        status = 1
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bench is not None:
            bench.cleanup.run()
    if all_results:
        print()
        print(table(args, all_results), flush=True)
        if args.disk_mib and bench is not None and bench.disk_floor:
            print(disk_table(args, all_results, bench.disk_floor, bench.offline), flush=True)
    if any(isinstance(r, str) for _, per in all_results for r in per.values()):
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())

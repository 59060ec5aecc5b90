#!/usr/bin/python3
"""migrationctl against a python-dbusmock stand-in for migrationd.

Each case starts its own private dbus-daemon and mock, so that a failure
names itself: test-migrationctl.py CASE (see CASES below; no argument runs
them all). The built client is taken from $MIGRATIONCTL.
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import dbus
import dbusmock

MIGRATIONCTL = os.environ.get('MIGRATIONCTL', 'migrationctl')
COMPLETION = os.environ.get('MIGRATIONCTL_COMPLETION', os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', 'data', 'completion', 'migrationctl'))
BUS_NAME = 'org.migrationd'
MANAGER_IFACE = 'org.migrationd.Manager1'
GUEST_IFACE = 'org.migrationd.Guest1'
MIGRATION_IFACE = 'org.migrationd.Migration1'
MOCK_IFACE = 'org.freedesktop.DBus.Mock'

VM1 = '/org/migrationd/guest/vm1'
WEB2 = '/org/migrationd/guest/web2'
VM1_UUID = '7d5c2f7e-3f0a-4d0e-9b3a-2b1f6f0c1a11'
MIG = '/org/migrationd/migration/7'
GiB = 1024 ** 3

VM1_XML = "<domain type='qemu'><name>vm1</name><uuid>%s</uuid></domain>" % VM1_UUID
VM1_XML_INACTIVE = "<domain type='qemu'><name>vm1</name><!-- inactive --></domain>"

LOOKUP_CODE = '''
known = {'vm1': '%s', '%s': '%s', 'web2': '%s'}
if args[0] not in known:
    raise dbus.exceptions.DBusException("guest '%%s' not found" %% args[0],
                                        name='org.migrationd.Error.NotFound')
ret = dbus.ObjectPath(known[args[0]])
''' % (VM1, VM1_UUID, VM1, WEB2)

LIST_MIGRATIONS_CODE = '''
ret = sorted(dbus.ObjectPath(p) for p in objects
             if p.startswith('/org/migrationd/migration/'))
'''

GETXML_CODE = '''
ret = %r if args[0].get('inactive') else %r
''' % (VM1_XML_INACTIVE, VM1_XML)


def guest_props(name, uuid, state, persistent, pid, memory, vcpus, disks):
    return {
        'Name': dbus.String(name),
        'UUID': dbus.String(uuid),
        'Title': dbus.String('Test guest ' + name),
        'State': dbus.String(state),
        'Persistent': dbus.Boolean(persistent),
        'PID': dbus.UInt32(pid),
        'Memory': dbus.UInt64(memory),
        'VCPUs': dbus.UInt32(vcpus),
        'Machine': dbus.String('pc-i440fx-7.2'),
        'Disks': dbus.Array(disks, signature='(ssss)'),
        'Migration': dbus.ObjectPath('/'),
    }


def migration_props():
    props = {
        'Guest': dbus.ObjectPath(VM1),
        'GuestName': dbus.String('vm1'),
        'Direction': dbus.String('outgoing'),
        'Peer': dbus.String('hostb (hostb.example.com:49200)'),
        'Owner': dbus.UInt32(1000),
        'Phase': dbus.String('begin'),
        'State': dbus.String('queued'),
        'Options': dbus.Dictionary({}, signature='sv'),
        'Progress': dbus.Double(0.0),
        'ProgressValid': dbus.Boolean(False),
        'ErrorName': dbus.String(''),
        'ErrorMessage': dbus.String(''),
        'Convergence': dbus.String('precopy'),
        'ConvergenceReason': dbus.String(''),
        'RecoveryAttempts': dbus.UInt32(0),
    }
    for name in ('StartTime', 'EndTime', 'ExpectedEndTime', 'MemoryTotal', 'MemoryProcessed',
                 'MemoryRemaining', 'DiskTotal', 'DiskProcessed', 'DiskRemaining', 'Rate',
                 'DiskRate', 'DirtyRate', 'Iteration', 'ExpectedDowntime', 'Downtime',
                 'TotalTime', 'Bandwidth', 'MaxDowntime'):
        props[name] = dbus.UInt64(0)
    props['MemoryTotal'] = dbus.UInt64(2 * GiB)
    return props


class LineReader:
    """Collects a pipe's lines on a thread, so reads can time out."""

    def __init__(self, stream):
        self.lines = []
        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        # GLib separates number and unit with a no-break space.
        for line in stream:
            self.queue.put(line.replace('\xa0', ' '))
        self.queue.put(None)
        stream.close()

    def wait_for(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError('timed out waiting for %r; got %r' % (pattern, self.lines))
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError('output ended before %r; got %r' % (pattern, self.lines))
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def rest(self):
        self.thread.join(10)
        while True:
            try:
                line = self.queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return ''.join(self.lines)


class TestMigrationctl(dbusmock.DBusTestCase):

    def setUp(self):
        self.bus_pid, self.address = self.start_dbus()
        os.environ['DBUS_SESSION_BUS_ADDRESS'] = self.address
        self.bus = dbus.bus.BusConnection(self.address)
        self.mock = None

    def tearDown(self):
        if self.mock is not None:
            self.mock.terminate()
            self.mock.wait()
        self.bus.close()
        self.stop_dbus(self.bus_pid)

    def start_mock(self):
        self.mock = self.spawn_server(BUS_NAME, '/org/migrationd', MANAGER_IFACE,
                                      stdout=None if os.environ.get('MOCK_LOG')
                                      else subprocess.DEVNULL)
        manager = dbus.Interface(self.bus.get_object(BUS_NAME, '/org/migrationd'), MOCK_IFACE)
        manager.AddProperties(MANAGER_IFACE, {
            'Version': dbus.String('0.1.0'),
            'HostName': dbus.String('hosta'),
            'HostUUID': dbus.String('11111111-2222-3333-4444-555555555555'),
            'Capabilities': dbus.Array(['guests', 'live-migration', 'tls'], signature='s'),
            'PeerAddress': dbus.String('0.0.0.0:49200'),
        })
        manager.AddMethods(MANAGER_IFACE, [
            ('LookupGuest', 's', 'o', LOOKUP_CODE),
            ('ListGuests', '', 'ao', 'ret = [dbus.ObjectPath("%s"), dbus.ObjectPath("%s")]'
             % (VM1, WEB2)),
            ('ListMigrations', '', 'ao', LIST_MIGRATIONS_CODE),
            ('ListPeers', '', 'a(sss)',
             'ret = [("hostb", "hostb.example.com:49200", "CN=hostb,O=Example")]'),
            ('DefineGuest', 'sa{sv}', 'o', 'ret = dbus.ObjectPath("%s")' % VM1),
            ('CreateGuest', 'sa{sv}', 'o', 'ret = dbus.ObjectPath("%s")' % VM1),
            ('AddPeer', 'sssa{sv}', '', ''),
            ('RemovePeer', 's', '',
             'raise dbus.exceptions.DBusException("no peer %s" % args[0], '
             'name="org.migrationd.Error.NotFound")'),
        ])
        manager.AddObject(VM1, GUEST_IFACE, guest_props(
            'vm1', VM1_UUID, 'running', True, 4242, 2 * GiB, 2,
            [('vda', '/var/lib/migrationd/images/vm1.qcow2', 'qcow2', 'virtio')]), [
            ('GetXML', 'a{sv}', 's', GETXML_CODE),
            ('Migrate', 'sa{sv}', 'o', 'ret = dbus.ObjectPath("%s")' % MIG),
            ('Start', 'a{sv}', '', ''),
            ('Shutdown', 'a{sv}', '', ''),
            ('Pause', 'a{sv}', '', ''),
            ('Destroy', 'a{sv}', '',
             'raise dbus.exceptions.DBusException("Not authorized for org.migrationd.guest.manage",'
             ' name="org.migrationd.Error.NotAuthorized")'),
        ])
        manager.AddObject(WEB2, GUEST_IFACE, guest_props(
            'web2', '00000000-0000-0000-0000-0000000000b2', 'shut-off', False, 0, 512 * 1024 ** 2,
            1, []), [])
        self.manager = manager

    def add_migration(self):
        self.manager.AddObject(MIG, MIGRATION_IFACE, migration_props(), [
            ('Cancel', 'a{sv}', '', ''),
            ('SetBandwidth', 't', '', ''),
        ])
        return dbus.Interface(self.bus.get_object(BUS_NAME, MIG), MOCK_IFACE)

    def ctl(self, *args, address=None):
        argv = [MIGRATIONCTL, '--address', address or self.address] + list(args)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout.replace('\xa0', ' '), p.stderr.replace('\xa0', ' ')

    # ---- cases ----

    def test_list(self):
        self.start_mock()
        rc, out, err = self.ctl('list')
        self.assertEqual(rc, 0, err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ['NAME', 'STATE', 'PERSISTENT', 'MEMORY', 'VCPUS'])
        self.assertEqual(lines[1].split(), ['vm1', 'running', 'yes', '2.0', 'GiB', '2'])
        self.assertEqual(lines[2].split(), ['web2', 'shut-off', 'no', '512.0', 'MiB', '1'])

        rc, out, err = self.ctl('--json', 'list')
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual([g['name'] for g in doc], ['vm1', 'web2'])
        self.assertEqual(doc[0]['uuid'], VM1_UUID)
        self.assertEqual(doc[0]['state'], 'running')
        self.assertIs(doc[0]['persistent'], True)
        self.assertEqual(doc[0]['memory'], 2 * GiB)
        self.assertEqual(doc[0]['vcpus'], 2)
        self.assertIs(doc[1]['persistent'], False)

        # Options after the command, and filters.
        rc, out, err = self.ctl('list', '--inactive', '--json')
        self.assertEqual(rc, 0, err)
        self.assertEqual([g['name'] for g in json.loads(out)], ['web2'])
        rc, out, err = self.ctl('__complete-guests')
        self.assertEqual((rc, out), (0, 'vm1\nweb2\n'))

    def test_status(self):
        self.start_mock()
        for name in ('vm1', VM1_UUID):
            rc, out, err = self.ctl('status', name)
            self.assertEqual(rc, 0, err)
            fields = dict(re.split(r':\s+', line, maxsplit=1)
                          for line in out.splitlines() if re.match(r'^\w+:\s', line))
            self.assertEqual(fields['Name'], 'vm1')
            self.assertEqual(fields['UUID'], VM1_UUID)
            self.assertEqual(fields['State'], 'running')
            self.assertEqual(fields['Persistent'], 'yes')
            self.assertEqual(fields['PID'], '4242')
            self.assertEqual(fields['Memory'], '2.0 GiB (2147483648 bytes)')
            self.assertEqual(fields['VCPUs'], '2')
            self.assertEqual(fields['Machine'], 'pc-i440fx-7.2')
            self.assertEqual(fields['Migration'], 'none')
            self.assertRegex(out, r'vda\s+virtio\s+qcow2\s+/var/lib/migrationd/images/vm1.qcow2')

        rc, out, err = self.ctl('status', 'vm1', '--json')
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        self.assertEqual(doc['name'], 'vm1')
        self.assertEqual(doc['pid'], 4242)
        self.assertEqual(doc['memory'], 2 * GiB)
        self.assertEqual(doc['machine'], 'pc-i440fx-7.2')
        self.assertIsNone(doc['migration'])
        self.assertEqual(doc['disks'], [{'target': 'vda',
                                         'source': '/var/lib/migrationd/images/vm1.qcow2',
                                         'format': 'qcow2', 'bus': 'virtio'}])

    def test_dumpxml(self):
        self.start_mock()
        rc, out, err = self.ctl('dumpxml', 'vm1')
        self.assertEqual((rc, out), (0, VM1_XML + '\n'), err)
        rc, out, err = self.ctl('dumpxml', '--inactive', 'vm1')
        self.assertEqual((rc, out), (0, VM1_XML_INACTIVE + '\n'), err)
        rc, out, err = self.ctl('--json', 'dumpxml', 'vm1')
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), {'name': 'vm1', 'xml': VM1_XML})
        guest = dbus.Interface(self.bus.get_object(BUS_NAME, VM1), MOCK_IFACE)
        calls = [c for c in guest.GetCalls() if c[1] == 'GetXML']
        self.assertEqual([dict(c[2][0]) for c in calls], [{}, {'inactive': True}, {}])
        self.assertIsInstance(calls[1][2][0]['inactive'], dbus.Boolean)

    def test_info_peers(self):
        self.start_mock()
        rc, out, err = self.ctl('info')
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r'Version:\s+0\.1\.0')
        self.assertRegex(out, r'Capabilities:\s+guests live-migration tls')
        rc, out, err = self.ctl('info', '--json')
        self.assertEqual(json.loads(out)['host-name'], 'hosta')
        rc, out, err = self.ctl('peers', '--json')
        self.assertEqual(json.loads(out), [{'name': 'hostb', 'address': 'hostb.example.com:49200',
                                            'certificate-dn': 'CN=hostb,O=Example'}])
        rc, out, err = self.ctl('remove-peer', 'hostc')
        self.assertEqual(rc, 1)
        self.assertIn("no peer named hostc (see 'migrationctl peers')", err)

    def test_lifecycle(self):
        self.start_mock()
        xml_file = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'ctl-test-%d.xml' % os.getpid())
        with open(xml_file, 'w') as f:
            f.write(VM1_XML)
        try:
            rc, out, err = self.ctl('define', xml_file)
            self.assertEqual((rc, out), (0, 'guest vm1 defined\n'), err)
            rc, out, err = self.ctl('define', '--check', xml_file)
            self.assertEqual((rc, out), (0, '%s: the definition is valid on this host\n' % xml_file),
                             err)
            rc, out, err = self.ctl('create', '--paused', xml_file)
            self.assertEqual((rc, out), (0, 'guest vm1 created\n'), err)
        finally:
            os.unlink(xml_file)
        rc, out, err = self.ctl('define', '/nonexistent/vm.xml')
        self.assertEqual(rc, 1)
        self.assertIn('/nonexistent/vm.xml', err)
        calls = self.manager.GetCalls()
        define = [c[2] for c in calls if c[1] == 'DefineGuest']
        create = [c[2] for c in calls if c[1] == 'CreateGuest']
        self.assertEqual(define, [[VM1_XML, {}], [VM1_XML, {'check-only': True}]])
        self.assertEqual(create, [[VM1_XML, {'start-paused': True}]])

        rc, out, err = self.ctl('start', '--paused', 'vm1')
        self.assertEqual((rc, out), (0, 'guest vm1 started\n'), err)
        rc, out, err = self.ctl('shutdown', VM1_UUID, '--timeout', '30')
        self.assertEqual((rc, out), (0, 'guest %s is shut off\n' % VM1_UUID), err)
        rc, out, err = self.ctl('pause', 'vm1')
        self.assertEqual(rc, 0, err)
        guest = dbus.Interface(self.bus.get_object(BUS_NAME, VM1), MOCK_IFACE)
        calls = {c[1]: c[2][0] for c in guest.GetCalls()}
        self.assertEqual(calls['Start'], {'start-paused': True})
        self.assertEqual(calls['Shutdown'], {'timeout': 30})
        self.assertIsInstance(calls['Shutdown']['timeout'], dbus.UInt32)
        self.assertEqual(calls['Pause'], {})

        rc, out, err = self.ctl('add-peer', 'hostc', 'hostc:49200', 'CN=hostc')
        self.assertEqual(rc, 0, err)
        self.assertEqual([c[2] for c in self.manager.GetCalls() if c[1] == 'AddPeer'],
                         [['hostc', 'hostc:49200', 'CN=hostc', {}]])

    def test_not_found(self):
        self.start_mock()
        rc, out, err = self.ctl('status', 'nope')
        self.assertEqual(rc, 1)
        self.assertEqual(out, '')
        self.assertIn("migrationctl: status nope: no guest named nope (see 'migrationctl list')",
                      err)
        self.assertNotIn('org.migrationd.Error', err)
        rc, out, err = self.ctl('start', 'nope')
        self.assertEqual(rc, 1)
        self.assertIn('no guest named nope', err)

    def test_not_authorized(self):
        self.start_mock()
        rc, out, err = self.ctl('destroy', 'vm1')
        self.assertEqual(rc, 1)
        self.assertIn('migrationctl: cannot destroy vm1: Not authorized', err)
        self.assertIn('ask an administrator to grant org.migrationd.guest.manage via polkit', err)
        self.assertIn('50-migrationd.rules.example', err)
        self.assertNotIn('GDBus.Error', err)

    def test_usage(self):
        rc, out, err = self.ctl('frobnicate')
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'frobnicate'", err)
        rc, out, err = self.ctl('list', '--frob')
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl('shutdown', 'vm1', '--timeout', 'soon')
        self.assertEqual(rc, 2)
        self.assertIn('--timeout', err)
        rc, out, err = self.ctl('migrate', 'vm1', 'hostb', '--bandwidth', '12X')
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl('migrate', 'vm1', 'hostb', '--migration-port', '70000')
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl('set-downtime', 'x', '10')
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl('status')
        self.assertEqual(rc, 2)
        rc, out, err = self.ctl('help')
        self.assertEqual(rc, 0)
        self.assertIn('migrate NAME DEST', out)
        rc, out, err = self.ctl('migrate', '--help')
        self.assertEqual(rc, 0)
        self.assertIn('--copy-storage', out)

    def test_unreachable(self):
        # A bus without migrationd on it.
        rc, out, err = self.ctl('list')
        self.assertEqual(rc, 3)
        self.assertIn('migrationd', err)
        self.assertIn('Start it', err)
        # No bus at all.
        rc, out, err = self.ctl('status', 'vm1', address='unix:path=/nonexistent/bus')
        self.assertEqual(rc, 3)
        self.assertIn('cannot connect', err)

    MIGRATE_ARGS = ['migrate', 'vm1', 'hostb', '--bandwidth', '100M', '--max-downtime', '300',
                    '--auto-converge', '--parallel', '4', '--compression', 'zstd', '--persist',
                    '--migration-port', '49152', '--abort-after', '600', '--copy-storage', 'all',
                    '--disk', 'vda', '--disk', 'vdb', '--no-tls', '--dest-name', 'vm1-b',
                    '--no-ask-password']
    EXPECTED_OPTIONS = {
        'bandwidth': (dbus.UInt64, 100 * 1024 ** 2),
        'max-downtime': (dbus.UInt64, 300),
        'auto-converge': (dbus.Boolean, True),
        'parallel-connections': (dbus.UInt32, 4),
        'compression': (dbus.String, 'zstd'),
        'persist-destination': (dbus.Boolean, True),
        'migration-port': (dbus.UInt16, 49152),
        'abort-after': (dbus.UInt32, 600),
        'copy-storage': (dbus.String, 'all'),
        'disks': (dbus.Array, ['vda', 'vdb']),
        'tls': (dbus.Boolean, False),
        'destination-name': (dbus.String, 'vm1-b'),
        'auth.no_user_interaction': (dbus.Boolean, True),
    }

    def start_migrate(self, *extra, first=r'vm1: .*-\.-%'):
        self.start_mock()
        migration = self.add_migration()
        proc = subprocess.Popen([MIGRATIONCTL, '--address', self.address] + self.MIGRATE_ARGS
                                + list(extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        out = LineReader(proc.stdout)
        # The first report means the client follows the migration.
        out.wait_for(first)
        return proc, migration, out

    def finish_migrate(self, proc, out):
        rc = proc.wait(10)
        text = out.rest()
        err = proc.stderr.read().replace('\xa0', ' ')
        proc.stderr.close()
        return rc, text, err

    def check_migrate_call(self):
        guest = dbus.Interface(self.bus.get_object(BUS_NAME, VM1), MOCK_IFACE)
        calls = [c for c in guest.GetCalls() if c[1] == 'Migrate']
        self.assertEqual(len(calls), 1)
        destination, options = calls[0][2]
        self.assertEqual(destination, 'hostb')
        self.assertEqual(sorted(options.keys()), sorted(self.EXPECTED_OPTIONS.keys()))
        for key, (dtype, value) in self.EXPECTED_OPTIONS.items():
            self.assertIsInstance(options[key], dtype, key)
            self.assertEqual(options[key], value, key)
        self.assertEqual(options['disks'].signature, 's')

    def progress(self, migration, fraction, iteration):
        migration.UpdateProperties(MIGRATION_IFACE, {
            'State': dbus.String('running'),
            'Phase': dbus.String('perform'),
            'ProgressValid': dbus.Boolean(True),
            'Progress': dbus.Double(fraction),
            'MemoryProcessed': dbus.UInt64(int(fraction * 2 * GiB)),
            'Rate': dbus.UInt64(100 * 1024 ** 2),
            'DirtyRate': dbus.UInt64(5 * 1024 ** 2),
            'Iteration': dbus.UInt64(iteration),
            'ExpectedEndTime': dbus.UInt64(int((time.time() + 30) * 1e6)),
        })

    def test_migrate_success(self):
        proc, migration, out = self.start_migrate()
        self.check_migrate_call()
        for i, fraction in enumerate((0.25, 0.5, 0.75)):
            self.progress(migration, fraction, i + 1)
            out.wait_for(r'%.1f%%' % (fraction * 100))
        migration.UpdateProperties(MIGRATION_IFACE, {
            'State': dbus.String('completed'), 'Phase': dbus.String('done'),
            'Progress': dbus.Double(1.0), 'MemoryProcessed': dbus.UInt64(2 * GiB),
            'Downtime': dbus.UInt64(42), 'TotalTime': dbus.UInt64(12300)})
        migration.EmitSignal(MIGRATION_IFACE, 'Completed', 'bss', [True, '', ''])
        rc, text, err = self.finish_migrate(proc, out)
        self.assertEqual(rc, 0, text + err)
        percents = [float(m) for m in re.findall(r'vm1: +([\d.]+)%', text)]
        self.assertEqual(percents, [25.0, 50.0, 75.0, 100.0], text)
        self.assertIn('memory 512.0 MiB/2.0 GiB', text)
        self.assertIn('100.0 MiB/s', text)
        self.assertIn('phase perform', text)
        self.assertIn('iteration 2', text)
        self.assertIn('dirty 5.0 MiB/s', text)
        self.assertRegex(text, r'ETA 0:[23]\d')
        self.assertIn('migration of vm1 to hostb completed in 12.3 s (downtime 42 ms)', text)
        # A finished migration has no ETA.
        self.assertNotIn('ETA', text.splitlines()[-2])

    def test_migrate_json(self):
        proc, migration, out = self.start_migrate('--json', first=r'"state":"queued"')
        self.progress(migration, 0.5, 1)
        out.wait_for(r'"progress" *: *0\.5')
        migration.EmitSignal(MIGRATION_IFACE, 'Completed', 'bss',
                             [False, 'org.migrationd.Error.PeerFailed', 'hostb went away'])
        rc, text, err = self.finish_migrate(proc, out)
        docs = [json.loads(line) for line in text.splitlines()]
        self.assertEqual(rc, 1)
        self.assertEqual(docs[-1]['event'], 'result')
        self.assertIs(docs[-1]['success'], False)
        self.assertEqual(docs[-1]['error-name'], 'org.migrationd.Error.PeerFailed')
        self.assertEqual(docs[-2]['event'], 'progress')
        self.assertEqual(docs[-2]['memory-processed'], GiB)

    def test_migrate_shows_convergence(self):
        proc, migration, out = self.start_migrate(
            '--convergence', 'auto', '--max-downtime-ceiling', '500', '--no-auto-converge',
            '--postcopy-recovery-timeout', '120')
        guest = dbus.Interface(self.bus.get_object(BUS_NAME, VM1), MOCK_IFACE)
        options = [c for c in guest.GetCalls() if c[1] == 'Migrate'][0][2][1]
        self.assertEqual(options['convergence'], 'auto')
        self.assertEqual(options['max-downtime-ceiling'], 500)
        self.assertIsInstance(options['max-downtime-ceiling'], dbus.UInt64)
        self.assertIs(bool(options['auto-converge']), False)
        self.assertEqual(options['postcopy-recovery-timeout'], 120)
        self.assertIsInstance(options['postcopy-recovery-timeout'], dbus.UInt32)
        reason = '2 iterations without progress: 46 MiB left, guest dirties 13 MiB/s'
        migration.UpdateProperties(MIGRATION_IFACE, {
            'Convergence': dbus.String('downtime-raised'), 'ConvergenceReason': dbus.String(reason),
            'RecoveryAttempts': dbus.UInt32(2)})
        self.progress(migration, 0.4, 3)
        out.wait_for(r'40\.0%')
        migration.EmitSignal(MIGRATION_IFACE, 'Completed', 'bss', [True, '', ''])
        rc, text, err = self.finish_migrate(proc, out)
        self.assertIn('convergence downtime-raised (%s)' % reason, text)
        self.assertIn('recovery attempts 2', text)

    def test_migrate_json_shows_convergence(self):
        proc, migration, out = self.start_migrate('--json', first=r'"state":"queued"')
        migration.UpdateProperties(MIGRATION_IFACE, {
            'Convergence': dbus.String('postcopy'), 'ConvergenceReason': dbus.String('stalled')})
        self.progress(migration, 0.5, 1)
        out.wait_for(r'"progress" *: *0\.5')
        migration.EmitSignal(MIGRATION_IFACE, 'Completed', 'bss', [True, '', ''])
        rc, text, err = self.finish_migrate(proc, out)
        docs = [json.loads(line) for line in text.splitlines()]
        self.assertEqual(docs[-2]['convergence'], 'postcopy')
        self.assertEqual(docs[-2]['convergence-reason'], 'stalled')
        self.assertEqual(docs[-2]['recovery-attempts'], 0)

    def test_migrate_failure(self):
        proc, migration, out = self.start_migrate()
        self.progress(migration, 0.3, 1)
        out.wait_for(r'30\.0%')
        message = 'hostb, Prepare: QEMU exited: could not open disk image: Permission denied'
        migration.UpdateProperties(MIGRATION_IFACE, {
            'State': dbus.String('failed'),
            'ErrorName': dbus.String('org.migrationd.Error.PeerFailed'),
            'ErrorMessage': dbus.String(message)})
        migration.EmitSignal(MIGRATION_IFACE, 'Completed', 'bss',
                             [False, 'org.migrationd.Error.PeerFailed', message])
        rc, text, err = self.finish_migrate(proc, out)
        self.assertEqual(rc, 1, text)
        self.assertIn('migration of vm1 to hostb failed: org.migrationd.Error.PeerFailed: '
                      + message, err)

    def test_migrate_cancel(self):
        proc, migration, out = self.start_migrate()
        self.progress(migration, 0.1, 1)
        out.wait_for(r'10\.0%')
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while not [c for c in migration.GetCalls() if c[1] == 'Cancel']:
            self.assertLess(time.monotonic(), deadline, 'Cancel was not called')
            time.sleep(0.1)
        self.assertIsNone(proc.poll(), 'migrationctl must wait for Completed after Cancel')
        migration.EmitSignal(MIGRATION_IFACE, 'Completed', 'bss',
                             [False, 'org.migrationd.Error.Cancelled', 'cancelled by user'])
        rc, text, err = self.finish_migrate(proc, out)
        self.assertEqual(rc, 1)
        self.assertIn('cancelling migration of vm1...', err)
        self.assertIn('cancelled', err)

    def test_migrations(self):
        self.start_mock()
        migration = self.add_migration()
        self.progress(migration, 0.5, 2)
        rc, out, err = self.ctl('migrations')
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[1].split()[:3], ['7', 'vm1', 'outgoing'])
        self.assertIn('50.0%', out)
        rc, out, err = self.ctl('migrations', '--json')
        doc = json.loads(out)
        self.assertEqual(doc[0]['id'], '7')
        self.assertEqual(doc[0]['state'], 'running')
        self.assertEqual(doc[0]['progress'], 0.5)
        rc, out, err = self.ctl('set-bandwidth', '7', '1G')
        self.assertEqual(rc, 0, err)
        calls = [c for c in migration.GetCalls() if c[1] == 'SetBandwidth']
        self.assertEqual(calls[0][2], [GiB])
        rc, out, err = self.ctl('cancel', MIG)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len([c for c in migration.GetCalls() if c[1] == 'Cancel']), 1)
        rc, out, err = self.ctl('cancel', '99')
        self.assertEqual(rc, 1)
        self.assertIn("no migration 99 (see 'migrationctl migrations')", err)

    def complete(self, *words):
        """The completions bash would offer after `migrationctl WORDS`."""
        script = r'''
_init_completion() {
    words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
    cur=${words[cword]}; prev=${words[cword - 1]}
}
_filedir() { :; }
source "$COMPLETION"
COMP_WORDS=(migrationctl "$@"); COMP_CWORD=$#
_migrationctl
printf '%s\n' "${COMPREPLY[@]}"
'''
        env = dict(os.environ, COMPLETION=COMPLETION,
                   PATH=os.path.dirname(os.path.abspath(MIGRATIONCTL)) + ':' + os.environ['PATH'])
        p = subprocess.run(['bash', '-c', script, 'bash', '--address', self.address] + list(words),
                           capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(p.stderr, '')
        return sorted(w for w in p.stdout.split('\n') if w)

    def test_completion(self):
        self.start_mock()
        self.add_migration()
        self.assertEqual(self.complete('st'), ['start', 'status'])
        self.assertEqual(self.complete('status', ''), ['vm1', 'web2'])
        self.assertEqual(self.complete('migrate', 'v'), ['vm1'])
        self.assertEqual(self.complete('migrate', 'vm1', ''), ['hostb'])
        self.assertEqual(self.complete('migrate', 'vm1', 'hostb', '--comp'), ['--compression'])
        self.assertEqual(self.complete('migrate', 'vm1', '--compression', 'z'), ['zlib', 'zstd'])
        self.assertEqual(self.complete('cancel', ''), ['7'])
        self.assertIn('--no-ask-password', self.complete('list', '--'))

    def test_monitor(self):
        self.start_mock()
        migration = self.add_migration()
        for json_mode in (False, True):
            argv = [MIGRATIONCTL, '--address', self.address, 'monitor'] + (
                ['--json'] if json_mode else [])
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            out = LineReader(proc.stdout)
            out.wait_for('NameOwnerChanged' if json_mode else 'migrationd is on the bus')
            self.manager.EmitSignal('org.freedesktop.DBus.ObjectManager', 'InterfacesAdded',
                                    'oa{sa{sv}}', [dbus.ObjectPath(MIG), {
                                        MIGRATION_IFACE: {'GuestName': dbus.String('vm1')}}])
            self.progress(migration, 0.5, 3)
            migration.EmitSignal(MIGRATION_IFACE, 'Completed', 'bss',
                                 [False, 'org.migrationd.Error.Timeout', 'took too long'])
            out.wait_for('Completed')
            proc.send_signal(signal.SIGINT)
            self.assertEqual(proc.wait(10), 0)
            proc.stderr.close()
            text = out.rest()
            if not json_mode:
                self.assertRegex(text, r'/org/migrationd InterfacesAdded %s '
                                 r'org.migrationd.Migration1: GuestName=\'vm1\'' % MIG)
                self.assertRegex(text, r'%s PropertiesChanged org.migrationd.Migration1:.* '
                                 r'Progress=0.5 .*Iteration=3' % MIG)
                self.assertIn('%s Completed: failed: org.migrationd.Error.Timeout: took too long'
                              % MIG, text)
            else:
                docs = [json.loads(line) for line in text.splitlines()]
                by_signal = {d['signal']: d for d in docs}
                self.assertEqual(by_signal['Completed']['path'], MIG)
                self.assertEqual(by_signal['Completed']['arguments'],
                                 [False, 'org.migrationd.Error.Timeout', 'took too long'])
                changed = by_signal['PropertiesChanged']['arguments'][1]
                self.assertEqual(changed['Progress'], 0.5)
                self.assertEqual(changed['Iteration'], 3)

    # ---- --version, --help, --json everywhere, --quiet, pkttyagent ----

    def test_version_help(self):
        rc, out, err = self.ctl('--version')
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r'^migrationctl \d+\.\d+\.\d+\n$')
        rc, out, err = self.ctl('--version', '--json')
        self.assertEqual(json.loads(out)['program'], 'migrationctl')
        rc, out, err = self.ctl('--help')
        self.assertEqual(rc, 0, err)
        for command in ('info', 'list', 'define', 'start', 'shutdown', 'migrate', 'migrations',
                        'cancel', 'monitor', 'peers', 'add-peer', 'remove-peer', 'help'):
            self.assertRegex(out, r'\n  %s\b' % re.escape(command))
        for option in ('--json', '--quiet', '--version', '--no-ask-password'):
            self.assertIn(option, out)
        rc, out, err = self.ctl('help', '--json')
        doc = self.assert_one_json_line(out)
        names = [c['name'] for c in doc['commands']]
        self.assertIn('migrate', names)
        self.assertNotIn('__complete-guests', names)
        self.assertEqual(set(doc['commands'][0]), {'name', 'arguments', 'summary'})

    def assert_one_json_line(self, text):
        self.assertTrue(text.endswith('\n') and text.count('\n') == 1, repr(text))
        return json.loads(text)

    def assert_json_error(self, rc, out, err, name):
        self.assertEqual(out, '')
        doc = self.assert_one_json_line(err)
        self.assertEqual(set(doc), {'error'})
        self.assertEqual(set(doc['error']), {'name', 'message', 'hint', 'exit-status'})
        self.assertEqual(doc['error']['name'], name, doc)
        self.assertEqual(doc['error']['exit-status'], rc)
        return doc['error']

    def test_json_everywhere(self):
        self.start_mock()
        self.add_migration()
        # Every command prints exactly one JSON document, on one line.
        for args in (['info'], ['list'], ['status', 'vm1'], ['dumpxml', 'vm1'], ['peers'],
                     ['migrations'], ['start', 'vm1'], ['shutdown', 'vm1'], ['pause', 'vm1'],
                     ['add-peer', 'hostc', 'hostc:49200', 'CN=hostc'], ['cancel', '7'],
                     ['set-bandwidth', '7', '1G']):
            rc, out, err = self.ctl('--json', *args)
            self.assertEqual((rc, err), (0, ''), args)
            doc = self.assert_one_json_line(out)
            if args[0] in ('start', 'shutdown', 'pause'):
                self.assertEqual(doc, {'command': args[0], 'ok': True, 'guest': 'vm1'})
            elif args[0] in ('cancel', 'set-bandwidth'):
                self.assertEqual(doc, {'command': args[0], 'ok': True, 'migration': MIG})
            elif args[0] == 'add-peer':
                self.assertEqual(doc, {'command': 'add-peer', 'ok': True, 'peer': 'hostc'})
        # Errors: one JSON object on stderr with the D-Bus error name.
        rc, out, err = self.ctl('--json', 'status', 'nope')
        error = self.assert_json_error(rc, out, err, 'org.migrationd.Error.NotFound')
        self.assertEqual(rc, 1)
        self.assertIn('no guest named nope', error['message'])
        rc, out, err = self.ctl('destroy', 'vm1', '--json')
        error = self.assert_json_error(rc, out, err, 'org.migrationd.Error.NotAuthorized')
        self.assertIn('org.migrationd.guest.manage', error['hint'])
        rc, out, err = self.ctl('--json', 'frobnicate')
        self.assertEqual(rc, 2)
        self.assert_json_error(rc, out, err, 'org.migrationd.Error.InvalidArgument')
        rc, out, err = self.ctl('--json', 'remove-peer', 'nope')
        self.assert_json_error(rc, out, err, 'org.migrationd.Error.NotFound')
        rc, out, err = self.ctl('--json', 'list', address='unix:path=/nonexistent/bus')
        self.assertEqual(rc, 3)
        self.assert_json_error(rc, out, err, 'org.freedesktop.DBus.Error.NoServer')

    def test_quiet(self):
        self.start_mock()
        for args in (['start', 'vm1'], ['list'], ['status', 'vm1']):
            rc, out, err = self.ctl('-q', *args)
            self.assertEqual((rc, out, err), (0, '', ''), args)
        rc, out, err = self.ctl('status', 'nope', '--quiet')
        self.assertEqual((rc, out), (1, ''))
        self.assertIn('no guest named nope', err)

    FAKE_AGENT = """#!/bin/sh
# Records how it was started, then says it is ready by closing the notify
# fd, as pkttyagent does once its agent is registered.
echo "$@" >> "$MD_AGENT_LOG"
exec 3>&-
trap 'echo stopped >> "$MD_AGENT_LOG"; exit 0' TERM
while :; do sleep 0.1; done
"""

    def run_on_tty(self, *args, agent_log):
        """migrationctl with a terminal on stdin (util-linux script)."""
        bindir = os.path.join(self.tmpdir, 'bin')
        os.makedirs(bindir, exist_ok=True)
        agent = os.path.join(bindir, 'pkttyagent')
        with open(agent, 'w') as f:
            f.write(self.FAKE_AGENT)
        os.chmod(agent, 0o755)
        command = ' '.join("'%s'" % a for a in [MIGRATIONCTL, '--address', self.address] + list(args))
        env = dict(os.environ, PATH=bindir + ':' + os.environ['PATH'], MD_AGENT_LOG=agent_log)
        return subprocess.run(['script', '-qec', command, '/dev/null'], capture_output=True,
                              text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)

    def test_tty_agent(self):
        self.start_mock()
        self.tmpdir = tempfile.mkdtemp(prefix='ctl-agent-')
        self.addCleanup(shutil.rmtree, self.tmpdir)
        log = os.path.join(self.tmpdir, 'agent.log')
        # A call that may ask for a password, from a terminal: the agent runs
        # for this process, and is stopped afterwards.
        p = self.run_on_tty('start', 'vm1', agent_log=log)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        with open(log) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], r'^--notify-fd 3 --fallback --process \d+$')
        self.assertEqual(lines[1], 'stopped')
        os.unlink(log)
        # Reading needs no agent; --no-ask-password wants none; without a
        # terminal on stdin there is nobody to ask.
        for args in (['list'], ['start', 'vm1', '--no-ask-password']):
            p = self.run_on_tty(*args, agent_log=log)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertFalse(os.path.exists(log), args)
        env = dict(os.environ, PATH=os.path.join(self.tmpdir, 'bin') + ':' + os.environ['PATH'],
                   MD_AGENT_LOG=log)
        p = subprocess.run([MIGRATIONCTL, '--address', self.address, 'start', 'vm1'], env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(log))


CASES = ['list', 'status', 'dumpxml', 'info_peers', 'lifecycle', 'not_found', 'not_authorized', 'usage',
         'unreachable', 'migrate_success', 'migrate_json', 'migrate_failure', 'migrate_cancel',
         'migrations', 'completion', 'monitor', 'version_help', 'json_everywhere', 'quiet',
         'tty_agent']

if __name__ == '__main__':
    if len(sys.argv) > 1:
        names = ['TestMigrationctl.test_' + sys.argv[1].replace('-', '_')]
    else:
        names = ['TestMigrationctl.test_' + c for c in CASES]
    unittest.main(argv=[sys.argv[0], '-v'] + names)

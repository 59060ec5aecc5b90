/* migrationd: QEMU command line from a guest definition, and parsing of
 * `qemu -machine help`.
 *
 * The argv is deterministic (the same definition and options give the same
 * vector, byte for byte; golden files tests/domain/good/NAME.argv) and is
 * meant for GSubprocess: no shell, no quoting. Choices, libvirt-like:
 *  - -machine TYPE,accel=A,usb=off,dump-guest-core=off plus acpi=off when
 *    the definition has no <acpi/> (libvirt's -no-acpi), vmport=, and
 *    hpet=off for <timer name='hpet' present='no'/>;
 *  - -cpu: none without <cpu> (QEMU's default model), "host" for
 *    host-passthrough (KVM only: an error under TCG), "host" (KVM) or "max"
 *    (TCG) for host-model, MODEL,feat=on|off for custom;
 *  - -m size=<memory rounded up to whole MiB>M; -smp current,maxcpus=...
 *    with sockets=vcpus,cores=1,threads=1 unless <topology> says otherwise;
 *  - bootindex= from <boot order>, else from <os><boot dev> (first disk,
 *    first cdrom, first interface; "hd" when none is given);
 *  - ps2 inputs are the machine's own i8042 and produce no argument;
 *  - -S always: the caller resumes CPUs with QMP "cont" once it has set up
 *    what it needs (or the migration does);
 *  - -no-shutdown always: a guest power-off stops the CPUs and QEMU emits a
 *    SHUTDOWN event instead of exiting, so the daemon sees why the guest
 *    stopped and then applies on_poweroff itself (destroy: quit QEMU,
 *    preserve: leave it, restart: system_reset + cont);
 *  - -no-reboot when on_reboot is destroy (QEMU then reports SHUTDOWN with
 *    reason guest-reset and the daemon destroys);
 *  - -nodefaults -no-user-config -display none: every device comes from the
 *    definition; VNC/SPICE servers are independent of -display;
 *  - disks: two -blockdev nodes per disk in JSON (protocol node
 *    "<alias>-storage", format node "<alias>-format", see
 *    md_qemu_disk_node_name()), then -device with drive=<format node>;
 *    an empty cdrom has no blockdev;
 *  - VNC with autoport and no port in the options uses QEMU's own search
 *    (to=...; read the port back with QMP query-vnc); SPICE with autoport
 *    needs a port from the caller. Passwords are never put on the command
 *    line: the argv asks for password=on / no disable-ticketing and the
 *    caller sets the password with QMP set_password;
 *  - bridge interfaces use -netdev bridge (qemu-bridge-helper, which must
 *    allow the bridge in /etc/qemu/bridge.conf); this needs the helper to be
 *    spawned, so -sandbox then keeps spawn=allow;
 *  - pty serials get logfile=<serial_log_dir>/<name>-<alias>.log when
 *    serial_log_dir is set; file serials write to the definition's path
 *    unless serial_paths overrides it (destination hosts use other paths).
 */
#pragma once

#include "domain/md-domain.h"
#include "md-qemu-files.h"

G_BEGIN_DECLS

typedef struct
{
  /* argv[0]; NULL: dom->emulator, else "qemu-system-x86_64". */
  const char *qemu_binary;
  /* "kvm" or "tcg" (NULL = "kvm"). TCG cannot do host-passthrough. */
  const char *accel;
  /* Resolved machine type (md_domain_resolve_machine()); NULL = the
   * definition's os.machine, "pc" when absent. Must be of the same family
   * (pc or q35) as os.machine, whose layout the addresses follow. */
  const char *machine;
  /* Path of the QMP unix socket QEMU listens on (required). */
  const char *qmp_socket;
  /* > 0: QEMU inherits this descriptor, a unix socket already bound to
   * qmp_socket and listening, and serves QMP on it (fd=N): the daemon can
   * connect at once, with no retry loop while QEMU starts. */
  int qmp_listen_fd;
  /* If set, -pidfile <runtime_dir>/<name>.pid (re-attach after a daemon
   * restart finds QEMU through it). */
  const char *runtime_dir;
  /* If set, pty serials log their output to <dir>/<name>-<alias>.log. */
  const char *serial_log_dir;
  /* If set, NULL-terminated, one per serial in definition order: the file
   * path of file serials on this host (NULL or "" entries keep the
   * definition's path). */
  const char *const *serial_paths;
  /* If set, one per <graphics> in order: the TCP port to use (<= 0 keeps the
   * definition's port / autoport behaviour). */
  const int *graphics_ports;
  gsize n_graphics_ports;
  /* -incoming defer (destination of a migration). */
  gboolean incoming_defer;
  /* QEMU was built with seccomp: add -sandbox. */
  gboolean sandbox;
  /* Directory of the daemon-owned files of this guest: channel sockets
   * (<dir>/<name>.<alias>.sock) and graphics password secrets
   * (<dir>/<name>.<alias>.secret, see md_qemu_write_secrets()). NULL: the
   * directory of qmp_socket. */
  const char *runtime_files_dir;
  /* If set, a second QMP monitor at this path, for inspection from outside
   * (MIGRATIOND_DEBUG_QMP_DIR; tests compare query-pci across hosts). */
  const char *debug_qmp_socket;
  /* [networks] of the configuration: network name -> bridge, for
   * <interface type='network'> (NULL: no networks mapped). */
  GHashTable *networks;
  /* If set, what the daemon opened for QEMU (md_qemu_open_guest_files()):
   * the argv names descriptors instead of paths (-add-fd, /dev/fdset/N,
   * socket fd=N, /proc/self/fd/N) wherever the table has one. */
  const MdQemuFiles *files;
  /* md_qemu_open_guest_files() makes a tap device on each interface's
   * bridge and passes it (-netdev tap,fd=N) instead of letting QEMU run
   * qemu-bridge-helper (setuid, so impossible under no-new-privs). */
  gboolean taps;
} MdQemuArgvOptions;

/* Opens every disk image (and backing chain), serial file and log,
 * channel socket, password secret, kernel and initrd of @dom the way @opts
 * names them, plus the inspection monitor of md_qemu_build_start_argv()
 * on @host_name; QEMU's descriptors are numbered from @first_fd. Blocks on
 * the file system: call it from a worker thread. */
MdQemuFiles *md_qemu_open_guest_files (const MdDomain *dom, const MdQemuArgvOptions *opts,
                                       const char *host_name, int first_fd, GError **error);

/* The full argv, argv[0] included. MD_ERROR_INVALID_ARGUMENT for missing
 * options, MD_ERROR_NOT_SUPPORTED for a definition this QEMU/accelerator
 * cannot run (e.g. host-passthrough under TCG, ide on q35, type='network'
 * interfaces). @dom must have gone through md_domain_assign_addresses()
 * (md_domain_parse() does it). */
/* Path of channel @ch's unix socket (the daemon owns it; QEMU listens). */
char *md_qemu_channel_socket_path (const MdDomain *dom, const MdQemuArgvOptions *opts,
                                   const MdDomainChannel *ch);

/* Write the graphics passwords of @dom as secret files (mode 0600) where
 * the argv's "-object secret" entries point, so passwords never appear in
 * argv or logs. Call before spawning QEMU; md_qemu_remove_secrets() after
 * QEMU has read them (it does at start-up) or when it exits. */
gboolean md_qemu_write_secrets (const MdDomain *dom, const MdQemuArgvOptions *opts, GError **error);
void md_qemu_remove_secrets (const MdDomain *dom, const char *runtime_files_dir);
/* Secrets and channel sockets of @dom (after QEMU exited). */
void md_qemu_remove_runtime_files (const MdDomain *dom, const char *runtime_files_dir);

/* One TCP port per <graphics> of @dom, for MdQemuArgvOptions.graphics_ports:
 * a free port from 5900 up for SPICE with autoport (QEMU cannot pick one
 * itself), 0 (keep the definition's) for the others. */
GArray *md_qemu_pick_graphics_ports (const MdDomain *dom, GError **error);

/* md_qemu_build_argv() for a start by the daemon on host @host_name: picks
 * the SPICE ports, adds the inspection monitor <dir>/<host>-<name>.qmp when
 * MIGRATIOND_DEBUG_QMP_DIR is set (tests), and writes the password secrets. */
GStrv md_qemu_build_start_argv (const MdDomain *dom, const MdQemuArgvOptions *opts,
                                const char *host_name, GError **error);

GStrv md_qemu_build_argv (const MdDomain *dom, const MdQemuArgvOptions *opts, GError **error);

/* The -blockdev node name of @disk: "<alias>-format" (@format_node TRUE, the
 * node the guest device is attached to and a mirror job targets) or
 * "<alias>-storage" (the protocol node). */
char *md_qemu_disk_node_name (const MdDomainDisk *disk, gboolean format_node);

/* Parse the output of `qemu-system-x86_64 -machine help` into an array of
 * MdDomainMachineType* (free function set), in QEMU's order. Fails with
 * MD_ERROR_QEMU_FAILED when the text does not look like that output. */
GPtrArray *md_qemu_parse_machine_help (const char *output, GError **error);

G_END_DECLS

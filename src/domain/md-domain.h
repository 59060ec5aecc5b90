/* migrationd: guest definition model, libvirt domain XML subset parse/format,
 * guest ABI compatibility check.
 *
 * The model is a plain struct (not a GObject): it is data that travels between
 * modules and hosts, is copied and compared, and has no behaviour of its own.
 *
 * Implementation: md-domain.c (model), md-domain-validate.c,
 * md-domain-addresses.c, md-domain-abi.c (equality and ABI check),
 * md-domain-xml.c (parser), md-domain-format.c (formatter).
 *
 * Parsing (md_domain_parse):
 *  - input is a string of at most MD_DOMAIN_XML_MAX_SIZE bytes; libxml2 runs
 *    with XML_PARSE_NONET, no entity substitution, no DTD loading; any
 *    document with a DOCTYPE is rejected ("DOCTYPE not allowed"), which also
 *    rules out entity-expansion attacks;
 *  - libxml2's own diagnostics become the GError message (nothing is printed);
 *  - every element and attribute outside the subset is an error
 *    (MD_ERROR_INVALID_XML, or MD_ERROR_NOT_SUPPORTED for libvirt features we
 *    know but do not implement, e.g. <hostdev>, <filesystem>, <tpm>), naming
 *    it, its line and, for the common ones, what to use instead; the parser
 *    goes on after a problem and reports all of them in one error, one line
 *    each ("domain XML has N problems:\n  line 12: <hostdev>: ...");
 *  - the devices virt-install and virt-manager write are in the subset:
 *    disks (cache, io, discard, detect_zeroes; cdroms with or without media),
 *    controllers (pci roots and root ports, ide, sata, virtio-scsi, usb
 *    qemu-xhci/nec-xhci/piix3-uhci/ich9-ehci1 with ich9-uhci companions,
 *    virtio-serial), interfaces user/bridge/network, serial and console
 *    (pty, file), channels (unix guest agent, spicevmc), graphics vnc/spice
 *    (listen, port, autoport, passwd, <image compression>), video, input,
 *    sound ich6/ich9/ac97 with <audio> none/spice/pa, redirdev spicevmc,
 *    watchdog i6300esb/itco, panic isa/pvpanic, memballoon, rng random;
 *    features acpi/apic/pae/vmport/smm, <pm> suspend flags, clock timers,
 *    lifecycle actions;
 *  - accepted and ignored (logged with g_info, dropped from the model, not
 *    formatted back): <resource>, <seclabel>, <on_lockfailure>, <keywrap>,
 *    the <vcpu placement/cpuset> attributes, <cpu match/check> and <model
 *    fallback> attributes, <cpu><vendor>, <memballoon><stats>,
 *    <interface><target>, <disk><backingStore> (QEMU follows the image's
 *    own chain) and <source index>, <controller><model>/<target>/<master>
 *    (derived from index and model), <serial>/<console> pty <source path>
 *    and tty (runtime pty names), the <graphics><listen> child (its address
 *    is folded into @listen), tls-port='-1', qxl ram/vgamem, a unix
 *    channel's <source path> (the daemon owns the socket), <domain id=...>
 *    (the runtime id of a running libvirt guest);
 *  - <metadata> is kept verbatim (its serialized children) and formatted back;
 *    elements of other namespaces are refused everywhere else;
 *  - defaults as libvirt: bus from the target prefix (vd virtio, sd scsi, hd
 *    ide), cdroms read-only, currentMemory = memory, vcpu 1, a random uuid
 *    and MACs when absent; except that an <interface> without <model> is
 *    virtio (libvirt: rtl8139);
 *  - after parsing, md_domain_assign_addresses() runs, so every device has an
 *    alias and every PCI device a PCI address: the model that comes out of a
 *    parse is complete and its format is stable (guest ABI across migration).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define MD_DOMAIN_XML_MAX_SIZE (1024 * 1024)
#define MD_DOMAIN_NAME_MAX 64
/* Controller indices (and drive addresses' controller=) run 0..31. */
#define MD_DOMAIN_CONTROLLER_INDEX_MAX 31

/* 0 is always "not given / default" so g_new0 gives a sane device. */

typedef enum
{
  MD_DOMAIN_TRISTATE_DEFAULT = 0,
  MD_DOMAIN_TRISTATE_ON,
  MD_DOMAIN_TRISTATE_OFF,
} MdDomainTristate;

typedef enum
{
  MD_DOMAIN_ADDRESS_NONE = 0,
  MD_DOMAIN_ADDRESS_PCI,
  MD_DOMAIN_ADDRESS_DRIVE,
  MD_DOMAIN_ADDRESS_USB,
  MD_DOMAIN_ADDRESS_VIRTIO_SERIAL,
} MdDomainAddressType;

typedef struct
{
  MdDomainAddressType type;
  /* PCI */
  guint domain;
  guint bus;
  guint slot;
  guint function;
  gboolean multifunction;
  /* drive (ide/sata/scsi disks) */
  guint controller;
  guint drive_bus;
  guint target;
  guint unit;
  /* usb (usb inputs) */
  guint usb_bus;
  guint usb_port;
  /* virtio-serial (channels): controller above, then bus and port */
  guint vs_bus;
  guint vs_port;
} MdDomainAddress;

typedef enum
{
  MD_DOMAIN_LIFECYCLE_DEFAULT = 0, /* poweroff: destroy, reboot: restart, crash: destroy */
  MD_DOMAIN_LIFECYCLE_DESTROY,
  MD_DOMAIN_LIFECYCLE_RESTART,
  MD_DOMAIN_LIFECYCLE_PRESERVE,
} MdDomainLifecycle;

typedef enum
{
  MD_DOMAIN_CPU_MODE_NONE = 0, /* no <cpu>: QEMU's default model for the machine */
  MD_DOMAIN_CPU_MODE_HOST_PASSTHROUGH,
  MD_DOMAIN_CPU_MODE_HOST_MODEL,
  MD_DOMAIN_CPU_MODE_CUSTOM,
} MdDomainCpuMode;

typedef enum
{
  MD_DOMAIN_CPU_FEATURE_REQUIRE = 0, /* also "force": +feature */
  MD_DOMAIN_CPU_FEATURE_DISABLE,     /* also "forbid": -feature */
} MdDomainCpuFeaturePolicy;

typedef struct
{
  char *name;
  MdDomainCpuFeaturePolicy policy;
  gboolean forced; /* policy spelled "force"/"forbid" (kept for round-trip) */
} MdDomainCpuFeature;

typedef enum
{
  MD_DOMAIN_CLOCK_UTC = 0,
  MD_DOMAIN_CLOCK_LOCALTIME,
} MdDomainClockOffset;

typedef struct
{
  char *name;       /* rtc, pit, hpet, kvmclock, tsc, ... */
  char *tickpolicy; /* delay, catchup, merge, discard or NULL */
  MdDomainTristate present;
} MdDomainTimer;

/* ---- devices ---- */

typedef enum
{
  MD_DOMAIN_DISK_TYPE_FILE = 0,
  MD_DOMAIN_DISK_TYPE_BLOCK,
} MdDomainDiskType;

typedef enum
{
  MD_DOMAIN_DISK_DEVICE_DISK = 0,
  MD_DOMAIN_DISK_DEVICE_CDROM,
} MdDomainDiskDevice;

typedef enum
{
  MD_DOMAIN_DISK_FORMAT_RAW = 0,
  MD_DOMAIN_DISK_FORMAT_QCOW2,
} MdDomainDiskFormat;

typedef enum
{
  MD_DOMAIN_DISK_BUS_VIRTIO = 0,
  MD_DOMAIN_DISK_BUS_SATA,
  MD_DOMAIN_DISK_BUS_IDE,
  MD_DOMAIN_DISK_BUS_SCSI,
} MdDomainDiskBus;

typedef enum
{
  MD_DOMAIN_DISK_CACHE_DEFAULT = 0,
  MD_DOMAIN_DISK_CACHE_NONE,
  MD_DOMAIN_DISK_CACHE_WRITETHROUGH,
  MD_DOMAIN_DISK_CACHE_WRITEBACK,
  MD_DOMAIN_DISK_CACHE_DIRECTSYNC,
  MD_DOMAIN_DISK_CACHE_UNSAFE,
} MdDomainDiskCache;

typedef enum
{
  MD_DOMAIN_DISK_DISCARD_DEFAULT = 0,
  MD_DOMAIN_DISK_DISCARD_UNMAP,
  MD_DOMAIN_DISK_DISCARD_IGNORE,
} MdDomainDiskDiscard;

typedef enum
{
  MD_DOMAIN_DISK_IO_DEFAULT = 0,
  MD_DOMAIN_DISK_IO_NATIVE,
  MD_DOMAIN_DISK_IO_THREADS,
  MD_DOMAIN_DISK_IO_URING,
} MdDomainDiskIo;

typedef enum
{
  MD_DOMAIN_DISK_DETECT_ZEROES_DEFAULT = 0,
  MD_DOMAIN_DISK_DETECT_ZEROES_OFF,
  MD_DOMAIN_DISK_DETECT_ZEROES_ON,
  MD_DOMAIN_DISK_DETECT_ZEROES_UNMAP,
} MdDomainDiskDetectZeroes;

typedef struct
{
  MdDomainDiskType type;
  MdDomainDiskDevice device;
  MdDomainDiskDetectZeroes detect_zeroes;
  MdDomainDiskFormat format; /* <driver type=> */
  MdDomainDiskCache cache;
  MdDomainDiskDiscard discard;
  MdDomainDiskIo io;
  char *source; /* host-side path; NULL = empty cdrom tray */
  char *target; /* "vda", "sdb", "hdc": unique within the domain */
  MdDomainDiskBus bus;
  gboolean readonly;
  gboolean shareable;
  char *serial;
  guint boot_order;        /* <boot order=>, 0 = none */
  char *alias;             /* QEMU id, e.g. "virtio-disk0", "sata0-0-1"; <= 20 chars */
  MdDomainAddress address; /* PCI for virtio, drive for the others */
} MdDomainDisk;

typedef enum
{
  MD_DOMAIN_CONTROLLER_PCI = 0,
  MD_DOMAIN_CONTROLLER_IDE,
  MD_DOMAIN_CONTROLLER_SATA,
  MD_DOMAIN_CONTROLLER_SCSI,
  MD_DOMAIN_CONTROLLER_USB,
  MD_DOMAIN_CONTROLLER_VIRTIO_SERIAL,
} MdDomainControllerType;

typedef struct
{
  MdDomainControllerType type;
  guint index;
  /* pci: pci-root, pcie-root, pcie-root-port; usb: piix3-uhci, qemu-xhci,
   * none; scsi: virtio-scsi; NULL where the type has a single model. */
  char *model;
  char *alias; /* "pci.0", "ide", "sata0", "scsi0", "usb", "virtio-serial0" */
  MdDomainAddress address;
} MdDomainController;

typedef enum
{
  MD_DOMAIN_INTERFACE_USER = 0,
  MD_DOMAIN_INTERFACE_NETWORK,
  MD_DOMAIN_INTERFACE_BRIDGE,
} MdDomainInterfaceType;

typedef struct
{
  MdDomainInterfaceType type;
  char *model;  /* virtio, e1000, e1000e, rtl8139; NULL = virtio */
  char *mac;    /* "52:54:00:xx:xx:xx", lower case; generated when absent */
  char *source; /* bridge name or network name (host side) */
  guint boot_order;
  char *alias; /* "net0" */
  MdDomainAddress address;
} MdDomainInterface;

typedef enum
{
  MD_DOMAIN_CHARDEV_PTY = 0,
  MD_DOMAIN_CHARDEV_FILE,
} MdDomainChardevType;

/* A <serial>. A <console type=... ><target type='serial' port='N'/> is the
 * same port seen from the console side (as in libvirt) and is stored in
 * MdDomain.consoles for round-trip only; it creates no device of its own. */
typedef struct
{
  MdDomainChardevType type;
  char *path;  /* file: the log file (host side); pty: NULL */
  guint port;  /* <target port=> */
  char *alias; /* "serial<port>"; a console carries its serial's alias */
} MdDomainChardev;

typedef enum
{
  MD_DOMAIN_GRAPHICS_VNC = 0,
  MD_DOMAIN_GRAPHICS_SPICE,
} MdDomainGraphicsType;

typedef struct
{
  MdDomainGraphicsType type;
  char *listen; /* host side; NULL = 127.0.0.1 */
  int port;     /* host side; -1 with autoport */
  gboolean autoport;
  char *passwd;            /* host side; stored in the definition as libvirt does;
                 * reaches QEMU through a secret object file, never argv */
  char *image_compression; /* spice <image compression=>, NULL = default */
} MdDomainGraphics;

typedef enum
{
  MD_DOMAIN_CHANNEL_UNIX = 0, /* a socket the daemon owns in its runtime dir */
  MD_DOMAIN_CHANNEL_SPICEVMC,
} MdDomainChannelType;

/* A <channel> on a virtio-serial port (guest agent, SPICE agent). */
typedef struct
{
  MdDomainChannelType type;
  char *target_name;       /* "org.qemu.guest_agent.0", "com.redhat.spice.0" */
  char *alias;             /* "channel0" */
  MdDomainAddress address; /* virtio-serial controller/bus/port */
} MdDomainChannel;

/* A <sound> card; it plays into the <audio> backend with @audio_id. */
typedef struct
{
  char *model;    /* ich6, ich9, ac97 */
  guint audio_id; /* <audio id=> it uses; 0 = the first <audio> */
  char *alias;    /* "sound0" */
  MdDomainAddress address;
} MdDomainSound;

/* An <audio> backend (host side). */
typedef struct
{
  guint id;   /* >= 1 */
  char *type; /* none, spice, pa */
} MdDomainAudio;

/* A <redirdev bus='usb' type='spicevmc'>: USB redirection over SPICE. */
typedef struct
{
  char *alias;             /* "redir0" */
  MdDomainAddress address; /* usb */
} MdDomainRedirdev;

typedef struct
{
  char *model;  /* i6300esb, itco (q35's built-in TCO) */
  char *action; /* reset, shutdown, poweroff, pause, none, dump, inject-nmi; NULL = reset */
  char *alias;  /* "watchdog0" */
  MdDomainAddress address; /* PCI for i6300esb */
} MdDomainWatchdog;

typedef struct
{
  char *model;             /* isa (pvpanic on the ISA bus) or pvpanic (PCI) */
  char *alias;             /* "panic0" */
  MdDomainAddress address; /* PCI for model pvpanic */
} MdDomainPanic;

typedef struct
{
  char *model; /* vga, cirrus, virtio, qxl, bochs, none */
  guint vram;  /* KiB, 0 = default */
  guint heads; /* 0 = default */
  char *alias; /* "video0" */
  MdDomainAddress address;
} MdDomainVideo;

typedef struct
{
  char *type;  /* mouse, keyboard, tablet */
  char *bus;   /* ps2, usb, virtio */
  char *alias; /* "input0" */
  MdDomainAddress address;
} MdDomainInput;

typedef struct
{
  char *model; /* virtio or none */
  char *alias; /* "balloon0" */
  MdDomainAddress address;
} MdDomainMemballoon;

typedef struct
{
  char *model;   /* virtio */
  char *backend; /* host-side entropy source, default /dev/urandom */
  char *alias;   /* "rng0" */
  MdDomainAddress address;
} MdDomainRng;

typedef struct
{
  char *virt_type;   /* <domain type=>: "kvm" or "qemu" (host side) */
  char *name;        /* [A-Za-z0-9_.+-]{1,64} */
  char *uuid;        /* canonical lower-case 8-4-4-4-12 */
  char *title;       /* NULL when absent */
  char *description; /* NULL when absent */
  char *metadata;    /* serialized children of <metadata>, verbatim, or NULL */

  guint64 memory;         /* bytes (<memory>, the maximum) */
  guint64 current_memory; /* bytes (<currentMemory>), <= memory */
  guint vcpus;            /* <vcpu> (maximum) >= 1 */
  guint vcpus_current;    /* <vcpu current=>, 1..vcpus */

  struct
  {
    char *type; /* always "hvm" */
    char *arch; /* "x86_64" */
    /* As written: "pc", "q35" or a versioned type; NULL is the pc family
     * (addresses are laid out for it). Store md_domain_resolve_machine()'s
     * answer here at define time. */
    char *machine;
    GPtrArray *boot_devs; /* char*: hd, cdrom, network (in order) */
    char *kernel;         /* host-side paths */
    char *initrd;
    char *cmdline;
  } os;

  gboolean acpi;
  gboolean apic;
  gboolean pae;
  MdDomainTristate vmport;
  MdDomainTristate smm;             /* <features><smm state=> (q35) */
  MdDomainTristate suspend_to_mem;  /* <pm><suspend-to-mem enabled=> */
  MdDomainTristate suspend_to_disk; /* <pm><suspend-to-disk enabled=> */

  struct
  {
    MdDomainCpuMode mode;
    char *model;                         /* custom only */
    guint sockets, dies, cores, threads; /* <topology>, 0 = not given */
    GPtrArray *features;                 /* MdDomainCpuFeature* */
    /* host-passthrough only: migratable='on' promises identical hosts. */
    MdDomainTristate migratable;
  } cpu;

  MdDomainClockOffset clock_offset;
  GPtrArray *timers; /* MdDomainTimer* */

  MdDomainLifecycle on_poweroff;
  MdDomainLifecycle on_reboot;
  MdDomainLifecycle on_crash;

  char *emulator; /* host side, NULL = daemon's configured QEMU */

  GPtrArray *disks;               /* MdDomainDisk* */
  GPtrArray *controllers;         /* MdDomainController* */
  GPtrArray *interfaces;          /* MdDomainInterface* */
  GPtrArray *serials;             /* MdDomainChardev* */
  GPtrArray *consoles;            /* MdDomainChardev* (see above) */
  GPtrArray *graphics;            /* MdDomainGraphics* */
  GPtrArray *videos;              /* MdDomainVideo* */
  GPtrArray *inputs;              /* MdDomainInput* */
  MdDomainMemballoon *memballoon; /* absent: assign_addresses adds virtio, as libvirt */
  GPtrArray *rngs;                /* MdDomainRng* */
  GPtrArray *channels;            /* MdDomainChannel* */
  GPtrArray *sounds;              /* MdDomainSound* */
  GPtrArray *audios;              /* MdDomainAudio* */
  GPtrArray *redirdevs;           /* MdDomainRedirdev* */
  GPtrArray *watchdogs;           /* MdDomainWatchdog* */
  GPtrArray *panics;              /* MdDomainPanic* */
} MdDomain;

/* An empty domain with all arrays allocated; arch x86_64, type hvm. */
MdDomain *md_domain_new (void);
void md_domain_free (MdDomain *dom);
MdDomain *md_domain_copy (const MdDomain *dom);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdDomain, md_domain_free)

/* Parse @xml (NUL-terminated) into a complete domain: validated, with aliases
 * and addresses assigned. Errors are MD_ERROR_INVALID_XML (message names the
 * element or attribute and its line), MD_ERROR_NOT_SUPPORTED, or
 * MD_ERROR_INVALID_ARGUMENT (input larger than MD_DOMAIN_XML_MAX_SIZE). */
MdDomain *md_domain_parse (const char *xml, GError **error);

/* Format as XML in the same subset; md_domain_parse (md_domain_format (d))
 * is md_domain_equal to d. Never fails for a domain that came from parse. */
char *md_domain_format (const MdDomain *dom);

/* Deep equality of every field (host-side ones included). */
gboolean md_domain_equal (const MdDomain *a, const MdDomain *b);

/* Check a guest name: 1..MD_DOMAIN_NAME_MAX characters from [A-Za-z0-9_.+-],
 * the first not '-' or '.' (so no "..", "-rf", hidden files; '/' is not in
 * the set). MD_ERROR_INVALID_ARGUMENT otherwise. */
gboolean md_domain_validate_name (const char *name, GError **error);

/* Semantic checks on a domain built or edited in code (parse runs them):
 * name, uuid, memory, vcpus, unique disk targets, MACs, aliases. */
gboolean md_domain_validate (const MdDomain *dom, GError **error);

/* Give every device without one an alias and (for PCI devices) a PCI
 * address, deterministically: implicit controllers the devices need are
 * added first (pci root, ide on pc, sata/scsi/usb when a device uses them),
 * then, on bus 0: pc has the PIIX3 in slot 1 (ide 01.1, usb 01.2), the
 * primary video in slot 2; q35 has the primary video in slot 1 and its
 * built-in sata in slot 0x1f; the remaining devices take free slots from 3
 * (pc) or 2 (q35) in this order: controllers, interfaces, disks (virtio),
 * other videos, inputs (virtio), memballoon, rngs. Addresses that are
 * already set are kept (and reserved first). Drive addresses come from the
 * target name (sdb -> unit 1, hdc -> bus 1 unit 0), MACs from g_random
 * with the 52:54:00 prefix. Idempotent. */
gboolean md_domain_assign_addresses (MdDomain *dom, GError **error);

/* The destination definition @dst keeps the guest ABI of @src: name, uuid,
 * arch, machine, memory, current memory, vcpus, cpu, features, clock, boot
 * order and the device list (count and order per kind; for each device its
 * type, model, target, bus, alias, address, MAC, readonly/shareable, format,
 * serial). Host-side fields may differ: disk type (file/block) and source,
 * cache/io/discard, serial type and path, graphics listen/port/passwd,
 * interface type and source, kernel/initrd paths, emulator, rng backend,
 * <domain type>, title, description, metadata, lifecycle actions. Fails with
 * MD_ERROR_INVALID_ARGUMENT naming the first difference, e.g.
 * "destination definition changes the guest ABI: disk vda: bus virtio != sata". */
gboolean md_domain_check_abi_compatible (const MdDomain *src, const MdDomain *dst, GError **error);

/* One line of `qemu-system-x86_64 -machine help`. */
typedef struct
{
  char *name;          /* "pc-i440fx-7.2" */
  char *alias;         /* "pc" or NULL */
  char *description;   /* "Standard PC (i440FX + PIIX, 1996)" */
  gboolean is_default; /* "(default)" */
  gboolean deprecated; /* "(deprecated)" */
} MdDomainMachineType;

void md_domain_machine_type_free (MdDomainMachineType *type);

/* Pick a concrete machine type for @machine from @machines (an array of
 * MdDomainMachineType*, see md_qemu_parse_machine_help()): NULL -> the
 * default machine's versioned type, "pc"/"q35" (any alias) -> the versioned
 * type it aliases, a versioned name must be in the list. The caller stores
 * the result in dom->os.machine at define time so the guest keeps its machine
 * type across QEMU upgrades and migrations. MD_ERROR_NOT_SUPPORTED when this
 * QEMU does not know the machine (the message lists the close candidates). */
char *md_domain_resolve_machine (const char *machine, const GPtrArray *machines, GError **error);

/* TRUE if @machine (resolved or alias) is a q35 type. */
gboolean md_domain_machine_is_q35 (const char *machine);

/* Short names used in messages and XML ("virtio", "qcow2", "cdrom"...). */
const char *md_domain_disk_bus_to_string (MdDomainDiskBus bus);
const char *md_domain_disk_format_to_string (MdDomainDiskFormat format);

G_END_DECLS

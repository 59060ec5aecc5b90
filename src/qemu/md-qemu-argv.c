/* migrationd: QEMU command line from a guest definition; machine list. */
#include "config.h"

#include "md-qemu-argv.h"
#include "md-qemu-argv-private.h"
#include "common/md-error.h"

#include <json-glib/json-glib.h>
#include <string.h>

/* ---- argument helpers (md-qemu-argv-private.h) ---- */

void
md_argv_add (Builder *b, const char *arg)
{
  g_ptr_array_add (b->argv, g_strdup (arg));
}

void
md_argv_addf (Builder *b, const char *format, ...)
{
  va_list ap;

  va_start (ap, format);
  g_ptr_array_add (b->argv, g_strdup_vprintf (format, ap));
  va_end (ap);
}

void
md_argv_add2 (Builder *b, const char *opt, char *value)
{
  md_argv_add (b, opt);
  g_ptr_array_add (b->argv, value);
}

/* QemuOpts values: a ',' is written as ",,". */
char *
md_argv_qo (const char *value)
{
  GString *s = g_string_new (NULL);

  for (const char *p = value; p && *p; p++)
    {
      if (*p == ',')
        g_string_append_c (s, ',');
      g_string_append_c (s, *p);
    }
  return g_string_free (s, FALSE);
}

gboolean
md_argv_fail (GError **error, int code, const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error_literal (error, MD_ERROR, code, msg);
  return FALSE;
}

const MdDomainController *
md_argv_controller (const MdDomain *dom, MdDomainControllerType type, guint index)
{
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      const MdDomainController *c = dom->controllers->pdata[i];

      if (c->type == type && c->index == index)
        return c;
    }
  return NULL;
}

/* ",bus=pci.0,addr=0x3" for a PCI address. */
static char *
pci_suffix (Builder *b, const MdDomainAddress *a, GError **error)
{
  const MdDomainController *bus = md_argv_controller (b->dom, MD_DOMAIN_CONTROLLER_PCI, a->bus);
  GString *s;

  if (a->type != MD_DOMAIN_ADDRESS_PCI)
    {
      md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                    "device without a PCI address (run md_domain_assign_addresses first)");
      return NULL;
    }
  if (!bus || !bus->alias)
    {
      md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT, "PCI bus %u has no controller", a->bus);
      return NULL;
    }
  s = g_string_new (NULL);
  g_string_append_printf (s, ",bus=%s,addr=0x%x", bus->alias, a->slot);
  if (a->function)
    g_string_append_printf (s, ".0x%x", a->function);
  if (a->multifunction)
    g_string_append (s, ",multifunction=on");
  return g_string_free (s, FALSE);
}

gboolean
md_argv_add_pci_device (Builder *b, const char *props, const MdDomainAddress *a, GError **error)
{
  g_autofree char *suffix = pci_suffix (b, a, error);

  if (!suffix)
    return FALSE;
  md_argv_add (b, "-device");
  md_argv_addf (b, "%s%s", props, suffix);
  return TRUE;
}

/* ---- machine, cpu, memory ---- */

static gboolean
add_machine_cpu (Builder *b, const char *machine, GError **error)
{
  const MdDomain *dom = b->dom;
  GString *m = g_string_new (NULL);
  GString *cpu = NULL;
  g_autofree char *mesc = md_argv_qo (machine);
  guint sockets, dies, cores, threads;

  g_string_append_printf (m, "%s,accel=%s,usb=off,dump-guest-core=off", mesc,
                          b->kvm ? "kvm" : "tcg");
  if (!dom->acpi)
    g_string_append (m, ",acpi=off");
  if (dom->vmport == MD_DOMAIN_TRISTATE_ON)
    g_string_append (m, ",vmport=on");
  else if (dom->vmport == MD_DOMAIN_TRISTATE_OFF)
    g_string_append (m, ",vmport=off");
  if (dom->smm != MD_DOMAIN_TRISTATE_DEFAULT)
    g_string_append_printf (m, ",smm=%s", dom->smm == MD_DOMAIN_TRISTATE_ON ? "on" : "off");
  for (guint i = 0; i < dom->timers->len; i++)
    {
      MdDomainTimer *t = dom->timers->pdata[i];

      if (strcmp (t->name, "hpet") == 0 && t->present != MD_DOMAIN_TRISTATE_DEFAULT)
        g_string_append_printf (m, ",hpet=%s", t->present == MD_DOMAIN_TRISTATE_ON ? "on" : "off");
    }
  md_argv_add2 (b, "-machine", g_string_free (m, FALSE));

  switch (dom->cpu.mode)
    {
    case MD_DOMAIN_CPU_MODE_HOST_PASSTHROUGH:
      if (!b->kvm)
        return md_argv_fail (
            error, MD_ERROR_NOT_SUPPORTED,
            "guest '%s': cpu mode 'host-passthrough' needs KVM, this host runs TCG; use "
            "mode='custom' with a named model",
            dom->name);
      cpu = g_string_new ("host");
      break;
    case MD_DOMAIN_CPU_MODE_HOST_MODEL:
      /* Defined guests never get here: define expands host-model into a
       * named model (md_qemu_caps_check_definition). A bare parsed
       * definition gets the closest QEMU has. */
      cpu = g_string_new (b->kvm ? "host" : "max");
      break;
    case MD_DOMAIN_CPU_MODE_CUSTOM:
      {
        g_autofree char *model = md_argv_qo (dom->cpu.model);

        cpu = g_string_new (model);
        break;
      }
    case MD_DOMAIN_CPU_MODE_NONE:
    default:
      break;
    }
  if (cpu)
    {
      for (guint i = 0; i < dom->cpu.features->len; i++)
        {
          MdDomainCpuFeature *f = dom->cpu.features->pdata[i];
          g_autofree char *name = md_argv_qo (f->name);

          g_string_append_printf (cpu, ",%s=%s", name,
                                  f->policy == MD_DOMAIN_CPU_FEATURE_REQUIRE ? "on" : "off");
        }
      md_argv_add2 (b, "-cpu", g_string_free (cpu, FALSE));
    }

  md_argv_add (b, "-m");
  /* Rounded up to whole MiB, as libvirt aligns x86 guest memory. */
  md_argv_addf (b, "size=%" G_GUINT64_FORMAT "M", (dom->memory + 1024 * 1024 - 1) / (1024 * 1024));

  if (dom->cpu.sockets || dom->cpu.dies || dom->cpu.cores || dom->cpu.threads)
    {
      sockets = MAX (dom->cpu.sockets, 1);
      dies = MAX (dom->cpu.dies, 1);
      cores = MAX (dom->cpu.cores, 1);
      threads = MAX (dom->cpu.threads, 1);
    }
  else
    {
      sockets = dom->vcpus;
      dies = cores = threads = 1;
    }
  md_argv_add (b, "-smp");
  if (dom->cpu.dies)
    md_argv_addf (b, "%u,maxcpus=%u,sockets=%u,dies=%u,cores=%u,threads=%u", dom->vcpus_current,
                  dom->vcpus, sockets, dies, cores, threads);
  else
    md_argv_addf (b, "%u,maxcpus=%u,sockets=%u,cores=%u,threads=%u", dom->vcpus_current, dom->vcpus,
                  sockets, cores, threads);
  return TRUE;
}

/* ---- controllers ---- */

static char *
usb_controller_props (const MdDomainController *c)
{
  static const char *const models[][2] = {
    { "qemu-xhci", "qemu-xhci" },       { "nec-xhci", "nec-usb-xhci" },
    { "piix3-uhci", "piix3-usb-uhci" }, { "ich9-ehci1", "ich9-usb-ehci1" },
    { "ich9-uhci1", "ich9-usb-uhci1" }, { "ich9-uhci2", "ich9-usb-uhci2" },
    { "ich9-uhci3", "ich9-usb-uhci3" },
  };
  const char *device = "piix3-usb-uhci";

  for (gsize i = 0; i < G_N_ELEMENTS (models); i++)
    if (g_strcmp0 (c->model, models[i][0]) == 0)
      device = models[i][1];
  /* UHCI companions have no id of their own: they serve the EHCI
   * master's bus (ports 0-1, 2-3, 4-5). */
  if (g_str_has_prefix (device, "ich9-usb-uhci"))
    return g_strdup_printf ("%s,masterbus=%s.0,firstport=%d", device, c->alias,
                            (device[strlen (device) - 1] - '1') * 2);
  return g_strdup_printf ("%s,id=%s", device, c->alias);
}

static gboolean
add_controllers (Builder *b, GError **error)
{
  /* PCI buses first: other controllers may sit behind a root port. */
  for (guint n = 0; n < 2 * b->dom->controllers->len; n++)
    {
      guint i = n % b->dom->controllers->len;
      const MdDomainController *c = b->dom->controllers->pdata[i];
      g_autofree char *props = NULL;

      if ((n < b->dom->controllers->len) != (c->type == MD_DOMAIN_CONTROLLER_PCI))
        continue;

      switch (c->type)
        {
        case MD_DOMAIN_CONTROLLER_PCI:
          if (c->index == 0)
            continue;
          props = g_strdup_printf ("pcie-root-port,port=0x%x,chassis=%u,id=%s",
                                   c->address.slot << 3 | c->address.function, c->index, c->alias);
          break;
        case MD_DOMAIN_CONTROLLER_IDE:
          continue; /* part of the PIIX3 */
        case MD_DOMAIN_CONTROLLER_SATA:
          if (b->q35 && c->index == 0)
            continue; /* ich9 built-in */
          props = g_strdup_printf ("ahci,id=%s", c->alias);
          break;
        case MD_DOMAIN_CONTROLLER_SCSI:
          props = g_strdup_printf ("virtio-scsi-pci,id=%s", c->alias);
          break;
        case MD_DOMAIN_CONTROLLER_USB:
          if (g_strcmp0 (c->model, "none") == 0)
            continue;
          props = usb_controller_props (c);
          break;
        case MD_DOMAIN_CONTROLLER_VIRTIO_SERIAL:
        default:
          props = g_strdup_printf ("virtio-serial-pci,id=%s", c->alias);
          break;
        }
      if (!md_argv_add_pci_device (b, props, &c->address, error))
        return FALSE;
    }
  return TRUE;
}

/* ---- boot order ---- */

/* Per-device bootindex: explicit <boot order> wins; else <os><boot dev>
 * entries in order give bootindex 1, 2, ... to the first disk, the first
 * cdrom and the first interface ("hd" when the list is empty). */
static guint
boot_index (Builder *b, gconstpointer device)
{
  const MdDomain *dom = b->dom;
  GPtrArray *devs = dom->os.boot_devs;
  guint n = devs->len ? devs->len : 1;

  for (guint i = 0; i < dom->disks->len; i++)
    if (((MdDomainDisk *) dom->disks->pdata[i])->boot_order)
      goto explicit;
  for (guint i = 0; i < dom->interfaces->len; i++)
    if (((MdDomainInterface *) dom->interfaces->pdata[i])->boot_order)
      goto explicit;
  if (dom->os.kernel)
    return 0;
  for (guint i = 0; i < n; i++)
    {
      const char *dev = devs->len ? devs->pdata[i] : "hd";
      gconstpointer first = NULL;

      if (strcmp (dev, "network") == 0)
        first = dom->interfaces->len ? dom->interfaces->pdata[0] : NULL;
      else
        for (guint j = 0; j < dom->disks->len && !first; j++)
          {
            MdDomainDisk *d = dom->disks->pdata[j];

            if ((d->device == MD_DOMAIN_DISK_DEVICE_CDROM) == (strcmp (dev, "cdrom") == 0))
              first = d;
          }
      if (first == device)
        return i + 1;
    }
  return 0;

  explicit : for (guint i = 0; i < dom->disks->len;
                  i++) if (dom->disks->pdata[i] == device) return ((MdDomainDisk *) device)
                 ->boot_order;
  for (guint i = 0; i < dom->interfaces->len; i++)
    if (dom->interfaces->pdata[i] == device)
      return ((MdDomainInterface *) device)->boot_order;
  return 0;
}

/* ---- disks ---- */

char *
md_qemu_disk_node_name (const MdDomainDisk *disk, gboolean format_node)
{
  return g_strdup_printf ("%s-%s", disk->alias, format_node ? "format" : "storage");
}

static void
json_cache (JsonBuilder *jb, MdDomainDiskCache cache)
{
  gboolean direct, no_flush;

  if (cache == MD_DOMAIN_DISK_CACHE_DEFAULT)
    return;
  direct = cache == MD_DOMAIN_DISK_CACHE_NONE || cache == MD_DOMAIN_DISK_CACHE_DIRECTSYNC;
  no_flush = cache == MD_DOMAIN_DISK_CACHE_UNSAFE;
  json_builder_set_member_name (jb, "cache");
  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "direct");
  json_builder_add_boolean_value (jb, direct);
  json_builder_set_member_name (jb, "no-flush");
  json_builder_add_boolean_value (jb, no_flush);
  json_builder_end_object (jb);
}

static char *
json_finish (JsonBuilder *jb)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = json_builder_get_root (jb);

  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

/* "/dev/fdset/S" */
static char *
fdset_path (int set)
{
  return g_strdup_printf ("/dev/fdset/%d", set);
}

/* The backing chain below the image, layers[from..], as nested read-only
 * nodes on passed descriptors (QEMU would open them by path otherwise). */
static void
json_backing (JsonBuilder *jb, const GPtrArray *layers, guint from)
{
  const MdQemuDiskLayer *layer;
  g_autofree char *filename = NULL;

  if (layers == NULL || from >= layers->len)
    return;
  layer = layers->pdata[from];
  filename = fdset_path (layer->set);
  json_builder_set_member_name (jb, "backing");
  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "driver");
  json_builder_add_string_value (jb, layer->format);
  json_builder_set_member_name (jb, "read-only");
  json_builder_add_boolean_value (jb, TRUE);
  json_builder_set_member_name (jb, "file");
  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "driver");
  json_builder_add_string_value (jb, "file");
  json_builder_set_member_name (jb, "filename");
  json_builder_add_string_value (jb, filename);
  json_builder_set_member_name (jb, "read-only");
  json_builder_add_boolean_value (jb, TRUE);
  json_builder_end_object (jb);
  json_backing (jb, layers, from + 1);
  json_builder_end_object (jb);
}

static gboolean
first_layer_read_only (const GPtrArray *layers)
{
  return ((const MdQemuDiskLayer *) layers->pdata[0])->read_only;
}

static void
add_blockdevs (Builder *b, const MdDomainDisk *d, guint index)
{
  const GPtrArray *layers = md_qemu_files_disk_layers (b->opts->files, index);
  g_autofree char *filename =
      layers != NULL ? fdset_path (((MdQemuDiskLayer *) layers->pdata[0])->set) : NULL;
  static const char *const aio[] = { NULL, "native", "threads", "io_uring" };
  g_autoptr (JsonBuilder) jb = json_builder_new ();
  g_autoptr (JsonBuilder) jf = json_builder_new ();
  g_autofree char *storage = md_qemu_disk_node_name (d, FALSE);
  g_autofree char *format = md_qemu_disk_node_name (d, TRUE);
  const char *driver = d->type == MD_DOMAIN_DISK_TYPE_FILE        ? "file"
                       : d->device == MD_DOMAIN_DISK_DEVICE_CDROM ? "host_cdrom"
                                                                  : "host_device";

  json_builder_begin_object (jb);
  json_builder_set_member_name (jb, "driver");
  json_builder_add_string_value (jb, driver);
  json_builder_set_member_name (jb, "filename");
  json_builder_add_string_value (jb, filename != NULL ? filename : d->source);
  json_builder_set_member_name (jb, "node-name");
  json_builder_add_string_value (jb, storage);
  if (d->io)
    {
      json_builder_set_member_name (jb, "aio");
      json_builder_add_string_value (jb, aio[d->io]);
    }
  /* A passed descriptor is opened once for good (md-qemu-files.h says
   * why); a path may be reopened read-only and back. */
  if (layers != NULL)
    {
      json_builder_set_member_name (jb, "read-only");
      json_builder_add_boolean_value (jb, first_layer_read_only (layers));
    }
  else
    {
      json_builder_set_member_name (jb, "auto-read-only");
      json_builder_add_boolean_value (jb, TRUE);
    }
  if (d->discard)
    {
      json_builder_set_member_name (jb, "discard");
      json_builder_add_string_value (jb, d->discard == MD_DOMAIN_DISK_DISCARD_UNMAP ? "unmap"
                                                                                    : "ignore");
    }
  json_cache (jb, d->cache);
  json_builder_end_object (jb);
  md_argv_add2 (b, "-blockdev", json_finish (jb));

  json_builder_begin_object (jf);
  json_builder_set_member_name (jf, "node-name");
  json_builder_add_string_value (jf, format);
  json_builder_set_member_name (jf, "read-only");
  json_builder_add_boolean_value (jf, d->readonly
                                          || (layers != NULL && first_layer_read_only (layers)));
  if (d->discard)
    {
      json_builder_set_member_name (jf, "discard");
      json_builder_add_string_value (jf, d->discard == MD_DOMAIN_DISK_DISCARD_UNMAP ? "unmap"
                                                                                    : "ignore");
    }
  if (d->detect_zeroes)
    {
      static const char *const dz[] = { NULL, "off", "on", "unmap" };

      json_builder_set_member_name (jf, "detect-zeroes");
      json_builder_add_string_value (jf, dz[d->detect_zeroes]);
    }
  json_cache (jf, d->cache);
  json_builder_set_member_name (jf, "driver");
  json_builder_add_string_value (jf, md_domain_disk_format_to_string (d->format));
  json_builder_set_member_name (jf, "file");
  json_builder_add_string_value (jf, storage);
  json_backing (jf, layers, 1);
  json_builder_end_object (jf);
  md_argv_add2 (b, "-blockdev", json_finish (jf));
}

static gboolean
add_disk (Builder *b, const MdDomainDisk *d, guint index, GError **error)
{
  gboolean cd = d->device == MD_DOMAIN_DISK_DEVICE_CDROM;
  const MdDomainAddress *a = &d->address;
  GString *dev = g_string_new (NULL);
  g_autofree char *props = NULL;
  guint bootindex = boot_index (b, d);

  if (d->readonly && !cd && d->bus != MD_DOMAIN_DISK_BUS_VIRTIO)
    {
      g_string_free (dev, TRUE);
      return md_argv_fail (error, MD_ERROR_NOT_SUPPORTED,
                           "disk %s: read-only disks on bus %s are not supported by QEMU; use bus "
                           "virtio or a cdrom",
                           d->target, md_domain_disk_bus_to_string (d->bus));
    }
  if (d->source)
    add_blockdevs (b, d, index);

  switch (d->bus)
    {
    case MD_DOMAIN_DISK_BUS_VIRTIO:
      g_string_append (dev, "virtio-blk-pci");
      break;
    case MD_DOMAIN_DISK_BUS_IDE:
      g_string_append_printf (dev, "%s,bus=ide.%u,unit=%u", cd ? "ide-cd" : "ide-hd", a->drive_bus,
                              a->unit);
      break;
    case MD_DOMAIN_DISK_BUS_SATA:
      {
        const MdDomainController *c =
            md_argv_controller (b->dom, MD_DOMAIN_CONTROLLER_SATA, a->controller);

        if (!c)
          goto no_controller;
        g_string_append_printf (dev, "%s,bus=%s.%u", cd ? "ide-cd" : "ide-hd", c->alias, a->unit);
        break;
      }
    case MD_DOMAIN_DISK_BUS_SCSI:
    default:
      {
        const MdDomainController *c =
            md_argv_controller (b->dom, MD_DOMAIN_CONTROLLER_SCSI, a->controller);

        if (!c)
          goto no_controller;
        g_string_append_printf (dev, "%s,bus=%s.0,channel=0,scsi-id=%u,lun=%u",
                                cd ? "scsi-cd" : "scsi-hd", c->alias, a->target, a->unit);
        break;
      }
    }
  if (d->source)
    g_string_append_printf (dev, ",drive=%s-format", d->alias);
  g_string_append_printf (dev, ",id=%s", d->alias);
  if (bootindex)
    g_string_append_printf (dev, ",bootindex=%u", bootindex);
  if (d->serial)
    {
      g_autofree char *serial = md_argv_qo (d->serial);

      g_string_append_printf (dev, ",serial=%s", serial);
    }
  if (d->cache == MD_DOMAIN_DISK_CACHE_WRITETHROUGH || d->cache == MD_DOMAIN_DISK_CACHE_DIRECTSYNC)
    g_string_append (dev, ",write-cache=off");
  else if (d->cache != MD_DOMAIN_DISK_CACHE_DEFAULT)
    g_string_append (dev, ",write-cache=on");
  if (d->shareable)
    g_string_append (dev, ",share-rw=on");
  props = g_string_free (dev, FALSE);
  if (d->bus == MD_DOMAIN_DISK_BUS_VIRTIO)
    return md_argv_add_pci_device (b, props, a, error);
  md_argv_add2 (b, "-device", g_steal_pointer (&props));
  return TRUE;

no_controller:
  g_string_free (dev, TRUE);
  return md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                       "disk %s: its controller %u does not exist", d->target, a->controller);
}

/* ---- network, serial, input, graphics, video, balloon, rng ---- */

/* Interface @i on bridge @br: the tap the daemon made, else the helper. */
static void
add_bridge_netdev (Builder *b, guint i, const char *br, const char *alias)
{
  g_autofree char *key = g_strdup_printf ("tap%u", i);
  int fd = md_qemu_files_get (b->opts->files, key);

  if (fd >= 0)
    md_argv_add2 (b, "-netdev", g_strdup_printf ("tap,id=host%s,fd=%d", alias, fd));
  else
    md_argv_add2 (b, "-netdev", g_strdup_printf ("bridge,br=%s,id=host%s", br, alias));
}

static gboolean
add_interfaces (Builder *b, GError **error)
{
  static const char *const devices[][2] = {
    { "virtio", "virtio-net-pci" },
    { "e1000", "e1000" },
    { "e1000e", "e1000e" },
    { "rtl8139", "rtl8139" },
  };

  for (guint i = 0; i < b->dom->interfaces->len; i++)
    {
      const MdDomainInterface *n = b->dom->interfaces->pdata[i];
      const char *model = NULL;
      g_autofree char *props = NULL;
      g_autofree char *br = NULL;
      guint bootindex = boot_index (b, n);

      switch (n->type)
        {
        case MD_DOMAIN_INTERFACE_USER:
          md_argv_add2 (b, "-netdev", g_strdup_printf ("user,id=host%s", n->alias));
          break;
        case MD_DOMAIN_INTERFACE_BRIDGE:
          br = md_argv_qo (n->source);
          add_bridge_netdev (b, i, br, n->alias);
          break;
        case MD_DOMAIN_INTERFACE_NETWORK:
        default:
          {
            const char *bridge =
                b->opts->networks ? g_hash_table_lookup (b->opts->networks, n->source) : NULL;

            /* A libvirt network runs here as the bridge [networks] maps it to. */
            if (!bridge)
              return md_argv_fail (error, MD_ERROR_NOT_SUPPORTED,
                                   "interface %s: network '%s' is not mapped to a bridge on this "
                                   "host; add '%s = BRIDGE' to the [networks] section of "
                                   "migrationd.conf",
                                   n->alias, n->source, n->source);
            br = md_argv_qo (bridge);
            add_bridge_netdev (b, i, br, n->alias);
            break;
          }
        }
      for (guint j = 0; j < G_N_ELEMENTS (devices); j++)
        if (g_strcmp0 (n->model, devices[j][0]) == 0)
          model = devices[j][1];
      if (!model)
        return md_argv_fail (error, MD_ERROR_NOT_SUPPORTED, "interface %s: model '%s'", n->alias,
                             n->model);
      if (bootindex)
        props = g_strdup_printf ("%s,netdev=host%s,id=%s,mac=%s,bootindex=%u", model, n->alias,
                                 n->alias, n->mac, bootindex);
      else
        props =
            g_strdup_printf ("%s,netdev=host%s,id=%s,mac=%s", model, n->alias, n->alias, n->mac);
      if (!md_argv_add_pci_device (b, props, &n->address, error))
        return FALSE;
    }
  return TRUE;
}

static void
add_serials (Builder *b)
{
  const MdDomain *dom = b->dom;
  const MdQemuArgvOptions *o = b->opts;
  gsize n_paths = o->serial_paths ? g_strv_length ((char **) o->serial_paths) : 0;

  for (guint i = 0; i < dom->serials->len; i++)
    {
      const MdDomainChardev *c = dom->serials->pdata[i];
      GString *chr = g_string_new (NULL);

      g_autofree char *file_key = g_strdup_printf ("serial%u", i);
      g_autofree char *log_key = g_strdup_printf ("serial-log%u", i);
      int file_set = md_qemu_files_get (o->files, file_key);
      int log_set = md_qemu_files_get (o->files, log_key);

      if (c->type == MD_DOMAIN_CHARDEV_FILE)
        {
          const char *path = i < n_paths && o->serial_paths[i] && *o->serial_paths[i]
                                 ? o->serial_paths[i]
                                 : c->path;
          g_autofree char *p = file_set > 0 ? fdset_path (file_set) : md_argv_qo (path);

          g_string_append_printf (chr, "file,id=char%s,path=%s,append=on", c->alias, p);
        }
      else
        {
          g_string_append_printf (chr, "pty,id=char%s", c->alias);
          if (log_set > 0)
            {
              g_autofree char *p = fdset_path (log_set);

              g_string_append_printf (chr, ",logfile=%s,logappend=on", p);
            }
          else if (o->serial_log_dir)
            {
              g_autofree char *file = g_strdup_printf ("%s-%s.log", dom->name, c->alias);
              g_autofree char *path = g_build_filename (o->serial_log_dir, file, NULL);
              g_autofree char *p = md_argv_qo (path);

              g_string_append_printf (chr, ",logfile=%s,logappend=on", p);
            }
        }
      md_argv_add2 (b, "-chardev", g_string_free (chr, FALSE));
      md_argv_add2 (b, "-device",
                    g_strdup_printf ("isa-serial,chardev=char%s,id=%s,index=%u", c->alias, c->alias,
                                     c->port));
    }
}

static gboolean
add_inputs (Builder *b, GError **error)
{
  for (guint i = 0; i < b->dom->inputs->len; i++)
    {
      const MdDomainInput *in = b->dom->inputs->pdata[i];
      const char *kind = strcmp (in->type, "tablet") == 0  ? "tablet"
                         : strcmp (in->type, "mouse") == 0 ? "mouse"
                                                           : "kbd";

      if (strcmp (in->bus, "ps2") == 0)
        continue; /* the i8042 of pc and q35 */
      if (strcmp (in->bus, "usb") == 0)
        {
          const MdDomainController *usb = md_argv_controller (b->dom, MD_DOMAIN_CONTROLLER_USB, 0);

          if (!usb)
            return md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                                 "input %s needs a USB controller", in->alias);
          md_argv_add2 (b, "-device",
                        g_strdup_printf ("usb-%s,id=%s,bus=%s.0,port=%u", kind, in->alias,
                                         usb->alias, in->address.usb_port));
        }
      else
        {
          g_autofree char *props = g_strdup_printf (
              "virtio-%s-pci,id=%s", strcmp (kind, "kbd") == 0 ? "keyboard" : kind, in->alias);

          if (!md_argv_add_pci_device (b, props, &in->address, error))
            return FALSE;
        }
    }
  return TRUE;
}

static gboolean
add_videos (Builder *b, GError **error)
{
  for (guint i = 0; i < b->dom->videos->len; i++)
    {
      const MdDomainVideo *v = b->dom->videos->pdata[i];
      gboolean primary = i == 0;
      GString *s = g_string_new (NULL);
      g_autofree char *props = NULL;

      if (strcmp (v->model, "none") == 0)
        {
          g_string_free (s, TRUE);
          continue;
        }
      if (strcmp (v->model, "vga") == 0)
        g_string_append (s, "VGA");
      else if (strcmp (v->model, "cirrus") == 0)
        g_string_append (s, "cirrus-vga");
      else if (strcmp (v->model, "virtio") == 0)
        g_string_append (s, primary ? "virtio-vga" : "virtio-gpu-pci");
      else if (strcmp (v->model, "qxl") == 0)
        g_string_append (s, primary ? "qxl-vga" : "qxl");
      else
        g_string_append (s, "bochs-display");
      g_string_append_printf (s, ",id=%s", v->alias);
      /* bochs-display sizes its memory in bytes, the VGA family in MiB. */
      if (v->vram && strcmp (v->model, "bochs") == 0)
        g_string_append_printf (s, ",vgamem=%" G_GUINT64_FORMAT, (guint64) v->vram * 1024);
      else if (v->vram && strcmp (v->model, "virtio") != 0)
        g_string_append_printf (s, ",vgamem_mb=%u", MAX (v->vram / 1024, 1));
      if (v->heads && (strcmp (v->model, "virtio") == 0 || strcmp (v->model, "qxl") == 0))
        g_string_append_printf (s, ",max_outputs=%u", v->heads);
      props = g_string_free (s, FALSE);
      if (!md_argv_add_pci_device (b, props, &v->address, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
add_balloon_rng (Builder *b, GError **error)
{
  const MdDomainMemballoon *m = b->dom->memballoon;

  if (m && strcmp (m->model, "none") != 0)
    {
      g_autofree char *props = g_strdup_printf ("virtio-balloon-pci,id=%s", m->alias);

      if (!md_argv_add_pci_device (b, props, &m->address, error))
        return FALSE;
    }
  for (guint i = 0; i < b->dom->rngs->len; i++)
    {
      const MdDomainRng *r = b->dom->rngs->pdata[i];
      g_autofree char *file = md_argv_qo (r->backend);
      g_autofree char *props =
          g_strdup_printf ("virtio-rng-pci,rng=obj%s,id=%s", r->alias, r->alias);

      md_argv_add2 (b, "-object",
                    g_strdup_printf ("rng-random,id=obj%s,filename=%s", r->alias, file));
      if (!md_argv_add_pci_device (b, props, &r->address, error))
        return FALSE;
    }
  return TRUE;
}

/* -rtc and the PIT policy from <clock>. */
static void
add_clock (Builder *b)
{
  const MdDomain *dom = b->dom;
  gboolean slew = FALSE;

  for (guint i = 0; i < dom->timers->len; i++)
    {
      MdDomainTimer *t = dom->timers->pdata[i];

      if (strcmp (t->name, "rtc") == 0 && g_strcmp0 (t->tickpolicy, "catchup") == 0)
        slew = TRUE;
      if (strcmp (t->name, "pit") == 0 && t->tickpolicy && b->kvm)
        md_argv_add2 (b, "-global", g_strdup_printf ("kvm-pit.lost_tick_policy=%s", t->tickpolicy));
    }
  md_argv_add2 (
      b, "-rtc",
      g_strdup_printf ("base=%s%s",
                       dom->clock_offset == MD_DOMAIN_CLOCK_LOCALTIME ? "localtime" : "utc",
                       slew ? ",driftfix=slew" : ""));
}

/* The QMP monitor, the inspection monitor (tests) and the -add-fd
 * descriptors the daemon passes. */
static void
add_monitors_and_fds (Builder *b)
{
  const MdQemuArgvOptions *opts = b->opts;
  g_autofree char *qmp = md_argv_qo (opts->qmp_socket);
  int debug_fd = md_qemu_files_get (opts->files, "debug-qmp");

  if (opts->qmp_listen_fd > 0)
    md_argv_add2 (
        b, "-chardev",
        g_strdup_printf ("socket,id=charmonitor,fd=%d,server=on,wait=off", opts->qmp_listen_fd));
  else
    md_argv_add2 (b, "-chardev",
                  g_strdup_printf ("socket,id=charmonitor,path=%s,server=on,wait=off", qmp));
  md_argv_add2 (b, "-mon", g_strdup ("chardev=charmonitor,id=monitor,mode=control"));
  if (opts->debug_qmp_socket)
    {
      g_autofree char *dbg = md_argv_qo (opts->debug_qmp_socket);

      if (debug_fd >= 0)
        md_argv_add2 (b, "-chardev",
                      g_strdup_printf ("socket,id=chardebug,fd=%d,server=on,wait=off", debug_fd));
      else
        md_argv_add2 (b, "-chardev",
                      g_strdup_printf ("socket,id=chardebug,path=%s,server=on,wait=off", dbg));
      md_argv_add2 (b, "-mon", g_strdup ("chardev=chardebug,id=debugmonitor,mode=control"));
    }
  if (opts->files != NULL)
    {
      g_autoptr (GPtrArray) fds = md_qemu_files_add_fd_args (opts->files);

      for (guint i = 0; i < fds->len; i++)
        md_argv_add2 (b, "-add-fd", g_strdup (fds->pdata[i]));
    }
}

/* The passed descriptor @key as /proc/self/fd/N, else @path. */
static char *
passed_path (const MdQemuArgvOptions *opts, const char *key, const char *path)
{
  int fd = md_qemu_files_get (opts->files, key);

  return fd >= 0 ? g_strdup_printf ("/proc/self/fd/%d", fd) : g_strdup (path);
}

GStrv
md_qemu_build_argv (const MdDomain *dom, const MdQemuArgvOptions *opts, GError **error)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  Builder b = { dom, opts, argv, FALSE, TRUE };
  const char *machine;
  gboolean needs_spawn = FALSE;

  g_return_val_if_fail (dom != NULL && opts != NULL, NULL);
  if (!opts->qmp_socket || !g_path_is_absolute (opts->qmp_socket))
    {
      md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                    "guest '%s': QEMU command line needs an absolute QMP socket path", dom->name);
      return NULL;
    }
  if (opts->accel && strcmp (opts->accel, "kvm") != 0 && strcmp (opts->accel, "tcg") != 0)
    {
      md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT, "accelerator '%s' (use kvm or tcg)",
                    opts->accel);
      return NULL;
    }
  b.kvm = !opts->accel || strcmp (opts->accel, "kvm") == 0;
  machine = opts->machine ? opts->machine : dom->os.machine ? dom->os.machine : "pc";
  b.q35 = md_domain_machine_is_q35 (machine);
  if (b.q35 != md_domain_machine_is_q35 (dom->os.machine))
    {
      md_argv_fail (error, MD_ERROR_INVALID_ARGUMENT,
                    "guest '%s': machine '%s' and the definition's '%s' are not the same family",
                    dom->name, machine, dom->os.machine ? dom->os.machine : "pc");
      return NULL;
    }

  md_argv_add (&b, opts->qemu_binary ? opts->qemu_binary
                   : dom->emulator   ? dom->emulator
                                     : "qemu-system-x86_64");
  md_argv_add2 (&b, "-name", g_strdup_printf ("guest=%s,debug-threads=on", dom->name));
  md_argv_add (&b, "-S");
  md_argv_add (&b, "-no-user-config");
  md_argv_add (&b, "-nodefaults");
  if (!add_machine_cpu (&b, machine, error))
    return NULL;
  md_argv_add2 (&b, "-uuid", g_strdup (dom->uuid));
  add_monitors_and_fds (&b);
  add_clock (&b);
  md_argv_add (&b, "-no-shutdown");
  if (dom->on_reboot == MD_DOMAIN_LIFECYCLE_DESTROY)
    md_argv_add (&b, "-no-reboot");
  md_argv_add2 (&b, "-boot", g_strdup ("strict=on"));
  if (dom->os.kernel)
    md_argv_add2 (&b, "-kernel", passed_path (opts, "kernel", dom->os.kernel));
  if (dom->os.initrd)
    md_argv_add2 (&b, "-initrd", passed_path (opts, "initrd", dom->os.initrd));
  if (dom->os.cmdline)
    md_argv_add2 (&b, "-append", g_strdup (dom->os.cmdline));

  if (!add_controllers (&b, error))
    return NULL;
  for (guint i = 0; i < dom->disks->len; i++)
    if (!add_disk (&b, dom->disks->pdata[i], i, error))
      return NULL;
  if (!add_interfaces (&b, error))
    return NULL;
  add_serials (&b);
  if (!add_inputs (&b, error) || !md_argv_add_graphics (&b, error))
    return NULL;
  md_argv_add2 (&b, "-display", g_strdup ("none"));
  if (!add_videos (&b, error) || !add_balloon_rng (&b, error) || !md_argv_add_channels (&b, error)
      || !md_argv_add_sound (&b, error) || !md_argv_add_misc_devices (&b, error))
    return NULL;

  if (opts->runtime_dir)
    {
      g_autofree char *file = g_strdup_printf ("%s.pid", dom->name);

      md_argv_add2 (&b, "-pidfile", g_build_filename (opts->runtime_dir, file, NULL));
    }
  if (opts->incoming_defer)
    md_argv_add2 (&b, "-incoming", g_strdup ("defer"));
  /* Bridges are joined by qemu-bridge-helper, which QEMU spawns. */
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      g_autofree char *key = g_strdup_printf ("tap%u", i);

      needs_spawn |=
          ((MdDomainInterface *) dom->interfaces->pdata[i])->type != MD_DOMAIN_INTERFACE_USER
          && md_qemu_files_get (opts->files, key) < 0;
    }
  if (opts->sandbox)
    md_argv_add2 (&b, "-sandbox",
                  g_strdup_printf ("on,obsolete=deny,elevateprivileges=deny,spawn=%s,"
                                   "resourcecontrol=deny",
                                   needs_spawn ? "allow" : "deny"));
  md_argv_add2 (&b, "-msg", g_strdup ("timestamp=on"));

  g_ptr_array_add (argv, NULL);
  return (GStrv) g_ptr_array_free (g_steal_pointer (&argv), FALSE);
}

/* ---- -machine help ---- */

GPtrArray *
md_qemu_parse_machine_help (const char *output, GError **error)
{
  g_autoptr (GPtrArray) types =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_domain_machine_type_free);
  g_auto (GStrv) lines = g_strsplit (output ? output : "", "\n", -1);
  g_autoptr (GPtrArray) aliases = g_ptr_array_new_with_free_func (g_free); /* alias, target */
  gboolean header = FALSE;

  for (guint i = 0; lines[i]; i++)
    {
      char *line = g_strchomp (lines[i]);
      const char *sp, *desc;
      const char *of;
      MdDomainMachineType *t;

      if (g_str_has_prefix (line, "Supported machines are:"))
        {
          header = TRUE;
          continue;
        }
      if (!header || !*line)
        continue;
      sp = strchr (line, ' ');
      if (!sp || line[0] == ' ')
        {
          md_argv_fail (error, MD_ERROR_QEMU_FAILED,
                        "cannot parse line %u of 'qemu -machine help' output: '%s'", i + 1, line);
          return NULL;
        }
      desc = sp;
      while (*desc == ' ')
        desc++;
      t = g_new0 (MdDomainMachineType, 1);
      t->name = g_strndup (line, sp - line);
      t->is_default = strstr (desc, "(default)") != NULL;
      t->deprecated = strstr (desc, "(deprecated)") != NULL;
      if ((of = strstr (desc, "(alias of ")) != NULL)
        {
          const char *end = strchr (of, ')');

          g_ptr_array_add (aliases, g_strdup (t->name));
          g_ptr_array_add (aliases,
                           g_strndup (of + 10, end ? end - of - 10 : (long) strlen (of + 10)));
          g_ptr_array_add (aliases, g_strdup (t->is_default ? "1" : "0"));
          md_domain_machine_type_free (t);
          continue;
        }
      t->description = g_strdup (desc);
      g_ptr_array_add (types, t);
    }
  if (!header || types->len == 0)
    {
      md_argv_fail (
          error, MD_ERROR_QEMU_FAILED,
          "'qemu -machine help' printed no machine list (expected 'Supported machines are:')");
      return NULL;
    }
  for (guint i = 0; i + 2 < aliases->len; i += 3)
    for (guint j = 0; j < types->len; j++)
      {
        MdDomainMachineType *t = types->pdata[j];

        if (strcmp (t->name, aliases->pdata[i + 1]) == 0)
          {
            g_free (t->alias);
            t->alias = g_strdup (aliases->pdata[i]);
            t->is_default |= strcmp (aliases->pdata[i + 2], "1") == 0;
          }
      }
  return g_steal_pointer (&types);
}

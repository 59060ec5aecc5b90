/* migrationd: guest definition model, validation, address assignment, ABI check. */
#include "config.h"

#include "md-domain.h"
#include "md-domain-private.h"
#include "common/md-error.h"

#include <stdarg.h>
#include <string.h>

/* ---- enum <-> string tables (index = enum value) ---- */

const char *const md_dom_disk_type_names[] = { "file", "block", NULL };
const char *const md_dom_disk_device_names[] = { "disk", "cdrom", NULL };
const char *const md_dom_disk_format_names[] = { "raw", "qcow2", NULL };
const char *const md_dom_disk_bus_names[] = { "virtio", "sata", "ide", "scsi", NULL };
const char *const md_dom_disk_cache_names[] = { "default",   "none",       "writethrough",
                                                "writeback", "directsync", "unsafe",
                                                NULL };
const char *const md_dom_disk_discard_names[] = { "default", "unmap", "ignore", NULL };
const char *const md_dom_disk_io_names[] = { "default", "native", "threads", "io_uring", NULL };
const char *const md_dom_controller_type_names[] = { "pci", "ide",           "sata", "scsi",
                                                     "usb", "virtio-serial", NULL };
const char *const md_dom_interface_type_names[] = { "user", "network", "bridge", NULL };
const char *const md_dom_chardev_type_names[] = { "pty", "file", NULL };
const char *const md_dom_graphics_type_names[] = { "vnc", "spice", NULL };
const char *const md_dom_lifecycle_names[] = { "default", "destroy", "restart", "preserve", NULL };
const char *const md_dom_cpu_mode_names[] = { "none", "host-passthrough", "host-model", "custom",
                                              NULL };
const char *const md_dom_clock_offset_names[] = { "utc", "localtime", NULL };
const char *const md_dom_tristate_names[] = { "default", "on", "off", NULL };
const char *const md_dom_address_type_names[] = { "none", "pci", "drive", "usb", NULL };

const char *const md_dom_controller_models[] = { "pci-root",    "pcie-root", "pcie-root-port",
                                                 "piix3-uhci",  "qemu-xhci", "none",
                                                 "virtio-scsi", NULL };
const char *const md_dom_nic_models[] = { "virtio", "e1000", "e1000e", "rtl8139", NULL };
const char *const md_dom_video_models[] = {
  "vga", "cirrus", "virtio", "qxl", "bochs", "none", NULL
};
const char *const md_dom_input_types[] = { "mouse", "keyboard", "tablet", NULL };
const char *const md_dom_input_buses[] = { "ps2", "usb", "virtio", NULL };

int
md_dom_lookup (const char *const *names, const char *s)
{
  for (int i = 0; s && names[i]; i++)
    if (strcmp (names[i], s) == 0)
      return i;
  return -1;
}

const char *
md_domain_disk_bus_to_string (MdDomainDiskBus bus)
{
  return md_dom_disk_bus_names[bus];
}

const char *
md_domain_disk_format_to_string (MdDomainDiskFormat format)
{
  return md_dom_disk_format_names[format];
}

/* ---- new / free / copy ---- */

void
md_dom_disk_free (MdDomainDisk *d)
{
  g_free (d->source);
  g_free (d->target);
  g_free (d->serial);
  g_free (d->alias);
  g_free (d);
}

void
md_dom_controller_free (MdDomainController *c)
{
  g_free (c->model);
  g_free (c->alias);
  g_free (c);
}

void
md_dom_interface_free (MdDomainInterface *i)
{
  g_free (i->model);
  g_free (i->mac);
  g_free (i->source);
  g_free (i->alias);
  g_free (i);
}

void
md_dom_chardev_free (MdDomainChardev *c)
{
  g_free (c->path);
  g_free (c->alias);
  g_free (c);
}

void
md_dom_graphics_free (MdDomainGraphics *g)
{
  g_free (g->listen);
  g_free (g->passwd);
  g_free (g);
}

void
md_dom_video_free (MdDomainVideo *v)
{
  g_free (v->model);
  g_free (v->alias);
  g_free (v);
}

void
md_dom_input_free (MdDomainInput *i)
{
  g_free (i->type);
  g_free (i->bus);
  g_free (i->alias);
  g_free (i);
}

void
md_dom_memballoon_free (MdDomainMemballoon *m)
{
  if (!m)
    return;
  g_free (m->model);
  g_free (m->alias);
  g_free (m);
}

void
md_dom_rng_free (MdDomainRng *r)
{
  g_free (r->model);
  g_free (r->backend);
  g_free (r->alias);
  g_free (r);
}

void
md_dom_cpu_feature_free (MdDomainCpuFeature *f)
{
  g_free (f->name);
  g_free (f);
}

void
md_dom_timer_free (MdDomainTimer *t)
{
  g_free (t->name);
  g_free (t->tickpolicy);
  g_free (t);
}

void
md_domain_machine_type_free (MdDomainMachineType *type)
{
  if (!type)
    return;
  g_free (type->name);
  g_free (type->alias);
  g_free (type->description);
  g_free (type);
}

MdDomain *
md_domain_new (void)
{
  MdDomain *dom = g_new0 (MdDomain, 1);

  dom->virt_type = g_strdup ("kvm");
  dom->os.type = g_strdup ("hvm");
  dom->os.arch = g_strdup ("x86_64");
  dom->os.boot_devs = g_ptr_array_new_with_free_func (g_free);
  dom->cpu.features = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_cpu_feature_free);
  dom->timers = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_timer_free);
  dom->disks = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_disk_free);
  dom->controllers = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_controller_free);
  dom->interfaces = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_interface_free);
  dom->serials = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_chardev_free);
  dom->consoles = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_chardev_free);
  dom->graphics = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_graphics_free);
  dom->videos = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_video_free);
  dom->inputs = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_input_free);
  dom->rngs = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_rng_free);
  return dom;
}

void
md_domain_free (MdDomain *dom)
{
  if (!dom)
    return;
  g_free (dom->virt_type);
  g_free (dom->name);
  g_free (dom->uuid);
  g_free (dom->title);
  g_free (dom->description);
  g_free (dom->metadata);
  g_free (dom->os.type);
  g_free (dom->os.arch);
  g_free (dom->os.machine);
  g_ptr_array_unref (dom->os.boot_devs);
  g_free (dom->os.kernel);
  g_free (dom->os.initrd);
  g_free (dom->os.cmdline);
  g_free (dom->cpu.model);
  g_ptr_array_unref (dom->cpu.features);
  g_ptr_array_unref (dom->timers);
  g_free (dom->emulator);
  g_ptr_array_unref (dom->disks);
  g_ptr_array_unref (dom->controllers);
  g_ptr_array_unref (dom->interfaces);
  g_ptr_array_unref (dom->serials);
  g_ptr_array_unref (dom->consoles);
  g_ptr_array_unref (dom->graphics);
  g_ptr_array_unref (dom->videos);
  g_ptr_array_unref (dom->inputs);
  md_dom_memballoon_free (dom->memballoon);
  g_ptr_array_unref (dom->rngs);
  g_free (dom);
}

static gpointer
copy_disk (gconstpointer src, gpointer unused)
{
  const MdDomainDisk *s = src;
  MdDomainDisk *d = g_memdup2 (s, sizeof *s);

  d->source = g_strdup (s->source);
  d->target = g_strdup (s->target);
  d->serial = g_strdup (s->serial);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_controller (gconstpointer src, gpointer unused)
{
  const MdDomainController *s = src;
  MdDomainController *d = g_memdup2 (s, sizeof *s);

  d->model = g_strdup (s->model);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_interface (gconstpointer src, gpointer unused)
{
  const MdDomainInterface *s = src;
  MdDomainInterface *d = g_memdup2 (s, sizeof *s);

  d->model = g_strdup (s->model);
  d->mac = g_strdup (s->mac);
  d->source = g_strdup (s->source);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_chardev (gconstpointer src, gpointer unused)
{
  const MdDomainChardev *s = src;
  MdDomainChardev *d = g_memdup2 (s, sizeof *s);

  d->path = g_strdup (s->path);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_graphics (gconstpointer src, gpointer unused)
{
  const MdDomainGraphics *s = src;
  MdDomainGraphics *d = g_memdup2 (s, sizeof *s);

  d->listen = g_strdup (s->listen);
  d->passwd = g_strdup (s->passwd);
  return d;
}

static gpointer
copy_video (gconstpointer src, gpointer unused)
{
  const MdDomainVideo *s = src;
  MdDomainVideo *d = g_memdup2 (s, sizeof *s);

  d->model = g_strdup (s->model);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_input (gconstpointer src, gpointer unused)
{
  const MdDomainInput *s = src;
  MdDomainInput *d = g_memdup2 (s, sizeof *s);

  d->type = g_strdup (s->type);
  d->bus = g_strdup (s->bus);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_rng (gconstpointer src, gpointer unused)
{
  const MdDomainRng *s = src;
  MdDomainRng *d = g_memdup2 (s, sizeof *s);

  d->model = g_strdup (s->model);
  d->backend = g_strdup (s->backend);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_feature (gconstpointer src, gpointer unused)
{
  const MdDomainCpuFeature *s = src;
  MdDomainCpuFeature *d = g_memdup2 (s, sizeof *s);

  d->name = g_strdup (s->name);
  return d;
}

static gpointer
copy_timer (gconstpointer src, gpointer unused)
{
  const MdDomainTimer *s = src;
  MdDomainTimer *d = g_memdup2 (s, sizeof *s);

  d->name = g_strdup (s->name);
  d->tickpolicy = g_strdup (s->tickpolicy);
  return d;
}

static gpointer
copy_string (gconstpointer src, gpointer unused)
{
  return g_strdup (src);
}

static void
copy_array (GPtrArray *dst, const GPtrArray *src, GCopyFunc func)
{
  for (guint i = 0; i < src->len; i++)
    g_ptr_array_add (dst, func (src->pdata[i], NULL));
}

MdDomain *
md_domain_copy (const MdDomain *s)
{
  MdDomain *d = md_domain_new ();

  g_free (d->virt_type);
  d->virt_type = g_strdup (s->virt_type);
  d->name = g_strdup (s->name);
  d->uuid = g_strdup (s->uuid);
  d->title = g_strdup (s->title);
  d->description = g_strdup (s->description);
  d->metadata = g_strdup (s->metadata);
  d->memory = s->memory;
  d->current_memory = s->current_memory;
  d->vcpus = s->vcpus;
  d->vcpus_current = s->vcpus_current;
  g_free (d->os.type);
  d->os.type = g_strdup (s->os.type);
  g_free (d->os.arch);
  d->os.arch = g_strdup (s->os.arch);
  d->os.machine = g_strdup (s->os.machine);
  copy_array (d->os.boot_devs, s->os.boot_devs, copy_string);
  d->os.kernel = g_strdup (s->os.kernel);
  d->os.initrd = g_strdup (s->os.initrd);
  d->os.cmdline = g_strdup (s->os.cmdline);
  d->acpi = s->acpi;
  d->apic = s->apic;
  d->pae = s->pae;
  d->vmport = s->vmport;
  d->cpu.mode = s->cpu.mode;
  d->cpu.model = g_strdup (s->cpu.model);
  d->cpu.sockets = s->cpu.sockets;
  d->cpu.dies = s->cpu.dies;
  d->cpu.cores = s->cpu.cores;
  d->cpu.threads = s->cpu.threads;
  copy_array (d->cpu.features, s->cpu.features, copy_feature);
  d->clock_offset = s->clock_offset;
  copy_array (d->timers, s->timers, copy_timer);
  d->on_poweroff = s->on_poweroff;
  d->on_reboot = s->on_reboot;
  d->on_crash = s->on_crash;
  d->emulator = g_strdup (s->emulator);
  copy_array (d->disks, s->disks, copy_disk);
  copy_array (d->controllers, s->controllers, copy_controller);
  copy_array (d->interfaces, s->interfaces, copy_interface);
  copy_array (d->serials, s->serials, copy_chardev);
  copy_array (d->consoles, s->consoles, copy_chardev);
  copy_array (d->graphics, s->graphics, copy_graphics);
  copy_array (d->videos, s->videos, copy_video);
  copy_array (d->inputs, s->inputs, copy_input);
  if (s->memballoon)
    {
      d->memballoon = g_memdup2 (s->memballoon, sizeof *s->memballoon);
      d->memballoon->model = g_strdup (s->memballoon->model);
      d->memballoon->alias = g_strdup (s->memballoon->alias);
    }
  copy_array (d->rngs, s->rngs, copy_rng);
  return d;
}

/* ---- validation ---- */

gboolean
md_domain_validate_name (const char *name, GError **error)
{
  gsize len = name ? strlen (name) : 0;

  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (name[i]) && !strchr ("_.+-", name[i]))
      len = 0;
  /* The name becomes a file name (NAME.xml) and a command-line word:
   * no "..", no hidden file, nothing that reads as an option. */
  if (len > 0 && (name[0] == '-' || name[0] == '.'))
    len = 0;
  if (len < 1 || len > MD_DOMAIN_NAME_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "invalid guest name '%.80s': use 1..%d characters from A-Z a-z 0-9 _ . + -, "
                   "not starting with - or .",
                   name ? name : "", MD_DOMAIN_NAME_MAX);
      return FALSE;
    }
  return TRUE;
}

gboolean
md_dom_valid_mac (const char *mac)
{
  guint octet0;

  if (!mac || strlen (mac) != 17)
    return FALSE;
  for (int i = 0; i < 17; i++)
    if (i % 3 == 2 ? mac[i] != ':' : !g_ascii_isxdigit (mac[i]))
      return FALSE;
  octet0 = g_ascii_xdigit_value (mac[0]) * 16 + g_ascii_xdigit_value (mac[1]);
  return (octet0 & 1) == 0; /* not multicast */
}

static gboolean
valid_alias (const char *alias)
{
  gsize len = alias ? strlen (alias) : 0;

  if (len < 1 || len > 20 || !g_ascii_isalpha (alias[0]))
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (alias[i]) && !strchr ("_.-", alias[i]))
      return FALSE;
  return TRUE;
}

/* "vdb" -> 1, "sdaa" -> 26, -1 if the name is not <prefix><letters>. */
int
md_dom_target_index (const char *target)
{
  int idx = 0;
  const char *p;

  if (!target || strlen (target) < 3 || strlen (target) > 5
      || !(g_str_has_prefix (target, "vd") || g_str_has_prefix (target, "sd")
           || g_str_has_prefix (target, "hd")))
    return -1;
  for (p = target + 2; *p; p++)
    {
      if (*p < 'a' || *p > 'z')
        return -1;
      idx = idx * 26 + (*p - 'a') + 1;
    }
  return idx - 1;
}

gboolean
md_domain_machine_is_q35 (const char *machine)
{
  return machine && strstr (machine, "q35") != NULL;
}

static MdDomainController *
find_controller (const MdDomain *dom, MdDomainControllerType type, guint index)
{
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      if (c->type == type && c->index == index)
        return c;
    }
  return NULL;
}

static gboolean invalid (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
invalid (GError **error, const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_XML, "domain definition: %s", msg);
  return FALSE;
}

typedef struct
{
  const char *alias;
  const MdDomainAddress *address;
  const char *what;
} DevRef;

static void
collect_devices (const MdDomain *dom, GArray *out)
{
#define ADD(arr, T)                                                                                \
  for (guint i = 0; i < (arr)->len; i++)                                                           \
    {                                                                                              \
      T *d_ = (arr)->pdata[i];                                                                     \
      DevRef r_ = { d_->alias, &d_->address, #T };                                                 \
      g_array_append_val (out, r_);                                                                \
    }
  ADD (dom->controllers, MdDomainController);
  ADD (dom->disks, MdDomainDisk);
  ADD (dom->interfaces, MdDomainInterface);
  ADD (dom->videos, MdDomainVideo);
  ADD (dom->inputs, MdDomainInput);
  ADD (dom->rngs, MdDomainRng);
#undef ADD
  if (dom->memballoon)
    {
      DevRef r = { dom->memballoon->alias, &dom->memballoon->address, "memballoon" };
      g_array_append_val (out, r);
    }
  for (guint i = 0; i < dom->serials->len; i++)
    {
      MdDomainChardev *c = dom->serials->pdata[i];
      DevRef r = { c->alias, NULL, "serial" };
      g_array_append_val (out, r);
    }
}

gboolean
md_domain_validate (const MdDomain *dom, GError **error)
{
  g_autoptr (GArray) devs = g_array_new (FALSE, FALSE, sizeof (DevRef));
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gboolean q35 = md_domain_machine_is_q35 (dom->os.machine);
  gboolean any_boot_order = FALSE;
  guint n_vnc = 0, n_spice = 0;

  if (!md_domain_validate_name (dom->name, error))
    return FALSE;
  if (!dom->uuid || !g_uuid_string_is_valid (dom->uuid))
    return invalid (error, "invalid UUID '%s'", dom->uuid ? dom->uuid : "");
  if (dom->memory == 0 || dom->current_memory == 0)
    return invalid (error, "memory must be positive");
  if (dom->current_memory > dom->memory)
    return invalid (error,
                    "currentMemory (%" G_GUINT64_FORMAT " bytes) exceeds memory (%" G_GUINT64_FORMAT
                    " bytes)",
                    dom->current_memory, dom->memory);
  if (dom->vcpus < 1 || dom->vcpus_current < 1 || dom->vcpus_current > dom->vcpus)
    return invalid (error, "vcpu must be >= 1 and current vcpus 1..%u", dom->vcpus);
  if (dom->cpu.sockets || dom->cpu.cores || dom->cpu.threads || dom->cpu.dies)
    {
      guint64 total = (guint64) MAX (dom->cpu.sockets, 1) * MAX (dom->cpu.dies, 1)
                      * MAX (dom->cpu.cores, 1) * MAX (dom->cpu.threads, 1);

      if (total != dom->vcpus)
        return invalid (error, "CPU topology gives %" G_GUINT64_FORMAT " vcpus, <vcpu> says %u",
                        total, dom->vcpus);
    }

  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];
      g_autofree char *key = NULL;

      if (md_dom_target_index (d->target) < 0)
        return invalid (error, "invalid disk target '%s' (expected vdX, sdX or hdX)", d->target);
      if (g_hash_table_contains (seen, d->target))
        return invalid (error, "duplicate disk target '%s'", d->target);
      g_hash_table_add (seen, g_strdup (d->target));
      if (d->bus == MD_DOMAIN_DISK_BUS_IDE && q35)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                       "disk %s: bus ide does not exist on q35 machines; use sata", d->target);
          return FALSE;
        }
      if (d->bus == MD_DOMAIN_DISK_BUS_VIRTIO ? d->address.type == MD_DOMAIN_ADDRESS_DRIVE
                                              : d->address.type == MD_DOMAIN_ADDRESS_PCI)
        return invalid (error, "disk %s: address type does not fit bus %s", d->target,
                        md_dom_disk_bus_names[d->bus]);
      if (d->address.type == MD_DOMAIN_ADDRESS_DRIVE)
        {
          MdDomainControllerType ct = d->bus == MD_DOMAIN_DISK_BUS_IDE ? MD_DOMAIN_CONTROLLER_IDE
                                      : d->bus == MD_DOMAIN_DISK_BUS_SATA
                                          ? MD_DOMAIN_CONTROLLER_SATA
                                          : MD_DOMAIN_CONTROLLER_SCSI;
          guint max_unit = d->bus == MD_DOMAIN_DISK_BUS_IDE    ? 1
                           : d->bus == MD_DOMAIN_DISK_BUS_SATA ? 5
                                                               : 16383;

          if (d->address.unit > max_unit
              || (d->bus == MD_DOMAIN_DISK_BUS_IDE && d->address.drive_bus > 1)
              || (d->bus != MD_DOMAIN_DISK_BUS_IDE && d->address.drive_bus != 0))
            return invalid (error, "disk %s: drive address bus %u unit %u out of range for %s",
                            d->target, d->address.drive_bus, d->address.unit,
                            md_dom_disk_bus_names[d->bus]);
          if (!find_controller (dom, ct, d->address.controller))
            return invalid (error, "disk %s: no %s controller with index %u", d->target,
                            md_dom_controller_type_names[ct], d->address.controller);
          key = g_strdup_printf ("drive %d %u %u %u %u", d->bus, d->address.controller,
                                 d->address.drive_bus, d->address.target, d->address.unit);
          if (g_hash_table_contains (seen, key))
            return invalid (error, "disk %s: drive address already used by another disk",
                            d->target);
          g_hash_table_add (seen, g_steal_pointer (&key));
        }
      any_boot_order |= d->boot_order != 0;
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      MdDomainInterface *n = dom->interfaces->pdata[i];

      if (n->mac && !md_dom_valid_mac (n->mac))
        return invalid (error,
                        "invalid MAC address '%s' (expected six hex pairs like "
                        "52:54:00:12:34:56, not multicast)",
                        n->mac);
      any_boot_order |= n->boot_order != 0;
    }
  if (any_boot_order && dom->os.boot_devs->len > 0)
    return invalid (error, "per-device <boot order> and <os><boot dev> cannot be mixed");
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      for (guint j = 0; j < i; j++)
        {
          MdDomainController *o = dom->controllers->pdata[j];

          if (o->type == c->type && o->index == c->index)
            return invalid (error, "duplicate controller type '%s' index %u",
                            md_dom_controller_type_names[c->type], c->index);
        }
      if (c->type == MD_DOMAIN_CONTROLLER_IDE && (q35 || c->index != 0))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                       "controller ide index %u: only the built-in ide controller of pc "
                       "machines (index 0)",
                       c->index);
          return FALSE;
        }
      if (c->type == MD_DOMAIN_CONTROLLER_PCI
          && (c->index == 0 ? g_strcmp0 (c->model, q35 ? "pcie-root" : "pci-root") != 0
                            : !q35 || g_strcmp0 (c->model, "pcie-root-port") != 0))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                       "controller pci index %u model '%s': supported are %s at index 0 and "
                       "pcie-root-port (q35 only) above",
                       c->index, c->model ? c->model : "", q35 ? "pcie-root" : "pci-root");
          return FALSE;
        }
    }
  for (guint i = 0; i < dom->serials->len; i++)
    for (guint j = 0; j < i; j++)
      if (((MdDomainChardev *) dom->serials->pdata[i])->port
          == ((MdDomainChardev *) dom->serials->pdata[j])->port)
        return invalid (error, "two serials on port %u",
                        ((MdDomainChardev *) dom->serials->pdata[i])->port);
  for (guint i = 0; i < dom->graphics->len; i++)
    {
      MdDomainGraphics *g = dom->graphics->pdata[i];

      if ((g->type == MD_DOMAIN_GRAPHICS_VNC ? ++n_vnc : ++n_spice) > 1)
        return invalid (error, "more than one %s graphics", md_dom_graphics_type_names[g->type]);
    }
  for (guint i = 0; i < dom->inputs->len; i++)
    {
      MdDomainInput *in = dom->inputs->pdata[i];
      MdDomainController *usb = find_controller (dom, MD_DOMAIN_CONTROLLER_USB, 0);

      if (strcmp (in->bus, "usb") == 0 && (!usb || g_strcmp0 (usb->model, "none") == 0))
        return invalid (error, "input %s on bus usb needs a USB controller", in->type);
    }

  /* Aliases unique and well-formed; PCI addresses unique, on existing buses. */
  g_hash_table_remove_all (seen);
  collect_devices (dom, devs);
  for (guint i = 0; i < devs->len; i++)
    {
      DevRef *r = &g_array_index (devs, DevRef, i);
      g_autofree char *key = NULL;

      if (r->alias)
        {
          if (!valid_alias (r->alias))
            return invalid (error,
                            "invalid device alias '%s' (1..20 characters from A-Z a-z "
                            "0-9 _ . -, starting with a letter)",
                            r->alias);
          if (g_hash_table_contains (seen, r->alias))
            return invalid (error, "duplicate device alias '%s'", r->alias);
          g_hash_table_add (seen, g_strdup (r->alias));
        }
      if (!r->address || r->address->type != MD_DOMAIN_ADDRESS_PCI)
        continue;
      key =
          g_strdup_printf ("pci %u:%u.%u", r->address->bus, r->address->slot, r->address->function);
      if (g_hash_table_contains (seen, key))
        return invalid (error, "device %s: PCI address %02x:%02x.%x is used twice",
                        r->alias ? r->alias : "", r->address->bus, r->address->slot,
                        r->address->function);
      g_hash_table_add (seen, g_steal_pointer (&key));
      if (r->address->bus != 0 && !find_controller (dom, MD_DOMAIN_CONTROLLER_PCI, r->address->bus))
        return invalid (error,
                        "device %s: PCI bus %u has no controller (add a pcie-root-port "
                        "with index %u)",
                        r->alias ? r->alias : "", r->address->bus, r->address->bus);
    }
  return TRUE;
}

/* ---- aliases and addresses ---- */

static MdDomainController *
ensure_controller (MdDomain *dom, MdDomainControllerType type, guint index, const char *model)
{
  MdDomainController *c = find_controller (dom, type, index);

  if (!c)
    {
      c = g_new0 (MdDomainController, 1);
      c->type = type;
      c->index = index;
      g_ptr_array_add (dom->controllers, c);
    }
  if (!c->model && model)
    c->model = g_strdup (model);
  return c;
}

static void
set_pci (MdDomainAddress *a, guint slot, guint function)
{
  memset (a, 0, sizeof *a);
  a->type = MD_DOMAIN_ADDRESS_PCI;
  a->slot = slot;
  a->function = function;
}

typedef struct
{
  guint32 used; /* bit per slot on bus 0 */
  guint next;
} SlotMap;

static gboolean
take_slot (SlotMap *map, MdDomainAddress *a, GError **error)
{
  if (a->type != MD_DOMAIN_ADDRESS_NONE)
    return TRUE;
  while (map->next < 32 && (map->used & (1u << map->next)))
    map->next++;
  if (map->next >= 32)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                   "no free PCI slot left on bus 0; give devices explicit addresses behind a "
                   "pcie-root-port controller");
      return FALSE;
    }
  map->used |= 1u << map->next;
  set_pci (a, map->next, 0);
  return TRUE;
}

static gboolean
controller_on_pci (const MdDomainController *c, gboolean q35)
{
  switch (c->type)
    {
    case MD_DOMAIN_CONTROLLER_PCI:
      return c->index > 0;
    case MD_DOMAIN_CONTROLLER_IDE:
      return FALSE; /* PIIX3 function, fixed */
    case MD_DOMAIN_CONTROLLER_SATA:
      return !(q35 && c->index == 0); /* ich9 built-in at 1f.2 */
    case MD_DOMAIN_CONTROLLER_USB:
      return g_strcmp0 (c->model, "none") != 0;
    case MD_DOMAIN_CONTROLLER_SCSI:
    case MD_DOMAIN_CONTROLLER_VIRTIO_SERIAL:
    default:
      return TRUE;
    }
}

static char *
random_mac (void)
{
  return g_strdup_printf ("52:54:00:%02x:%02x:%02x", g_random_int_range (0, 256),
                          g_random_int_range (0, 256), g_random_int_range (0, 256));
}

gboolean
md_domain_assign_addresses (MdDomain *dom, GError **error)
{
  gboolean q35 = md_domain_machine_is_q35 (dom->os.machine);
  g_autoptr (GArray) devs = g_array_new (FALSE, FALSE, sizeof (DevRef));
  SlotMap map = { 0 };
  guint usb_port = 0;

  /* Disks: drive addresses from the target name, aliases from addresses. */
  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];
      int idx = md_dom_target_index (d->target);
      MdDomainAddress *a = &d->address;

      if (idx < 0)
        return invalid (error, "invalid disk target '%s'", d->target ? d->target : "");
      if (d->bus != MD_DOMAIN_DISK_BUS_VIRTIO && a->type == MD_DOMAIN_ADDRESS_NONE)
        {
          a->type = MD_DOMAIN_ADDRESS_DRIVE;
          if (d->bus == MD_DOMAIN_DISK_BUS_IDE)
            a->drive_bus = idx / 2, a->unit = idx % 2;
          else if (d->bus == MD_DOMAIN_DISK_BUS_SATA)
            a->controller = idx / 6, a->unit = idx % 6;
          else
            a->controller = idx / 7, a->unit = idx % 7;
        }
      if (!d->alias)
        switch (d->bus)
          {
          case MD_DOMAIN_DISK_BUS_VIRTIO:
            d->alias = g_strdup_printf ("virtio-disk%d", idx);
            break;
          case MD_DOMAIN_DISK_BUS_IDE:
            d->alias = g_strdup_printf ("ide%u-%u-%u", a->controller, a->drive_bus, a->unit);
            break;
          case MD_DOMAIN_DISK_BUS_SATA:
            d->alias = g_strdup_printf ("sata%u-0-%u", a->controller, a->unit);
            break;
          case MD_DOMAIN_DISK_BUS_SCSI:
          default:
            d->alias = g_strdup_printf ("scsi%u-0-%u-%u", a->controller, a->target, a->unit);
            break;
          }
    }

  /* Implicit controllers, as libvirt adds them. */
  ensure_controller (dom, MD_DOMAIN_CONTROLLER_PCI, 0, q35 ? "pcie-root" : "pci-root");
  if (q35)
    ensure_controller (dom, MD_DOMAIN_CONTROLLER_SATA, 0, NULL);
  else
    ensure_controller (dom, MD_DOMAIN_CONTROLLER_IDE, 0, NULL);
  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];

      if (d->bus == MD_DOMAIN_DISK_BUS_SATA)
        ensure_controller (dom, MD_DOMAIN_CONTROLLER_SATA, d->address.controller, NULL);
      else if (d->bus == MD_DOMAIN_DISK_BUS_SCSI)
        ensure_controller (dom, MD_DOMAIN_CONTROLLER_SCSI, d->address.controller, "virtio-scsi");
    }
  for (guint i = 0; i < dom->inputs->len; i++)
    if (strcmp (((MdDomainInput *) dom->inputs->pdata[i])->bus, "usb") == 0)
      ensure_controller (dom, MD_DOMAIN_CONTROLLER_USB, 0, q35 ? "qemu-xhci" : "piix3-uhci");
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      if (!c->model && c->type == MD_DOMAIN_CONTROLLER_USB)
        c->model = g_strdup (q35 ? "qemu-xhci" : "piix3-uhci");
      if (!c->model && c->type == MD_DOMAIN_CONTROLLER_SCSI)
        c->model = g_strdup ("virtio-scsi");
      if (!c->model && c->type == MD_DOMAIN_CONTROLLER_PCI && c->index == 0)
        c->model = g_strdup (q35 ? "pcie-root" : "pci-root");
      if (c->alias)
        continue;
      switch (c->type)
        {
        case MD_DOMAIN_CONTROLLER_PCI:
          c->alias = g_strdup_printf (c->index == 0 && q35 ? "pcie.%u" : "pci.%u", c->index);
          break;
        case MD_DOMAIN_CONTROLLER_IDE:
          c->alias = g_strdup ("ide");
          break;
        case MD_DOMAIN_CONTROLLER_SATA:
          c->alias = q35 && c->index == 0 ? g_strdup ("ide") : g_strdup_printf ("sata%u", c->index);
          break;
        case MD_DOMAIN_CONTROLLER_SCSI:
          c->alias = g_strdup_printf ("scsi%u", c->index);
          break;
        case MD_DOMAIN_CONTROLLER_USB:
          c->alias = c->index == 0 ? g_strdup ("usb") : g_strdup_printf ("usb%u", c->index);
          break;
        case MD_DOMAIN_CONTROLLER_VIRTIO_SERIAL:
        default:
          c->alias = g_strdup_printf ("virtio-serial%u", c->index);
          break;
        }
    }

  if (!dom->memballoon)
    {
      dom->memballoon = g_new0 (MdDomainMemballoon, 1);
      dom->memballoon->model = g_strdup ("virtio");
    }
  if (!dom->memballoon->alias && strcmp (dom->memballoon->model, "none") != 0)
    dom->memballoon->alias = g_strdup ("balloon0");

  /* A console that mirrors a serial port creates that serial if needed. */
  for (guint i = 0; i < dom->consoles->len; i++)
    {
      MdDomainChardev *con = dom->consoles->pdata[i];
      gboolean found = FALSE;

      for (guint j = 0; j < dom->serials->len; j++)
        found |= ((MdDomainChardev *) dom->serials->pdata[j])->port == con->port;
      if (!found)
        {
          MdDomainChardev *s = g_new0 (MdDomainChardev, 1);

          s->type = con->type;
          s->path = g_strdup (con->path);
          s->port = con->port;
          g_ptr_array_add (dom->serials, s);
        }
      if (!con->alias)
        con->alias = g_strdup_printf ("serial%u", con->port);
    }
  for (guint i = 0; i < dom->serials->len; i++)
    {
      MdDomainChardev *s = dom->serials->pdata[i];

      if (!s->alias)
        s->alias = g_strdup_printf ("serial%u", s->port);
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      MdDomainInterface *n = dom->interfaces->pdata[i];

      if (!n->alias)
        n->alias = g_strdup_printf ("net%u", i);
      if (!n->mac)
        n->mac = random_mac ();
    }
  for (guint i = 0; i < dom->videos->len; i++)
    {
      MdDomainVideo *v = dom->videos->pdata[i];

      if (!v->alias)
        v->alias = g_strdup_printf ("video%u", i);
    }
  for (guint i = 0; i < dom->inputs->len; i++)
    {
      MdDomainInput *in = dom->inputs->pdata[i];

      if (!in->alias)
        in->alias = g_strdup_printf ("input%u", i);
      if (in->address.type == MD_DOMAIN_ADDRESS_USB)
        usb_port = MAX (usb_port, in->address.usb_port);
    }
  for (guint i = 0; i < dom->inputs->len; i++)
    {
      MdDomainInput *in = dom->inputs->pdata[i];

      if (strcmp (in->bus, "usb") == 0 && in->address.type == MD_DOMAIN_ADDRESS_NONE)
        {
          in->address.type = MD_DOMAIN_ADDRESS_USB;
          in->address.usb_port = ++usb_port;
        }
    }
  for (guint i = 0; i < dom->rngs->len; i++)
    {
      MdDomainRng *r = dom->rngs->pdata[i];

      if (!r->alias)
        r->alias = g_strdup_printf ("rng%u", i);
    }

  /* PCI slots on bus 0: reserve what is fixed or already given. */
  map.used = 1u << 0 | (q35 ? 1u << 0x1f : 1u << 1);
  collect_devices (dom, devs);
  for (guint i = 0; i < devs->len; i++)
    {
      const MdDomainAddress *a = g_array_index (devs, DevRef, i).address;

      if (a && a->type == MD_DOMAIN_ADDRESS_PCI && a->bus == 0)
        map.used |= 1u << a->slot;
    }
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      if (c->address.type != MD_DOMAIN_ADDRESS_NONE)
        continue;
      if (!q35 && c->type == MD_DOMAIN_CONTROLLER_IDE)
        set_pci (&c->address, 1, 1);
      else if (!q35 && c->type == MD_DOMAIN_CONTROLLER_USB && c->index == 0
               && g_strcmp0 (c->model, "piix3-uhci") == 0)
        set_pci (&c->address, 1, 2);
      else if (q35 && c->type == MD_DOMAIN_CONTROLLER_SATA && c->index == 0)
        set_pci (&c->address, 0x1f, 2);
    }
  if (dom->videos->len > 0)
    {
      MdDomainVideo *v = dom->videos->pdata[0];
      guint want = q35 ? 1 : 2;

      if (strcmp (v->model, "none") != 0 && v->address.type == MD_DOMAIN_ADDRESS_NONE
          && !(map.used & (1u << want)))
        {
          map.used |= 1u << want;
          set_pci (&v->address, want, 0);
        }
    }
  map.next = q35 ? 2 : 3;
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      if (controller_on_pci (c, q35) && !take_slot (&map, &c->address, error))
        return FALSE;
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    if (!take_slot (&map, &((MdDomainInterface *) dom->interfaces->pdata[i])->address, error))
      return FALSE;
  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];

      if (d->bus == MD_DOMAIN_DISK_BUS_VIRTIO && !take_slot (&map, &d->address, error))
        return FALSE;
    }
  for (guint i = 0; i < dom->videos->len; i++)
    {
      MdDomainVideo *v = dom->videos->pdata[i];

      if (strcmp (v->model, "none") != 0 && !take_slot (&map, &v->address, error))
        return FALSE;
    }
  for (guint i = 0; i < dom->inputs->len; i++)
    {
      MdDomainInput *in = dom->inputs->pdata[i];

      if (strcmp (in->bus, "virtio") == 0 && !take_slot (&map, &in->address, error))
        return FALSE;
    }
  if (strcmp (dom->memballoon->model, "none") != 0
      && !take_slot (&map, &dom->memballoon->address, error))
    return FALSE;
  for (guint i = 0; i < dom->rngs->len; i++)
    if (!take_slot (&map, &((MdDomainRng *) dom->rngs->pdata[i])->address, error))
      return FALSE;
  return TRUE;
}

/* ---- comparison: one description drives both equality and the ABI check ---- */

typedef struct
{
  char *label;       /* "disk vda" */
  const char *kind;  /* "disks" */
  GPtrArray *keys;   /* const char* */
  GPtrArray *values; /* char* */
  GArray *host;      /* gboolean: host-side, may differ between hosts */
} Section;

static void
section_free (Section *sec)
{
  g_free (sec->label);
  g_ptr_array_unref (sec->keys);
  g_ptr_array_unref (sec->values);
  g_array_unref (sec->host);
  g_free (sec);
}

static Section *
section_new (GPtrArray *out, const char *kind, char *label)
{
  Section *sec = g_new0 (Section, 1);

  sec->label = label;
  sec->kind = kind;
  sec->keys = g_ptr_array_new ();
  sec->values = g_ptr_array_new_with_free_func (g_free);
  sec->host = g_array_new (FALSE, FALSE, sizeof (gboolean));
  g_ptr_array_add (out, sec);
  return sec;
}

static void G_GNUC_PRINTF (4, 5)
    field (Section *sec, const char *key, gboolean host, const char *format, ...)
{
  va_list ap;

  va_start (ap, format);
  g_ptr_array_add (sec->keys, (gpointer) key);
  g_ptr_array_add (sec->values, g_strdup_vprintf (format, ap));
  g_array_append_val (sec->host, host);
  va_end (ap);
}

#define S(x) ((x) ? (x) : "(none)")

static void
field_address (Section *sec, const MdDomainAddress *a)
{
  switch (a->type)
    {
    case MD_DOMAIN_ADDRESS_PCI:
      field (sec, "address", FALSE, "pci %04x:%02x:%02x.%x%s", a->domain, a->bus, a->slot,
             a->function, a->multifunction ? " multifunction" : "");
      break;
    case MD_DOMAIN_ADDRESS_DRIVE:
      field (sec, "address", FALSE, "drive %u:%u:%u:%u", a->controller, a->drive_bus, a->target,
             a->unit);
      break;
    case MD_DOMAIN_ADDRESS_USB:
      field (sec, "address", FALSE, "usb %u:%u", a->usb_bus, a->usb_port);
      break;
    case MD_DOMAIN_ADDRESS_NONE:
    default:
      field (sec, "address", FALSE, "(none)");
      break;
    }
}

static GPtrArray *
describe (const MdDomain *dom)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) section_free);
  Section *sec = section_new (out, "domain", g_strdup ("domain"));
  g_autoptr (GString) list = g_string_new (NULL);

  field (sec, "name", FALSE, "%s", S (dom->name));
  field (sec, "uuid", FALSE, "%s", S (dom->uuid));
  field (sec, "type", TRUE, "%s", S (dom->virt_type));
  field (sec, "title", TRUE, "%s", S (dom->title));
  field (sec, "description", TRUE, "%s", S (dom->description));
  field (sec, "metadata", TRUE, "%s", S (dom->metadata));
  field (sec, "memory", FALSE, "%" G_GUINT64_FORMAT, dom->memory);
  field (sec, "currentMemory", FALSE, "%" G_GUINT64_FORMAT, dom->current_memory);
  field (sec, "vcpu", FALSE, "%u", dom->vcpus);
  field (sec, "vcpu current", FALSE, "%u", dom->vcpus_current);
  field (sec, "os type", FALSE, "%s", S (dom->os.type));
  field (sec, "arch", FALSE, "%s", S (dom->os.arch));
  field (sec, "machine", FALSE, "%s", S (dom->os.machine));
  for (guint i = 0; i < dom->os.boot_devs->len; i++)
    g_string_append_printf (list, "%s%s", i ? "," : "", (char *) dom->os.boot_devs->pdata[i]);
  field (sec, "boot", FALSE, "%s", list->str);
  field (sec, "kernel", TRUE, "%s", S (dom->os.kernel));
  field (sec, "initrd", TRUE, "%s", S (dom->os.initrd));
  field (sec, "cmdline", FALSE, "%s", S (dom->os.cmdline));
  field (sec, "acpi", FALSE, "%d", dom->acpi);
  field (sec, "apic", FALSE, "%d", dom->apic);
  field (sec, "pae", FALSE, "%d", dom->pae);
  field (sec, "vmport", FALSE, "%s", md_dom_tristate_names[dom->vmport]);
  field (sec, "cpu mode", FALSE, "%s", md_dom_cpu_mode_names[dom->cpu.mode]);
  field (sec, "cpu model", FALSE, "%s", S (dom->cpu.model));
  field (sec, "cpu topology", FALSE, "%u/%u/%u/%u", dom->cpu.sockets, dom->cpu.dies, dom->cpu.cores,
         dom->cpu.threads);
  g_string_truncate (list, 0);
  for (guint i = 0; i < dom->cpu.features->len; i++)
    {
      MdDomainCpuFeature *f = dom->cpu.features->pdata[i];

      g_string_append_printf (list, "%s%c%s%s", i ? "," : "",
                              f->policy == MD_DOMAIN_CPU_FEATURE_REQUIRE ? '+' : '-', f->name,
                              f->forced ? "!" : "");
    }
  field (sec, "cpu features", FALSE, "%s", list->str);
  field (sec, "clock offset", FALSE, "%s", md_dom_clock_offset_names[dom->clock_offset]);
  g_string_truncate (list, 0);
  for (guint i = 0; i < dom->timers->len; i++)
    {
      MdDomainTimer *t = dom->timers->pdata[i];

      g_string_append_printf (list, "%s%s/%s/%s", i ? "," : "", t->name, S (t->tickpolicy),
                              md_dom_tristate_names[t->present]);
    }
  field (sec, "timers", FALSE, "%s", list->str);
  field (sec, "on_poweroff", TRUE, "%s", md_dom_lifecycle_names[dom->on_poweroff]);
  field (sec, "on_reboot", TRUE, "%s", md_dom_lifecycle_names[dom->on_reboot]);
  field (sec, "on_crash", TRUE, "%s", md_dom_lifecycle_names[dom->on_crash]);
  field (sec, "emulator", TRUE, "%s", S (dom->emulator));

  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];

      sec = section_new (out, "disks", g_strdup_printf ("disk %s", d->target));
      field (sec, "target", FALSE, "%s", d->target);
      field (sec, "device", FALSE, "%s", md_dom_disk_device_names[d->device]);
      field (sec, "bus", FALSE, "%s", md_dom_disk_bus_names[d->bus]);
      field (sec, "format", FALSE, "%s", md_dom_disk_format_names[d->format]);
      field (sec, "readonly", FALSE, "%d", d->readonly);
      field (sec, "shareable", FALSE, "%d", d->shareable);
      field (sec, "serial", FALSE, "%s", S (d->serial));
      field (sec, "boot order", FALSE, "%u", d->boot_order);
      field (sec, "alias", FALSE, "%s", S (d->alias));
      field_address (sec, &d->address);
      field (sec, "type", TRUE, "%s", md_dom_disk_type_names[d->type]);
      field (sec, "source", TRUE, "%s", S (d->source));
      field (sec, "cache", TRUE, "%s", md_dom_disk_cache_names[d->cache]);
      field (sec, "discard", TRUE, "%s", md_dom_disk_discard_names[d->discard]);
      field (sec, "io", TRUE, "%s", md_dom_disk_io_names[d->io]);
    }
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      sec = section_new (
          out, "controllers",
          g_strdup_printf ("controller %s %u", md_dom_controller_type_names[c->type], c->index));
      field (sec, "type", FALSE, "%s", md_dom_controller_type_names[c->type]);
      field (sec, "index", FALSE, "%u", c->index);
      field (sec, "model", FALSE, "%s", S (c->model));
      field (sec, "alias", FALSE, "%s", S (c->alias));
      field_address (sec, &c->address);
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      MdDomainInterface *n = dom->interfaces->pdata[i];

      sec = section_new (out, "interfaces",
                         g_strdup_printf ("interface %s", n->alias ? n->alias : S (n->mac)));
      field (sec, "model", FALSE, "%s", S (n->model));
      field (sec, "mac", FALSE, "%s", S (n->mac));
      field (sec, "boot order", FALSE, "%u", n->boot_order);
      field (sec, "alias", FALSE, "%s", S (n->alias));
      field_address (sec, &n->address);
      field (sec, "type", TRUE, "%s", md_dom_interface_type_names[n->type]);
      field (sec, "source", TRUE, "%s", S (n->source));
    }
  for (guint pass = 0; pass < 2; pass++)
    {
      GPtrArray *arr = pass ? dom->consoles : dom->serials;

      for (guint i = 0; i < arr->len; i++)
        {
          MdDomainChardev *c = arr->pdata[i];

          sec = section_new (out, pass ? "consoles" : "serials",
                             g_strdup_printf ("%s %u", pass ? "console" : "serial", c->port));
          field (sec, "port", FALSE, "%u", c->port);
          field (sec, "alias", FALSE, "%s", S (c->alias));
          field (sec, "type", TRUE, "%s", md_dom_chardev_type_names[c->type]);
          field (sec, "path", TRUE, "%s", S (c->path));
        }
    }
  for (guint i = 0; i < dom->graphics->len; i++)
    {
      MdDomainGraphics *g = dom->graphics->pdata[i];

      sec = section_new (out, "graphics",
                         g_strdup_printf ("graphics %s", md_dom_graphics_type_names[g->type]));
      field (sec, "type", FALSE, "%s", md_dom_graphics_type_names[g->type]);
      field (sec, "listen", TRUE, "%s", S (g->listen));
      field (sec, "port", TRUE, "%d", g->port);
      field (sec, "autoport", TRUE, "%d", g->autoport);
      field (sec, "passwd", TRUE, "%s", S (g->passwd));
    }
  for (guint i = 0; i < dom->videos->len; i++)
    {
      MdDomainVideo *v = dom->videos->pdata[i];

      sec = section_new (out, "videos", g_strdup_printf ("video %u", i));
      field (sec, "model", FALSE, "%s", S (v->model));
      field (sec, "vram", FALSE, "%u", v->vram);
      field (sec, "heads", FALSE, "%u", v->heads);
      field (sec, "alias", FALSE, "%s", S (v->alias));
      field_address (sec, &v->address);
    }
  for (guint i = 0; i < dom->inputs->len; i++)
    {
      MdDomainInput *in = dom->inputs->pdata[i];

      sec = section_new (out, "inputs", g_strdup_printf ("input %u", i));
      field (sec, "type", FALSE, "%s", S (in->type));
      field (sec, "bus", FALSE, "%s", S (in->bus));
      field (sec, "alias", FALSE, "%s", S (in->alias));
      field_address (sec, &in->address);
    }
  if (dom->memballoon)
    {
      sec = section_new (out, "memballoon", g_strdup ("memballoon"));
      field (sec, "model", FALSE, "%s", S (dom->memballoon->model));
      field (sec, "alias", FALSE, "%s", S (dom->memballoon->alias));
      field_address (sec, &dom->memballoon->address);
    }
  for (guint i = 0; i < dom->rngs->len; i++)
    {
      MdDomainRng *r = dom->rngs->pdata[i];

      sec = section_new (out, "rngs", g_strdup_printf ("rng %u", i));
      field (sec, "model", FALSE, "%s", S (r->model));
      field (sec, "alias", FALSE, "%s", S (r->alias));
      field_address (sec, &r->address);
      field (sec, "backend", TRUE, "%s", S (r->backend));
    }
  return out;
}

static guint
count_kind (GPtrArray *secs, const char *kind)
{
  guint n = 0;

  for (guint i = 0; i < secs->len; i++)
    n += strcmp (((Section *) secs->pdata[i])->kind, kind) == 0;
  return n;
}

static gboolean
compare (const MdDomain *a, const MdDomain *b, gboolean abi_only, GError **error)
{
  g_autoptr (GPtrArray) sa = describe (a);
  g_autoptr (GPtrArray) sb = describe (b);

  static const char *const kinds[] = { "disks",      "controllers", "interfaces", "serials",
                                       "consoles",   "graphics",    "videos",     "inputs",
                                       "memballoon", "rngs",        NULL };

  for (guint i = 0; kinds[i]; i++)
    if (count_kind (sa, kinds[i]) != count_kind (sb, kinds[i]))
      {
        g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "number of %s: %u != %u", kinds[i],
                     count_kind (sa, kinds[i]), count_kind (sb, kinds[i]));
        return FALSE;
      }
  g_assert (sa->len == sb->len);
  for (guint i = 0; i < sa->len; i++)
    {
      Section *x = sa->pdata[i];
      Section *y = sb->pdata[i];

      for (guint k = 0; k < x->keys->len; k++)
        {
          const char *vx = x->values->pdata[k], *vy = y->values->pdata[k];

          if (abi_only && g_array_index (x->host, gboolean, k))
            continue;
          if (strcmp (vx, vy) != 0)
            {
              g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "%s: %s %s != %s", x->label,
                           (const char *) x->keys->pdata[k], vx, vy);
              return FALSE;
            }
        }
    }
  return TRUE;
}

gboolean
md_domain_equal (const MdDomain *a, const MdDomain *b)
{
  return compare (a, b, FALSE, NULL);
}

gboolean
md_domain_check_abi_compatible (const MdDomain *src, const MdDomain *dst, GError **error)
{
  if (!compare (src, dst, TRUE, error))
    {
      g_prefix_error (error, "destination definition changes the guest ABI: ");
      return FALSE;
    }
  return TRUE;
}

/* ---- machine types ---- */

char *
md_domain_resolve_machine (const char *machine, const GPtrArray *machines, GError **error)
{
  g_autoptr (GString) candidates = g_string_new (NULL);

  for (guint i = 0; i < machines->len; i++)
    {
      const MdDomainMachineType *t = machines->pdata[i];

      if (machine == NULL ? t->is_default : strcmp (t->name, machine) == 0)
        return g_strdup (t->name);
      if (machine && t->alias && strcmp (t->alias, machine) == 0)
        return g_strdup (t->name);
    }
  for (guint i = 0; i < machines->len; i++)
    {
      const MdDomainMachineType *t = machines->pdata[i];

      if (t->alias || t->is_default)
        g_string_append_printf (candidates, "%s%s", candidates->len ? ", " : "",
                                t->alias ? t->alias : t->name);
    }
  g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
               "machine type '%s' is not supported by this QEMU (try one of: %s)",
               machine ? machine : "(default)", candidates->str);
  return NULL;
}

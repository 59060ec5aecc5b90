/* migrationd: guest definition model: name tables, new/free/copy, machine types. */
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
const char *const md_dom_disk_detect_zeroes_names[] = { "default", "off", "on", "unmap", NULL };
const char *const md_dom_channel_type_names[] = { "unix", "spicevmc", NULL };
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
const char *const md_dom_address_type_names[] = { "none", "pci",           "drive",
                                                  "usb",  "virtio-serial", NULL };

const char *const md_dom_controller_models[] = { "pci-root",   "pcie-root",  "pcie-root-port",
                                                 "piix3-uhci", "qemu-xhci",  "nec-xhci",
                                                 "ich9-ehci1", "ich9-uhci1", "ich9-uhci2",
                                                 "ich9-uhci3", "none",       "virtio-scsi",
                                                 NULL };
const char *const md_dom_nic_models[] = { "virtio", "e1000", "e1000e", "rtl8139", NULL };
const char *const md_dom_video_models[] = {
  "vga", "cirrus", "virtio", "qxl", "bochs", "none", NULL
};
const char *const md_dom_input_types[] = { "mouse", "keyboard", "tablet", NULL };
const char *const md_dom_input_buses[] = { "ps2", "usb", "virtio", NULL };
const char *const md_dom_sound_models[] = { "ich6", "ich9", "ac97", NULL };
const char *const md_dom_audio_types[] = { "none", "spice", "pa", NULL };
const char *const md_dom_watchdog_models[] = { "i6300esb", "itco", NULL };
const char *const md_dom_watchdog_actions[] = { "reset", "shutdown",   "poweroff", "pause",
                                                "none",  "inject-nmi", "dump",     NULL };
const char *const md_dom_panic_models[] = { "isa", "pvpanic", NULL };

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
  g_free (g->image_compression);
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
md_dom_channel_free (MdDomainChannel *c)
{
  g_free (c->target_name);
  g_free (c->alias);
  g_free (c);
}

void
md_dom_sound_free (MdDomainSound *s)
{
  g_free (s->model);
  g_free (s->alias);
  g_free (s);
}

void
md_dom_audio_free (MdDomainAudio *a)
{
  g_free (a->type);
  g_free (a);
}

void
md_dom_redirdev_free (MdDomainRedirdev *r)
{
  g_free (r->alias);
  g_free (r);
}

void
md_dom_watchdog_free (MdDomainWatchdog *w)
{
  g_free (w->model);
  g_free (w->action);
  g_free (w->alias);
  g_free (w);
}

void
md_dom_panic_free (MdDomainPanic *p)
{
  g_free (p->model);
  g_free (p->alias);
  g_free (p);
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
  dom->channels = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_channel_free);
  dom->sounds = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_sound_free);
  dom->audios = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_audio_free);
  dom->redirdevs = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_redirdev_free);
  dom->watchdogs = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_watchdog_free);
  dom->panics = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_panic_free);
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
  g_ptr_array_unref (dom->channels);
  g_ptr_array_unref (dom->sounds);
  g_ptr_array_unref (dom->audios);
  g_ptr_array_unref (dom->redirdevs);
  g_ptr_array_unref (dom->watchdogs);
  g_ptr_array_unref (dom->panics);
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
  d->image_compression = g_strdup (s->image_compression);
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
copy_channel (gconstpointer src, gpointer unused)
{
  const MdDomainChannel *s = src;
  MdDomainChannel *d = g_memdup2 (s, sizeof *s);

  d->target_name = g_strdup (s->target_name);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_sound (gconstpointer src, gpointer unused)
{
  const MdDomainSound *s = src;
  MdDomainSound *d = g_memdup2 (s, sizeof *s);

  d->model = g_strdup (s->model);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_audio (gconstpointer src, gpointer unused)
{
  const MdDomainAudio *s = src;
  MdDomainAudio *d = g_memdup2 (s, sizeof *s);

  d->type = g_strdup (s->type);
  return d;
}

static gpointer
copy_redirdev (gconstpointer src, gpointer unused)
{
  const MdDomainRedirdev *s = src;
  MdDomainRedirdev *d = g_memdup2 (s, sizeof *s);

  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_watchdog (gconstpointer src, gpointer unused)
{
  const MdDomainWatchdog *s = src;
  MdDomainWatchdog *d = g_memdup2 (s, sizeof *s);

  d->model = g_strdup (s->model);
  d->action = g_strdup (s->action);
  d->alias = g_strdup (s->alias);
  return d;
}

static gpointer
copy_panic (gconstpointer src, gpointer unused)
{
  const MdDomainPanic *s = src;
  MdDomainPanic *d = g_memdup2 (s, sizeof *s);

  d->model = g_strdup (s->model);
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
  d->smm = s->smm;
  d->suspend_to_mem = s->suspend_to_mem;
  d->suspend_to_disk = s->suspend_to_disk;
  d->cpu.mode = s->cpu.mode;
  d->cpu.migratable = s->cpu.migratable;
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
  copy_array (d->channels, s->channels, copy_channel);
  copy_array (d->sounds, s->sounds, copy_sound);
  copy_array (d->audios, s->audios, copy_audio);
  copy_array (d->redirdevs, s->redirdevs, copy_redirdev);
  copy_array (d->watchdogs, s->watchdogs, copy_watchdog);
  copy_array (d->panics, s->panics, copy_panic);
  return d;
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

MdDomainController *
md_dom_find_controller (const MdDomain *dom, MdDomainControllerType type, guint index)
{
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      if (c->type == type && c->index == index)
        return c;
    }
  return NULL;
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

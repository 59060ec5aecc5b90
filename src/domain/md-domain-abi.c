/* migrationd: domain comparison: equality and the guest ABI check. */
#include "config.h"

#include "md-domain.h"
#include "md-domain-private.h"
#include "common/md-error.h"

#include <stdarg.h>
#include <string.h>

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
    case MD_DOMAIN_ADDRESS_VIRTIO_SERIAL:
      field (sec, "address", FALSE, "virtio-serial %u:%u:%u", a->controller, a->vs_bus, a->vs_port);
      break;
    case MD_DOMAIN_ADDRESS_NONE:
    default:
      field (sec, "address", FALSE, "(none)");
      break;
    }
}

static void
describe_domain (GPtrArray *out, const MdDomain *dom)
{
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
  field (sec, "smm", FALSE, "%s", md_dom_tristate_names[dom->smm]);
  field (sec, "suspend-to-mem", FALSE, "%s", md_dom_tristate_names[dom->suspend_to_mem]);
  field (sec, "suspend-to-disk", FALSE, "%s", md_dom_tristate_names[dom->suspend_to_disk]);
  field (sec, "cpu mode", FALSE, "%s", md_dom_cpu_mode_names[dom->cpu.mode]);
  field (sec, "cpu model", FALSE, "%s", S (dom->cpu.model));
  field (sec, "cpu migratable", FALSE, "%s", md_dom_tristate_names[dom->cpu.migratable]);
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
}

static void
describe_storage_net (GPtrArray *out, const MdDomain *dom)
{
  Section *sec;

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
      field (sec, "detect_zeroes", TRUE, "%s", md_dom_disk_detect_zeroes_names[d->detect_zeroes]);
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
}

static void
describe_ui (GPtrArray *out, const MdDomain *dom)
{
  Section *sec;

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
      field (sec, "image compression", TRUE, "%s", S (g->image_compression));
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
}

static void
describe_more (GPtrArray *out, const MdDomain *dom)
{
  Section *sec;

  for (guint i = 0; i < dom->channels->len; i++)
    {
      MdDomainChannel *c = dom->channels->pdata[i];

      sec = section_new (out, "channels", g_strdup_printf ("channel %s", S (c->target_name)));
      field (sec, "type", FALSE, "%s", md_dom_channel_type_names[c->type]);
      field (sec, "name", FALSE, "%s", S (c->target_name));
      field (sec, "alias", FALSE, "%s", S (c->alias));
      field_address (sec, &c->address);
    }
  for (guint i = 0; i < dom->sounds->len; i++)
    {
      MdDomainSound *snd = dom->sounds->pdata[i];

      sec = section_new (out, "sounds", g_strdup_printf ("sound %u", i));
      field (sec, "model", FALSE, "%s", S (snd->model));
      field (sec, "alias", FALSE, "%s", S (snd->alias));
      field_address (sec, &snd->address);
      field (sec, "audio", TRUE, "%u", snd->audio_id);
    }
  for (guint i = 0; i < dom->audios->len; i++)
    {
      MdDomainAudio *a = dom->audios->pdata[i];

      sec = section_new (out, "audios", g_strdup_printf ("audio %u", a->id));
      field (sec, "id", TRUE, "%u", a->id);
      field (sec, "type", TRUE, "%s", S (a->type));
    }
  for (guint i = 0; i < dom->redirdevs->len; i++)
    {
      MdDomainRedirdev *r = dom->redirdevs->pdata[i];

      sec = section_new (out, "redirdevs", g_strdup_printf ("redirdev %u", i));
      field (sec, "alias", FALSE, "%s", S (r->alias));
      field_address (sec, &r->address);
    }
  for (guint i = 0; i < dom->watchdogs->len; i++)
    {
      MdDomainWatchdog *w = dom->watchdogs->pdata[i];

      sec = section_new (out, "watchdogs", g_strdup_printf ("watchdog %u", i));
      field (sec, "model", FALSE, "%s", S (w->model));
      field (sec, "alias", FALSE, "%s", S (w->alias));
      field_address (sec, &w->address);
      field (sec, "action", TRUE, "%s", S (w->action));
    }
  for (guint i = 0; i < dom->panics->len; i++)
    {
      MdDomainPanic *p = dom->panics->pdata[i];

      sec = section_new (out, "panics", g_strdup_printf ("panic %u", i));
      field (sec, "model", FALSE, "%s", S (p->model));
      field (sec, "alias", FALSE, "%s", S (p->alias));
      field_address (sec, &p->address);
    }
}

static GPtrArray *
describe (const MdDomain *dom)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) section_free);

  describe_domain (out, dom);
  describe_storage_net (out, dom);
  describe_ui (out, dom);
  describe_more (out, dom);
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
                                       "memballoon", "rngs",        "channels",   "sounds",
                                       "audios",     "redirdevs",   "watchdogs",  "panics",
                                       NULL };

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

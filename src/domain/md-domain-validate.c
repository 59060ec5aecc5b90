/* migrationd: guest definition checks (see md_domain_validate in md-domain.h). */
#include "config.h"

#include "md-domain.h"
#include "md-domain-private.h"
#include "common/md-error.h"

#include <stdarg.h>
#include <string.h>

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

gboolean
md_dom_invalid (GError **error, const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_XML, "domain definition: %s", msg);
  return FALSE;
}

void
md_dom_collect_devices (const MdDomain *dom, GArray *out)
{
#define ADD(arr, T)                                                                                \
  for (guint i = 0; i < (arr)->len; i++)                                                           \
    {                                                                                              \
      T *d_ = (arr)->pdata[i];                                                                     \
      DevRef r_ = { d_->alias, &d_->address, #T };                                                 \
      g_array_append_val (out, r_);                                                                \
    }
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];
      /* ICH9 UHCI companions carry their master's alias (as in libvirt). */
      gboolean companion = c->type == MD_DOMAIN_CONTROLLER_USB && c->model
                           && g_str_has_prefix (c->model, "ich9-uhci");
      DevRef r = { companion ? NULL : c->alias, &c->address, "MdDomainController" };

      g_array_append_val (out, r);
    }
  ADD (dom->disks, MdDomainDisk);
  ADD (dom->interfaces, MdDomainInterface);
  ADD (dom->videos, MdDomainVideo);
  ADD (dom->inputs, MdDomainInput);
  ADD (dom->rngs, MdDomainRng);
  ADD (dom->channels, MdDomainChannel);
  ADD (dom->sounds, MdDomainSound);
  ADD (dom->redirdevs, MdDomainRedirdev);
  ADD (dom->watchdogs, MdDomainWatchdog);
  ADD (dom->panics, MdDomainPanic);
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

/* The problems of one definition, collected rather than stopping at the
 * first; the error code is that of the first malformed input (InvalidXml,
 * InvalidArgument), NotSupported when all are things this host does not do. */
typedef struct
{
  GPtrArray *lines;
  MdError code;
} Problems;

static gboolean add_problem (Problems *p, MdError code, const char *format, ...)
    G_GNUC_PRINTF (3, 4);

static gboolean
add_problem (Problems *p, MdError code, const char *format, ...)
{
  va_list ap;

  va_start (ap, format);
  g_ptr_array_add (p->lines, g_strdup_vprintf (format, ap));
  va_end (ap);
  if (p->code == MD_ERROR_NOT_SUPPORTED)
    p->code = code;
  return FALSE;
}

#define invalid(p, ...) add_problem_invalid (p, __VA_ARGS__)
static gboolean add_problem_invalid (Problems *p, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
add_problem_invalid (Problems *p, const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  return add_problem (p, MD_ERROR_INVALID_XML, "domain definition: %s", msg);
}

#define unsupported(p, ...) add_problem (p, MD_ERROR_NOT_SUPPORTED, __VA_ARGS__)

static void
validate_basics (const MdDomain *dom, Problems *p)
{
  g_autoptr (GError) name_error = NULL;

  if (!md_domain_validate_name (dom->name, &name_error))
    add_problem (p, name_error->code, "%s", name_error->message);
  if (!dom->uuid || !g_uuid_string_is_valid (dom->uuid))
    invalid (p, "invalid UUID '%s'", dom->uuid ? dom->uuid : "");
  if (dom->memory == 0 || dom->current_memory == 0)
    invalid (p, "memory must be positive");
  if (dom->current_memory > dom->memory)
    invalid (p,
             "currentMemory (%" G_GUINT64_FORMAT " bytes) exceeds memory (%" G_GUINT64_FORMAT
             " bytes)",
             dom->current_memory, dom->memory);
  if (dom->vcpus < 1 || dom->vcpus_current < 1 || dom->vcpus_current > dom->vcpus)
    invalid (p, "vcpu must be >= 1 and current vcpus 1..%u", dom->vcpus);
  if (dom->cpu.sockets || dom->cpu.cores || dom->cpu.threads || dom->cpu.dies)
    {
      guint64 total = (guint64) MAX (dom->cpu.sockets, 1) * MAX (dom->cpu.dies, 1)
                      * MAX (dom->cpu.cores, 1) * MAX (dom->cpu.threads, 1);

      if (total != dom->vcpus)
        invalid (p, "CPU topology gives %" G_GUINT64_FORMAT " vcpus, <vcpu> says %u", total,
                 dom->vcpus);
    }
}

/* One disk's problems: only its first, since the later checks of the
 * same disk follow from the earlier ones (an ide disk on q35 also has no
 * ide controller). */
static gboolean
validate_disk (const MdDomain *dom, const MdDomainDisk *d, gboolean q35, GHashTable *seen,
               Problems *p)
{
  MdDomainControllerType ct = d->bus == MD_DOMAIN_DISK_BUS_IDE    ? MD_DOMAIN_CONTROLLER_IDE
                              : d->bus == MD_DOMAIN_DISK_BUS_SATA ? MD_DOMAIN_CONTROLLER_SATA
                                                                  : MD_DOMAIN_CONTROLLER_SCSI;
  guint max_unit = d->bus == MD_DOMAIN_DISK_BUS_IDE    ? 1
                   : d->bus == MD_DOMAIN_DISK_BUS_SATA ? 5
                                                       : 16383;
  g_autofree char *key = NULL;

  if (md_dom_target_index (d->target) < 0)
    return invalid (p, "invalid disk target '%s' (expected vdX, sdX or hdX)", d->target);
  if (g_hash_table_contains (seen, d->target))
    return invalid (p, "duplicate disk target '%s'", d->target);
  g_hash_table_add (seen, g_strdup (d->target));
  if (d->bus == MD_DOMAIN_DISK_BUS_IDE && q35)
    return unsupported (p, "disk %s: bus ide does not exist on q35 machines; use sata", d->target);
  if (d->bus == MD_DOMAIN_DISK_BUS_VIRTIO ? d->address.type == MD_DOMAIN_ADDRESS_DRIVE
                                          : d->address.type == MD_DOMAIN_ADDRESS_PCI)
    return invalid (p, "disk %s: address type does not fit bus %s", d->target,
                    md_dom_disk_bus_names[d->bus]);
  if (d->address.type != MD_DOMAIN_ADDRESS_DRIVE)
    return TRUE;
  if (d->address.unit > max_unit || (d->bus == MD_DOMAIN_DISK_BUS_IDE && d->address.drive_bus > 1)
      || (d->bus != MD_DOMAIN_DISK_BUS_IDE && d->address.drive_bus != 0))
    return invalid (p, "disk %s: drive address bus %u unit %u out of range for %s", d->target,
                    d->address.drive_bus, d->address.unit, md_dom_disk_bus_names[d->bus]);
  if (!md_dom_find_controller (dom, ct, d->address.controller))
    return invalid (p, "disk %s: no %s controller with index %u", d->target,
                    md_dom_controller_type_names[ct], d->address.controller);
  key = g_strdup_printf ("drive %d %u %u %u %u", d->bus, d->address.controller,
                         d->address.drive_bus, d->address.target, d->address.unit);
  if (g_hash_table_contains (seen, key))
    return invalid (p, "disk %s: drive address already used by another disk", d->target);
  g_hash_table_add (seen, g_steal_pointer (&key));
  return TRUE;
}

static void
validate_disks_nics (const MdDomain *dom, gboolean q35, Problems *p)
{
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gboolean any_boot_order = FALSE;

  for (guint i = 0; i < dom->disks->len; i++)
    {
      const MdDomainDisk *d = dom->disks->pdata[i];

      validate_disk (dom, d, q35, seen, p);
      any_boot_order |= d->boot_order != 0;
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      MdDomainInterface *n = dom->interfaces->pdata[i];

      if (n->mac && !md_dom_valid_mac (n->mac))
        invalid (p,
                 "invalid MAC address '%s' (expected six hex pairs like "
                 "52:54:00:12:34:56, not multicast)",
                 n->mac);
      any_boot_order |= n->boot_order != 0;
    }
  if (any_boot_order && dom->os.boot_devs->len > 0)
    invalid (p, "per-device <boot order> and <os><boot dev> cannot be mixed");
}

static void
validate_controllers (const MdDomain *dom, gboolean q35, Problems *p)
{
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      for (guint j = 0; j < i; j++)
        {
          MdDomainController *o = dom->controllers->pdata[j];

          if (o->type == c->type && o->index == c->index
              && !(g_strcmp0 (o->model, c->model) != 0 && c->type == MD_DOMAIN_CONTROLLER_USB
                   && g_str_has_prefix (o->model ? o->model : "", "ich9-")
                   && g_str_has_prefix (c->model ? c->model : "", "ich9-")))
            invalid (p, "duplicate controller type '%s' index %u",
                     md_dom_controller_type_names[c->type], c->index);
        }
      if (c->type == MD_DOMAIN_CONTROLLER_IDE && (q35 || c->index != 0))
        {
          unsupported (p,
                       "controller ide index %u: only the built-in ide controller of pc "
                       "machines (index 0)",
                       c->index);
        }
      if (c->type == MD_DOMAIN_CONTROLLER_PCI
          && (c->index == 0 ? g_strcmp0 (c->model, q35 ? "pcie-root" : "pci-root") != 0
                            : !q35 || g_strcmp0 (c->model, "pcie-root-port") != 0))
        {
          unsupported (p,
                       "controller pci index %u model '%s': supported are %s at index 0 and "
                       "pcie-root-port (q35 only) above",
                       c->index, c->model ? c->model : "", q35 ? "pcie-root" : "pci-root");
        }
    }
}

static void
validate_spice_users (const MdDomain *dom, guint n_spice, Problems *p)
{
  const char *user = NULL;

  for (guint i = 0; i < dom->channels->len && !user; i++)
    if (((MdDomainChannel *) dom->channels->pdata[i])->type == MD_DOMAIN_CHANNEL_SPICEVMC)
      user = "channel type='spicevmc'";
  if (dom->redirdevs->len > 0)
    user = "redirdev type='spicevmc'";
  for (guint i = 0; i < dom->audios->len && !user; i++)
    if (g_strcmp0 (((MdDomainAudio *) dom->audios->pdata[i])->type, "spice") == 0)
      user = "audio type='spice'";
  if (user && n_spice == 0)
    {
      unsupported (p, "%s needs <graphics type='spice'>; add one or remove it", user);
    }
}

static void
validate_devices (const MdDomain *dom, gboolean q35, Problems *p)
{
  guint n_vnc = 0, n_spice = 0;

  for (guint i = 0; i < dom->serials->len; i++)
    for (guint j = 0; j < i; j++)
      if (((MdDomainChardev *) dom->serials->pdata[i])->port
          == ((MdDomainChardev *) dom->serials->pdata[j])->port)
        invalid (p, "two serials on port %u", ((MdDomainChardev *) dom->serials->pdata[i])->port);
  for (guint i = 0; i < dom->graphics->len; i++)
    {
      MdDomainGraphics *g = dom->graphics->pdata[i];

      if ((g->type == MD_DOMAIN_GRAPHICS_VNC ? ++n_vnc : ++n_spice) > 1)
        invalid (p, "more than one %s graphics", md_dom_graphics_type_names[g->type]);
    }
  for (guint i = 0; i < dom->inputs->len; i++)
    {
      MdDomainInput *in = dom->inputs->pdata[i];
      MdDomainController *usb = md_dom_find_controller (dom, MD_DOMAIN_CONTROLLER_USB, 0);

      if (strcmp (in->bus, "usb") == 0 && (!usb || g_strcmp0 (usb->model, "none") == 0))
        invalid (p, "input %s on bus usb needs a USB controller", in->type);
    }

  for (guint i = 0; i < dom->sounds->len; i++)
    {
      MdDomainSound *snd = dom->sounds->pdata[i];
      gboolean found = FALSE;

      for (guint j = 0; j < dom->audios->len; j++)
        found |= ((MdDomainAudio *) dom->audios->pdata[j])->id == snd->audio_id;
      if (!found)
        invalid (p, "sound %s: no <audio id='%u'>", snd->model, snd->audio_id);
    }
  for (guint i = 0; i < dom->watchdogs->len; i++)
    if (!q35 && strcmp (((MdDomainWatchdog *) dom->watchdogs->pdata[i])->model, "itco") == 0)
      {
        unsupported (p, "watchdog itco is part of q35's ICH9 chipset; on pc use model='i6300esb'");
      }
  if (dom->smm && !q35)
    {
      unsupported (p, "<smm> is a q35 feature; remove it on pc machines");
    }
  validate_spice_users (dom, n_spice, p);
}

static void
validate_refs (const MdDomain *dom, Problems *p)
{
  g_autoptr (GArray) devs = g_array_new (FALSE, FALSE, sizeof (DevRef));
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);

  /* Aliases unique and well-formed; PCI addresses unique, on existing buses. */
  md_dom_collect_devices (dom, devs);
  for (guint i = 0; i < devs->len; i++)
    {
      DevRef *r = &g_array_index (devs, DevRef, i);
      g_autofree char *key = NULL;

      if (r->alias)
        {
          if (!valid_alias (r->alias))
            invalid (p,
                     "invalid device alias '%s' (1..20 characters from A-Z a-z "
                     "0-9 _ . -, starting with a letter)",
                     r->alias);
          if (g_hash_table_contains (seen, r->alias))
            invalid (p, "duplicate device alias '%s'", r->alias);
          g_hash_table_add (seen, g_strdup (r->alias));
        }
      if (!r->address || r->address->type != MD_DOMAIN_ADDRESS_PCI)
        continue;
      key =
          g_strdup_printf ("pci %u:%u.%u", r->address->bus, r->address->slot, r->address->function);
      if (g_hash_table_contains (seen, key))
        invalid (p, "device %s: PCI address %02x:%02x.%x is used twice", r->alias ? r->alias : "",
                 r->address->bus, r->address->slot, r->address->function);
      g_hash_table_add (seen, g_steal_pointer (&key));
      if (r->address->bus != 0
          && !md_dom_find_controller (dom, MD_DOMAIN_CONTROLLER_PCI, r->address->bus))
        invalid (p,
                 "device %s: PCI bus %u has no controller (add a pcie-root-port "
                 "with index %u)",
                 r->alias ? r->alias : "", r->address->bus, r->address->bus);
    }
}

gboolean
md_domain_validate (const MdDomain *dom, GError **error)
{
  gboolean q35 = md_domain_machine_is_q35 (dom->os.machine);
  Problems p = { g_ptr_array_new_with_free_func (g_free), MD_ERROR_NOT_SUPPORTED };
  g_autoptr (GString) text = g_string_new (NULL);

  /* Every problem at once, so a user fixes a file in one round. */
  validate_basics (dom, &p);
  validate_disks_nics (dom, q35, &p);
  validate_controllers (dom, q35, &p);
  validate_devices (dom, q35, &p);
  validate_refs (dom, &p);
  if (p.lines->len == 0)
    {
      g_ptr_array_unref (p.lines);
      return TRUE;
    }
  if (p.lines->len == 1)
    g_string_append (text, p.lines->pdata[0]);
  else
    {
      g_string_append_printf (text, "domain definition: %u problems:", p.lines->len);
      for (guint i = 0; i < p.lines->len; i++)
        {
          const char *line = p.lines->pdata[i];

          if (g_str_has_prefix (line, "domain definition: "))
            line += strlen ("domain definition: ");
          g_string_append_printf (text, "\n- %s", line);
        }
    }
  g_set_error_literal (error, MD_ERROR, p.code, text->str);
  g_ptr_array_unref (p.lines);
  return FALSE;
}

/* migrationd: formatting a domain as XML in the subset md-domain-xml.c parses. */
#include "config.h"

#include "md-domain.h"
#include "md-domain-private.h"
#include "common/md-error.h"

#include <string.h>

/* ---- formatting ---- */

static void
xattr (GString *s, const char *name, const char *value)
{
  g_autofree char *esc = NULL;

  if (!value)
    return;
  esc = g_markup_escape_text (value, -1);
  g_string_append_printf (s, " %s='%s'", name, esc);
}

static void
xelem_text (GString *s, int indent, const char *name, const char *text)
{
  g_autofree char *esc = NULL;

  if (!text)
    return;
  esc = g_markup_escape_text (text, -1);
  g_string_append_printf (s, "%*s<%s>%s</%s>\n", indent, "", name, esc, name);
}

static void
format_address (GString *s, int indent, const MdDomainAddress *a)
{
  switch (a->type)
    {
    case MD_DOMAIN_ADDRESS_PCI:
      g_string_append_printf (s,
                              "%*s<address type='pci' domain='0x%04x' bus='0x%02x' slot='0x%02x' "
                              "function='0x%x'%s/>\n",
                              indent, "", a->domain, a->bus, a->slot, a->function,
                              a->multifunction ? " multifunction='on'" : "");
      break;
    case MD_DOMAIN_ADDRESS_DRIVE:
      g_string_append_printf (s,
                              "%*s<address type='drive' controller='%u' bus='%u' target='%u' "
                              "unit='%u'/>\n",
                              indent, "", a->controller, a->drive_bus, a->target, a->unit);
      break;
    case MD_DOMAIN_ADDRESS_USB:
      g_string_append_printf (s, "%*s<address type='usb' bus='%u' port='%u'/>\n", indent, "",
                              a->usb_bus, a->usb_port);
      break;
    case MD_DOMAIN_ADDRESS_VIRTIO_SERIAL:
      g_string_append_printf (s,
                              "%*s<address type='virtio-serial' controller='%u' bus='%u' "
                              "port='%u'/>\n",
                              indent, "", a->controller, a->vs_bus, a->vs_port);
      break;
    case MD_DOMAIN_ADDRESS_NONE:
    default:
      break;
    }
}

static void
format_alias (GString *s, int indent, const char *alias)
{
  if (alias)
    {
      g_string_append_printf (s, "%*s<alias", indent, "");
      xattr (s, "name", alias);
      g_string_append (s, "/>\n");
    }
}

static void
format_memory (GString *s, const char *name, guint64 bytes)
{
  if (bytes % 1024 == 0)
    g_string_append_printf (s, "  <%s unit='KiB'>%" G_GUINT64_FORMAT "</%s>\n", name, bytes / 1024,
                            name);
  else
    g_string_append_printf (s, "  <%s unit='b'>%" G_GUINT64_FORMAT "</%s>\n", name, bytes, name);
}

static void
format_chardev (GString *s, const char *elem, const MdDomainChardev *c)
{
  g_string_append_printf (s, "    <%s type='%s'>\n", elem, md_dom_chardev_type_names[c->type]);
  if (c->path)
    {
      g_string_append (s, "      <source");
      xattr (s, "path", c->path);
      g_string_append (s, "/>\n");
    }
  g_string_append_printf (s, "      <target type='%s' port='%u'/>\n",
                          strcmp (elem, "console") == 0 ? "serial" : "isa-serial", c->port);
  format_alias (s, 6, c->alias);
  g_string_append_printf (s, "    </%s>\n", elem);
}

static void
format_os_features (GString *s, const MdDomain *dom)
{
  g_string_append (s, "  <os>\n    <type");
  xattr (s, "arch", dom->os.arch);
  xattr (s, "machine", dom->os.machine);
  g_string_append (s, ">hvm</type>\n");
  for (guint i = 0; i < dom->os.boot_devs->len; i++)
    g_string_append_printf (s, "    <boot dev='%s'/>\n", (char *) dom->os.boot_devs->pdata[i]);
  xelem_text (s, 4, "kernel", dom->os.kernel);
  xelem_text (s, 4, "initrd", dom->os.initrd);
  xelem_text (s, 4, "cmdline", dom->os.cmdline);
  g_string_append (s, "  </os>\n");

  if (dom->acpi || dom->apic || dom->pae || dom->vmport || dom->smm)
    {
      g_string_append (s, "  <features>\n");
      if (dom->acpi)
        g_string_append (s, "    <acpi/>\n");
      if (dom->apic)
        g_string_append (s, "    <apic/>\n");
      if (dom->pae)
        g_string_append (s, "    <pae/>\n");
      if (dom->vmport)
        g_string_append_printf (s, "    <vmport state='%s'/>\n",
                                md_dom_tristate_names[dom->vmport]);
      if (dom->smm)
        g_string_append_printf (s, "    <smm state='%s'/>\n", md_dom_tristate_names[dom->smm]);
      g_string_append (s, "  </features>\n");
    }
}

static void
format_cpu_clock (GString *s, const MdDomain *dom)
{
  if (dom->cpu.mode != MD_DOMAIN_CPU_MODE_NONE)
    {
      g_string_append_printf (s, "  <cpu mode='%s'", md_dom_cpu_mode_names[dom->cpu.mode]);
      if (dom->cpu.migratable)
        g_string_append_printf (s, " migratable='%s'", md_dom_tristate_names[dom->cpu.migratable]);
      g_string_append (s, ">\n");
      xelem_text (s, 4, "model", dom->cpu.model);
      if (dom->cpu.sockets || dom->cpu.dies || dom->cpu.cores || dom->cpu.threads)
        {
          g_string_append (s, "    <topology");
          if (dom->cpu.sockets)
            g_string_append_printf (s, " sockets='%u'", dom->cpu.sockets);
          if (dom->cpu.dies)
            g_string_append_printf (s, " dies='%u'", dom->cpu.dies);
          if (dom->cpu.cores)
            g_string_append_printf (s, " cores='%u'", dom->cpu.cores);
          if (dom->cpu.threads)
            g_string_append_printf (s, " threads='%u'", dom->cpu.threads);
          g_string_append (s, "/>\n");
        }
      for (guint i = 0; i < dom->cpu.features->len; i++)
        {
          MdDomainCpuFeature *f = dom->cpu.features->pdata[i];
          static const char *const policies[] = { "require", "disable", "force", "forbid" };

          g_string_append_printf (s, "    <feature policy='%s'",
                                  policies[f->policy + (f->forced ? 2 : 0)]);
          xattr (s, "name", f->name);
          g_string_append (s, "/>\n");
        }
      g_string_append (s, "  </cpu>\n");
    }

  g_string_append_printf (s, "  <clock offset='%s'", md_dom_clock_offset_names[dom->clock_offset]);
  if (dom->timers->len == 0)
    g_string_append (s, "/>\n");
  else
    {
      g_string_append (s, ">\n");
      for (guint i = 0; i < dom->timers->len; i++)
        {
          MdDomainTimer *t = dom->timers->pdata[i];

          g_string_append (s, "    <timer");
          xattr (s, "name", t->name);
          xattr (s, "tickpolicy", t->tickpolicy);
          if (t->present)
            xattr (s, "present", t->present == MD_DOMAIN_TRISTATE_ON ? "yes" : "no");
          g_string_append (s, "/>\n");
        }
      g_string_append (s, "  </clock>\n");
    }
  if (dom->on_poweroff)
    xelem_text (s, 2, "on_poweroff", md_dom_lifecycle_names[dom->on_poweroff]);
  if (dom->on_reboot)
    xelem_text (s, 2, "on_reboot", md_dom_lifecycle_names[dom->on_reboot]);
  if (dom->on_crash)
    xelem_text (s, 2, "on_crash", md_dom_lifecycle_names[dom->on_crash]);
  if (dom->suspend_to_mem || dom->suspend_to_disk)
    {
      g_string_append (s, "  <pm>\n");
      if (dom->suspend_to_mem)
        g_string_append_printf (s, "    <suspend-to-mem enabled='%s'/>\n",
                                dom->suspend_to_mem == MD_DOMAIN_TRISTATE_ON ? "yes" : "no");
      if (dom->suspend_to_disk)
        g_string_append_printf (s, "    <suspend-to-disk enabled='%s'/>\n",
                                dom->suspend_to_disk == MD_DOMAIN_TRISTATE_ON ? "yes" : "no");
      g_string_append (s, "  </pm>\n");
    }
}

static void
format_disk (GString *s, const MdDomainDisk *d)
{

  g_string_append_printf (s, "    <disk type='%s' device='%s'>\n", md_dom_disk_type_names[d->type],
                          md_dom_disk_device_names[d->device]);
  g_string_append_printf (s, "      <driver name='qemu' type='%s'",
                          md_dom_disk_format_names[d->format]);
  if (d->cache)
    xattr (s, "cache", md_dom_disk_cache_names[d->cache]);
  if (d->discard)
    xattr (s, "discard", md_dom_disk_discard_names[d->discard]);
  if (d->io)
    xattr (s, "io", md_dom_disk_io_names[d->io]);
  if (d->detect_zeroes)
    xattr (s, "detect_zeroes", md_dom_disk_detect_zeroes_names[d->detect_zeroes]);
  g_string_append (s, "/>\n");
  if (d->source)
    {
      g_string_append (s, "      <source");
      xattr (s, d->type == MD_DOMAIN_DISK_TYPE_FILE ? "file" : "dev", d->source);
      g_string_append (s, "/>\n");
    }
  g_string_append (s, "      <target");
  xattr (s, "dev", d->target);
  xattr (s, "bus", md_dom_disk_bus_names[d->bus]);
  g_string_append (s, "/>\n");
  if (d->readonly)
    g_string_append (s, "      <readonly/>\n");
  if (d->shareable)
    g_string_append (s, "      <shareable/>\n");
  xelem_text (s, 6, "serial", d->serial);
  if (d->boot_order)
    g_string_append_printf (s, "      <boot order='%u'/>\n", d->boot_order);
  format_alias (s, 6, d->alias);
  format_address (s, 6, &d->address);
  g_string_append (s, "    </disk>\n");
}

static void
format_interface (GString *s, const MdDomainInterface *n)
{

  g_string_append_printf (s, "    <interface type='%s'>\n", md_dom_interface_type_names[n->type]);
  g_string_append (s, "      <mac");
  xattr (s, "address", n->mac);
  g_string_append (s, "/>\n");
  if (n->source)
    {
      g_string_append (s, "      <source");
      xattr (s, n->type == MD_DOMAIN_INTERFACE_BRIDGE ? "bridge" : "network", n->source);
      g_string_append (s, "/>\n");
    }
  g_string_append (s, "      <model");
  xattr (s, "type", n->model);
  g_string_append (s, "/>\n");
  if (n->boot_order)
    g_string_append_printf (s, "      <boot order='%u'/>\n", n->boot_order);
  format_alias (s, 6, n->alias);
  format_address (s, 6, &n->address);
  g_string_append (s, "    </interface>\n");
}

static void
format_graphics (GString *s, const MdDomainGraphics *g)
{
  g_string_append_printf (s, "    <graphics type='%s'", md_dom_graphics_type_names[g->type]);
  if (!g->autoport)
    g_string_append_printf (s, " port='%d'", g->port);
  xattr (s, "autoport", g->autoport ? "yes" : "no");
  xattr (s, "listen", g->listen);
  xattr (s, "passwd", g->passwd);
  if (!g->image_compression)
    {
      g_string_append (s, "/>\n");
      return;
    }
  g_string_append (s, ">\n      <image");
  xattr (s, "compression", g->image_compression);
  g_string_append (s, "/>\n    </graphics>\n");
}

static void
format_channels_sound (GString *s, const MdDomain *dom)
{
  for (guint i = 0; i < dom->channels->len; i++)
    {
      MdDomainChannel *c = dom->channels->pdata[i];

      g_string_append_printf (s, "    <channel type='%s'>\n", md_dom_channel_type_names[c->type]);
      if (c->type == MD_DOMAIN_CHANNEL_UNIX)
        g_string_append (s, "      <source mode='bind'/>\n");
      g_string_append (s, "      <target type='virtio'");
      xattr (s, "name", c->target_name);
      g_string_append (s, "/>\n");
      format_alias (s, 6, c->alias);
      format_address (s, 6, &c->address);
      g_string_append (s, "    </channel>\n");
    }
  for (guint i = 0; i < dom->sounds->len; i++)
    {
      MdDomainSound *snd = dom->sounds->pdata[i];

      g_string_append (s, "    <sound");
      xattr (s, "model", snd->model);
      g_string_append (s, ">\n");
      if (snd->audio_id)
        g_string_append_printf (s, "      <audio id='%u'/>\n", snd->audio_id);
      format_alias (s, 6, snd->alias);
      format_address (s, 6, &snd->address);
      g_string_append (s, "    </sound>\n");
    }
  for (guint i = 0; i < dom->audios->len; i++)
    {
      MdDomainAudio *a = dom->audios->pdata[i];

      g_string_append_printf (s, "    <audio id='%u'", a->id);
      xattr (s, "type", a->type);
      g_string_append (s, "/>\n");
    }
}

static void
format_misc_devices (GString *s, const MdDomain *dom)
{
  for (guint i = 0; i < dom->redirdevs->len; i++)
    {
      MdDomainRedirdev *r = dom->redirdevs->pdata[i];

      g_string_append (s, "    <redirdev bus='usb' type='spicevmc'>\n");
      format_alias (s, 6, r->alias);
      format_address (s, 6, &r->address);
      g_string_append (s, "    </redirdev>\n");
    }
  for (guint i = 0; i < dom->watchdogs->len; i++)
    {
      MdDomainWatchdog *w = dom->watchdogs->pdata[i];

      g_string_append (s, "    <watchdog");
      xattr (s, "model", w->model);
      xattr (s, "action", w->action);
      g_string_append (s, ">\n");
      format_alias (s, 6, w->alias);
      format_address (s, 6, &w->address);
      g_string_append (s, "    </watchdog>\n");
    }
  for (guint i = 0; i < dom->panics->len; i++)
    {
      MdDomainPanic *p = dom->panics->pdata[i];

      g_string_append (s, "    <panic");
      xattr (s, "model", p->model);
      g_string_append (s, ">\n");
      format_alias (s, 6, p->alias);
      format_address (s, 6, &p->address);
      g_string_append (s, "    </panic>\n");
    }
}

static void
format_inputs_graphics_videos (GString *s, const MdDomain *dom)
{
  for (guint i = 0; i < dom->inputs->len; i++)
    {
      MdDomainInput *in = dom->inputs->pdata[i];

      g_string_append (s, "    <input");
      xattr (s, "type", in->type);
      xattr (s, "bus", in->bus);
      g_string_append (s, ">\n");
      format_alias (s, 6, in->alias);
      format_address (s, 6, &in->address);
      g_string_append (s, "    </input>\n");
    }
  for (guint i = 0; i < dom->graphics->len; i++)
    format_graphics (s, dom->graphics->pdata[i]);
  for (guint i = 0; i < dom->videos->len; i++)
    {
      MdDomainVideo *v = dom->videos->pdata[i];

      g_string_append (s, "    <video>\n      <model");
      xattr (s, "type", v->model);
      if (v->vram)
        g_string_append_printf (s, " vram='%u'", v->vram);
      if (v->heads)
        g_string_append_printf (s, " heads='%u'", v->heads);
      g_string_append (s, "/>\n");
      format_alias (s, 6, v->alias);
      format_address (s, 6, &v->address);
      g_string_append (s, "    </video>\n");
    }
  if (dom->memballoon)
    {
      g_string_append (s, "    <memballoon");
      xattr (s, "model", dom->memballoon->model);
      g_string_append (s, ">\n");
      format_alias (s, 6, dom->memballoon->alias);
      format_address (s, 6, &dom->memballoon->address);
      g_string_append (s, "    </memballoon>\n");
    }
  for (guint i = 0; i < dom->rngs->len; i++)
    {
      MdDomainRng *r = dom->rngs->pdata[i];

      g_string_append (s, "    <rng");
      xattr (s, "model", r->model);
      g_string_append (s, ">\n");
      if (r->backend)
        {
          g_autofree char *esc = g_markup_escape_text (r->backend, -1);

          g_string_append_printf (s, "      <backend model='random'>%s</backend>\n", esc);
        }
      format_alias (s, 6, r->alias);
      format_address (s, 6, &r->address);
      g_string_append (s, "    </rng>\n");
    }
}

char *
md_domain_format (const MdDomain *dom)
{
  GString *s = g_string_new (NULL);

  g_string_append (s, "<domain");
  xattr (s, "type", dom->virt_type ? dom->virt_type : "kvm");
  g_string_append (s, ">\n");
  xelem_text (s, 2, "name", dom->name);
  xelem_text (s, 2, "uuid", dom->uuid);
  xelem_text (s, 2, "title", dom->title);
  xelem_text (s, 2, "description", dom->description);
  if (dom->metadata)
    g_string_append_printf (s, "  <metadata>%s</metadata>\n", dom->metadata);
  format_memory (s, "memory", dom->memory);
  format_memory (s, "currentMemory", dom->current_memory);
  if (dom->vcpus_current != dom->vcpus)
    g_string_append_printf (s, "  <vcpu current='%u'>%u</vcpu>\n", dom->vcpus_current, dom->vcpus);
  else
    g_string_append_printf (s, "  <vcpu>%u</vcpu>\n", dom->vcpus);
  format_os_features (s, dom);
  format_cpu_clock (s, dom);

  g_string_append (s, "  <devices>\n");
  xelem_text (s, 4, "emulator", dom->emulator);
  for (guint i = 0; i < dom->disks->len; i++)
    format_disk (s, dom->disks->pdata[i]);
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      g_string_append_printf (s, "    <controller type='%s' index='%u'",
                              md_dom_controller_type_names[c->type], c->index);
      xattr (s, "model", c->model);
      g_string_append (s, ">\n");
      format_alias (s, 6, c->alias);
      format_address (s, 6, &c->address);
      g_string_append (s, "    </controller>\n");
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    format_interface (s, dom->interfaces->pdata[i]);
  for (guint i = 0; i < dom->serials->len; i++)
    format_chardev (s, "serial", dom->serials->pdata[i]);
  for (guint i = 0; i < dom->consoles->len; i++)
    format_chardev (s, "console", dom->consoles->pdata[i]);
  format_channels_sound (s, dom);
  format_inputs_graphics_videos (s, dom);
  format_misc_devices (s, dom);
  g_string_append (s, "  </devices>\n</domain>\n");
  return g_string_free (s, FALSE);
}

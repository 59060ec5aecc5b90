/* migrationd: device aliases and addresses (md_domain_assign_addresses). */
#include "config.h"

#include "md-domain.h"
#include "md-domain-private.h"
#include "common/md-error.h"

#include <stdarg.h>
#include <string.h>

/* ---- aliases and addresses ---- */

static MdDomainController *
ensure_controller (MdDomain *dom, MdDomainControllerType type, guint index, const char *model)
{
  MdDomainController *c = md_dom_find_controller (dom, type, index);

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

static void
assign_more_aliases (MdDomain *dom)
{
  guint vs_port = 0;

  for (guint i = 0; i < dom->channels->len; i++)
    {
      MdDomainChannel *c = dom->channels->pdata[i];

      if (!c->alias)
        c->alias = g_strdup_printf ("channel%u", i);
      if (c->address.type == MD_DOMAIN_ADDRESS_VIRTIO_SERIAL)
        vs_port = MAX (vs_port, c->address.vs_port);
    }
  for (guint i = 0; i < dom->channels->len; i++)
    {
      MdDomainChannel *c = dom->channels->pdata[i];

      if (c->address.type == MD_DOMAIN_ADDRESS_NONE)
        {
          c->address.type = MD_DOMAIN_ADDRESS_VIRTIO_SERIAL;
          c->address.vs_port = ++vs_port;
        }
    }
  /* A sound card without <audio> plays into the first backend; one is
   * added when there is none (spice with SPICE graphics, else none), as
   * libvirt does, so the definition says where sound goes. */
  if (dom->sounds->len > 0 && dom->audios->len == 0)
    {
      MdDomainAudio *a = g_new0 (MdDomainAudio, 1);
      gboolean spice = FALSE;

      for (guint i = 0; i < dom->graphics->len; i++)
        spice |= ((MdDomainGraphics *) dom->graphics->pdata[i])->type == MD_DOMAIN_GRAPHICS_SPICE;
      a->id = 1;
      a->type = g_strdup (spice ? "spice" : "none");
      g_ptr_array_add (dom->audios, a);
    }
  for (guint i = 0; i < dom->sounds->len; i++)
    {
      MdDomainSound *snd = dom->sounds->pdata[i];

      if (!snd->alias)
        snd->alias = g_strdup_printf ("sound%u", i);
      if (!snd->audio_id)
        snd->audio_id = ((MdDomainAudio *) dom->audios->pdata[0])->id;
    }
  for (guint i = 0; i < dom->watchdogs->len; i++)
    {
      MdDomainWatchdog *w = dom->watchdogs->pdata[i];

      if (!w->alias)
        w->alias = g_strdup_printf ("watchdog%u", i);
    }
  for (guint i = 0; i < dom->panics->len; i++)
    {
      MdDomainPanic *p = dom->panics->pdata[i];

      if (!p->alias)
        p->alias = g_strdup_printf ("panic%u", i);
    }
}

/* ICH9 USB 2: the EHCI master is function 7 of a slot, its UHCI
 * companions functions 0-2 of the same slot. */
static int
usb2_function (const MdDomainController *c)
{
  static const char *const models[] = { "ich9-uhci1", "ich9-uhci2", "ich9-uhci3", NULL };
  int idx;

  if (c->type != MD_DOMAIN_CONTROLLER_USB || !c->model)
    return -1;
  if (strcmp (c->model, "ich9-ehci1") == 0)
    return 7;
  idx = md_dom_lookup (models, c->model);
  return idx;
}

static gboolean
place_usb2_group (MdDomain *dom, SlotMap *map, MdDomainController *c, GError **error)
{
  int fn = usb2_function (c);

  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *o = dom->controllers->pdata[i];

      if (o != c && o->index == c->index && usb2_function (o) >= 0
          && o->address.type == MD_DOMAIN_ADDRESS_PCI)
        {
          set_pci (&c->address, o->address.slot, fn);
          c->address.bus = o->address.bus;
          c->address.multifunction = fn == 0;
          return TRUE;
        }
    }
  if (!take_slot (map, &c->address, error))
    return FALSE;
  c->address.function = fn;
  c->address.multifunction = fn == 0;
  return TRUE;
}

static gboolean
assign_pci_slots (MdDomain *dom, gboolean q35, GError **error)
{
  g_autoptr (GArray) devs = g_array_new (FALSE, FALSE, sizeof (DevRef));
  SlotMap map = { 0 };

  /* PCI slots on bus 0: reserve what is fixed or already given. */
  map.used = 1u << 0 | (q35 ? 1u << 0x1f : 1u << 1);
  md_dom_collect_devices (dom, devs);
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

      if (usb2_function (c) >= 0 && c->address.type == MD_DOMAIN_ADDRESS_NONE)
        {
          if (!place_usb2_group (dom, &map, c, error))
            return FALSE;
        }
      else if (controller_on_pci (c, q35) && !take_slot (&map, &c->address, error))
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
  for (guint i = 0; i < dom->sounds->len; i++)
    if (!take_slot (&map, &((MdDomainSound *) dom->sounds->pdata[i])->address, error))
      return FALSE;
  for (guint i = 0; i < dom->watchdogs->len; i++)
    {
      MdDomainWatchdog *w = dom->watchdogs->pdata[i];

      if (strcmp (w->model, "i6300esb") == 0 && !take_slot (&map, &w->address, error))
        return FALSE;
    }
  for (guint i = 0; i < dom->panics->len; i++)
    {
      MdDomainPanic *p = dom->panics->pdata[i];

      if (strcmp (p->model, "pvpanic") == 0 && !take_slot (&map, &p->address, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
assign_disk_addresses (MdDomain *dom, GError **error)
{
  /* Disks: drive addresses from the target name, aliases from addresses. */
  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];
      int idx = md_dom_target_index (d->target);
      MdDomainAddress *a = &d->address;

      if (idx < 0)
        return md_dom_invalid (error, "invalid disk target '%s'", d->target ? d->target : "");
      if (d->bus != MD_DOMAIN_DISK_BUS_VIRTIO && a->type == MD_DOMAIN_ADDRESS_NONE)
        {
          a->type = MD_DOMAIN_ADDRESS_DRIVE;
          if (d->bus == MD_DOMAIN_DISK_BUS_IDE)
            a->drive_bus = idx / 2, a->unit = idx % 2;
          else if (d->bus == MD_DOMAIN_DISK_BUS_SATA)
            a->controller = idx / 6, a->unit = idx % 6;
          else
            a->controller = idx / 7, a->unit = idx % 7;
          /* The same bound the XML parser puts on a written controller
           * index, so what dumpxml prints defines again. */
          if (a->controller > MD_DOMAIN_CONTROLLER_INDEX_MAX)
            return md_dom_invalid (error,
                                   "disk %s: this target would need %s controller %u, and the "
                                   "highest index is %u; use a lower target name",
                                   d->target, md_dom_disk_bus_names[d->bus], a->controller,
                                   MD_DOMAIN_CONTROLLER_INDEX_MAX);
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

  return TRUE;
}

static void
add_implicit_controllers (MdDomain *dom, gboolean q35)
{
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
  if (dom->redirdevs->len > 0)
    ensure_controller (dom, MD_DOMAIN_CONTROLLER_USB, 0, q35 ? "qemu-xhci" : "piix3-uhci");
  if (dom->channels->len > 0)
    ensure_controller (dom, MD_DOMAIN_CONTROLLER_VIRTIO_SERIAL, 0, NULL);
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
          /* ICH9 UHCI companions share their EHCI master's alias, as in libvirt. */
          c->alias = c->index == 0 ? g_strdup ("usb") : g_strdup_printf ("usb%u", c->index);
          break;
        case MD_DOMAIN_CONTROLLER_VIRTIO_SERIAL:
        default:
          c->alias = g_strdup_printf ("virtio-serial%u", c->index);
          break;
        }
    }
}

static void
assign_aliases (MdDomain *dom)
{
  guint usb_port = 0;

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
  for (guint i = 0; i < dom->redirdevs->len; i++)
    {
      MdDomainRedirdev *r = dom->redirdevs->pdata[i];

      if (!r->alias)
        r->alias = g_strdup_printf ("redir%u", i);
      if (r->address.type == MD_DOMAIN_ADDRESS_USB)
        usb_port = MAX (usb_port, r->address.usb_port);
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
  for (guint i = 0; i < dom->redirdevs->len; i++)
    {
      MdDomainRedirdev *r = dom->redirdevs->pdata[i];

      if (r->address.type == MD_DOMAIN_ADDRESS_NONE)
        {
          r->address.type = MD_DOMAIN_ADDRESS_USB;
          r->address.usb_port = ++usb_port;
        }
    }
  for (guint i = 0; i < dom->rngs->len; i++)
    {
      MdDomainRng *r = dom->rngs->pdata[i];

      if (!r->alias)
        r->alias = g_strdup_printf ("rng%u", i);
    }
}

gboolean
md_domain_assign_addresses (MdDomain *dom, GError **error)
{
  gboolean q35 = md_domain_machine_is_q35 (dom->os.machine);

  if (!assign_disk_addresses (dom, error))
    return FALSE;
  add_implicit_controllers (dom, q35);
  assign_aliases (dom);
  assign_more_aliases (dom);
  return assign_pci_slots (dom, q35, error);
}

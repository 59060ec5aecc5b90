/* migrationd: parsing the <devices> of the domain XML subset (see md-domain.h). */
#include "config.h"

#include "md-domain.h"
#include "md-domain-private.h"
#include "md-domain-xml-private.h"
#include "common/md-error.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <stdarg.h>
#include <string.h>

static gboolean
parse_disk_driver (MdDomainDisk *d, xmlNode *c, GError **error)
{
  g_autofree char *name = mdx_attr (c, "name");
  int v;

  /* queues, iothread, error_policy...: libvirt writes them only when asked. */
  if (!mdx_check_attrs (
          c,
          (const char *const[]){ "name", "type", "cache", "discard", "io", "detect_zeroes", NULL },
          NULL, error))
    return FALSE;
  if (name && strcmp (name, "qemu") != 0)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, c, "driver name='%s' (only 'qemu')",
                           name);
  v = d->format;
  if (!mdx_enum_attr (c, "type", md_dom_disk_format_names, FALSE, &v, error))
    return FALSE;
  d->format = v;
  v = d->cache;
  if (!mdx_enum_attr (c, "cache", md_dom_disk_cache_names, FALSE, &v, error))
    return FALSE;
  d->cache = v;
  v = d->discard;
  if (!mdx_enum_attr (c, "discard", md_dom_disk_discard_names, FALSE, &v, error))
    return FALSE;
  d->discard = v;
  v = d->io;
  if (!mdx_enum_attr (c, "io", md_dom_disk_io_names, FALSE, &v, error))
    return FALSE;
  d->io = v;
  v = d->detect_zeroes;
  if (!mdx_enum_attr (c, "detect_zeroes", md_dom_disk_detect_zeroes_names, FALSE, &v, error))
    return FALSE;
  d->detect_zeroes = v;
  return TRUE;
}

/* Target bus from the name when <target bus=> is absent, as libvirt does. */
static gboolean
guess_disk_bus (MdDomainDisk *d, xmlNode *node, GError **error)
{
  if (g_str_has_prefix (d->target, "vd"))
    d->bus = MD_DOMAIN_DISK_BUS_VIRTIO;
  else if (g_str_has_prefix (d->target, "hd"))
    d->bus = MD_DOMAIN_DISK_BUS_IDE;
  else if (g_str_has_prefix (d->target, "sd"))
    d->bus = MD_DOMAIN_DISK_BUS_SCSI;
  else
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                           "cannot guess the bus of target '%s'; add bus=", d->target);
  return TRUE;
}

static gboolean
parse_disk (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_disk_free);
  MdDomainDisk *d = g_new0 (MdDomainDisk, 1);
  int v;
  gboolean have_target = FALSE, have_bus = FALSE;

  g_ptr_array_add (holder, d);
  if (!mdx_check_attrs (node, (const char *const[]){ "type", "device", NULL }, NULL, error))
    return FALSE;
  v = 0;
  if (!mdx_enum_attr (node, "type", md_dom_disk_type_names, TRUE, &v, error))
    return mdx_hint_append (error, "use type='file' (an image) or 'block' (a device) that both "
                                   "hosts can reach");
  d->type = v;
  v = 0;
  if (!mdx_enum_attr (node, "device", md_dom_disk_device_names, FALSE, &v, error))
    return FALSE;
  d->device = v;

  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "driver"))
      {
        if (!parse_disk_driver (d, c, error))
          return FALSE;
      }
    else if (IS (c, "source"))
      {
        const char *key = d->type == MD_DOMAIN_DISK_TYPE_FILE ? "file" : "dev";

        if (!mdx_check_attrs (c, (const char *const[]){ key, NULL },
                              (const char *const[]){ "index", NULL }, error))
          return FALSE;
        g_free (d->source);
        d->source = mdx_attr (c, key);
        if (!d->source || !g_path_is_absolute (d->source))
          return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "%s= must be an absolute path",
                                 key);
      }
    else if (IS (c, "target"))
      {
        g_autofree char *bus = mdx_attr (c, "bus");

        if (!mdx_check_attrs (c, (const char *const[]){ "dev", "bus", NULL }, NULL, error))
          return FALSE;
        g_free (d->target);
        d->target = mdx_attr (c, "dev");
        if (!d->target)
          return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'dev'");
        have_target = TRUE;
        if (bus)
          {
            v = 0;
            if (!mdx_enum_attr (c, "bus", md_dom_disk_bus_names, FALSE, &v, error))
              return FALSE;
            d->bus = v;
            have_bus = TRUE;
          }
      }
    else if (IS (c, "readonly") || IS (c, "shareable"))
      {
        if (!mdx_check_attrs (c, NULL, NULL, error))
          return FALSE;
        if (IS (c, "readonly"))
          d->readonly = TRUE;
        else
          d->shareable = TRUE;
      }
    else if (IS (c, "serial"))
      {
        g_free (d->serial);
        d->serial = mdx_text_of (c);
      }
    else if (IS (c, "boot"))
      {
        if (!mdx_parse_boot_order (c, &d->boot_order, error))
          return FALSE;
      }
    else if (IS (c, "backingStore"))
      {
        /* virsh dumpxml shows the chain it found; QEMU reads the same
         * chain from the qcow2 header, so the description is not kept. */
        g_info ("domain XML line %ld: ignoring <backingStore> (QEMU follows the image's own "
                "backing file)",
                xmlGetLineNo (c));
      }
    else
      COMMON_OR_FAIL (node, c, &d->alias, &d->address);
  }
  if (!have_target)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing <target dev=...>");
  if (!have_bus && !guess_disk_bus (d, node, error))
    return FALSE;
  for (guint i = 0; i < dom->disks->len; i++)
    if (strcmp (((MdDomainDisk *) dom->disks->pdata[i])->target, d->target) == 0)
      return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "duplicate disk target '%s'",
                             d->target);
  if (md_dom_target_index (d->target) < 0)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                           "invalid disk target '%s' (expected vdX, sdX or hdX)", d->target);
  if (!d->source && d->device != MD_DOMAIN_DISK_DEVICE_CDROM)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "disk %s has no <source>", d->target);
  if (d->device == MD_DOMAIN_DISK_DEVICE_CDROM)
    {
      if (d->bus == MD_DOMAIN_DISK_BUS_VIRTIO)
        return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                               "cdrom %s on bus virtio; use sata, ide or scsi", d->target);
      d->readonly = TRUE;
    }
  g_ptr_array_add (dom->disks, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_controller (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_controller_free);
  MdDomainController *c = g_new0 (MdDomainController, 1);
  int v = 0;

  g_ptr_array_add (holder, c);
  if (!mdx_check_attrs (node, (const char *const[]){ "type", "index", "model", NULL },
                        (const char *const[]){ "ports", "vectors", NULL }, error)
      || !mdx_enum_attr (node, "type", md_dom_controller_type_names, TRUE, &v, error)
      || !mdx_uint_attr (node, "index", MD_DOMAIN_CONTROLLER_INDEX_MAX, &c->index, error)
      || !mdx_string_attr_in (node, "model", md_dom_controller_models, &c->model, error))
    return FALSE;
  c->type = v;
  if (!xmlHasProp (node, (const xmlChar *) "index") && c->type == MD_DOMAIN_CONTROLLER_PCI
      && g_strcmp0 (c->model, "pci-root") != 0 && g_strcmp0 (c->model, "pcie-root") != 0)
    {
      /* virt-install writes root ports without an index; libvirt numbers
       * them in order after the root. */
      for (guint i = 0; i < dom->controllers->len; i++)
        {
          MdDomainController *o = dom->controllers->pdata[i];

          if (o->type == MD_DOMAIN_CONTROLLER_PCI)
            c->index = MAX (c->index, o->index + 1);
        }
      c->index = MAX (c->index, 1);
    }
  FOREACH_ELEMENT (node, ch)
  {
    if (IS (ch, "model") || IS (ch, "target") || IS (ch, "master"))
      g_info ("domain XML line %ld: ignoring <controller><%s> (derived from index and model)",
              xmlGetLineNo (ch), (const char *) ch->name);
    else
      COMMON_OR_FAIL (node, ch, &c->alias, &c->address);
  }
  g_ptr_array_add (dom->controllers, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_interface (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_interface_free);
  MdDomainInterface *i = g_new0 (MdDomainInterface, 1);
  int v = 0;

  g_ptr_array_add (holder, i);
  if (!mdx_check_attrs (node, (const char *const[]){ "type", NULL }, NULL, error)
      || !mdx_enum_attr (node, "type", md_dom_interface_type_names, TRUE, &v, error))
    return mdx_hint_append (error, "use type='bridge' (through qemu-bridge-helper), 'network' "
                                   "(mapped in [networks]) or 'user'");
  i->type = v;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "mac"))
      {
        if (!mdx_check_attrs (c, (const char *const[]){ "address", NULL }, NULL, error))
          return FALSE;
        g_free (i->mac);
        i->mac = mdx_attr (c, "address");
        if (!i->mac)
          return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'address'");
      }
    else if (IS (c, "source"))
      {
        const char *key = i->type == MD_DOMAIN_INTERFACE_BRIDGE    ? "bridge"
                          : i->type == MD_DOMAIN_INTERFACE_NETWORK ? "network"
                                                                   : "";

        if (!mdx_check_attrs (
                c, (const char *const[]){ key, NULL },
                (const char *const[]){
                    "portid", i->type == MD_DOMAIN_INTERFACE_NETWORK ? "bridge" : NULL, NULL },
                error))
          return FALSE;
        g_free (i->source);
        i->source = mdx_attr (c, key);
      }
    else if (IS (c, "model"))
      {
        if (!mdx_check_attrs (c, (const char *const[]){ "type", NULL }, NULL, error)
            || !mdx_string_attr_in (c, "type", md_dom_nic_models, &i->model, error))
          return FALSE;
      }
    else if (IS (c, "boot"))
      {
        if (!mdx_parse_boot_order (c, &i->boot_order, error))
          return FALSE;
      }
    else if (IS (c, "target"))
      g_info ("domain XML line %ld: ignoring <interface><target> (host side)", xmlGetLineNo (c));
    else
      COMMON_OR_FAIL (node, c, &i->alias, &i->address);
  }
  if (i->type != MD_DOMAIN_INTERFACE_USER && !i->source)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                           "interface type '%s' needs <source %s=>",
                           md_dom_interface_type_names[i->type],
                           i->type == MD_DOMAIN_INTERFACE_BRIDGE ? "bridge" : "network");
  if (!i->model)
    i->model = g_strdup ("virtio");
  if (i->mac)
    {
      char *lower = g_ascii_strdown (i->mac, -1);

      g_free (i->mac);
      i->mac = lower;
      if (!md_dom_valid_mac (i->mac))
        return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                               "invalid MAC address '%s' (expected six hex pairs like "
                               "52:54:00:12:34:56, not multicast)",
                               i->mac);
    }
  g_ptr_array_add (dom->interfaces, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_chardev (MdDomain *dom, xmlNode *node, gboolean console, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_chardev_free);
  MdDomainChardev *c = g_new0 (MdDomainChardev, 1);
  int v = 0;

  g_ptr_array_add (holder, c);
  if (!mdx_check_attrs (node, (const char *const[]){ "type", NULL },
                        (const char *const[]){ "tty", NULL }, error)
      || !mdx_enum_attr (node, "type", md_dom_chardev_type_names, TRUE, &v, error))
    return FALSE;
  c->type = v;
  FOREACH_ELEMENT (node, ch)
  {
    if (IS (ch, "source"))
      {
        if (!mdx_check_attrs (ch, (const char *const[]){ "path", NULL },
                              (const char *const[]){ "append", NULL }, error))
          return FALSE;
        if (c->type == MD_DOMAIN_CHARDEV_FILE)
          {
            g_free (c->path);
            c->path = mdx_attr (ch, "path");
            if (!c->path || !g_path_is_absolute (c->path))
              return mdx_node_error (error, MD_ERROR_INVALID_XML, ch,
                                     "path= must be an absolute path");
          }
      }
    else if (IS (ch, "target"))
      {
        g_autofree char *type = mdx_attr (ch, "type");
        const char *want = console ? "serial" : "isa-serial";

        if (!mdx_check_attrs (ch, (const char *const[]){ "type", "port", NULL }, NULL, error)
            || !mdx_uint_attr (ch, "port", 3, &c->port, error))
          return FALSE;
        if (type && strcmp (type, want) != 0)
          return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, ch, "target type='%s' (only '%s')",
                                 type, want);
        FOREACH_ELEMENT (ch, m)
        {
          g_autofree char *name = mdx_attr (m, "name");

          if (!IS (m, "model"))
            return mdx_unexpected_element (error, ch, m);
          if (!mdx_check_attrs (m, (const char *const[]){ "name", NULL }, NULL, error))
            return FALSE;
          if (!name || strcmp (name, "isa-serial") != 0)
            return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, m, "only model isa-serial");
        }
      }
    else
      COMMON_OR_FAIL (node, ch, &c->alias, NULL);
  }
  if (c->type == MD_DOMAIN_CHARDEV_FILE && !c->path)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "type='file' needs <source path=>");
  g_ptr_array_add (console ? dom->consoles : dom->serials, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_graphics (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_graphics_free);
  MdDomainGraphics *g = g_new0 (MdDomainGraphics, 1);
  g_autofree char *port = mdx_attr (node, "port");
  g_autofree char *autoport = mdx_attr (node, "autoport");
  int v = 0;

  g_ptr_array_add (holder, g);
  if (!mdx_check_attrs (
          node,
          (const char *const[]){ "type", "port", "autoport", "listen", "passwd", "tls-port", NULL },
          NULL, error)
      || !mdx_enum_attr (node, "type", md_dom_graphics_type_names, TRUE, &v, error)
      || !mdx_string_attr_in (node, "listen", NULL, &g->listen, error)
      || !mdx_string_attr_in (node, "passwd", NULL, &g->passwd, error))
    return FALSE;
  g->type = v;
  g->port = -1;
  {
    g_autofree char *tls_port = mdx_attr (node, "tls-port");

    /* virt-install writes tls-port='-1' (none); TLS for SPICE is not built. */
    if (tls_port && strcmp (tls_port, "-1") != 0)
      return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                             "tls-port='%s'; instead: remove it (SPICE over TLS is not "
                             "supported; tunnel through SSH)",
                             tls_port);
  }
  if (port && strcmp (port, "-1") != 0)
    {
      guint p = 0;

      if (!mdx_uint_attr (node, "port", 65535, &p, error))
        return FALSE;
      g->port = p;
    }
  g->autoport = autoport ? strcmp (autoport, "yes") == 0 : g->port < 0;
  if (!mdx_yes_no_attr (node, "autoport", "yes", "no", &g->autoport, error))
    return FALSE;
  if (g->autoport)
    g->port = -1;
  else if (g->port < 0)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "autoport='no' needs port=");
  FOREACH_ELEMENT (node, c)
  {
    g_autofree char *address = NULL;
    g_autofree char *type = NULL;

    if (IS (c, "image"))
      {
        if (!mdx_check_attrs (c, (const char *const[]){ "compression", NULL }, NULL, error)
            || !mdx_string_attr_in (
                c, "compression",
                (const char *const[]){ "auto_glz", "auto_lz", "quic", "glz", "lz", "off", NULL },
                &g->image_compression, error))
          return FALSE;
        if (g->type != MD_DOMAIN_GRAPHICS_SPICE)
          return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, c, "only with type='spice'");
        continue;
      }
    if (!IS (c, "listen"))
      return mdx_unexpected_element (error, node, c);
    if (!mdx_check_attrs (c, (const char *const[]){ "type", "address", NULL }, NULL, error)
        || !mdx_string_attr_in (c, "type", (const char *const[]){ "address", NULL }, &type, error))
      return mdx_hint_append (error, "listen on an address (the default is 127.0.0.1)");
    address = mdx_attr (c, "address");
    if (address && !g->listen)
      g->listen = g_steal_pointer (&address);
    else if (address && strcmp (address, g->listen) != 0)
      return mdx_node_error (error, MD_ERROR_INVALID_XML, c,
                             "listen address '%s' differs from <graphics listen='%s'>", address,
                             g->listen);
  }
  g_ptr_array_add (dom->graphics, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_video (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_video_free);
  MdDomainVideo *vd = g_new0 (MdDomainVideo, 1);

  g_ptr_array_add (holder, vd);
  if (!mdx_check_attrs (node, NULL, NULL, error))
    return FALSE;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "model"))
      {
        if (!mdx_check_attrs (c, (const char *const[]){ "type", "vram", "heads", NULL },
                              (const char *const[]){ "primary", "ram", "vgamem", NULL }, error)
            || !mdx_string_attr_in (c, "type", md_dom_video_models, &vd->model, error)
            || !mdx_uint_attr (c, "vram", 1024 * 1024, &vd->vram, error)
            || !mdx_uint_attr (c, "heads", 16, &vd->heads, error))
          return FALSE;
      }
    else
      COMMON_OR_FAIL (node, c, &vd->alias, &vd->address);
  }
  if (!vd->model)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing <model type=...>");
  g_ptr_array_add (dom->videos, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_input (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_input_free);
  MdDomainInput *in = g_new0 (MdDomainInput, 1);

  g_ptr_array_add (holder, in);
  if (!mdx_check_attrs (node, (const char *const[]){ "type", "bus", NULL }, NULL, error)
      || !mdx_string_attr_in (node, "type", md_dom_input_types, &in->type, error)
      || !mdx_string_attr_in (node, "bus", md_dom_input_buses, &in->bus, error))
    return FALSE;
  if (!in->type)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'type'");
  if (!in->bus)
    in->bus = g_strdup (strcmp (in->type, "tablet") == 0 ? "usb" : "ps2");
  if (strcmp (in->bus, "ps2") == 0 && strcmp (in->type, "tablet") == 0)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node, "a tablet cannot be on bus ps2");
  FOREACH_ELEMENT (node, c)
  {
    COMMON_OR_FAIL (node, c, &in->alias, &in->address);
  }
  g_ptr_array_add (dom->inputs, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_memballoon (MdDomain *dom, xmlNode *node, GError **error)
{
  MdDomainMemballoon *m;

  if (dom->memballoon)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "only one <memballoon> is allowed");
  m = dom->memballoon = g_new0 (MdDomainMemballoon, 1);
  if (!mdx_check_attrs (node, (const char *const[]){ "model", NULL }, NULL, error)
      || !mdx_string_attr_in (node, "model", (const char *const[]){ "virtio", "none", NULL },
                              &m->model, error))
    return FALSE;
  if (!m->model)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'model'");
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "stats"))
      g_info ("domain XML line %ld: ignoring <memballoon><stats>", xmlGetLineNo (c));
    else
      COMMON_OR_FAIL (node, c, &m->alias, &m->address);
  }
  return TRUE;
}

static gboolean
parse_rng (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_rng_free);
  MdDomainRng *r = g_new0 (MdDomainRng, 1);

  g_ptr_array_add (holder, r);
  if (!mdx_check_attrs (node, (const char *const[]){ "model", NULL }, NULL, error)
      || !mdx_string_attr_in (node, "model", (const char *const[]){ "virtio", NULL }, &r->model,
                              error))
    return FALSE;
  if (!r->model)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'model'");
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "backend"))
      {
        g_autofree char *model = mdx_attr (c, "model");

        if (!mdx_check_attrs (c, (const char *const[]){ "model", NULL }, NULL, error))
          return FALSE;
        if (!model || strcmp (model, "random") != 0)
          return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, c, "only backend model='random'");
        g_free (r->backend);
        r->backend = mdx_text_of (c);
        g_strstrip (r->backend);
        if (!g_path_is_absolute (r->backend))
          return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "'%s' is not an absolute path",
                                 r->backend);
      }
    else
      COMMON_OR_FAIL (node, c, &r->alias, &r->address);
  }
  if (!r->backend)
    r->backend = g_strdup ("/dev/urandom");
  g_ptr_array_add (dom->rngs, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_channel (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_channel_free);
  MdDomainChannel *ch = g_new0 (MdDomainChannel, 1);
  int v = 0;

  g_ptr_array_add (holder, ch);
  if (!mdx_check_attrs (node, (const char *const[]){ "type", NULL }, NULL, error)
      || !mdx_enum_attr (node, "type", md_dom_channel_type_names, TRUE, &v, error))
    return mdx_hint_append (error, "type='unix' (guest agent) or 'spicevmc' (SPICE agent)");
  ch->type = v;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "source"))
      {
        g_autofree char *mode = mdx_attr (c, "mode");

        /* The socket is the daemon's, in its runtime directory: a path
         * given here (libvirt's own directory) is host side and dropped. */
        if (!mdx_check_attrs (c, (const char *const[]){ "mode", NULL },
                              (const char *const[]){ "path", NULL }, error))
          return FALSE;
        if (ch->type != MD_DOMAIN_CHANNEL_UNIX || (mode && strcmp (mode, "bind") != 0))
          return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, c,
                                 "only <source mode='bind'/> of a unix channel");
      }
    else if (IS (c, "target"))
      {
        g_autofree char *type = mdx_attr (c, "type");

        if (!mdx_check_attrs (c, (const char *const[]){ "type", "name", NULL },
                              (const char *const[]){ "state", NULL }, error))
          return FALSE;
        if (!type || strcmp (type, "virtio") != 0)
          return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, c,
                                 "target type='%s' (only 'virtio')", type ? type : "");
        g_free (ch->target_name);
        ch->target_name = mdx_attr (c, "name");
      }
    else
      COMMON_OR_FAIL (node, c, &ch->alias, &ch->address);
  }
  if (!ch->target_name)
    ch->target_name = g_strdup (ch->type == MD_DOMAIN_CHANNEL_SPICEVMC ? "com.redhat.spice.0"
                                                                       : "org.qemu.guest_agent.0");
  for (const char *p = ch->target_name; *p; p++)
    if (!g_ascii_isalnum (*p) && !strchr ("._-", *p))
      return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                             "channel name '%s': use A-Z a-z 0-9 . _ -", ch->target_name);
  g_ptr_array_add (dom->channels, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_sound (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_sound_free);
  MdDomainSound *snd = g_new0 (MdDomainSound, 1);

  g_ptr_array_add (holder, snd);
  if (!mdx_check_attrs (node, (const char *const[]){ "model", NULL }, NULL, error)
      || !mdx_string_attr_in (node, "model", md_dom_sound_models, &snd->model, error))
    return FALSE;
  if (!snd->model)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'model'");
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "audio"))
      {
        if (!mdx_check_attrs (c, (const char *const[]){ "id", NULL }, NULL, error)
            || !mdx_uint_attr (c, "id", 64, &snd->audio_id, error))
          return FALSE;
      }
    else if (IS (c, "codec"))
      {
        g_autofree char *type = mdx_attr (c, "type");

        if (!mdx_check_attrs (c, (const char *const[]){ "type", NULL }, NULL, error))
          return FALSE;
        if (type && strcmp (type, "duplex") != 0)
          return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, c, "codec type='%s' (only duplex)",
                                 type);
      }
    else
      COMMON_OR_FAIL (node, c, &snd->alias, &snd->address);
  }
  g_ptr_array_add (dom->sounds, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_audio (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (MdDomainAudio) a = g_new0 (MdDomainAudio, 1);

  if (!mdx_check_attrs (node, (const char *const[]){ "id", "type", NULL }, NULL, error)
      || !mdx_uint_attr (node, "id", 64, &a->id, error)
      || !mdx_string_attr_in (node, "type", md_dom_audio_types, &a->type, error))
    return mdx_hint_append (error, "type='none' or 'spice'");
  if (!a->type)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'type'");
  if (a->id == 0)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "id= must be 1..64");
  for (guint i = 0; i < dom->audios->len; i++)
    if (((MdDomainAudio *) dom->audios->pdata[i])->id == a->id)
      return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "duplicate audio id %u", a->id);
  FOREACH_ELEMENT (node, c)
  {
    return mdx_unexpected_element (error, node, c);
  }
  g_ptr_array_add (dom->audios, g_steal_pointer (&a));
  return TRUE;
}

static gboolean
parse_redirdev (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (MdDomainRedirdev) r = g_new0 (MdDomainRedirdev, 1);
  g_autofree char *bus = mdx_attr (node, "bus");
  g_autofree char *type = mdx_attr (node, "type");

  if (!mdx_check_attrs (node, (const char *const[]){ "bus", "type", NULL }, NULL, error))
    return FALSE;
  if ((bus && strcmp (bus, "usb") != 0) || !type || strcmp (type, "spicevmc") != 0)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                           "only <redirdev bus='usb' type='spicevmc'>");
  FOREACH_ELEMENT (node, c)
  {
    COMMON_OR_FAIL (node, c, &r->alias, &r->address);
  }
  if (r->address.type != MD_DOMAIN_ADDRESS_NONE && r->address.type != MD_DOMAIN_ADDRESS_USB)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "a redirdev needs a usb address");
  g_ptr_array_add (dom->redirdevs, g_steal_pointer (&r));
  return TRUE;
}

static gboolean
parse_watchdog (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (MdDomainWatchdog) w = g_new0 (MdDomainWatchdog, 1);

  if (!mdx_check_attrs (node, (const char *const[]){ "model", "action", NULL }, NULL, error)
      || !mdx_string_attr_in (node, "model", md_dom_watchdog_models, &w->model, error)
      || !mdx_string_attr_in (node, "action", md_dom_watchdog_actions, &w->action, error))
    return mdx_hint_append (error, "model='i6300esb' or, on q35, 'itco'");
  if (!w->model)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'model'");
  FOREACH_ELEMENT (node, c)
  {
    COMMON_OR_FAIL (node, c, &w->alias, &w->address);
  }
  if (dom->watchdogs->len > 0)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node, "only one <watchdog>");
  g_ptr_array_add (dom->watchdogs, g_steal_pointer (&w));
  return TRUE;
}

static gboolean
parse_panic (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (MdDomainPanic) p = g_new0 (MdDomainPanic, 1);

  if (!mdx_check_attrs (node, (const char *const[]){ "model", NULL }, NULL, error)
      || !mdx_string_attr_in (node, "model", md_dom_panic_models, &p->model, error))
    return mdx_hint_append (error, "model='isa' or 'pvpanic'");
  if (!p->model)
    p->model = g_strdup ("isa");
  FOREACH_ELEMENT (node, c)
  {
    g_autofree char *type = IS (c, "address") ? mdx_attr (c, "type") : NULL;

    /* The ISA device sits at its fixed port 0x505; nothing to keep. */
    if (type && strcmp (type, "isa") == 0 && strcmp (p->model, "isa") == 0)
      continue;
    COMMON_OR_FAIL (node, c, &p->alias, &p->address);
  }
  if (dom->panics->len > 0)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node, "only one <panic>");
  g_ptr_array_add (dom->panics, g_steal_pointer (&p));
  return TRUE;
}

typedef gboolean (*DeviceParser) (MdDomain *dom, xmlNode *node, GError **error);

static gboolean
parse_serial (MdDomain *dom, xmlNode *node, GError **error)
{
  return parse_chardev (dom, node, FALSE, error);
}

static gboolean
parse_console (MdDomain *dom, xmlNode *node, GError **error)
{
  return parse_chardev (dom, node, TRUE, error);
}

static gboolean
parse_emulator (MdDomain *dom, xmlNode *node, GError **error)
{
  g_free (dom->emulator);
  dom->emulator = g_strstrip (mdx_text_of (node));
  return TRUE;
}

static const struct
{
  const char *name;
  DeviceParser parse;
} device_parsers[] = {
  { "emulator", parse_emulator },
  { "disk", parse_disk },
  { "controller", parse_controller },
  { "interface", parse_interface },
  { "serial", parse_serial },
  { "console", parse_console },
  { "graphics", parse_graphics },
  { "video", parse_video },
  { "input", parse_input },
  { "memballoon", parse_memballoon },
  { "rng", parse_rng },
  { "channel", parse_channel },
  { "sound", parse_sound },
  { "audio", parse_audio },
  { "redirdev", parse_redirdev },
  { "watchdog", parse_watchdog },
  { "panic", parse_panic },
};

void
mdx_parse_devices (MdDomain *dom, xmlNode *node, MdxProblems *problems)
{
  GError *error = NULL;

  if (!mdx_check_attrs (node, NULL, NULL, &error))
    mdx_problems_take (problems, g_steal_pointer (&error));
  for (xmlNode *c = node->children; c; c = c->next)
    {
      gboolean known = FALSE;

      if (!mdx_blank_or_element (node, c, &error))
        mdx_problems_take (problems, g_steal_pointer (&error));
      if (c->type != XML_ELEMENT_NODE || c->ns)
        continue;
      for (gsize i = 0; i < G_N_ELEMENTS (device_parsers) && !known; i++)
        if (IS (c, device_parsers[i].name))
          {
            known = TRUE;
            if (!device_parsers[i].parse (dom, c, &error))
              mdx_problems_take (problems, g_steal_pointer (&error));
          }
      if (!known)
        {
          mdx_unexpected_element (&error, node, c);
          mdx_problems_take (problems, g_steal_pointer (&error));
        }
    }
}

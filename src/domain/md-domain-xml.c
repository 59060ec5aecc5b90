/* migrationd: parsing the libvirt domain XML subset (see md-domain.h). */
#include "config.h"

#include "md-domain.h"
#include "md-domain-private.h"
#include "common/md-error.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <stdarg.h>
#include <string.h>

/* ---- parsing helpers ---- */

static gboolean G_GNUC_PRINTF (4, 5)
    node_error (GError **error, int code, xmlNode *node, const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error (error, MD_ERROR, code, "domain XML line %ld: <%s>: %s", xmlGetLineNo (node),
               (const char *) node->name, msg);
  return FALSE;
}

/* Elements libvirt knows and we do not implement: NotSupported, not
 * InvalidXML, so the user knows the XML itself is fine. */
static const char *const unsupported_elements[] = { "memoryBacking",
                                                    "numatune",
                                                    "cputune",
                                                    "blkiotune",
                                                    "memtune",
                                                    "iothreads",
                                                    "maxMemory",
                                                    "idmap",
                                                    "launchSecurity",
                                                    "sysinfo",
                                                    "genid",
                                                    "bootloader",
                                                    "loader",
                                                    "nvram",
                                                    "bootmenu",
                                                    "smbios",
                                                    "bios",
                                                    "hyperv",
                                                    "kvm",
                                                    "smm",
                                                    "ioapic",
                                                    "vendor",
                                                    "numa",
                                                    "cache",
                                                    "channel",
                                                    "sound",
                                                    "hostdev",
                                                    "redirdev",
                                                    "filesystem",
                                                    "watchdog",
                                                    "smartcard",
                                                    "hub",
                                                    "tpm",
                                                    "panic",
                                                    "shmem",
                                                    "memory",
                                                    "iommu",
                                                    "vsock",
                                                    "lease",
                                                    "audio",
                                                    "parallel",
                                                    "redirfilter",
                                                    "iotune",
                                                    "blockio",
                                                    "encryption",
                                                    "mirror",
                                                    "auth",
                                                    "filterref",
                                                    "bandwidth",
                                                    "vlan",
                                                    "virtualport",
                                                    "link",
                                                    "mtu",
                                                    "rom",
                                                    "tune",
                                                    "coalesce",
                                                    "backend",
                                                    "driver",
                                                    "acceleration",
                                                    "image",
                                                    "streaming",
                                                    "clipboard",
                                                    "mouse",
                                                    "filetransfer",
                                                    "gl",
                                                    "log",
                                                    "rate",
                                                    "master",
                                                    "geometry",
                                                    "secret",
                                                    "reservations",
                                                    "vcpus",
                                                    "os-firmware",
                                                    "initarg",
                                                    "dtb",
                                                    "acpi-table",
                                                    NULL };

/* Accepted and dropped; see md-domain.h. */
static const char *const ignored_elements[] = { "resource",       "seclabel", "pm",
                                                "on_lockfailure", "keywrap",  NULL };

static gboolean
unexpected_element (GError **error, xmlNode *parent, xmlNode *child)
{
  const char *name = (const char *) child->name;

  if (md_dom_lookup (unsupported_elements, name) >= 0)
    return node_error (error, MD_ERROR_NOT_SUPPORTED, child,
                       "element not supported by migrationd (inside <%s>)",
                       (const char *) parent->name);
  return node_error (error, MD_ERROR_INVALID_XML, child,
                     "unknown element inside <%s>; see md-domain.h for the accepted subset",
                     (const char *) parent->name);
}

/* FALSE (with error) on stray non-blank text between elements. */
static gboolean
blank_or_element (xmlNode *parent, xmlNode *n, GError **error)
{
  /* Only <metadata> (kept verbatim) may hold elements of other namespaces;
   * a prefixed element must not pass for one of ours. */
  if (n->type == XML_ELEMENT_NODE && n->ns)
    return node_error (error, MD_ERROR_INVALID_XML, n,
                       "element in namespace '%s' is only allowed inside <metadata>",
                       n->ns->href ? (const char *) n->ns->href : "");
  if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE)
    {
      g_autofree char *text = (char *) xmlNodeGetContent (n);

      if (text && *g_strstrip (text))
        return node_error (error, MD_ERROR_INVALID_XML, parent, "unexpected text '%s'", text);
    }
  return TRUE;
}

#define FOREACH_ELEMENT(parent, c)                                                                 \
  for (xmlNode *c = (parent)->children; c; c = c->next)                                            \
    if (!blank_or_element ((parent), c, error))                                                    \
      return FALSE;                                                                                \
    else if (c->type == XML_ELEMENT_NODE)

static gboolean
check_attrs (xmlNode *node, const char *const *allowed, const char *const *ignored, GError **error)
{
  for (xmlAttr *a = node->properties; a; a = a->next)
    {
      const char *name = (const char *) a->name;

      if (a->ns == NULL && allowed && md_dom_lookup (allowed, name) >= 0)
        continue;
      if (a->ns == NULL && ignored && md_dom_lookup (ignored, name) >= 0)
        {
          g_info ("domain XML line %ld: ignoring <%s %s=...>", xmlGetLineNo (node),
                  (const char *) node->name, name);
          continue;
        }
      return node_error (error, MD_ERROR_INVALID_XML, node, "unknown attribute '%s'", name);
    }
  return TRUE;
}

static char *
attr (xmlNode *node, const char *name)
{
  return (char *) xmlGetNoNsProp (node, (const xmlChar *) name);
}

static char *
text_of (xmlNode *node)
{
  char *s = (char *) xmlNodeGetContent (node);
  char *r = g_strdup (s ? s : "");

  xmlFree (s);
  return r;
}

static gboolean
parse_u64 (const char *s, guint64 max, guint64 *out)
{
  guint base = 10;
  guint64 v;

  if (!s)
    return FALSE;
  while (g_ascii_isspace (*s))
    s++;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    {
      base = 16;
      s += 2;
    }
  if (!g_ascii_isxdigit (*s))
    return FALSE;
  if (!g_ascii_string_to_unsigned (s, base, 0, max, &v, NULL))
    {
      g_autofree char *trimmed = g_strstrip (g_strdup (s));

      if (!g_ascii_string_to_unsigned (trimmed, base, 0, max, &v, NULL))
        return FALSE;
    }
  *out = v;
  return TRUE;
}

/* An optional unsigned attribute; absent leaves *out alone. */
static gboolean
uint_attr (xmlNode *node, const char *name, guint max, guint *out, GError **error)
{
  g_autofree char *s = attr (node, name);
  guint64 v;

  if (!s)
    return TRUE;
  if (!parse_u64 (s, max, &v))
    return node_error (error, MD_ERROR_INVALID_XML, node,
                       "attribute %s='%s' is not a number in 0..%u", name, s, max);
  *out = (guint) v;
  return TRUE;
}

static gboolean
enum_attr (xmlNode *node, const char *name, const char *const *names, gboolean required, int *out,
           GError **error)
{
  g_autofree char *s = attr (node, name);
  int v;

  if (!s)
    {
      if (required)
        return node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute '%s'", name);
      return TRUE;
    }
  v = md_dom_lookup (names, s);
  /* Index 0 is the model's "not given" placeholder, not a value to write. */
  if (v < 0 || (v == 0 && (strcmp (s, "default") == 0 || strcmp (s, "none") == 0)))
    {
      g_autofree char *list = g_strjoinv (", ", (char **) names);

      return node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                         "%s='%s' is not supported (one of: %s)", name, s, list);
    }
  *out = v;
  return TRUE;
}

static gboolean
string_attr_in (xmlNode *node, const char *name, const char *const *names, char **out,
                GError **error)
{
  g_autofree char *s = attr (node, name);

  if (!s)
    return TRUE;
  if (names && md_dom_lookup (names, s) < 0)
    {
      g_autofree char *list = g_strjoinv (", ", (char **) names);

      return node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                         "%s='%s' is not supported (one of: %s)", name, s, list);
    }
  g_free (*out);
  *out = g_steal_pointer (&s);
  return TRUE;
}

static gboolean
yes_no_attr (xmlNode *node, const char *name, const char *yes, const char *no, gboolean *out,
             GError **error)
{
  g_autofree char *s = attr (node, name);

  if (!s)
    return TRUE;
  if (strcmp (s, yes) == 0)
    *out = TRUE;
  else if (strcmp (s, no) == 0)
    *out = FALSE;
  else
    return node_error (error, MD_ERROR_INVALID_XML, node, "%s='%s' must be '%s' or '%s'", name, s,
                       yes, no);
  return TRUE;
}

/* libvirt's scaled integers: unit names are case-insensitive; "KB" is 1000,
 * "K", "KiB" are 1024. */
static gboolean
parse_memory (xmlNode *node, guint64 *out, GError **error)
{
  g_autofree char *unit = attr (node, "unit");
  g_autofree char *text = text_of (node);
  guint64 value, scale = 1024, base = 1024;
  const char *u;

  if (!check_attrs (node, (const char *const[]){ "unit", NULL }, NULL, error))
    return FALSE;
  if (unit)
    {
      static const char prefixes[] = "kmgtpe";
      const char *p;
      gsize len = strlen (unit);

      if (len == 0)
        goto bad_unit;
      if (g_ascii_strcasecmp (unit, "b") == 0 || g_ascii_strcasecmp (unit, "bytes") == 0)
        scale = 1;
      else if ((p = strchr (prefixes, g_ascii_tolower (unit[0]))) != NULL)
        {
          u = unit + 1;
          if (*u == '\0' || g_ascii_strcasecmp (u, "ib") == 0)
            base = 1024;
          else if (g_ascii_strcasecmp (u, "b") == 0)
            base = 1000;
          else
            goto bad_unit;
          scale = 1;
          for (const char *q = prefixes; q <= p; q++)
            scale *= base;
        }
      else
        goto bad_unit;
    }
  if (!parse_u64 (text, G_MAXUINT64, &value) || value == 0)
    return node_error (error, MD_ERROR_INVALID_XML, node, "'%s' is not a positive memory size",
                       text);
  if (value > G_MAXUINT64 / scale)
    return node_error (error, MD_ERROR_INVALID_XML, node, "memory size %s %s is too large", text,
                       unit ? unit : "KiB");
  *out = value * scale;
  return TRUE;

bad_unit:
  return node_error (error, MD_ERROR_INVALID_XML, node,
                     "unknown memory unit '%s' (use b, KiB, MiB, GiB, TiB, KB, MB, GB, TB, "
                     "k, M, G, T)",
                     unit);
}

static gboolean
parse_alias (xmlNode *node, char **out, GError **error)
{
  if (!check_attrs (node, (const char *const[]){ "name", NULL }, NULL, error))
    return FALSE;
  g_free (*out);
  *out = attr (node, "name");
  if (!*out)
    return node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'name'");
  return TRUE;
}

static gboolean
parse_address (xmlNode *node, MdDomainAddress *addr, GError **error)
{
  int type = 0;

  if (!enum_attr (node, "type", md_dom_address_type_names, TRUE, &type, error))
    return FALSE;
  memset (addr, 0, sizeof *addr);
  addr->type = type;
  switch (addr->type)
    {
    case MD_DOMAIN_ADDRESS_PCI:
      {
        g_autofree char *mf = attr (node, "multifunction");

        if (!check_attrs (node,
                          (const char *const[]){ "type", "domain", "bus", "slot", "function",
                                                 "multifunction", NULL },
                          NULL, error)
            || !uint_attr (node, "domain", 0, &addr->domain, error)
            || !uint_attr (node, "bus", 255, &addr->bus, error)
            || !uint_attr (node, "slot", 31, &addr->slot, error)
            || !uint_attr (node, "function", 7, &addr->function, error)
            || !yes_no_attr (node, "multifunction", "on", "off", &addr->multifunction, error))
          return FALSE;
        break;
      }
    case MD_DOMAIN_ADDRESS_DRIVE:
      if (!check_attrs (
              node, (const char *const[]){ "type", "controller", "bus", "target", "unit", NULL },
              NULL, error)
          || !uint_attr (node, "controller", 31, &addr->controller, error)
          || !uint_attr (node, "bus", 31, &addr->drive_bus, error)
          || !uint_attr (node, "target", 255, &addr->target, error)
          || !uint_attr (node, "unit", 255, &addr->unit, error))
        return FALSE;
      break;
    case MD_DOMAIN_ADDRESS_USB:
      if (!check_attrs (node, (const char *const[]){ "type", "bus", "port", NULL }, NULL, error)
          || !uint_attr (node, "bus", 31, &addr->usb_bus, error)
          || !uint_attr (node, "port", 15, &addr->usb_port, error))
        return FALSE;
      if (addr->usb_port == 0)
        return node_error (error, MD_ERROR_INVALID_XML, node, "usb port must be 1..15");
      break;
    default:
      g_assert_not_reached ();
    }
  return TRUE;
}

static gboolean
parse_boot_order (xmlNode *node, guint *order, GError **error)
{
  if (!check_attrs (node, (const char *const[]){ "order", NULL }, NULL, error))
    return FALSE;
  *order = 0;
  if (!uint_attr (node, "order", 999, order, error))
    return FALSE;
  if (*order == 0)
    return node_error (error, MD_ERROR_INVALID_XML, node, "order must be 1..999");
  return TRUE;
}

/* Common device children: alias and address. */
static gboolean
parse_common_child (xmlNode *child, char **alias, MdDomainAddress *address, gboolean *handled,
                    GError **error)
{
  *handled = TRUE;
  if (xmlStrEqual (child->name, (const xmlChar *) "alias"))
    return parse_alias (child, alias, error);
  if (address && xmlStrEqual (child->name, (const xmlChar *) "address"))
    return parse_address (child, address, error);
  *handled = FALSE;
  return TRUE;
}

#define IS(node, str) xmlStrEqual ((node)->name, (const xmlChar *) (str))

#define COMMON_OR_FAIL(node, child, alias, address)                                                \
  {                                                                                                \
    gboolean handled_;                                                                             \
    if (!parse_common_child (child, alias, address, &handled_, error))                             \
      return FALSE;                                                                                \
    if (!handled_)                                                                                 \
      return unexpected_element (error, node, child);                                              \
  }

/* ---- devices ---- */

static gboolean
parse_disk (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder = g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_disk_free);
  MdDomainDisk *d = g_new0 (MdDomainDisk, 1);
  int v;
  gboolean have_target = FALSE, have_bus = FALSE;

  g_ptr_array_add (holder, d);
  if (!check_attrs (node, (const char *const[]){ "type", "device", NULL }, NULL, error))
    return FALSE;
  v = 0;
  if (!enum_attr (node, "type", md_dom_disk_type_names, TRUE, &v, error))
    return FALSE;
  d->type = v;
  v = 0;
  if (!enum_attr (node, "device", md_dom_disk_device_names, FALSE, &v, error))
    return FALSE;
  d->device = v;

  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "driver"))
      {
        g_autofree char *name = attr (c, "name");

        if (!check_attrs (c,
                          (const char *const[]){ "name", "type", "cache", "discard", "io", NULL },
                          NULL, error))
          return FALSE;
        if (name && strcmp (name, "qemu") != 0)
          return node_error (error, MD_ERROR_NOT_SUPPORTED, c, "driver name='%s' (only 'qemu')",
                             name);
        v = d->format;
        if (!enum_attr (c, "type", md_dom_disk_format_names, FALSE, &v, error))
          return FALSE;
        d->format = v;
        v = d->cache;
        if (!enum_attr (c, "cache", md_dom_disk_cache_names, FALSE, &v, error))
          return FALSE;
        d->cache = v;
        v = d->discard;
        if (!enum_attr (c, "discard", md_dom_disk_discard_names, FALSE, &v, error))
          return FALSE;
        d->discard = v;
        v = d->io;
        if (!enum_attr (c, "io", md_dom_disk_io_names, FALSE, &v, error))
          return FALSE;
        d->io = v;
      }
    else if (IS (c, "source"))
      {
        const char *key = d->type == MD_DOMAIN_DISK_TYPE_FILE ? "file" : "dev";

        if (!check_attrs (c, (const char *const[]){ key, NULL }, NULL, error))
          return FALSE;
        g_free (d->source);
        d->source = attr (c, key);
        if (!d->source || !g_path_is_absolute (d->source))
          return node_error (error, MD_ERROR_INVALID_XML, c, "%s= must be an absolute path", key);
      }
    else if (IS (c, "target"))
      {
        g_autofree char *bus = attr (c, "bus");

        if (!check_attrs (c, (const char *const[]){ "dev", "bus", NULL }, NULL, error))
          return FALSE;
        g_free (d->target);
        d->target = attr (c, "dev");
        if (!d->target)
          return node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'dev'");
        have_target = TRUE;
        if (bus)
          {
            v = 0;
            if (!enum_attr (c, "bus", md_dom_disk_bus_names, FALSE, &v, error))
              return FALSE;
            d->bus = v;
            have_bus = TRUE;
          }
      }
    else if (IS (c, "readonly") || IS (c, "shareable"))
      {
        if (!check_attrs (c, NULL, NULL, error))
          return FALSE;
        if (IS (c, "readonly"))
          d->readonly = TRUE;
        else
          d->shareable = TRUE;
      }
    else if (IS (c, "serial"))
      {
        g_free (d->serial);
        d->serial = text_of (c);
      }
    else if (IS (c, "boot"))
      {
        if (!parse_boot_order (c, &d->boot_order, error))
          return FALSE;
      }
    else if (IS (c, "backingStore"))
      {
        if (c->children || c->properties)
          return node_error (error, MD_ERROR_NOT_SUPPORTED, c,
                             "backing chains in the XML are not supported (QEMU reads the "
                             "backing file from the qcow2 header)");
      }
    else
      COMMON_OR_FAIL (node, c, &d->alias, &d->address);
  }
  if (!have_target)
    return node_error (error, MD_ERROR_INVALID_XML, node, "missing <target dev=...>");
  if (!have_bus)
    {
      if (g_str_has_prefix (d->target, "vd"))
        d->bus = MD_DOMAIN_DISK_BUS_VIRTIO;
      else if (g_str_has_prefix (d->target, "hd"))
        d->bus = MD_DOMAIN_DISK_BUS_IDE;
      else if (g_str_has_prefix (d->target, "sd"))
        d->bus = MD_DOMAIN_DISK_BUS_SCSI;
      else
        return node_error (error, MD_ERROR_INVALID_XML, node,
                           "cannot guess the bus of target '%s'; add bus=", d->target);
    }
  for (guint i = 0; i < dom->disks->len; i++)
    if (strcmp (((MdDomainDisk *) dom->disks->pdata[i])->target, d->target) == 0)
      return node_error (error, MD_ERROR_INVALID_XML, node, "duplicate disk target '%s'",
                         d->target);
  if (md_dom_target_index (d->target) < 0)
    return node_error (error, MD_ERROR_INVALID_XML, node,
                       "invalid disk target '%s' (expected vdX, sdX or hdX)", d->target);
  if (!d->source && d->device != MD_DOMAIN_DISK_DEVICE_CDROM)
    return node_error (error, MD_ERROR_INVALID_XML, node, "disk %s has no <source>", d->target);
  if (d->device == MD_DOMAIN_DISK_DEVICE_CDROM)
    {
      if (d->bus == MD_DOMAIN_DISK_BUS_VIRTIO)
        return node_error (error, MD_ERROR_NOT_SUPPORTED, node,
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
  if (!check_attrs (node, (const char *const[]){ "type", "index", "model", NULL },
                    (const char *const[]){ "ports", "vectors", NULL }, error)
      || !enum_attr (node, "type", md_dom_controller_type_names, TRUE, &v, error)
      || !uint_attr (node, "index", 31, &c->index, error)
      || !string_attr_in (node, "model", md_dom_controller_models, &c->model, error))
    return FALSE;
  c->type = v;
  FOREACH_ELEMENT (node, ch)
  {
    if (IS (ch, "model") || IS (ch, "target"))
      g_info ("domain XML line %ld: ignoring <controller><%s> (derived from the index)",
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
  if (!check_attrs (node, (const char *const[]){ "type", NULL }, NULL, error)
      || !enum_attr (node, "type", md_dom_interface_type_names, TRUE, &v, error))
    return FALSE;
  i->type = v;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "mac"))
      {
        if (!check_attrs (c, (const char *const[]){ "address", NULL }, NULL, error))
          return FALSE;
        g_free (i->mac);
        i->mac = attr (c, "address");
        if (!i->mac)
          return node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'address'");
      }
    else if (IS (c, "source"))
      {
        const char *key = i->type == MD_DOMAIN_INTERFACE_BRIDGE    ? "bridge"
                          : i->type == MD_DOMAIN_INTERFACE_NETWORK ? "network"
                                                                   : "";

        if (!check_attrs (c, (const char *const[]){ key, NULL },
                          (const char *const[]){ "portid", NULL }, error))
          return FALSE;
        g_free (i->source);
        i->source = attr (c, key);
      }
    else if (IS (c, "model"))
      {
        if (!check_attrs (c, (const char *const[]){ "type", NULL }, NULL, error)
            || !string_attr_in (c, "type", md_dom_nic_models, &i->model, error))
          return FALSE;
      }
    else if (IS (c, "boot"))
      {
        if (!parse_boot_order (c, &i->boot_order, error))
          return FALSE;
      }
    else if (IS (c, "target"))
      g_info ("domain XML line %ld: ignoring <interface><target> (host side)", xmlGetLineNo (c));
    else
      COMMON_OR_FAIL (node, c, &i->alias, &i->address);
  }
  if (i->type != MD_DOMAIN_INTERFACE_USER && !i->source)
    return node_error (error, MD_ERROR_INVALID_XML, node, "interface type '%s' needs <source %s=>",
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
        return node_error (error, MD_ERROR_INVALID_XML, node,
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
  if (!check_attrs (node, (const char *const[]){ "type", NULL },
                    (const char *const[]){ "tty", NULL }, error)
      || !enum_attr (node, "type", md_dom_chardev_type_names, TRUE, &v, error))
    return FALSE;
  c->type = v;
  FOREACH_ELEMENT (node, ch)
  {
    if (IS (ch, "source"))
      {
        if (!check_attrs (ch, (const char *const[]){ "path", NULL },
                          (const char *const[]){ "append", NULL }, error))
          return FALSE;
        if (c->type == MD_DOMAIN_CHARDEV_FILE)
          {
            g_free (c->path);
            c->path = attr (ch, "path");
            if (!c->path || !g_path_is_absolute (c->path))
              return node_error (error, MD_ERROR_INVALID_XML, ch, "path= must be an absolute path");
          }
      }
    else if (IS (ch, "target"))
      {
        g_autofree char *type = attr (ch, "type");
        const char *want = console ? "serial" : "isa-serial";

        if (!check_attrs (ch, (const char *const[]){ "type", "port", NULL }, NULL, error)
            || !uint_attr (ch, "port", 3, &c->port, error))
          return FALSE;
        if (type && strcmp (type, want) != 0)
          return node_error (error, MD_ERROR_NOT_SUPPORTED, ch, "target type='%s' (only '%s')",
                             type, want);
        FOREACH_ELEMENT (ch, m)
        {
          g_autofree char *name = attr (m, "name");

          if (!IS (m, "model"))
            return unexpected_element (error, ch, m);
          if (!check_attrs (m, (const char *const[]){ "name", NULL }, NULL, error))
            return FALSE;
          if (!name || strcmp (name, "isa-serial") != 0)
            return node_error (error, MD_ERROR_NOT_SUPPORTED, m, "only model isa-serial");
        }
      }
    else
      COMMON_OR_FAIL (node, ch, &c->alias, NULL);
  }
  if (c->type == MD_DOMAIN_CHARDEV_FILE && !c->path)
    return node_error (error, MD_ERROR_INVALID_XML, node, "type='file' needs <source path=>");
  g_ptr_array_add (console ? dom->consoles : dom->serials, g_ptr_array_steal_index (holder, 0));
  return TRUE;
}

static gboolean
parse_graphics (MdDomain *dom, xmlNode *node, GError **error)
{
  g_autoptr (GPtrArray) holder =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_dom_graphics_free);
  MdDomainGraphics *g = g_new0 (MdDomainGraphics, 1);
  g_autofree char *port = attr (node, "port");
  g_autofree char *autoport = attr (node, "autoport");
  int v = 0;

  g_ptr_array_add (holder, g);
  if (!check_attrs (node,
                    (const char *const[]){ "type", "port", "autoport", "listen", "passwd", NULL },
                    NULL, error)
      || !enum_attr (node, "type", md_dom_graphics_type_names, TRUE, &v, error)
      || !string_attr_in (node, "listen", NULL, &g->listen, error)
      || !string_attr_in (node, "passwd", NULL, &g->passwd, error))
    return FALSE;
  g->type = v;
  g->port = -1;
  if (port && strcmp (port, "-1") != 0)
    {
      guint p = 0;

      if (!uint_attr (node, "port", 65535, &p, error))
        return FALSE;
      g->port = p;
    }
  g->autoport = autoport ? strcmp (autoport, "yes") == 0 : g->port < 0;
  if (!yes_no_attr (node, "autoport", "yes", "no", &g->autoport, error))
    return FALSE;
  if (g->autoport)
    g->port = -1;
  else if (g->port < 0)
    return node_error (error, MD_ERROR_INVALID_XML, node, "autoport='no' needs port=");
  FOREACH_ELEMENT (node, c)
  {
    g_autofree char *address = NULL;

    if (!IS (c, "listen"))
      return unexpected_element (error, node, c);
    if (!check_attrs (c, (const char *const[]){ "type", "address", NULL }, NULL, error))
      return FALSE;
    address = attr (c, "address");
    if (address && !g->listen)
      g->listen = g_steal_pointer (&address);
    else if (address && strcmp (address, g->listen) != 0)
      return node_error (error, MD_ERROR_INVALID_XML, c,
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
  if (!check_attrs (node, NULL, NULL, error))
    return FALSE;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "model"))
      {
        if (!check_attrs (c, (const char *const[]){ "type", "vram", "heads", NULL },
                          (const char *const[]){ "primary", NULL }, error)
            || !string_attr_in (c, "type", md_dom_video_models, &vd->model, error)
            || !uint_attr (c, "vram", 1024 * 1024, &vd->vram, error)
            || !uint_attr (c, "heads", 16, &vd->heads, error))
          return FALSE;
      }
    else
      COMMON_OR_FAIL (node, c, &vd->alias, &vd->address);
  }
  if (!vd->model)
    return node_error (error, MD_ERROR_INVALID_XML, node, "missing <model type=...>");
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
  if (!check_attrs (node, (const char *const[]){ "type", "bus", NULL }, NULL, error)
      || !string_attr_in (node, "type", md_dom_input_types, &in->type, error)
      || !string_attr_in (node, "bus", md_dom_input_buses, &in->bus, error))
    return FALSE;
  if (!in->type)
    return node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'type'");
  if (!in->bus)
    in->bus = g_strdup (strcmp (in->type, "tablet") == 0 ? "usb" : "ps2");
  if (strcmp (in->bus, "ps2") == 0 && strcmp (in->type, "tablet") == 0)
    return node_error (error, MD_ERROR_NOT_SUPPORTED, node, "a tablet cannot be on bus ps2");
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
    return node_error (error, MD_ERROR_INVALID_XML, node, "only one <memballoon> is allowed");
  m = dom->memballoon = g_new0 (MdDomainMemballoon, 1);
  if (!check_attrs (node, (const char *const[]){ "model", NULL }, NULL, error)
      || !string_attr_in (node, "model", (const char *const[]){ "virtio", "none", NULL }, &m->model,
                          error))
    return FALSE;
  if (!m->model)
    return node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'model'");
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
  if (!check_attrs (node, (const char *const[]){ "model", NULL }, NULL, error)
      || !string_attr_in (node, "model", (const char *const[]){ "virtio", NULL }, &r->model, error))
    return FALSE;
  if (!r->model)
    return node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'model'");
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "backend"))
      {
        g_autofree char *model = attr (c, "model");

        if (!check_attrs (c, (const char *const[]){ "model", NULL }, NULL, error))
          return FALSE;
        if (!model || strcmp (model, "random") != 0)
          return node_error (error, MD_ERROR_NOT_SUPPORTED, c, "only backend model='random'");
        g_free (r->backend);
        r->backend = text_of (c);
        g_strstrip (r->backend);
        if (!g_path_is_absolute (r->backend))
          return node_error (error, MD_ERROR_INVALID_XML, c, "'%s' is not an absolute path",
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
parse_devices (MdDomain *dom, xmlNode *node, GError **error)
{
  if (!check_attrs (node, NULL, NULL, error))
    return FALSE;
  FOREACH_ELEMENT (node, c)
  {
    gboolean ok;

    if (IS (c, "emulator"))
      {
        g_free (dom->emulator);
        dom->emulator = g_strstrip (text_of (c));
        ok = TRUE;
      }
    else if (IS (c, "disk"))
      ok = parse_disk (dom, c, error);
    else if (IS (c, "controller"))
      ok = parse_controller (dom, c, error);
    else if (IS (c, "interface"))
      ok = parse_interface (dom, c, error);
    else if (IS (c, "serial"))
      ok = parse_chardev (dom, c, FALSE, error);
    else if (IS (c, "console"))
      ok = parse_chardev (dom, c, TRUE, error);
    else if (IS (c, "graphics"))
      ok = parse_graphics (dom, c, error);
    else if (IS (c, "video"))
      ok = parse_video (dom, c, error);
    else if (IS (c, "input"))
      ok = parse_input (dom, c, error);
    else if (IS (c, "memballoon"))
      ok = parse_memballoon (dom, c, error);
    else if (IS (c, "rng"))
      ok = parse_rng (dom, c, error);
    else
      ok = unexpected_element (error, node, c);
    if (!ok)
      return FALSE;
  }
  return TRUE;
}

/* ---- domain-level elements ---- */

static gboolean
parse_os (MdDomain *dom, xmlNode *node, GError **error)
{
  if (!check_attrs (node, NULL, NULL, error))
    return FALSE;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "type"))
      {
        g_autofree char *type = text_of (c);

        if (!check_attrs (c, (const char *const[]){ "arch", "machine", NULL }, NULL, error)
            || !string_attr_in (c, "arch", (const char *const[]){ "x86_64", NULL }, &dom->os.arch,
                                error)
            || !string_attr_in (c, "machine", NULL, &dom->os.machine, error))
          return FALSE;
        g_strstrip (type);
        if (strcmp (type, "hvm") != 0)
          return node_error (error, MD_ERROR_NOT_SUPPORTED, c, "os type '%s' (only 'hvm')", type);
      }
    else if (IS (c, "boot"))
      {
        g_autofree char *dev = NULL;

        if (!check_attrs (c, (const char *const[]){ "dev", NULL }, NULL, error)
            || !string_attr_in (c, "dev", (const char *const[]){ "hd", "cdrom", "network", NULL },
                                &dev, error))
          return FALSE;
        if (!dev)
          return node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'dev'");
        g_ptr_array_add (dom->os.boot_devs, g_steal_pointer (&dev));
      }
    else if (IS (c, "kernel") || IS (c, "initrd") || IS (c, "cmdline"))
      {
        char **field = IS (c, "kernel")   ? &dom->os.kernel
                       : IS (c, "initrd") ? &dom->os.initrd
                                          : &dom->os.cmdline;

        if (!check_attrs (c, NULL, NULL, error))
          return FALSE;
        g_free (*field);
        *field = text_of (c);
        if (field != &dom->os.cmdline && !g_path_is_absolute (*field))
          return node_error (error, MD_ERROR_INVALID_XML, c, "'%s' is not an absolute path",
                             *field);
      }
    else
      return unexpected_element (error, node, c);
  }
  return TRUE;
}

static gboolean
parse_features (MdDomain *dom, xmlNode *node, GError **error)
{
  if (!check_attrs (node, NULL, NULL, error))
    return FALSE;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "acpi") || IS (c, "apic") || IS (c, "pae"))
      {
        if (!check_attrs (c, NULL, NULL, error))
          return FALSE;
        *(IS (c, "acpi") ? &dom->acpi : IS (c, "apic") ? &dom->apic : &dom->pae) = TRUE;
      }
    else if (IS (c, "vmport"))
      {
        int v = 0;

        if (!check_attrs (c, (const char *const[]){ "state", NULL }, NULL, error)
            || !enum_attr (c, "state", (const char *const[]){ "default", "on", "off", NULL }, TRUE,
                           &v, error))
          return FALSE;
        dom->vmport = v;
      }
    else
      return unexpected_element (error, node, c);
  }
  return TRUE;
}

static gboolean
parse_cpu (MdDomain *dom, xmlNode *node, GError **error)
{
  int mode = MD_DOMAIN_CPU_MODE_CUSTOM;

  if (!check_attrs (node, (const char *const[]){ "mode", NULL },
                    (const char *const[]){ "match", "check", "migratable", NULL }, error)
      || !enum_attr (node, "mode", md_dom_cpu_mode_names, FALSE, &mode, error))
    return FALSE;
  dom->cpu.mode = mode;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "model"))
      {
        if (!check_attrs (c, NULL, (const char *const[]){ "fallback", NULL }, error))
          return FALSE;
        g_free (dom->cpu.model);
        dom->cpu.model = g_strstrip (text_of (c));
      }
    else if (IS (c, "topology"))
      {
        if (!check_attrs (c, (const char *const[]){ "sockets", "dies", "cores", "threads", NULL },
                          NULL, error)
            || !uint_attr (c, "sockets", 4096, &dom->cpu.sockets, error)
            || !uint_attr (c, "dies", 4096, &dom->cpu.dies, error)
            || !uint_attr (c, "cores", 4096, &dom->cpu.cores, error)
            || !uint_attr (c, "threads", 4096, &dom->cpu.threads, error))
          return FALSE;
      }
    else if (IS (c, "feature"))
      {
        static const char *const policies[] = { "require", "disable", "force", "forbid", NULL };
        g_autofree char *name = attr (c, "name");
        MdDomainCpuFeature *f;
        int policy = 0;

        if (!check_attrs (c, (const char *const[]){ "policy", "name", NULL }, NULL, error)
            || !enum_attr (c, "policy", policies, TRUE, &policy, error))
          return FALSE;
        if (!name || !*name)
          return node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'name'");
        f = g_new0 (MdDomainCpuFeature, 1);
        f->name = g_steal_pointer (&name);
        f->policy = policy % 2;
        f->forced = policy >= 2;
        g_ptr_array_add (dom->cpu.features, f);
      }
    else
      return unexpected_element (error, node, c);
  }
  if (dom->cpu.mode == MD_DOMAIN_CPU_MODE_CUSTOM && !dom->cpu.model)
    return node_error (error, MD_ERROR_INVALID_XML, node, "mode 'custom' needs <model>");
  if (dom->cpu.mode != MD_DOMAIN_CPU_MODE_CUSTOM && dom->cpu.model)
    return node_error (error, MD_ERROR_NOT_SUPPORTED, node, "<model> with mode '%s'",
                       md_dom_cpu_mode_names[dom->cpu.mode]);
  return TRUE;
}

static gboolean
parse_clock (MdDomain *dom, xmlNode *node, GError **error)
{
  int offset = 0;

  if (!check_attrs (node, (const char *const[]){ "offset", NULL }, NULL, error))
    return FALSE;
  if (!enum_attr (node, "offset", md_dom_clock_offset_names, FALSE, &offset, error))
    return FALSE;
  dom->clock_offset = offset;
  FOREACH_ELEMENT (node, c)
  {
    static const char *const timers[] = { "rtc", "pit", "hpet", "kvmclock", "tsc", NULL };
    static const char *const policies[] = { "delay", "catchup", "merge", "discard", NULL };
    MdDomainTimer *t;
    g_autofree char *present = attr (c, "present");

    if (!IS (c, "timer"))
      return unexpected_element (error, node, c);
    if (!check_attrs (c, (const char *const[]){ "name", "tickpolicy", "present", NULL }, NULL,
                      error))
      return FALSE;
    t = g_new0 (MdDomainTimer, 1);
    g_ptr_array_add (dom->timers, t);
    if (!string_attr_in (c, "name", timers, &t->name, error)
        || !string_attr_in (c, "tickpolicy", policies, &t->tickpolicy, error))
      return FALSE;
    if (!t->name)
      return node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'name'");
    if (present)
      {
        gboolean on = FALSE;

        if (!yes_no_attr (c, "present", "yes", "no", &on, error))
          return FALSE;
        t->present = on ? MD_DOMAIN_TRISTATE_ON : MD_DOMAIN_TRISTATE_OFF;
      }
  }
  return TRUE;
}

static gboolean
parse_lifecycle (xmlNode *node, MdDomainLifecycle *out, GError **error)
{
  g_autofree char *text = text_of (node);
  int v;

  if (!check_attrs (node, NULL, NULL, error))
    return FALSE;
  g_strstrip (text);
  v = md_dom_lookup (md_dom_lifecycle_names, text);
  if (v <= 0)
    return node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                       "action '%s' (one of: destroy, restart, preserve)", text);
  *out = v;
  return TRUE;
}

static char *
serialize_children (xmlNode *node)
{
  g_autoptr (GString) out = g_string_new (NULL);
  xmlBufferPtr buf = xmlBufferCreate ();

  for (xmlNode *c = node->children; c; c = c->next)
    {
      xmlBufferEmpty (buf);
      xmlNodeDump (buf, node->doc, c, 0, 0);
      g_string_append (out, (const char *) xmlBufferContent (buf));
    }
  xmlBufferFree (buf);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static gboolean
parse_domain_node (MdDomain *dom, xmlNode *root, GError **error)
{
  guint seen = 0;
  static const char *const singletons[] = {
    "name",          "uuid",      "title",    "description", "metadata", "memory",
    "currentMemory", "vcpu",      "os",       "features",    "cpu",      "clock",
    "on_poweroff",   "on_reboot", "on_crash", "devices",     NULL
  };

  if (!IS (root, "domain"))
    return node_error (error, MD_ERROR_INVALID_XML, root, "the root element must be <domain>");
  if (root->ns)
    return node_error (error, MD_ERROR_INVALID_XML, root, "<domain> must have no namespace");
  if (!check_attrs (root, (const char *const[]){ "type", NULL },
                    (const char *const[]){ "id", NULL }, error)
      || !string_attr_in (root, "type", (const char *const[]){ "kvm", "qemu", NULL },
                          &dom->virt_type, error))
    return FALSE;
  if (!xmlHasProp (root, (const xmlChar *) "type"))
    return node_error (error, MD_ERROR_INVALID_XML, root, "missing attribute 'type' (kvm or qemu)");

  FOREACH_ELEMENT (root, c)
  {
    int idx = md_dom_lookup (singletons, (const char *) c->name);
    gboolean ok = TRUE;

    if (idx >= 0)
      {
        if (seen & (1u << idx))
          return node_error (error, MD_ERROR_INVALID_XML, c, "element given twice");
        seen |= 1u << idx;
      }
    if (IS (c, "name") || IS (c, "uuid") || IS (c, "title") || IS (c, "description"))
      {
        char **field = IS (c, "name")    ? &dom->name
                       : IS (c, "uuid")  ? &dom->uuid
                       : IS (c, "title") ? &dom->title
                                         : &dom->description;

        if (!check_attrs (c, NULL, NULL, error))
          return FALSE;
        *field = text_of (c);
        if (field == &dom->name || field == &dom->uuid)
          g_strstrip (*field);
        if (field == &dom->name && !md_domain_validate_name (*field, NULL))
          return node_error (error, MD_ERROR_INVALID_XML, c,
                             "invalid name '%.80s': use 1..%d characters from A-Z a-z 0-9 _ . "
                             "+ -, not starting with - or .",
                             *field, MD_DOMAIN_NAME_MAX);
        if (field == &dom->uuid)
          {
            if (!g_uuid_string_is_valid (*field))
              return node_error (error, MD_ERROR_INVALID_XML, c,
                                 "invalid UUID '%s' (expected 8-4-4-4-12 hex digits)", *field);
            char *lower = g_ascii_strdown (*field, -1);

            g_free (*field);
            *field = lower;
          }
      }
    else if (IS (c, "metadata"))
      dom->metadata = serialize_children (c);
    else if (IS (c, "memory"))
      ok = parse_memory (c, &dom->memory, error);
    else if (IS (c, "currentMemory"))
      ok = parse_memory (c, &dom->current_memory, error);
    else if (IS (c, "vcpu"))
      {
        g_autofree char *text = text_of (c);
        guint64 n;

        if (!check_attrs (c, (const char *const[]){ "current", NULL },
                          (const char *const[]){ "placement", "cpuset", NULL }, error))
          return FALSE;
        if (!parse_u64 (g_strstrip (text), 4096, &n) || n < 1)
          return node_error (error, MD_ERROR_INVALID_XML, c,
                             "vcpu count '%s' must be a number from 1 to 4096", text);
        dom->vcpus = n;
        dom->vcpus_current = n;
        if (!uint_attr (c, "current", 4096, &dom->vcpus_current, error))
          return FALSE;
        if (dom->vcpus_current < 1 || dom->vcpus_current > dom->vcpus)
          return node_error (error, MD_ERROR_INVALID_XML, c, "current='%u' must be 1..%u",
                             dom->vcpus_current, dom->vcpus);
      }
    else if (IS (c, "os"))
      ok = parse_os (dom, c, error);
    else if (IS (c, "features"))
      ok = parse_features (dom, c, error);
    else if (IS (c, "cpu"))
      ok = parse_cpu (dom, c, error);
    else if (IS (c, "clock"))
      ok = parse_clock (dom, c, error);
    else if (IS (c, "on_poweroff"))
      ok = parse_lifecycle (c, &dom->on_poweroff, error);
    else if (IS (c, "on_reboot"))
      ok = parse_lifecycle (c, &dom->on_reboot, error);
    else if (IS (c, "on_crash"))
      ok = parse_lifecycle (c, &dom->on_crash, error);
    else if (IS (c, "devices"))
      ok = parse_devices (dom, c, error);
    else if (md_dom_lookup (ignored_elements, (const char *) c->name) >= 0)
      g_info ("domain XML line %ld: ignoring <%s>", xmlGetLineNo (c), (const char *) c->name);
    else
      ok = unexpected_element (error, root, c);
    if (!ok)
      return FALSE;
  }
  if (!dom->name)
    return node_error (error, MD_ERROR_INVALID_XML, root, "missing <name>");
  if (!dom->memory)
    return node_error (error, MD_ERROR_INVALID_XML, root, "missing <memory>");
  if (!dom->vcpus)
    dom->vcpus = dom->vcpus_current = 1;
  if (!dom->current_memory)
    dom->current_memory = dom->memory;
  if (!dom->uuid)
    dom->uuid = g_uuid_string_random ();
  return TRUE;
}

/* ---- libxml2 driver ---- */

typedef struct
{
  char *first_error;
  gboolean doctype;
  long doctype_line;
} ParseState;

static void
structured_error (void *user_data, xmlErrorPtr err)
{
  xmlParserCtxtPtr ctxt = user_data;
  ParseState *state = ctxt ? ctxt->_private : NULL;

  /* Warnings (e.g. a relative namespace URI in <metadata>) do not reject. */
  if (!state || state->first_error || !err || err->level < XML_ERR_ERROR)
    return;
  state->first_error = g_strdup_printf ("line %d: %s", err->line,
                                        err->message ? g_strchomp (err->message) : "error");
}

static void
internal_subset (void *user_data, const xmlChar *name, const xmlChar *external_id,
                 const xmlChar *system_id)
{
  xmlParserCtxtPtr ctxt = user_data;
  ParseState *state = ctxt->_private;

  state->doctype = TRUE;
  state->doctype_line = ctxt->input ? ctxt->input->line : 0;
  xmlStopParser (ctxt);
}

MdDomain *
md_domain_parse (const char *xml, GError **error)
{
  g_autoptr (MdDomain) dom = NULL;
  ParseState state = { 0 };
  xmlParserCtxtPtr ctxt;
  xmlDocPtr doc;
  gsize len;
  xmlStructuredErrorFunc old_handler = xmlStructuredError;
  void *old_context = xmlStructuredErrorContext;

  g_return_val_if_fail (xml != NULL, NULL);
  len = strnlen (xml, MD_DOMAIN_XML_MAX_SIZE + 1);
  if (len > MD_DOMAIN_XML_MAX_SIZE)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "domain XML is larger than the %d-byte (1 MiB) limit", MD_DOMAIN_XML_MAX_SIZE);
      return NULL;
    }

  ctxt = xmlNewParserCtxt ();
  if (!ctxt)
    {
      g_set_error_literal (error, MD_ERROR, MD_ERROR_FAILED, "out of memory creating XML parser");
      return NULL;
    }
  ctxt->_private = &state;
  ctxt->sax->serror = structured_error;
  ctxt->sax->internalSubset = internal_subset;
  /* Belt and braces: libxml2 2.9 may also report through the global
   * (thread-local) handler; route that to us too and restore it after. */
  xmlSetStructuredErrorFunc (ctxt, structured_error);
  doc = xmlCtxtReadMemory (ctxt, xml, (int) len, "domain.xml", NULL, XML_PARSE_NONET);
  xmlSetStructuredErrorFunc (old_context, old_handler);

  if (state.doctype || (doc && (doc->intSubset || doc->extSubset)))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_XML,
                   "domain XML line %ld: DOCTYPE not allowed (no DTDs or entity declarations in "
                   "guest definitions)",
                   state.doctype_line);
    }
  else if (!doc || state.first_error || !ctxt->wellFormed)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_XML, "domain XML is malformed: %s",
                   state.first_error ? state.first_error : "parse failed");
    }
  else if (!xmlDocGetRootElement (doc))
    g_set_error_literal (error, MD_ERROR, MD_ERROR_INVALID_XML, "domain XML is empty");
  else
    {
      dom = md_domain_new ();
      if (!parse_domain_node (dom, xmlDocGetRootElement (doc), error)
          || !md_domain_assign_addresses (dom, error) || !md_domain_validate (dom, error))
        g_clear_pointer (&dom, md_domain_free);
    }
  g_free (state.first_error);
  if (doc)
    xmlFreeDoc (doc);
  xmlFreeParserCtxt (ctxt);
  return g_steal_pointer (&dom);
}

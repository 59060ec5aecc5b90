/* migrationd: helpers of the domain XML parser: errors, attributes, common
 * device children (see md-domain-xml-private.h). */
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

/* ---- parsing helpers ---- */

gboolean
mdx_node_error (GError **error, int code, xmlNode *node, const char *format, ...)
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
const char *const mdx_unsupported_elements[] = { "memoryBacking",
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
                                                 "ioapic",
                                                 "numa",
                                                 "cache",
                                                 "hostdev",
                                                 "filesystem",
                                                 "smartcard",
                                                 "hub",
                                                 "tpm",
                                                 "shmem",
                                                 "memory",
                                                 "iommu",
                                                 "vsock",
                                                 "lease",
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
                                                 "acceleration",
                                                 "streaming",
                                                 "clipboard",
                                                 "mouse",
                                                 "filetransfer",
                                                 "gl",
                                                 "log",
                                                 "rate",
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
const char *const mdx_ignored_elements[] = { "resource", "seclabel", "on_lockfailure", "keywrap",
                                             NULL };

/* What to use instead, for the unsupported elements users meet most. */
static const char *const hints[][2] = {
  { "hostdev", "host devices cannot move with a live migration; remove it" },
  { "filesystem", "shared filesystems are not migrated; use a <disk>" },
  { "memoryBacking", "remove it (hugepages and shared memory backing are not supported)" },
  { "smartcard", "remove it; use <redirdev type='spicevmc'> to pass a reader through SPICE" },
  { "tpm", "remove it (TPM state is not migrated)" },
  { "parallel", "use a <serial>" },
  { "shmem", "remove it (shared memory cannot follow the guest to another host)" },
  { "loader", "remove it; guests boot with SeaBIOS" },
  { "nvram", "remove it; guests boot with SeaBIOS" },
  { "hub", "remove it; use a qemu-xhci controller, which has enough ports" },
  { "vsock", "remove it; use the guest agent <channel>" },
  { "numatune", "remove it; pin QEMU from outside (systemd slice) if needed" },
  { "cputune", "remove it; pin QEMU from outside (systemd slice) if needed" },
  { "hyperv", "remove it (Hyper-V enlightenments are not supported)" },
  { "kvm", "remove it" },
  { "iommu", "remove it" },
  { "tune", "remove it" },
};

const char *
mdx_hint (const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS (hints); i++)
    if (strcmp (hints[i][0], name) == 0)
      return hints[i][1];
  return NULL;
}

gboolean
mdx_unexpected_element (GError **error, xmlNode *parent, xmlNode *child)
{
  const char *name = (const char *) child->name;
  const char *hint = mdx_hint (name);

  if (md_dom_lookup (mdx_unsupported_elements, name) >= 0)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, child,
                           "element not supported by migrationd (inside <%s>)%s%s",
                           (const char *) parent->name, hint ? "; instead: " : "",
                           hint ? hint : "");
  return mdx_node_error (error, MD_ERROR_INVALID_XML, child,
                         "unknown element inside <%s>; see md-domain.h for the accepted subset",
                         (const char *) parent->name);
}

gboolean
mdx_hint_append (GError **error, const char *hint)
{
  if (error && *error && g_error_matches (*error, MD_ERROR, MD_ERROR_NOT_SUPPORTED))
    {
      char *m = g_strdup_printf ("%s; instead: %s", (*error)->message, hint);

      g_free ((*error)->message);
      (*error)->message = m;
    }
  return FALSE;
}

void
mdx_problems_take (MdxProblems *p, GError *error)
{
  if (!error)
    return;
  if (!p->messages)
    p->messages = g_ptr_array_new_with_free_func (g_free);
  if (!g_error_matches (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED))
    p->any_invalid = TRUE;
  g_ptr_array_add (p->messages, g_strdup (error->message));
  g_error_free (error);
}

gboolean
mdx_problems_report (MdxProblems *p, GError **error)
{
  g_autoptr (GString) all = NULL;
  guint n = p->messages ? p->messages->len : 0;

  if (n == 0)
    return TRUE;
  if (n == 1)
    {
      g_set_error_literal (error, MD_ERROR,
                           p->any_invalid ? MD_ERROR_INVALID_XML : MD_ERROR_NOT_SUPPORTED,
                           p->messages->pdata[0]);
      return FALSE;
    }
  all = g_string_new (NULL);
  g_string_append_printf (all, "domain XML has %u problems:", n);
  for (guint i = 0; i < n; i++)
    {
      const char *m = p->messages->pdata[i];

      if (g_str_has_prefix (m, "domain XML "))
        m += strlen ("domain XML ");
      g_string_append_printf (all, "\n  %s", m);
    }
  g_set_error_literal (error, MD_ERROR,
                       p->any_invalid ? MD_ERROR_INVALID_XML : MD_ERROR_NOT_SUPPORTED, all->str);
  return FALSE;
}

void
mdx_problems_clear (MdxProblems *p)
{
  g_clear_pointer (&p->messages, g_ptr_array_unref);
}

/* FALSE (with error) on stray non-blank text between elements. */
gboolean
mdx_blank_or_element (xmlNode *parent, xmlNode *n, GError **error)
{
  /* Only <metadata> (kept verbatim) may hold elements of other namespaces;
   * a prefixed element must not pass for one of ours. */
  if (n->type == XML_ELEMENT_NODE && n->ns)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, n,
                           "element in namespace '%s' is only allowed inside <metadata>",
                           n->ns->href ? (const char *) n->ns->href : "");
  if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE)
    {
      g_autofree char *text = (char *) xmlNodeGetContent (n);

      if (text && *g_strstrip (text))
        return mdx_node_error (error, MD_ERROR_INVALID_XML, parent, "unexpected text '%s'", text);
    }
  return TRUE;
}

gboolean
mdx_check_attrs (xmlNode *node, const char *const *allowed, const char *const *ignored,
                 GError **error)
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
      return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "unknown attribute '%s'", name);
    }
  return TRUE;
}

char *
mdx_attr (xmlNode *node, const char *name)
{
  return (char *) xmlGetNoNsProp (node, (const xmlChar *) name);
}

char *
mdx_text_of (xmlNode *node)
{
  char *s = (char *) xmlNodeGetContent (node);
  char *r = g_strdup (s ? s : "");

  xmlFree (s);
  return r;
}

gboolean
mdx_parse_u64 (const char *s, guint64 max, guint64 *out)
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
gboolean
mdx_uint_attr (xmlNode *node, const char *name, guint max, guint *out, GError **error)
{
  g_autofree char *s = mdx_attr (node, name);
  guint64 v;

  if (!s)
    return TRUE;
  if (!mdx_parse_u64 (s, max, &v))
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                           "attribute %s='%s' is not a number in 0..%u", name, s, max);
  *out = (guint) v;
  return TRUE;
}

gboolean
mdx_enum_attr (xmlNode *node, const char *name, const char *const *names, gboolean required,
               int *out, GError **error)
{
  g_autofree char *s = mdx_attr (node, name);
  int v;

  if (!s)
    {
      if (required)
        return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute '%s'", name);
      return TRUE;
    }
  v = md_dom_lookup (names, s);
  /* Index 0 is the model's "not given" placeholder, not a value to write. */
  if (v < 0 || (v == 0 && (strcmp (s, "default") == 0 || strcmp (s, "none") == 0)))
    {
      g_autofree char *list = g_strjoinv (", ", (char **) names);

      return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                             "%s='%s' is not supported (one of: %s)", name, s, list);
    }
  *out = v;
  return TRUE;
}

gboolean
mdx_string_attr_in (xmlNode *node, const char *name, const char *const *names, char **out,
                    GError **error)
{
  g_autofree char *s = mdx_attr (node, name);

  if (!s)
    return TRUE;
  if (names && md_dom_lookup (names, s) < 0)
    {
      g_autofree char *list = g_strjoinv (", ", (char **) names);

      return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node,
                             "%s='%s' is not supported (one of: %s)", name, s, list);
    }
  g_free (*out);
  *out = g_steal_pointer (&s);
  return TRUE;
}

gboolean
mdx_yes_no_attr (xmlNode *node, const char *name, const char *yes, const char *no, gboolean *out,
                 GError **error)
{
  g_autofree char *s = mdx_attr (node, name);

  if (!s)
    return TRUE;
  if (strcmp (s, yes) == 0)
    *out = TRUE;
  else if (strcmp (s, no) == 0)
    *out = FALSE;
  else
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "%s='%s' must be '%s' or '%s'", name,
                           s, yes, no);
  return TRUE;
}

/* libvirt's scaled integers: unit names are case-insensitive; "KB" is 1000,
 * "K", "KiB" are 1024. */
gboolean
mdx_parse_memory (xmlNode *node, guint64 *out, GError **error)
{
  g_autofree char *unit = mdx_attr (node, "unit");
  g_autofree char *text = mdx_text_of (node);
  guint64 value, scale = 1024, base = 1024;
  const char *u;

  if (!mdx_check_attrs (node, (const char *const[]){ "unit", NULL }, NULL, error))
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
  if (!mdx_parse_u64 (text, G_MAXUINT64, &value) || value == 0)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "'%s' is not a positive memory size",
                           text);
  if (value > G_MAXUINT64 / scale)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "memory size %s %s is too large",
                           text, unit ? unit : "KiB");
  *out = value * scale;
  return TRUE;

bad_unit:
  return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                         "unknown memory unit '%s' (use b, KiB, MiB, GiB, TiB, KB, MB, GB, TB, "
                         "k, M, G, T)",
                         unit);
}

gboolean
mdx_parse_alias (xmlNode *node, char **out, GError **error)
{
  if (!mdx_check_attrs (node, (const char *const[]){ "name", NULL }, NULL, error))
    return FALSE;
  g_free (*out);
  *out = mdx_attr (node, "name");
  if (!*out)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "missing attribute 'name'");
  return TRUE;
}

gboolean
mdx_parse_address (xmlNode *node, MdDomainAddress *addr, GError **error)
{
  int type = 0;

  if (!mdx_enum_attr (node, "type", md_dom_address_type_names, TRUE, &type, error))
    return FALSE;
  memset (addr, 0, sizeof *addr);
  addr->type = type;
  switch (addr->type)
    {
    case MD_DOMAIN_ADDRESS_PCI:
      {
        g_autofree char *mf = mdx_attr (node, "multifunction");

        if (!mdx_check_attrs (node,
                              (const char *const[]){ "type", "domain", "bus", "slot", "function",
                                                     "multifunction", NULL },
                              NULL, error)
            || !mdx_uint_attr (node, "domain", 0, &addr->domain, error)
            || !mdx_uint_attr (node, "bus", 255, &addr->bus, error)
            || !mdx_uint_attr (node, "slot", 31, &addr->slot, error)
            || !mdx_uint_attr (node, "function", 7, &addr->function, error)
            || !mdx_yes_no_attr (node, "multifunction", "on", "off", &addr->multifunction, error))
          return FALSE;
        break;
      }
    case MD_DOMAIN_ADDRESS_DRIVE:
      if (!mdx_check_attrs (
              node, (const char *const[]){ "type", "controller", "bus", "target", "unit", NULL },
              NULL, error)
          || !mdx_uint_attr (node, "controller", MD_DOMAIN_CONTROLLER_INDEX_MAX, &addr->controller,
                             error)
          || !mdx_uint_attr (node, "bus", 31, &addr->drive_bus, error)
          || !mdx_uint_attr (node, "target", 255, &addr->target, error)
          || !mdx_uint_attr (node, "unit", 255, &addr->unit, error))
        return FALSE;
      break;
    case MD_DOMAIN_ADDRESS_USB:
      if (!mdx_check_attrs (node, (const char *const[]){ "type", "bus", "port", NULL }, NULL, error)
          || !mdx_uint_attr (node, "bus", 31, &addr->usb_bus, error)
          || !mdx_uint_attr (node, "port", 15, &addr->usb_port, error))
        return FALSE;
      if (addr->usb_port == 0)
        return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "usb port must be 1..15");
      break;
    case MD_DOMAIN_ADDRESS_VIRTIO_SERIAL:
      if (!mdx_check_attrs (
              node, (const char *const[]){ "type", "controller", "bus", "port", NULL }, NULL, error)
          || !mdx_uint_attr (node, "controller", MD_DOMAIN_CONTROLLER_INDEX_MAX, &addr->controller,
                             error)
          || !mdx_uint_attr (node, "bus", 0, &addr->vs_bus, error)
          || !mdx_uint_attr (node, "port", 30, &addr->vs_port, error))
        return FALSE;
      if (addr->vs_port == 0)
        return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                               "virtio-serial port must be 1..30");
      break;
    default:
      g_assert_not_reached ();
    }
  return TRUE;
}

gboolean
mdx_parse_boot_order (xmlNode *node, guint *order, GError **error)
{
  if (!mdx_check_attrs (node, (const char *const[]){ "order", NULL }, NULL, error))
    return FALSE;
  *order = 0;
  if (!mdx_uint_attr (node, "order", 999, order, error))
    return FALSE;
  if (*order == 0)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "order must be 1..999");
  return TRUE;
}

/* Common device children: alias and address. */
gboolean
mdx_parse_common_child (xmlNode *child, char **alias, MdDomainAddress *address, gboolean *handled,
                        GError **error)
{
  *handled = TRUE;
  if (xmlStrEqual (child->name, (const xmlChar *) "alias"))
    return mdx_parse_alias (child, alias, error);
  if (address && xmlStrEqual (child->name, (const xmlChar *) "address"))
    return mdx_parse_address (child, address, error);
  *handled = FALSE;
  return TRUE;
}

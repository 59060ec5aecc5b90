/* migrationd: parsing the libvirt domain XML subset (see md-domain.h):
 * domain-level elements and the libxml2 driver. */
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
parse_os (MdDomain *dom, xmlNode *node, GError **error)
{
  if (!mdx_check_attrs (node, NULL, NULL, error))
    return FALSE;
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "type"))
      {
        g_autofree char *type = mdx_text_of (c);

        if (!mdx_check_attrs (c, (const char *const[]){ "arch", "machine", NULL }, NULL, error)
            || !mdx_string_attr_in (c, "arch", (const char *const[]){ "x86_64", NULL },
                                    &dom->os.arch, error)
            || !mdx_string_attr_in (c, "machine", NULL, &dom->os.machine, error))
          return FALSE;
        g_strstrip (type);
        if (strcmp (type, "hvm") != 0)
          return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, c, "os type '%s' (only 'hvm')",
                                 type);
      }
    else if (IS (c, "boot"))
      {
        g_autofree char *dev = NULL;

        if (!mdx_check_attrs (c, (const char *const[]){ "dev", NULL }, NULL, error)
            || !mdx_string_attr_in (
                c, "dev", (const char *const[]){ "hd", "cdrom", "network", NULL }, &dev, error))
          return FALSE;
        if (!dev)
          return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'dev'");
        g_ptr_array_add (dom->os.boot_devs, g_steal_pointer (&dev));
      }
    else if (IS (c, "kernel") || IS (c, "initrd") || IS (c, "cmdline"))
      {
        char **field = IS (c, "kernel")   ? &dom->os.kernel
                       : IS (c, "initrd") ? &dom->os.initrd
                                          : &dom->os.cmdline;

        if (!mdx_check_attrs (c, NULL, NULL, error))
          return FALSE;
        g_free (*field);
        *field = mdx_text_of (c);
        if (field != &dom->os.cmdline && !g_path_is_absolute (*field))
          return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "'%s' is not an absolute path",
                                 *field);
      }
    else
      return mdx_unexpected_element (error, node, c);
  }
  return TRUE;
}

static gboolean
parse_state_attr (xmlNode *c, const char *name, const char *on, const char *off,
                  MdDomainTristate *out, GError **error)
{
  gboolean v = FALSE;
  g_autofree char *s = mdx_attr (c, name);

  if (!s)
    return TRUE;
  if (!mdx_yes_no_attr (c, name, on, off, &v, error))
    return FALSE;
  *out = v ? MD_DOMAIN_TRISTATE_ON : MD_DOMAIN_TRISTATE_OFF;
  return TRUE;
}

static gboolean
parse_feature (MdDomain *dom, xmlNode *parent, xmlNode *c, GError **error)
{
  if (IS (c, "acpi") || IS (c, "apic") || IS (c, "pae"))
    {
      if (!mdx_check_attrs (c, NULL, (const char *const[]){ "eoi", NULL }, error))
        return FALSE;
      *(IS (c, "acpi") ? &dom->acpi : IS (c, "apic") ? &dom->apic : &dom->pae) = TRUE;
      return TRUE;
    }
  if (IS (c, "vmport") || IS (c, "smm"))
    {
      MdDomainTristate *field = IS (c, "vmport") ? &dom->vmport : &dom->smm;

      return mdx_check_attrs (c, (const char *const[]){ "state", NULL }, NULL, error)
             && parse_state_attr (c, "state", "on", "off", field, error);
    }
  return mdx_unexpected_element (error, parent, c);
}

static void
parse_features (MdDomain *dom, xmlNode *node, MdxProblems *problems)
{
  GError *error = NULL;

  if (!mdx_check_attrs (node, NULL, NULL, &error))
    mdx_problems_take (problems, g_steal_pointer (&error));
  for (xmlNode *c = node->children; c; c = c->next)
    {
      if (!mdx_blank_or_element (node, c, &error))
        mdx_problems_take (problems, g_steal_pointer (&error));
      else if (c->type == XML_ELEMENT_NODE && !parse_feature (dom, node, c, &error))
        mdx_problems_take (problems, g_steal_pointer (&error));
    }
}

/* <pm>: guest suspend support (the ACPI S3/S4 states QEMU offers). */
static gboolean
parse_pm (MdDomain *dom, xmlNode *node, GError **error)
{
  if (!mdx_check_attrs (node, NULL, NULL, error))
    return FALSE;
  FOREACH_ELEMENT (node, c)
  {
    MdDomainTristate *field = IS (c, "suspend-to-mem")    ? &dom->suspend_to_mem
                              : IS (c, "suspend-to-disk") ? &dom->suspend_to_disk
                                                          : NULL;

    if (!field)
      return mdx_unexpected_element (error, node, c);
    if (!mdx_check_attrs (c, (const char *const[]){ "enabled", NULL }, NULL, error)
        || !parse_state_attr (c, "enabled", "yes", "no", field, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
parse_cpu (MdDomain *dom, xmlNode *node, GError **error)
{
  int mode = MD_DOMAIN_CPU_MODE_CUSTOM;

  if (!mdx_check_attrs (node, (const char *const[]){ "mode", "migratable", NULL },
                        (const char *const[]){ "match", "check", NULL }, error)
      || !mdx_enum_attr (node, "mode", md_dom_cpu_mode_names, FALSE, &mode, error)
      || !parse_state_attr (node, "migratable", "on", "off", &dom->cpu.migratable, error))
    return FALSE;
  dom->cpu.mode = mode;
  if (dom->cpu.migratable && mode != MD_DOMAIN_CPU_MODE_HOST_PASSTHROUGH)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node,
                           "migratable= only applies to mode='host-passthrough'");
  FOREACH_ELEMENT (node, c)
  {
    if (IS (c, "model"))
      {
        if (!mdx_check_attrs (c, NULL, (const char *const[]){ "fallback", NULL }, error))
          return FALSE;
        g_free (dom->cpu.model);
        dom->cpu.model = g_strstrip (mdx_text_of (c));
      }
    else if (IS (c, "vendor"))
      g_info ("domain XML line %ld: ignoring <cpu><vendor> (implied by the model)",
              xmlGetLineNo (c));
    else if (IS (c, "topology"))
      {
        if (!mdx_check_attrs (c,
                              (const char *const[]){ "sockets", "dies", "cores", "threads", NULL },
                              NULL, error)
            || !mdx_uint_attr (c, "sockets", 4096, &dom->cpu.sockets, error)
            || !mdx_uint_attr (c, "dies", 4096, &dom->cpu.dies, error)
            || !mdx_uint_attr (c, "cores", 4096, &dom->cpu.cores, error)
            || !mdx_uint_attr (c, "threads", 4096, &dom->cpu.threads, error))
          return FALSE;
      }
    else if (IS (c, "feature"))
      {
        static const char *const policies[] = { "require", "disable", "force", "forbid", NULL };
        g_autofree char *name = mdx_attr (c, "name");
        MdDomainCpuFeature *f;
        int policy = 0;

        if (!mdx_check_attrs (c, (const char *const[]){ "policy", "name", NULL }, NULL, error)
            || !mdx_enum_attr (c, "policy", policies, TRUE, &policy, error))
          return FALSE;
        if (!name || !*name)
          return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'name'");
        f = g_new0 (MdDomainCpuFeature, 1);
        f->name = g_steal_pointer (&name);
        f->policy = policy % 2;
        f->forced = policy >= 2;
        g_ptr_array_add (dom->cpu.features, f);
      }
    else
      return mdx_unexpected_element (error, node, c);
  }
  if (dom->cpu.mode == MD_DOMAIN_CPU_MODE_CUSTOM && !dom->cpu.model)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, node, "mode 'custom' needs <model>");
  if (dom->cpu.mode != MD_DOMAIN_CPU_MODE_CUSTOM && dom->cpu.model)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node, "<model> with mode '%s'",
                           md_dom_cpu_mode_names[dom->cpu.mode]);
  return TRUE;
}

static gboolean
parse_clock (MdDomain *dom, xmlNode *node, GError **error)
{
  int offset = 0;

  if (!mdx_check_attrs (node, (const char *const[]){ "offset", NULL }, NULL, error))
    return FALSE;
  if (!mdx_enum_attr (node, "offset", md_dom_clock_offset_names, FALSE, &offset, error))
    return FALSE;
  dom->clock_offset = offset;
  FOREACH_ELEMENT (node, c)
  {
    static const char *const timers[] = { "rtc", "pit", "hpet", "kvmclock", "tsc", NULL };
    static const char *const policies[] = { "delay", "catchup", "merge", "discard", NULL };
    MdDomainTimer *t;
    g_autofree char *present = mdx_attr (c, "present");

    if (!IS (c, "timer"))
      return mdx_unexpected_element (error, node, c);
    if (!mdx_check_attrs (c, (const char *const[]){ "name", "tickpolicy", "present", NULL }, NULL,
                          error))
      return FALSE;
    t = g_new0 (MdDomainTimer, 1);
    g_ptr_array_add (dom->timers, t);
    if (!mdx_string_attr_in (c, "name", timers, &t->name, error)
        || !mdx_string_attr_in (c, "tickpolicy", policies, &t->tickpolicy, error))
      return FALSE;
    if (!t->name)
      return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "missing attribute 'name'");
    if (present)
      {
        gboolean on = FALSE;

        if (!mdx_yes_no_attr (c, "present", "yes", "no", &on, error))
          return FALSE;
        t->present = on ? MD_DOMAIN_TRISTATE_ON : MD_DOMAIN_TRISTATE_OFF;
      }
  }
  return TRUE;
}

static gboolean
parse_lifecycle (xmlNode *node, MdDomainLifecycle *out, GError **error)
{
  g_autofree char *text = mdx_text_of (node);
  int v;

  if (!mdx_check_attrs (node, NULL, NULL, error))
    return FALSE;
  g_strstrip (text);
  v = md_dom_lookup (md_dom_lifecycle_names, text);
  if (v <= 0)
    return mdx_node_error (error, MD_ERROR_NOT_SUPPORTED, node,
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
parse_identity (MdDomain *dom, xmlNode *c, GError **error)
{
  char **field = IS (c, "name")    ? &dom->name
                 : IS (c, "uuid")  ? &dom->uuid
                 : IS (c, "title") ? &dom->title
                                   : &dom->description;

  if (!mdx_check_attrs (c, NULL, NULL, error))
    return FALSE;
  g_free (*field);
  *field = mdx_text_of (c);
  if (field == &dom->name || field == &dom->uuid)
    g_strstrip (*field);
  if (field == &dom->name && !md_domain_validate_name (*field, NULL))
    return mdx_node_error (error, MD_ERROR_INVALID_XML, c,
                           "invalid name '%.80s': use 1..%d characters from A-Z a-z 0-9 _ . "
                           "+ -, not starting with - or .",
                           *field, MD_DOMAIN_NAME_MAX);
  if (field == &dom->uuid)
    {
      char *lower;

      if (!g_uuid_string_is_valid (*field))
        return mdx_node_error (error, MD_ERROR_INVALID_XML, c,
                               "invalid UUID '%s' (expected 8-4-4-4-12 hex digits)", *field);
      lower = g_ascii_strdown (*field, -1);
      g_free (*field);
      *field = lower;
    }
  return TRUE;
}

static gboolean
parse_vcpu (MdDomain *dom, xmlNode *c, GError **error)
{
  g_autofree char *text = mdx_text_of (c);
  guint64 n;

  if (!mdx_check_attrs (c, (const char *const[]){ "current", NULL },
                        (const char *const[]){ "placement", "cpuset", NULL }, error))
    return FALSE;
  if (!mdx_parse_u64 (g_strstrip (text), 4096, &n) || n < 1)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, c,
                           "vcpu count '%s' must be a number from 1 to 4096", text);
  dom->vcpus = n;
  dom->vcpus_current = n;
  if (!mdx_uint_attr (c, "current", 4096, &dom->vcpus_current, error))
    return FALSE;
  if (dom->vcpus_current < 1 || dom->vcpus_current > dom->vcpus)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, c, "current='%u' must be 1..%u",
                           dom->vcpus_current, dom->vcpus);
  return TRUE;
}

/* One child of <domain>; FALSE with @error for its first problem
 * (<features> and <devices> record theirs in @problems themselves). */
static gboolean
parse_domain_child (MdDomain *dom, xmlNode *root, xmlNode *c, MdxProblems *problems, GError **error)
{
  if (IS (c, "name") || IS (c, "uuid") || IS (c, "title") || IS (c, "description"))
    return parse_identity (dom, c, error);
  if (IS (c, "metadata"))
    {
      dom->metadata = serialize_children (c);
      return TRUE;
    }
  if (IS (c, "memory"))
    return mdx_parse_memory (c, &dom->memory, error);
  if (IS (c, "currentMemory"))
    return mdx_parse_memory (c, &dom->current_memory, error);
  if (IS (c, "vcpu"))
    return parse_vcpu (dom, c, error);
  if (IS (c, "os"))
    return parse_os (dom, c, error);
  if (IS (c, "features"))
    parse_features (dom, c, problems);
  else if (IS (c, "cpu"))
    return parse_cpu (dom, c, error);
  else if (IS (c, "clock"))
    return parse_clock (dom, c, error);
  else if (IS (c, "pm"))
    return parse_pm (dom, c, error);
  else if (IS (c, "on_poweroff"))
    return parse_lifecycle (c, &dom->on_poweroff, error);
  else if (IS (c, "on_reboot"))
    return parse_lifecycle (c, &dom->on_reboot, error);
  else if (IS (c, "on_crash"))
    return parse_lifecycle (c, &dom->on_crash, error);
  else if (IS (c, "devices"))
    mdx_parse_devices (dom, c, problems);
  else if (md_dom_lookup (mdx_ignored_elements, (const char *) c->name) >= 0)
    g_info ("domain XML line %ld: ignoring <%s>", xmlGetLineNo (c), (const char *) c->name);
  else
    return mdx_unexpected_element (error, root, c);
  return TRUE;
}

static gboolean
parse_domain_node (MdDomain *dom, xmlNode *root, GError **error)
{
  MdxProblems problems = { 0 };
  GError *err = NULL;
  guint seen = 0;
  gboolean ok;
  static const char *const singletons[] = {
    "name",          "uuid",      "title",    "description", "metadata", "memory",
    "currentMemory", "vcpu",      "os",       "features",    "cpu",      "clock",
    "on_poweroff",   "on_reboot", "on_crash", "devices",     "pm",       NULL
  };

  if (!IS (root, "domain"))
    return mdx_node_error (error, MD_ERROR_INVALID_XML, root, "the root element must be <domain>");
  if (root->ns)
    return mdx_node_error (error, MD_ERROR_INVALID_XML, root, "<domain> must have no namespace");
  if (!mdx_check_attrs (root, (const char *const[]){ "type", NULL },
                        (const char *const[]){ "id", NULL }, &err)
      || !mdx_string_attr_in (root, "type", (const char *const[]){ "kvm", "qemu", NULL },
                              &dom->virt_type, &err))
    mdx_problems_take (&problems, g_steal_pointer (&err));
  else if (!xmlHasProp (root, (const xmlChar *) "type"))
    {
      mdx_node_error (&err, MD_ERROR_INVALID_XML, root, "missing attribute 'type' (kvm or qemu)");
      mdx_problems_take (&problems, g_steal_pointer (&err));
    }

  /* Every child is parsed even after a failure: the user gets every problem
   * of the file in one answer, not one per define round. */
  for (xmlNode *c = root->children; c; c = c->next)
    {
      int idx;

      if (!mdx_blank_or_element (root, c, &err))
        {
          mdx_problems_take (&problems, g_steal_pointer (&err));
          continue;
        }
      if (c->type != XML_ELEMENT_NODE)
        continue;
      idx = md_dom_lookup (singletons, (const char *) c->name);
      if (idx >= 0 && (seen & (1u << idx)))
        mdx_node_error (&err, MD_ERROR_INVALID_XML, c, "element given twice");
      else
        {
          if (idx >= 0)
            seen |= 1u << idx;
          parse_domain_child (dom, root, c, &problems, &err);
        }
      mdx_problems_take (&problems, g_steal_pointer (&err));
    }
  if (!dom->name)
    {
      mdx_node_error (&err, MD_ERROR_INVALID_XML, root, "missing <name>");
      mdx_problems_take (&problems, g_steal_pointer (&err));
    }
  if (!dom->memory)
    {
      mdx_node_error (&err, MD_ERROR_INVALID_XML, root, "missing <memory>");
      mdx_problems_take (&problems, g_steal_pointer (&err));
    }
  ok = mdx_problems_report (&problems, error);
  mdx_problems_clear (&problems);
  if (!ok)
    return FALSE;
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

/* migrationd: internals shared by the domain XML parser files
 * (md-domain-xml.c, md-domain-xml-devices.c, md-domain-xml-util.c). */
#pragma once

#include "md-domain.h"

#include <libxml/tree.h>

G_BEGIN_DECLS

/* Elements libvirt knows and we do not implement (NotSupported, not
 * InvalidXML, so the user knows the XML itself is fine), and elements
 * accepted and dropped (see md-domain.h). */
extern const char *const mdx_unsupported_elements[];
extern const char *const mdx_ignored_elements[];

/* Set "domain XML line N: <node>: message" with @code; returns FALSE. */
gboolean mdx_node_error (GError **error, int code, xmlNode *node, const char *format, ...)
    G_GNUC_PRINTF (4, 5);
/* What to use instead of the unsupported element @name, or NULL. */
const char *mdx_hint (const char *name);
/* Append "; instead: @hint" to a MD_ERROR_NOT_SUPPORTED *@error; FALSE. */
gboolean mdx_hint_append (GError **error, const char *hint);
gboolean mdx_unexpected_element (GError **error, xmlNode *parent, xmlNode *child);
/* FALSE (with error) on stray non-blank text between elements. */
gboolean mdx_blank_or_element (xmlNode *parent, xmlNode *n, GError **error);
gboolean mdx_check_attrs (xmlNode *node, const char *const *allowed, const char *const *ignored,
                          GError **error);
char *mdx_attr (xmlNode *node, const char *name);
char *mdx_text_of (xmlNode *node);
gboolean mdx_parse_u64 (const char *s, guint64 max, guint64 *out);
/* Optional attributes; absent leaves *out alone. */
gboolean mdx_uint_attr (xmlNode *node, const char *name, guint max, guint *out, GError **error);
gboolean mdx_enum_attr (xmlNode *node, const char *name, const char *const *names,
                        gboolean required, int *out, GError **error);
gboolean mdx_string_attr_in (xmlNode *node, const char *name, const char *const *names, char **out,
                             GError **error);
gboolean mdx_yes_no_attr (xmlNode *node, const char *name, const char *yes, const char *no,
                          gboolean *out, GError **error);
gboolean mdx_parse_memory (xmlNode *node, guint64 *out, GError **error);
gboolean mdx_parse_alias (xmlNode *node, char **out, GError **error);
gboolean mdx_parse_address (xmlNode *node, MdDomainAddress *addr, GError **error);
gboolean mdx_parse_boot_order (xmlNode *node, guint *order, GError **error);
/* <alias> and <address> children; *handled FALSE for anything else. */
gboolean mdx_parse_common_child (xmlNode *child, char **alias, MdDomainAddress *address,
                                 gboolean *handled, GError **error);

/* Every problem of one parse, so a user fixes them in one round. */
typedef struct
{
  GPtrArray *messages;  /* char*, one per problem, in document order */
  gboolean any_invalid; /* some problem is not just MD_ERROR_NOT_SUPPORTED */
} MdxProblems;

/* Record @error (taken; NULL is ignored). */
void mdx_problems_take (MdxProblems *p, GError *error);
/* TRUE if no problem; else one error listing all, one line each. */
gboolean mdx_problems_report (MdxProblems *p, GError **error);
void mdx_problems_clear (MdxProblems *p);

/* <devices>: every device that fails is recorded in @problems. */
void mdx_parse_devices (MdDomain *dom, xmlNode *node, MdxProblems *problems);

#define IS(node, str) xmlStrEqual ((node)->name, (const xmlChar *) (str))

#define FOREACH_ELEMENT(parent, c)                                                                 \
  for (xmlNode *c = (parent)->children; c; c = c->next)                                            \
    if (!mdx_blank_or_element ((parent), c, error))                                                \
      return FALSE;                                                                                \
    else if (c->type == XML_ELEMENT_NODE)

#define COMMON_OR_FAIL(node, child, alias, address)                                                \
  {                                                                                                \
    gboolean handled_;                                                                             \
    if (!mdx_parse_common_child (child, alias, address, &handled_, error))                         \
      return FALSE;                                                                                \
    if (!handled_)                                                                                 \
      return mdx_unexpected_element (error, node, child);                                          \
  }

G_END_DECLS

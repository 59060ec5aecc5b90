/* libFuzzer target: the domain XML parser (md_domain_parse). Oracle:
 * nothing crashes or leaks, and whatever parses formats back to XML that
 * parses to an equal definition (the contract in md-domain.h). */
#include "config.h"

#include "domain/md-domain.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  g_autofree char *xml = g_strndup ((const char *) data, size);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdDomain) dom = md_domain_parse (xml, &error);
  g_autofree char *formatted = NULL;
  g_autoptr (MdDomain) again = NULL;
  g_autoptr (GError) again_error = NULL;

  if (dom == NULL)
    {
      g_assert_nonnull (error);
      return 0;
    }
  formatted = md_domain_format (dom);
  again = md_domain_parse (formatted, &again_error);
  if (again == NULL)
    g_error ("formatted definition does not parse: %s\n%s", again_error->message, formatted);
  if (!md_domain_equal (dom, again))
    g_error ("format/parse round trip changed the definition:\n%s", formatted);
  return 0;
}

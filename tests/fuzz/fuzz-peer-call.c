/* libFuzzer target: the Peer1 message check (md_peer_check_call) that runs
 * before every Peer1 handler, fed decoded GVariant messages: the first
 * byte picks the method, the rest is the serialized argument tuple in
 * that method's signature (as GDBus hands it over). A Prepare that passes
 * goes on to what its handler does first: parse the definition and the
 * options with the destination's port range. */
#include "config.h"

#include "common/md-options.h"
#include "domain/md-domain.h"
#include "peer/md-peer-check.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const struct
  {
    const char *method;
    const char *signature;
  } calls[] = {
    { "Hello", "(ussa{sv})" }, { "Prepare", "(ssa{sv})" }, { "Finish", "(sba{sv})" },
    { "Abort", "(ss)" },       { "CheckPaths", "(as)" },   { "Bogus", "(s)" },
  };
  g_autoptr (GBytes) bytes = NULL;
  g_autoptr (GVariant) args = NULL;
  g_autoptr (GError) error = NULL;
  guint which;

  if (size < 1)
    return 0;
  which = data[0] % G_N_ELEMENTS (calls);
  bytes = g_bytes_new (data + 1, size - 1);
  args = g_variant_ref_sink (
      g_variant_new_from_bytes (G_VARIANT_TYPE (calls[which].signature), bytes, FALSE));
  if (!md_peer_check_call (calls[which].method, args, &error))
    {
      g_assert_nonnull (error);
      return 0;
    }
  g_assert_cmpstr (calls[which].method, !=, "Bogus");
  if (g_str_equal (calls[which].method, "Prepare"))
    {
      const MdMigrateOptionsLimits limits = { MD_MIGRATE_OPTIONS_FROM_PEER, 49152, 49215 };
      const char *id, *xml;
      g_autoptr (GVariant) options = NULL;
      g_autoptr (MdDomain) dom = NULL;
      g_autoptr (MdMigrateOptions) opts = NULL;

      g_variant_get (args, "(&s&s@a{sv})", &id, &xml, &options);
      dom = md_domain_parse (xml, NULL);
      opts = md_migrate_options_parse (options, &limits, NULL);
    }
  return 0;
}

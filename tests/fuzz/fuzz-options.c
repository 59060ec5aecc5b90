/* libFuzzer target: the Guest1.Migrate option checker
 * (md_migrate_options_parse), fed serialized a{sv} GVariants, as a D-Bus
 * caller and as a peer. Oracle: whatever it accepts is inside the
 * documented ranges, and the Options view holds only migration options. */
#include "config.h"

#include "common/md-options.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static void
check_accepted (const MdMigrateOptions *opts, const MdMigrateOptionsLimits *limits)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_assert_true (opts->max_downtime >= MD_MIGRATE_MAX_DOWNTIME_MIN
                 && opts->max_downtime <= MD_MIGRATE_MAX_DOWNTIME_MAX);
  g_assert_true (opts->bandwidth <= MD_MIGRATE_BANDWIDTH_MAX);
  g_assert_true (opts->parallel_connections <= MD_MIGRATE_PARALLEL_MAX);
  g_assert_true (opts->compression == MD_MIGRATE_COMPRESSION_NONE
                 || opts->parallel_connections > 0);
  g_assert_true (opts->abort_after <= MD_MIGRATE_ABORT_AFTER_MAX);
  if (opts->migration_port != 0)
    g_assert_true (opts->migration_port >= limits->port_min
                   && opts->migration_port <= limits->port_max);
  if (opts->destination_name != NULL)
    g_assert_true (strlen (opts->destination_name) <= MD_MIGRATE_GUEST_NAME_MAX);
  if (opts->disks != NULL)
    g_assert_true (g_strv_length (opts->disks) <= MD_MIGRATE_DISKS_MAX);
  g_assert_nonnull (md_migrate_compression_to_string (opts->compression));
  g_assert_nonnull (md_migrate_copy_storage_to_string (opts->copy_storage));
  g_variant_iter_init (&iter, opts->given);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      g_assert_false (g_str_has_prefix (key, "auth."));
      g_assert_false (g_str_equal (key, "disks-info") || g_str_equal (key, "source-host"));
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static const MdMigrateOptionsLimits limits[] = {
    { MD_MIGRATE_OPTIONS_FROM_CALLER, MD_MIGRATE_PORT_MIN_DEFAULT, G_MAXUINT16 },
    { MD_MIGRATE_OPTIONS_FROM_PEER, 49152, 49215 },
  };
  g_autoptr (GBytes) bytes = g_bytes_new (data, size);
  g_autoptr (GVariant) options =
      g_variant_ref_sink (g_variant_new_from_bytes (G_VARIANT_TYPE_VARDICT, bytes, FALSE));

  for (guint i = 0; i < G_N_ELEMENTS (limits); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MdMigrateOptions) opts = md_migrate_options_parse (options, &limits[i], &error);

      if (opts == NULL)
        g_assert_nonnull (error);
      else
        check_accepted (opts, &limits[i]);
    }
  return 0;
}

/* migrationd: strict a{sv} option parsing — a typo in an option name must
 * be an error, never a silently ignored setting. */
#include "config.h"

#include <string.h>
#include <gio/gio.h>

#include "md-options.h"
#include "md-error.h"

gboolean
md_options_check (GVariant *options, const MdOptionSpec *specs, const char *method, GError **error)
{
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      const MdOptionSpec *spec = NULL;

      for (guint i = 0; specs[i].key != NULL; i++)
        if (g_str_equal (specs[i].key, key))
          spec = &specs[i];
      if (spec == NULL)
        {
          g_autoptr (GString) known = g_string_new (NULL);
          for (guint i = 0; specs[i].key != NULL; i++)
            g_string_append_printf (known, "%s%s", i > 0 ? ", " : "", specs[i].key);
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "unknown option '%s' for %s; known options: %s", key, method,
                       known->len > 0 ? known->str : "none");
          g_variant_unref (value);
          return FALSE;
        }
      if (!g_variant_is_of_type (value, G_VARIANT_TYPE (spec->type)))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "option '%s' of %s must be of type '%s', not '%s'", key, method, spec->type,
                       g_variant_get_type_string (value));
          g_variant_unref (value);
          return FALSE;
        }
    }
  return TRUE;
}

gboolean
md_options_get_boolean (GVariant *options, const char *key, gboolean fallback)
{
  gboolean value;

  return g_variant_lookup (options, key, "b", &value) ? value : fallback;
}

guint32
md_options_get_uint32 (GVariant *options, const char *key, guint32 fallback)
{
  guint32 value;

  return g_variant_lookup (options, key, "u", &value) ? value : fallback;
}

guint64
md_options_get_uint64 (GVariant *options, const char *key, guint64 fallback)
{
  guint64 value;

  return g_variant_lookup (options, key, "t", &value) ? value : fallback;
}

guint16
md_options_get_uint16 (GVariant *options, const char *key, guint16 fallback)
{
  guint16 value;

  return g_variant_lookup (options, key, "q", &value) ? value : fallback;
}

const char *
md_options_get_string (GVariant *options, const char *key)
{
  const char *value;

  return g_variant_lookup (options, key, "&s", &value) ? value : NULL;
}

/* ---- Guest1.Migrate options -------------------------------------------------- */

const MdOptionSpec md_migrate_option_specs[] = {
  { "live", "b" },
  { "offline", "b" },
  { "tls", "b" },
  { "bandwidth", "t" },
  { "max-downtime", "t" },
  { "auto-converge", "b" },
  { "postcopy", "b" },
  { "parallel-connections", "u" },
  { "compression", "s" },
  { "persist-destination", "b" },
  { "undefine-source", "b" },
  { "destination-xml", "s" },
  { "destination-name", "s" },
  { "migration-address", "s" },
  { "migration-port", "q" },
  { "paused-on-destination", "b" },
  { "abort-after", "u" },
  { "convergence", "s" },
  { "max-downtime-ceiling", "t" },
  { "postcopy-recovery-timeout", "u" },
  { "copy-storage", "s" },
  { "disks", "as" },
  { "nbd-port", "q" },
  { "nbd-address", "s" },
  { "verify", "b" },
  { "reuse-existing-images", "b" },
  { "transport", "s" },
  { "auth.no_user_interaction", "b" },
  { NULL, NULL },
};

/* The keys only the source daemon adds to Peer1.Prepare. */
static const MdOptionSpec peer_only_specs[] = {
  { "source-persistent", "b" }, { "source-host", "s" }, { "source-migration", "s" },
  { "disks-info", "aa{sv}" },   { NULL, NULL },
};

/* The keys of one disks-info entry and their types; others are refused. */
static const MdOptionSpec disk_info_specs[] = {
  { "target", "s" },       { "node", "s" },    { "path", "s" },           { "format", "s" },
  { "virtual-size", "t" }, { "backing", "s" }, { "backing-format", "s" }, { NULL, NULL },
};

static const char *const copy_storage_names[] = { "none", "all", "incremental", NULL };
static const char *const compression_names[] = { "none", "zlib", "zstd", NULL };
/* Index + 1 is the MdMigrateTransport. */
static const char *const transport_names[] = { "native", "tunnel", NULL };

const char *
md_migrate_transport_to_string (MdMigrateTransport transport)
{
  return transport == MD_MIGRATE_TRANSPORT_DEFAULT ? "default" : transport_names[transport - 1];
}

void
md_migrate_options_resolve_transport (MdMigrateOptions *opts, MdMigrateTransport config_default)
{
  if (opts->transport != MD_MIGRATE_TRANSPORT_DEFAULT)
    return;
  /* Postcopy: after the switch-over the running guest pulls its pages
   * through the stream. QEMU's own stream outlives a daemon crash or
   * restart; the tunnel's relays live in the daemons and would not. A
   * restarted daemon does recover the stream through a new tunnel, but
   * until then the guest on the destination waits for every page it has
   * not got (measured: a dirtying guest stopped while B's daemon was
   * dead). Unless asked, it goes native. */
  if (!opts->tls || opts->migration_port != 0 || opts->migration_address != NULL
      || opts->nbd_port != 0 || opts->nbd_address != NULL || opts->postcopy)
    opts->transport = MD_MIGRATE_TRANSPORT_NATIVE;
  else
    opts->transport = config_default;
}

void
md_migrate_options_resolve_parallel (MdMigrateOptions *opts)
{
  if (opts->parallel_given)
    return;
  opts->parallel_given = TRUE;
  opts->parallel_connections = opts->postcopy ? 0
                                              : (guint32) CLAMP (g_get_num_processors (), 1,
                                                                 MD_MIGRATE_PARALLEL_DEFAULT_MAX);
}

/* transport=tunnel carries everything through the peer port, encrypted by
 * the tunnel: options that choose another port or turn TLS off contradict
 * it. */
static gboolean
check_transport (MdMigrateOptions *opts, GError **error)
{
  const char *what = NULL;

  if (opts->transport != MD_MIGRATE_TRANSPORT_TUNNEL)
    return TRUE;
  if (opts->nbd_port != 0)
    what = "nbd-port";
  else if (opts->nbd_address != NULL)
    what = "nbd-address";
  else if (opts->migration_port != 0)
    what = "migration-port";
  else if (opts->migration_address != NULL)
    what = "migration-address";
  if (what != NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option '%s' contradicts transport=tunnel: the tunnel carries all migration "
                   "data through the peer port and opens no other port; drop '%s' or use "
                   "transport=native",
                   what, what);
      return FALSE;
    }
  if (!opts->tls)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'tls=false' contradicts transport=tunnel: the tunnel is always "
                   "encrypted (once, by TLS on the peer port); use transport=native for plain "
                   "TCP");
      return FALSE;
    }
  return TRUE;
}

static const char *const convergence_names[] = { "auto", "manual", NULL };

const char *
md_migrate_convergence_to_string (MdMigrateConvergence mode)
{
  return convergence_names[mode];
}

const char *
md_migrate_compression_to_string (MdMigrateCompression compression)
{
  return compression_names[compression];
}

const char *
md_migrate_copy_storage_to_string (MdMigrateCopyStorage mode)
{
  return copy_storage_names[mode];
}

static const MdOptionSpec *
find_spec (const MdOptionSpec *specs, const char *key)
{
  for (guint i = 0; specs[i].key != NULL; i++)
    if (g_str_equal (specs[i].key, key))
      return &specs[i];
  return NULL;
}

gboolean
md_migrate_check_bandwidth (guint64 bps, const char *what, GError **error)
{
  if (bps <= MD_MIGRATE_BANDWIDTH_MAX)
    return TRUE;
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
               "%s must be 0 (unlimited) to %" G_GUINT64_FORMAT " bytes/s, not %" G_GUINT64_FORMAT,
               what, MD_MIGRATE_BANDWIDTH_MAX, bps);
  return FALSE;
}

gboolean
md_migrate_check_max_downtime (guint64 ms, const char *what, GError **error)
{
  if (ms >= MD_MIGRATE_MAX_DOWNTIME_MIN && ms <= MD_MIGRATE_MAX_DOWNTIME_MAX)
    return TRUE;
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
               "%s must be %" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT " ms, not %" G_GUINT64_FORMAT,
               what, (guint64) MD_MIGRATE_MAX_DOWNTIME_MIN, (guint64) MD_MIGRATE_MAX_DOWNTIME_MAX,
               ms);
  return FALSE;
}

void
md_migrate_options_free (MdMigrateOptions *opts)
{
  if (opts == NULL)
    return;
  g_free (opts->destination_xml);
  g_free (opts->destination_name);
  g_free (opts->migration_address);
  g_free (opts->nbd_address);
  g_strfreev (opts->disks);
  g_free (opts->source_host);
  g_free (opts->source_migration);
  g_clear_pointer (&opts->disks_info, g_variant_unref);
  g_clear_pointer (&opts->given, g_variant_unref);
  g_free (opts);
}

/* Every key known for @origin, with exactly its type, at most once. */
static gboolean
check_keys (GVariant *options, MdMigrateOptionsOrigin origin, GError **error)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    {
      const MdOptionSpec *spec = find_spec (md_migrate_option_specs, key);

      if (spec == NULL && origin == MD_MIGRATE_OPTIONS_FROM_PEER)
        spec = find_spec (peer_only_specs, key);
      if (spec == NULL)
        {
          g_autoptr (GString) known = g_string_new (NULL);
          for (guint i = 0; md_migrate_option_specs[i].key != NULL; i++)
            g_string_append_printf (known, "%s%s", i > 0 ? ", " : "",
                                    md_migrate_option_specs[i].key);
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "unknown option '%.64s' for Migrate; known options: %s", key, known->str);
          g_variant_unref (value);
          return FALSE;
        }
      if (!g_variant_is_of_type (value, G_VARIANT_TYPE (spec->type)))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "option '%s' of Migrate must be of type '%s', not '%.32s'", key, spec->type,
                       g_variant_get_type_string (value));
          g_variant_unref (value);
          return FALSE;
        }
      if (!g_hash_table_add (seen, (gpointer) key))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "option '%s' of Migrate is given twice", key);
          g_variant_unref (value);
          return FALSE;
        }
    }
  return TRUE;
}

/* A string option no longer than @max bytes; NULL when absent. */
static gboolean
get_string (GVariant *options, const char *key, gsize max, char **out, GError **error)
{
  const char *value;

  if (!g_variant_lookup (options, key, "&s", &value))
    return TRUE;
  if (*value == '\0' || strlen (value) > max)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option '%s' must be 1-%" G_GSIZE_FORMAT " bytes long, not %" G_GSIZE_FORMAT,
                   key, max, strlen (value));
      return FALSE;
    }
  *out = g_strdup (value);
  return TRUE;
}

static gboolean
get_enum (GVariant *options, const char *key, const char *const *names, int *out, GError **error)
{
  const char *value;
  g_autofree char *allowed = NULL;

  if (!g_variant_lookup (options, key, "&s", &value))
    return TRUE;
  for (int i = 0; names[i] != NULL; i++)
    if (g_str_equal (names[i], value))
      {
        *out = i;
        return TRUE;
      }
  allowed = g_strjoinv (", ", (char **) names);
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
               "option '%s' must be one of %s, not '%.64s'", key, allowed, value);
  return FALSE;
}

static gboolean
get_address (GVariant *options, const char *key, char **out, GError **error)
{
  g_autoptr (GInetAddress) address = NULL;

  if (!get_string (options, key, MD_MIGRATE_ADDRESS_MAX, out, error))
    return FALSE;
  if (*out == NULL)
    return TRUE;
  address = g_inet_address_new_from_string (*out);
  if (address == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option '%s' must be an IPv4 or IPv6 address of the destination, not '%.64s'",
                   key, *out);
      return FALSE;
    }
  return TRUE;
}

static gboolean
get_port (GVariant *options, const char *key, const MdMigrateOptionsLimits *limits, guint16 *out,
          GError **error)
{
  guint min = limits->port_min, max = limits->port_max;

  if (!g_variant_lookup (options, key, "q", out) || *out == 0)
    {
      *out = 0;
      return TRUE;
    }
  if (min == 0 && max == 0)
    {
      min = MD_MIGRATE_PORT_MIN_DEFAULT;
      max = G_MAXUINT16;
    }
  if (*out >= min && *out <= max)
    return TRUE;
  g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "option '%s' must be %u-%u%s, not %u",
               key, min, max,
               limits->port_min != 0 ? " ([daemon] migration-port-min..max of the destination)"
                                     : " (0 lets the destination pick)",
               *out);
  return FALSE;
}

/* disks: target names, each short and given once. */
static gboolean
get_disks (GVariant *options, GStrv *out, GError **error)
{
  g_auto (GStrv) disks = NULL;

  if (!g_variant_lookup (options, "disks", "^as", &disks))
    return TRUE;
  if (g_strv_length (disks) > MD_MIGRATE_DISKS_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'disks' must name at most %u disks, not %u", MD_MIGRATE_DISKS_MAX,
                   g_strv_length (disks));
      return FALSE;
    }
  for (guint i = 0; disks[i] != NULL; i++)
    {
      if (*disks[i] == '\0' || strlen (disks[i]) > MD_MIGRATE_TARGET_MAX)
        {
          g_set_error (
              error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
              "option 'disks': a disk target must be 1-%u bytes long, not %" G_GSIZE_FORMAT,
              MD_MIGRATE_TARGET_MAX, strlen (disks[i]));
          return FALSE;
        }
      for (guint j = 0; j < i; j++)
        if (g_str_equal (disks[i], disks[j]))
          {
            g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                         "option 'disks' names disk %s twice", disks[i]);
            return FALSE;
          }
    }
  *out = g_steal_pointer (&disks);
  return TRUE;
}

/* disks-info (peer only): at most MD_MIGRATE_DISKS_MAX entries of known
 * keys and types, each with a target; strings of sane size. */
static gboolean
get_disks_info (GVariant *options, GVariant **out, GError **error)
{
  g_autoptr (GVariant) info = g_variant_lookup_value (options, "disks-info", NULL);
  GVariantIter entries;
  GVariant *entry;

  if (info == NULL)
    return TRUE;
  if (g_variant_n_children (info) > MD_MIGRATE_DISKS_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'disks-info' must have at most %u entries, not %" G_GSIZE_FORMAT,
                   MD_MIGRATE_DISKS_MAX, g_variant_n_children (info));
      return FALSE;
    }
  g_variant_iter_init (&entries, info);
  while ((entry = g_variant_iter_next_value (&entries)) != NULL)
    {
      g_autoptr (GVariant) owned = entry;
      GVariantIter iter;
      const char *key;
      GVariant *value;
      const char *target;

      if (!g_variant_lookup (entry, "target", "&s", &target) || *target == '\0'
          || strlen (target) > MD_MIGRATE_TARGET_MAX)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "option 'disks-info': every entry needs a 'target' of 1-%u bytes",
                       MD_MIGRATE_TARGET_MAX);
          return FALSE;
        }
      g_variant_iter_init (&iter, entry);
      while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
        {
          const MdOptionSpec *spec = find_spec (disk_info_specs, key);

          if (spec == NULL || !g_variant_is_of_type (value, G_VARIANT_TYPE (spec->type))
              || (g_variant_is_of_type (value, G_VARIANT_TYPE_STRING)
                  && g_variant_get_size (value) > MD_MIGRATE_PATH_MAX))
            {
              g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                           "option 'disks-info', disk %s: key '%.64s' is unknown, of the wrong "
                           "type or too long",
                           target, key);
              g_variant_unref (value);
              return FALSE;
            }
        }
    }
  *out = g_steal_pointer (&info);
  return TRUE;
}

static gboolean
check_numbers (MdMigrateOptions *opts, GError **error)
{
  if (!md_migrate_check_bandwidth (opts->bandwidth, "option 'bandwidth'", error)
      || !md_migrate_check_max_downtime (opts->max_downtime, "option 'max-downtime'", error))
    return FALSE;
  if (opts->parallel_connections > MD_MIGRATE_PARALLEL_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'parallel-connections' must be 1-%u (0 or absent: one stream), not %u",
                   MD_MIGRATE_PARALLEL_MAX, opts->parallel_connections);
      return FALSE;
    }
  if (opts->abort_after > MD_MIGRATE_ABORT_AFTER_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'abort-after' must be 0 (never) to %u seconds, not %u",
                   MD_MIGRATE_ABORT_AFTER_MAX, opts->abort_after);
      return FALSE;
    }
  if (opts->max_downtime_ceiling < opts->max_downtime
      || opts->max_downtime_ceiling > MD_MIGRATE_MAX_DOWNTIME_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'max-downtime-ceiling' must be max-downtime (%" G_GUINT64_FORMAT
                   " ms) to %" G_GUINT64_FORMAT " ms, not %" G_GUINT64_FORMAT,
                   opts->max_downtime, (guint64) MD_MIGRATE_MAX_DOWNTIME_MAX,
                   opts->max_downtime_ceiling);
      return FALSE;
    }
  if (opts->postcopy_recovery_timeout < MD_MIGRATE_RECOVERY_TIMEOUT_MIN
      || opts->postcopy_recovery_timeout > MD_MIGRATE_RECOVERY_TIMEOUT_MAX)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'postcopy-recovery-timeout' must be %u-%u seconds, not %u",
                   MD_MIGRATE_RECOVERY_TIMEOUT_MIN, MD_MIGRATE_RECOVERY_TIMEOUT_MAX,
                   opts->postcopy_recovery_timeout);
      return FALSE;
    }
  if (opts->compression != MD_MIGRATE_COMPRESSION_NONE && opts->parallel_connections == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'compression' needs 'parallel-connections' (QEMU compresses multifd "
                   "streams only)");
      return FALSE;
    }
  return TRUE;
}

/* The options as given minus auth.* and the peer-only keys. */
static GVariant *
migration_options_only (GVariant *options)
{
  GVariantBuilder builder;
  GVariantIter iter;
  const char *key;
  GVariant *value;

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_variant_iter_init (&iter, options);
  while (g_variant_iter_loop (&iter, "{&sv}", &key, &value))
    if (find_spec (md_migrate_option_specs, key) != NULL && !g_str_has_prefix (key, "auth."))
      g_variant_builder_add (&builder, "{sv}", key, value);
  return g_variant_ref_sink (g_variant_builder_end (&builder));
}

static gboolean
parse_fields (MdMigrateOptions *opts, GVariant *options, const MdMigrateOptionsLimits *limits,
              GError **error)
{
  int copy_storage = MD_MIGRATE_COPY_STORAGE_NONE, compression = MD_MIGRATE_COMPRESSION_NONE;
  int transport = -1;
  int convergence = MD_MIGRATE_CONVERGENCE_AUTO;

  opts->live = md_options_get_boolean (options, "live", TRUE);
  opts->offline = md_options_get_boolean (options, "offline", FALSE);
  opts->tls = md_options_get_boolean (options, "tls", TRUE);
  opts->auto_converge = md_options_get_boolean (options, "auto-converge", FALSE);
  opts->auto_converge_given = g_variant_lookup (options, "auto-converge", "b", NULL);
  opts->postcopy = md_options_get_boolean (options, "postcopy", FALSE);
  opts->persist_destination = md_options_get_boolean (options, "persist-destination", FALSE);
  opts->undefine_source = md_options_get_boolean (options, "undefine-source", FALSE);
  opts->paused_on_destination = md_options_get_boolean (options, "paused-on-destination", FALSE);
  opts->verify = md_options_get_boolean (options, "verify", FALSE);
  opts->bandwidth = md_options_get_uint64 (options, "bandwidth", 0);
  opts->max_downtime =
      md_options_get_uint64 (options, "max-downtime", MD_MIGRATE_MAX_DOWNTIME_DEFAULT);
  opts->parallel_connections = md_options_get_uint32 (options, "parallel-connections", 0);
  opts->parallel_given = g_variant_lookup (options, "parallel-connections", "u", NULL);
  opts->abort_after = md_options_get_uint32 (options, "abort-after", 0);
  opts->max_downtime_ceiling =
      md_options_get_uint64 (options, "max-downtime-ceiling", opts->max_downtime);
  opts->postcopy_recovery_timeout = md_options_get_uint32 (options, "postcopy-recovery-timeout",
                                                           MD_MIGRATE_RECOVERY_TIMEOUT_DEFAULT);
  opts->source_persistent = md_options_get_boolean (options, "source-persistent", FALSE);

  if (!get_enum (options, "copy-storage", copy_storage_names, &copy_storage, error)
      || !get_enum (options, "compression", compression_names, &compression, error)
      || !get_enum (options, "transport", transport_names, &transport, error)
      || !get_enum (options, "convergence", convergence_names, &convergence, error))
    return FALSE;
  opts->convergence = convergence;
  opts->copy_storage = copy_storage;
  opts->compression = compression;
  opts->transport = (MdMigrateTransport) (transport + 1);
  return check_numbers (opts, error)
         && get_string (options, "destination-xml", MD_MIGRATE_XML_MAX, &opts->destination_xml,
                        error)
         && get_string (options, "destination-name", MD_MIGRATE_GUEST_NAME_MAX,
                        &opts->destination_name, error)
         && get_address (options, "migration-address", &opts->migration_address, error)
         && get_address (options, "nbd-address", &opts->nbd_address, error)
         && get_port (options, "migration-port", limits, &opts->migration_port, error)
         && get_port (options, "nbd-port", limits, &opts->nbd_port, error)
         && get_disks (options, &opts->disks, error)
         && get_string (options, "source-host", MD_MIGRATE_ADDRESS_MAX, &opts->source_host, error)
         && get_string (options, "source-migration", MD_MIGRATE_PATH_MAX, &opts->source_migration,
                        error)
         && get_disks_info (options, &opts->disks_info, error) && check_transport (opts, error);
}

MdMigrateOptions *
md_migrate_options_parse (GVariant *options, const MdMigrateOptionsLimits *limits, GError **error)
{
  static const MdMigrateOptionsLimits caller = { MD_MIGRATE_OPTIONS_FROM_CALLER, 0, 0 };
  g_autoptr (MdMigrateOptions) opts = g_new0 (MdMigrateOptions, 1);

  if (limits == NULL)
    limits = &caller;
  if (!g_variant_is_of_type (options, G_VARIANT_TYPE_VARDICT))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "Migrate options must be of type a{sv}, not %.32s",
                   g_variant_get_type_string (options));
      return NULL;
    }
  opts->origin = limits->origin;
  if (!check_keys (options, limits->origin, error) || !parse_fields (opts, options, limits, error))
    return NULL;
  opts->given = migration_options_only (options);
  return g_steal_pointer (&opts);
}

/* Unit tests of the small modules: error domain, configuration, the polkit
 * table, option checking and trusted peers. */
#include "config.h"

#include "daemon/md-auth.h"
#include "daemon/md-machined.h"
#include "common/md-config.h"
#include "md-dbus-generated.h"
#include "common/md-error.h"
#include "common/md-options.h"
#include "peer/md-trust.h"

#include <glib/gstdio.h>

static void
test_error_names (void)
{
  g_autoptr (GHashTable) seen = g_hash_table_new (g_str_hash, g_str_equal);

  for (int code = 0; code < MD_ERROR_N_CODES; code++)
    {
      const char *name = md_error_code_to_dbus_name (code);
      g_autoptr (GError) error = g_error_new_literal (MD_ERROR, code, "boom");
      g_autofree char *remote = NULL;

      g_assert_nonnull (name);
      g_assert_true (g_str_has_prefix (name, "org.migrationd.Error."));
      g_assert_false (g_hash_table_contains (seen, name));
      g_hash_table_add (seen, (gpointer) name);
      /* Registered with GDBus: the name travels and comes back as the code. */
      remote = g_dbus_error_encode_gerror (error);
      g_assert_cmpstr (remote, ==, name);
    }
}

static void
test_error_convert (void)
{
  g_autoptr (GError) io = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "slow");
  g_autoptr (GError) io_md = md_error_convert (io, MD_ERROR_FAILED);
  g_autoptr (GError) remote =
      g_dbus_error_new_for_dbus_error ("org.migrationd.Error.PeerFailed", "host B went away");
  g_autoptr (GError) remote_md = md_error_convert (remote, MD_ERROR_FAILED);
  g_autoptr (GError) foreign = g_dbus_error_new_for_dbus_error ("com.example.Error.Odd", "strange");
  g_autoptr (GError) foreign_md = md_error_convert (foreign, MD_ERROR_QEMU_FAILED);
  g_autoptr (GError) kf = g_error_new_literal (G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "bad");
  g_autoptr (GError) kf_md = md_error_convert (kf, MD_ERROR_FAILED);

  g_assert_error (io_md, MD_ERROR, MD_ERROR_TIMEOUT);
  g_assert_cmpstr (io_md->message, ==, "slow");
  g_assert_error (remote_md, MD_ERROR, MD_ERROR_PEER_FAILED);
  g_assert_cmpstr (remote_md->message, ==, "host B went away");
  g_assert_error (foreign_md, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (foreign_md->message, "com.example.Error.Odd"));
  g_assert_error (kf_md, MD_ERROR, MD_ERROR_CONFIG);
}

static char *
write_config (const char *text)
{
  g_autoptr (GError) error = NULL;
  char *path = NULL;
  int fd = g_file_open_tmp ("md-config-XXXXXX.conf", &path, &error);

  g_assert_no_error (error);
  g_assert_true (g_file_set_contents (path, text, -1, &error));
  g_assert_no_error (error);
  close (fd);
  return path;
}

static void
test_config_defaults_and_values (void)
{
  g_autofree char *path = write_config ("[daemon]\nhost-name=alpha\npeer-port=50000\n"
                                        "migration-port-min=50010\nmigration-port-max=50020\n"
                                        "[tls]\nallowed-dns=CN=b,O=x; CN=c,O=x ;\n"
                                        "[peer beta]\naddress=192.0.2.2:50000\ndn=CN=b,O=x\n"
                                        "[networks]\ndefault=virbr0\nlab = br-lab\n"
                                        "[daemon]\ncpu-model-allow=Nehalem-v1;sse4.2\n");
  g_autoptr (GError) error = NULL;
  g_autoptr (MdConfig) config = md_config_load (path, &error);
  g_autoptr (MdConfig) defaults = md_config_new_default ();

  g_assert_no_error (error);
  g_assert_cmpstr (config->host_name, ==, "alpha");
  g_assert_cmpuint (config->peer_port, ==, 50000);
  g_assert_cmpuint (config->migration_port_min, ==, 50010);
  g_assert_cmpuint (g_strv_length (config->allowed_dns), ==, 2);
  g_assert_cmpstr (config->allowed_dns[1], ==, "CN=c,O=x");
  g_assert_nonnull (md_config_find_peer (config, "beta"));
  g_assert_null (md_config_find_peer (config, "gamma"));
  g_assert_cmpuint (defaults->peer_port, ==, 49200);
  g_assert_cmpuint (defaults->migration_port_min, ==, 49152);
  g_assert_cmpuint (defaults->migration_port_max, ==, 49215);
  g_assert_cmpstr (g_hash_table_lookup (config->networks, "default"), ==, "virbr0");
  g_assert_cmpstr (g_hash_table_lookup (config->networks, "lab"), ==, "br-lab");
  g_assert_cmpuint (g_hash_table_size (defaults->networks), ==, 0);
  g_assert_cmpuint (g_strv_length (config->cpu_model_allow), ==, 2);
  g_assert_cmpstr (config->cpu_model_allow[1], ==, "sse4.2");
  g_assert_null (defaults->cpu_model_allow);
  g_unlink (path);
}

static void
test_config_errors (void)
{
  const struct
  {
    const char *text;
    const char *fragment;
  } cases[] = {
    { "[daemon]\nfrobnicate=1\n", "unknown key 'frobnicate'" },
    { "[demon]\nhost-name=a\n", "unknown group [demon]" },
    { "[daemon]\npeer-port=0\n", "peer-port" },
    { "[daemon]\npeer-port=abc\n", "'abc'" },
    { "[daemon]\nmigration-port-min=60000\nmigration-port-max=50000\n", "above" },
    { "[daemon]\naccelerator=xen\n", "accelerator" },
    { "[peer a:b]\naddress=x\n", "one word" },
    { "[peer beta]\ndn=CN=b\n", "missing key 'address'" },
    { "[networks]\ndefault=../etc\n", "[networks] default: '../etc' is not a bridge name" },
    { "[networks]\ndefault=\n", "is not a bridge name" },
    { "[networks]\nlab=a-bridge-name-too-long\n", "1..15 characters" },
    { "not a key file", "cannot read configuration" },
    { "[storage]\nimage-dirs=images\n", "not an absolute path" },
    { "[storage]\nreuse-existing-images=maybe\n", "reuse-existing-images" },
    { "[storage]\nfs-check-timeout=0\n", "fs-check-timeout" },
    { "[storage]\nimages=/x\n", "unknown key 'images'" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *path = write_config (cases[i].text);
      g_autoptr (GError) error = NULL;
      g_autoptr (MdConfig) config = md_config_load (path, &error);

      g_assert_null (config);
      g_assert_error (error, MD_ERROR, MD_ERROR_CONFIG);
      if (strstr (error->message, cases[i].fragment) == NULL)
        g_error ("case %u: '%s' does not mention '%s'", i, error->message, cases[i].fragment);
      g_assert_nonnull (strstr (error->message, path));
      g_unlink (path);
    }
}

/* Deny by default means a method nobody put in the table is unusable:
 * every method of every bus interface must have an entry. */
static void
test_auth_table_is_complete (void)
{
  GDBusInterfaceInfo *infos[] = {
    md_dbus_manager1_interface_info (),
    md_dbus_guest1_interface_info (),
    md_dbus_migration1_interface_info (),
    md_dbus_evacuation1_interface_info (),
  };
  const char *changing[] = {
    "DefineGuest",   "CreateGuest", "AddPeer",     "RemovePeer", "Start",        "Shutdown",
    "Destroy",       "Pause",       "Resume",      "Reset",      "Undefine",     "Migrate",
    "Save",          "Restore",     "ManagedSave", "Cancel",     "SetBandwidth", "SetMaxDowntime",
    "StartPostcopy", "Evacuate",    NULL
  };

  for (guint i = 0; i < G_N_ELEMENTS (infos); i++)
    for (guint m = 0; infos[i]->methods[m] != NULL; m++)
      {
        const char *method = infos[i]->methods[m]->name;
        const char *action = md_auth_lookup_action (infos[i]->name, method);

        if (action == NULL)
          g_error ("%s.%s has no polkit table entry", infos[i]->name, method);
        /* Changing methods never open; reading ones never gated. */
        g_assert_cmpint (g_strv_contains (changing, method), !=,
                         g_str_equal (action, MD_ACTION_OPEN));
      }
  g_assert_null (md_auth_lookup_action ("org.migrationd.Peer1", "Prepare"));
  g_assert_null (md_auth_lookup_action ("org.freedesktop.DBus.Properties", "Set"));
  g_assert_cmpstr (md_auth_lookup_action ("org.migrationd.Guest1", "Migrate"), ==,
                   MD_ACTION_MIGRATE);
  /* An evacuation is many migrations: the same action, and controlled
   * as a migration is. */
  g_assert_cmpstr (md_auth_lookup_action ("org.migrationd.Manager1", "Evacuate"), ==,
                   MD_ACTION_MIGRATE);
  g_assert_cmpstr (md_auth_lookup_action ("org.migrationd.Evacuation1", "Cancel"), ==,
                   MD_ACTION_CONTROL);
}

static void
test_options (void)
{
  const MdOptionSpec specs[] = { { "start-paused", "b" }, { "timeout", "u" }, { NULL, NULL } };
  g_autoptr (GVariant) good =
      g_variant_ref_sink (g_variant_new_parsed ("{'start-paused': <true>, 'timeout': <uint32 5>}"));
  g_autoptr (GVariant) unknown =
      g_variant_ref_sink (g_variant_new_parsed ("{'start-pasued': <true>}"));
  g_autoptr (GVariant) wrong = g_variant_ref_sink (g_variant_new_parsed ("{'timeout': <'5'>}"));
  g_autoptr (GError) error = NULL;

  g_assert_true (md_options_check (good, specs, "Start", &error));
  g_assert_no_error (error);
  g_assert_true (md_options_get_boolean (good, "start-paused", FALSE));
  g_assert_cmpuint (md_options_get_uint32 (good, "timeout", 0), ==, 5);
  g_assert_cmpuint (md_options_get_uint32 (good, "missing", 7), ==, 7);
  g_assert_false (md_options_check (unknown, specs, "Start", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "start-pasued"));
  g_clear_error (&error);
  g_assert_false (md_options_check (wrong, specs, "Start", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "'timeout'"));
}

/* Every Migrate option with a bad value is refused by name; defaults are
 * filled in; the Options view drops auth.* keys. */
static void
test_migrate_options_defaults (void)
{
  g_autoptr (GVariant) empty = g_variant_ref_sink (g_variant_new_parsed ("@a{sv} {}"));
  g_autoptr (GVariant) given = g_variant_ref_sink (g_variant_new_parsed (
      "{'tls': <false>, 'parallel-connections': <uint32 4>, 'compression': <'zstd'>, "
      "'copy-storage': <'incremental'>, 'disks': <['vda', 'vdb']>, "
      "'migration-port': <uint16 49152>, 'migration-address': <'192.0.2.2'>, "
      "'auth.no_user_interaction': <true>}"));
  g_autoptr (GError) error = NULL;
  g_autoptr (MdMigrateOptions) defaults = md_migrate_options_parse (empty, NULL, &error);
  g_autoptr (MdMigrateOptions) opts = NULL;

  g_assert_no_error (error);
  g_assert_true (defaults->live);
  g_assert_true (defaults->tls);
  g_assert_false (defaults->offline);
  g_assert_cmpuint (defaults->max_downtime, ==, MD_MIGRATE_MAX_DOWNTIME_DEFAULT);
  g_assert_cmpuint (defaults->bandwidth, ==, 0);
  g_assert_cmpint (defaults->copy_storage, ==, MD_MIGRATE_COPY_STORAGE_NONE);
  g_assert_null (defaults->disks);

  opts = md_migrate_options_parse (given, NULL, &error);
  g_assert_no_error (error);
  g_assert_false (opts->tls);
  g_assert_cmpuint (opts->parallel_connections, ==, 4);
  g_assert_cmpint (opts->compression, ==, MD_MIGRATE_COMPRESSION_ZSTD);
  g_assert_cmpstr (md_migrate_compression_to_string (opts->compression), ==, "zstd");
  g_assert_cmpint (opts->copy_storage, ==, MD_MIGRATE_COPY_STORAGE_INCREMENTAL);
  g_assert_cmpuint (g_strv_length (opts->disks), ==, 2);
  g_assert_cmpuint (opts->migration_port, ==, 49152);
  g_assert_cmpstr (opts->migration_address, ==, "192.0.2.2");
  g_assert_false (g_variant_lookup (opts->given, "auth.no_user_interaction", "b", NULL));
  g_assert_true (g_variant_lookup (opts->given, "tls", "b", NULL));
}

static void
test_migrate_options_refused (void)
{
  const struct
  {
    const char *options;
    const char *named;
  } bad[] = {
    { "{'max-downtime': <uint64 0>}", "'max-downtime'" },
    { "{'max-downtime': <uint64 18446744073709551615>}", "'max-downtime'" },
    { "{'max-downtime': <uint64 2000001>}", "'max-downtime'" },
    { "{'bandwidth': <uint64 18446744073709551615>}", "'bandwidth'" },
    { "{'parallel-connections': <uint32 17>}", "'parallel-connections'" },
    { "{'parallel-connections': <uint32 100000>}", "'parallel-connections'" },
    { "{'abort-after': <uint32 4294967295>}", "'abort-after'" },
    { "{'migration-port': <uint16 22>}", "'migration-port'" },
    { "{'migration-port': <uint16 1>}", "'migration-port'" },
    { "{'nbd-port': <uint16 80>}", "'nbd-port'" },
    { "{'copy-storage': <'some'>}", "'copy-storage'" },
    { "{'compression': <'lz4'>, 'parallel-connections': <uint32 2>}", "'compression'" },
    { "{'compression': <'zlib'>}", "'compression'" },
    { "{'migration-address': <'host; rm -rf'>}", "'migration-address'" },
    { "{'nbd-address': <''>}", "'nbd-address'" },
    { "{'destination-name': <''>}", "'destination-name'" },
    { "{'disks': <['vda', 'vda']>}", "'disks'" },
    { "{'disks': <['']>}", "'disks'" },
    { "{'tls': <'yes'>}", "'tls'" },
    { "{'bandwidth': <uint32 5>}", "'bandwidth'" },
    { "{'live': <true>, 'live': <false>}", "'live'" },
    { "{'no-such-option': <true>}", "'no-such-option'" },
    /* Peer-only keys are not for D-Bus callers. */
    { "{'source-host': <'a'>}", "'source-host'" },
    { "{'disks-info': <@aa{sv} []>}", "'disks-info'" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GVariant) options = g_variant_ref_sink (g_variant_new_parsed (bad[i].options));
      g_autoptr (GError) error = NULL;
      g_autoptr (MdMigrateOptions) opts = md_migrate_options_parse (options, NULL, &error);

      g_test_message ("%s", bad[i].options);
      g_assert_null (opts);
      g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, bad[i].named));
    }
}

static void
test_migrate_options_peer (void)
{
  const MdMigrateOptionsLimits limits = { MD_MIGRATE_OPTIONS_FROM_PEER, 49400, 49419 };
  g_autoptr (GVariant) good = g_variant_ref_sink (g_variant_new_parsed (
      "{'source-host': <'hostA'>, 'source-persistent': <true>, 'migration-port': <uint16 49401>, "
      "'disks-info': <[{'target': <'vdb'>, 'path': <'/x.qcow2'>, 'virtual-size': <uint64 1>}]>}"));
  g_autoptr (GVariant) out_of_range =
      g_variant_ref_sink (g_variant_new_parsed ("{'migration-port': <uint16 49420>}"));
  g_autoptr (GVariant) wrong_type =
      g_variant_ref_sink (g_variant_new_parsed ("{'source-persistent': <'yes'>}"));
  g_autoptr (GVariant) bad_info = g_variant_ref_sink (
      g_variant_new_parsed ("{'disks-info': <[{'target': <'vdb'>, 'path': <uint32 1>}]>}"));
  g_autoptr (GError) error = NULL;
  g_autoptr (MdMigrateOptions) opts = md_migrate_options_parse (good, &limits, &error);

  g_assert_no_error (error);
  g_assert_cmpstr (opts->source_host, ==, "hostA");
  g_assert_true (opts->source_persistent);
  g_assert_cmpuint (g_variant_n_children (opts->disks_info), ==, 1);
  g_assert_false (g_variant_lookup (opts->given, "source-host", "&s", NULL));
  g_assert_null (md_migrate_options_parse (out_of_range, &limits, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "49400-49419"));
  g_clear_error (&error);
  g_assert_null (md_migrate_options_parse (wrong_type, &limits, &error));
  g_assert_nonnull (strstr (error->message, "'source-persistent'"));
  g_clear_error (&error);
  g_assert_null (md_migrate_options_parse (bad_info, &limits, &error));
  g_assert_nonnull (strstr (error->message, "'disks-info'"));
}

static void
test_trust (void)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("md-trust-XXXXXX", &error);
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (MdTrust) trust = NULL;
  g_autoptr (MdTrust) again = NULL;
  g_autofree char *peers_conf = NULL;

  g_assert_no_error (error);
  g_strfreev (config->allowed_dns);
  config->allowed_dns = g_strsplit ("CN=static,O=x", ";", -1);
  trust = md_trust_new (config, dir);
  g_assert_cmpuint (g_strv_length ((char **) md_trust_allowed_dns (trust)), ==, 1);
  g_assert_true (md_trust_add (trust, "beta", "192.0.2.2", "CN=beta,O=x", &error));
  g_assert_no_error (error);
  g_assert_true (g_strv_contains (md_trust_allowed_dns (trust), "CN=beta,O=x"));
  g_assert_false (md_trust_add (trust, "beta", "192.0.2.3", "CN=c", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS);
  g_clear_error (&error);
  g_assert_false (md_trust_add (trust, "gamma", "192.0.2.3:0", "CN=c", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  /* Persisted: a new instance sees it. */
  again = md_trust_new (config, dir);
  g_assert_nonnull (md_trust_find (again, "beta"));
  g_assert_true (md_trust_remove (trust, "beta", &error));
  g_assert_false (g_strv_contains (md_trust_allowed_dns (trust), "CN=beta,O=x"));
  g_assert_false (md_trust_remove (trust, "beta", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_FOUND);
  peers_conf = g_build_filename (dir, "peers.conf", NULL);
  g_unlink (peers_conf);
  g_rmdir (dir);
}

/* machined accepts host-name-like machine names only. */
static void
test_machine_names (void)
{
  static const struct
  {
    const char *guest, *machine;
  } cases[] = {
    { "vm1", "md-vm1" },
    { "web.1_a+b", "md-web-1-a-b" },
    { "trailing_", "md-trailing" },
    { "x+++", "md-x" },
  };
  g_autofree char *long_name = g_strnfill (100, 'a');
  g_autofree char *long_machine = md_machined_machine_name (long_name);

  for (gsize i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *got = md_machined_machine_name (cases[i].guest);
      g_assert_cmpstr (got, ==, cases[i].machine);
    }
  g_assert_cmpuint (strlen (long_machine), ==, 64);
  g_assert_true (g_str_has_prefix (long_machine, "md-aaa"));
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/error/names", test_error_names);
  g_test_add_func ("/machined/names", test_machine_names);
  g_test_add_func ("/error/convert", test_error_convert);
  g_test_add_func ("/config/values", test_config_defaults_and_values);
  g_test_add_func ("/config/errors", test_config_errors);
  g_test_add_func ("/auth/table-complete", test_auth_table_is_complete);
  g_test_add_func ("/options/check", test_options);
  g_test_add_func ("/options/migrate-defaults", test_migrate_options_defaults);
  g_test_add_func ("/options/migrate-refused", test_migrate_options_refused);
  g_test_add_func ("/options/migrate-peer", test_migrate_options_peer);
  g_test_add_func ("/trust/add-remove", test_trust);
  return g_test_run ();
}

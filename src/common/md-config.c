/* migrationd: configuration (migrationd.conf). Strict: a typo in a key is
 * an error at start, not a silently ignored setting. */
#include "config.h"

#include "md-config.h"
#include "md-error.h"

#include <gio/gio.h>

static void
md_config_peer_free (MdConfigPeer *peer)
{
  g_free (peer->name);
  g_free (peer->address);
  g_free (peer->dn);
  g_free (peer);
}

MdConfig *
md_config_new_default (void)
{
  MdConfig *config = g_new0 (MdConfig, 1);

  config->state_dir = g_strdup (MD_STATEDIR);
  config->runtime_dir = g_strdup (MD_RUNTIMEDIR);
  config->host_name = g_strdup (g_get_host_name ());
  config->listen_address = g_strdup ("0.0.0.0");
  config->peer_port = MD_DEFAULT_PEER_PORT;
  config->migration_port_min = 49152;
  config->migration_port_max = 49215;
  config->migration_keep_seconds = 600;
  config->shutdown_timeout = 120;
  config->peer_timeout = 30;
  config->accelerator = g_strdup ("auto");
  config->on_stop = g_strdup ("keep");
  config->transport = g_strdup ("tunnel");
  config->qemu_binary = g_strdup (MD_QEMU_BINARY);
  config->tls_dir = g_build_filename (MD_SYSCONFDIR, "tls", NULL);
  config->allowed_dns = g_new0 (char *, 1);
  config->handshake_timeout = 10;
  config->image_dirs = g_new0 (char *, 1);
  config->fs_check_timeout = 20;
  config->qemu_user = g_strdup ("");
  config->qemu_uid_range = g_strdup (MD_DEFAULT_QEMU_UID_RANGE);
  config->qemu_uid_min = MD_DEFAULT_QEMU_UID_MIN;
  config->qemu_uid_max = MD_DEFAULT_QEMU_UID_MAX;
  config->qemu_tasks_max = 1024;
  config->qemu_memory_overhead = 1024;
  config->stall_iterations = 1;
  config->stall_dirty_percent = 100;
  config->stall_shrink_percent = 10;
  config->downtime_steps = 3;
  config->throttle_iterations = 20;
  config->throttle_before_postcopy = FALSE;
  config->early_sample_seconds = 1;
  config->early_dirty_percent = 50;
  config->peers = g_ptr_array_new_with_free_func ((GDestroyNotify) md_config_peer_free);
  config->networks = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  return config;
}

void
md_config_free (MdConfig *config)
{
  if (config == NULL)
    return;
  g_free (config->config_path);
  g_free (config->state_dir);
  g_free (config->runtime_dir);
  g_free (config->host_name);
  g_free (config->listen_address);
  g_strfreev (config->cpu_model_allow);
  g_free (config->accelerator);
  g_free (config->on_stop);
  g_free (config->transport);
  g_free (config->qemu_binary);
  g_free (config->tls_dir);
  g_strfreev (config->allowed_dns);
  g_strfreev (config->image_dirs);
  g_free (config->qemu_user);
  g_free (config->qemu_uid_range);
  g_ptr_array_unref (config->peers);
  g_hash_table_unref (config->networks);
  g_free (config);
}

GStrv
md_config_get_image_dirs (const MdConfig *config)
{
  if (config->image_dirs != NULL && config->image_dirs[0] != NULL)
    return g_strdupv (config->image_dirs);
  g_autofree char *dir = g_build_filename (config->state_dir, "images", NULL);
  char *dirs[] = { dir, NULL };

  return g_strdupv (dirs);
}

const MdConfigPeer *
md_config_find_peer (const MdConfig *config, const char *name)
{
  for (guint i = 0; i < config->peers->len; i++)
    {
      const MdConfigPeer *peer = g_ptr_array_index (config->peers, i);
      if (g_strcmp0 (peer->name, name) == 0)
        return peer;
    }
  return NULL;
}

typedef enum
{
  KEY_STRING,
  KEY_PORT,
  KEY_UINT,
  KEY_LIST,
  KEY_BOOL,
} KeyType;

typedef struct
{
  const char *group;
  const char *key;
  KeyType type;
  gsize offset;
  guint64 min;
  guint64 max;
} KeyDesc;

#define OFF(field) G_STRUCT_OFFSET (MdConfig, field)

static const KeyDesc known_keys[] = {
  { "daemon", "host-name", KEY_STRING, OFF (host_name), 0, 0 },
  { "daemon", "listen-address", KEY_STRING, OFF (listen_address), 0, 0 },
  { "daemon", "peer-port", KEY_PORT, OFF (peer_port), 1, 65535 },
  { "daemon", "migration-port-min", KEY_PORT, OFF (migration_port_min), 1, 65535 },
  { "daemon", "migration-port-max", KEY_PORT, OFF (migration_port_max), 1, 65535 },
  { "daemon", "migration-keep-seconds", KEY_UINT, OFF (migration_keep_seconds), 0, 86400 * 7 },
  { "daemon", "shutdown-timeout", KEY_UINT, OFF (shutdown_timeout), 1, 3600 },
  { "daemon", "peer-timeout", KEY_UINT, OFF (peer_timeout), 2, 3600 },
  { "daemon", "accelerator", KEY_STRING, OFF (accelerator), 0, 0 },
  { "daemon", "on-stop", KEY_STRING, OFF (on_stop), 0, 0 },
  { "daemon", "qemu-binary", KEY_STRING, OFF (qemu_binary), 0, 0 },
  { "daemon", "cpu-model-allow", KEY_LIST, OFF (cpu_model_allow), 0, 0 },
  { "tls", "directory", KEY_STRING, OFF (tls_dir), 0, 0 },
  { "tls", "allowed-dns", KEY_LIST, OFF (allowed_dns), 0, 0 },
  { "tls", "handshake-timeout", KEY_UINT, OFF (handshake_timeout), 1, 600 },
  { "storage", "image-dirs", KEY_LIST, OFF (image_dirs), 0, 0 },
  { "storage", "reuse-existing-images", KEY_BOOL, OFF (reuse_existing_images), 0, 0 },
  { "storage", "fs-check-timeout", KEY_UINT, OFF (fs_check_timeout), 1, 3600 },
  { "migration", "transport", KEY_STRING, OFF (transport), 0, 0 },
  { "qemu", "user", KEY_STRING, OFF (qemu_user), 0, 0 },
  { "qemu", "uid-range", KEY_STRING, OFF (qemu_uid_range), 0, 0 },
  { "qemu", "tasks-max", KEY_UINT, OFF (qemu_tasks_max), 16, 1048576 },
  { "qemu", "memory-overhead", KEY_UINT, OFF (qemu_memory_overhead), 64, 1048576 },
  { "convergence", "stall-iterations", KEY_UINT, OFF (stall_iterations), 1, 100 },
  { "convergence", "stall-dirty-percent", KEY_UINT, OFF (stall_dirty_percent), 1, 1000 },
  { "convergence", "stall-shrink-percent", KEY_UINT, OFF (stall_shrink_percent), 0, 99 },
  { "convergence", "downtime-steps", KEY_UINT, OFF (downtime_steps), 1, 20 },
  { "convergence", "throttle-iterations", KEY_UINT, OFF (throttle_iterations), 1, 100 },
  { "convergence", "throttle-before-postcopy", KEY_BOOL, OFF (throttle_before_postcopy), 0, 0 },
  { "convergence", "early-sample-seconds", KEY_UINT, OFF (early_sample_seconds), 0, 60 },
  { "convergence", "early-dirty-percent", KEY_UINT, OFF (early_dirty_percent), 10, 10000 },
};

static const KeyDesc *
find_key (const char *group, const char *key)
{
  for (guint i = 0; i < G_N_ELEMENTS (known_keys); i++)
    if (g_str_equal (known_keys[i].group, group) && g_str_equal (known_keys[i].key, key))
      return &known_keys[i];
  return NULL;
}

static gboolean
load_key (MdConfig *config, GKeyFile *kf, const char *path, const KeyDesc *desc, GError **error)
{
  guint8 *base = (guint8 *) config;
  g_autoptr (GError) local_error = NULL;

  switch (desc->type)
    {
    case KEY_STRING:
      {
        char **field = (char **) (base + desc->offset);
        char *value = g_key_file_get_string (kf, desc->group, desc->key, &local_error);
        if (value == NULL)
          break;
        g_free (*field);
        *field = g_strstrip (value);
        return TRUE;
      }
    case KEY_LIST:
      {
        char ***field = (char ***) (base + desc->offset);
        g_auto (GStrv) value =
            g_key_file_get_string_list (kf, desc->group, desc->key, NULL, &local_error);
        g_autoptr (GPtrArray) items = g_ptr_array_new_with_free_func (g_free);
        if (value == NULL)
          break;
        for (guint i = 0; value[i] != NULL; i++)
          {
            char *item = g_strstrip (g_strdup (value[i]));
            if (*item == '\0')
              g_free (item);
            else
              g_ptr_array_add (items, item);
          }
        g_ptr_array_add (items, NULL);
        g_strfreev (*field);
        *field = (char **) g_ptr_array_free (g_steal_pointer (&items), FALSE);
        return TRUE;
      }
    case KEY_BOOL:
      {
        gboolean value = g_key_file_get_boolean (kf, desc->group, desc->key, &local_error);
        if (local_error != NULL)
          break;
        *(gboolean *) (base + desc->offset) = value;
        return TRUE;
      }
    case KEY_PORT:
    case KEY_UINT:
      {
        g_autofree char *raw = g_key_file_get_string (kf, desc->group, desc->key, &local_error);
        guint64 value = 0;
        if (raw == NULL)
          break;
        g_strstrip (raw);
        if (!g_ascii_string_to_unsigned (raw, 10, desc->min, desc->max, &value, NULL))
          {
            g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                         "%s: [%s] %s: '%s' is not a number between %" G_GUINT64_FORMAT
                         " and %" G_GUINT64_FORMAT,
                         path, desc->group, desc->key, raw, desc->min, desc->max);
            return FALSE;
          }
        if (desc->type == KEY_PORT)
          *(guint16 *) (base + desc->offset) = (guint16) value;
        else
          *(guint *) (base + desc->offset) = (guint) value;
        return TRUE;
      }
    }

  g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "%s: [%s] %s: %s", path, desc->group, desc->key,
               local_error->message);
  return FALSE;
}

static gboolean
load_peer_group (MdConfig *config, GKeyFile *kf, const char *path, const char *group,
                 GError **error)
{
  const char *name = group + strlen ("peer ");
  g_auto (GStrv) keys = g_key_file_get_keys (kf, group, NULL, NULL);
  MdConfigPeer *peer;

  if (*name == '\0' || strchr (name, ':') != NULL || strchr (name, ' ') != NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "%s: [%s]: a peer name must be one word without ':'", path, group);
      return FALSE;
    }
  for (guint i = 0; keys[i] != NULL; i++)
    if (!g_str_equal (keys[i], "address") && !g_str_equal (keys[i], "dn"))
      {
        g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                     "%s: [%s]: unknown key '%s' (known: address, dn)", path, group, keys[i]);
        return FALSE;
      }
  peer = g_new0 (MdConfigPeer, 1);
  peer->name = g_strdup (name);
  peer->address = g_key_file_get_string (kf, group, "address", NULL);
  peer->dn = g_key_file_get_string (kf, group, "dn", NULL);
  g_ptr_array_add (config->peers, peer);
  if (peer->address == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "%s: [%s]: missing key 'address'", path,
                   group);
      return FALSE;
    }
  return TRUE;
}

/* [networks]: NAME = BRIDGE (a Linux interface name). */
static gboolean
load_networks_group (MdConfig *config, GKeyFile *kf, const char *path, GError **error)
{
  g_auto (GStrv) keys = g_key_file_get_keys (kf, "networks", NULL, NULL);

  for (guint i = 0; keys[i] != NULL; i++)
    {
      g_autofree char *bridge = g_key_file_get_string (kf, "networks", keys[i], NULL);
      gsize len = bridge ? strlen (bridge) : 0;

      if (len == 0 || len > 15 || strpbrk (bridge, "/ \t:") != NULL || g_str_equal (bridge, ".")
          || g_str_equal (bridge, ".."))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                       "%s: [networks] %s: '%s' is not a bridge name (1..15 characters, no / : "
                       "or spaces)",
                       path, keys[i], bridge ? bridge : "");
          return FALSE;
        }
      g_hash_table_replace (config->networks, g_strdup (keys[i]), g_steal_pointer (&bridge));
    }
  return TRUE;
}

/* [qemu] uid-range = FIRST-LAST: a range of unused uids (and the gids of
 * the same numbers), never 0 and not the nobody/overflow id. */
static gboolean
parse_uid_range (MdConfig *config, const char *path, GError **error)
{
  g_auto (GStrv) parts = g_strsplit (config->qemu_uid_range, "-", 2);
  guint64 first = 0, last = 0;

  if (g_strv_length (parts) != 2
      || !g_ascii_string_to_unsigned (g_strstrip (parts[0]), 10, 1, G_MAXINT32 - 1, &first, NULL)
      || !g_ascii_string_to_unsigned (g_strstrip (parts[1]), 10, 1, G_MAXINT32 - 1, &last, NULL)
      || first > last || (first <= 65534 && last >= 65534))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "%s: [qemu] uid-range: '%s' is not FIRST-LAST (1 <= FIRST <= LAST < 2^31, "
                   "not containing 65534, e.g. %s)",
                   path, config->qemu_uid_range, MD_DEFAULT_QEMU_UID_RANGE);
      return FALSE;
    }
  config->qemu_uid_min = (guint32) first;
  config->qemu_uid_max = (guint32) last;
  return TRUE;
}

static gboolean
validate (MdConfig *config, const char *path, GError **error)
{
  if (!parse_uid_range (config, path, error))
    return FALSE;
  if (g_str_equal (config->qemu_user, "root") || g_str_equal (config->qemu_user, "0"))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "%s: [qemu] user: QEMU never runs as root; name an unprivileged user or "
                   "leave it empty for one uid per guest from [qemu] uid-range",
                   path);
      return FALSE;
    }
  if (config->migration_port_min > config->migration_port_max)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "%s: [daemon] migration-port-min (%u) is above migration-port-max (%u)", path,
                   config->migration_port_min, config->migration_port_max);
      return FALSE;
    }
  if (!g_str_equal (config->accelerator, "auto") && !g_str_equal (config->accelerator, "kvm")
      && !g_str_equal (config->accelerator, "tcg"))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "%s: [daemon] accelerator: '%s' is not one of auto, kvm, tcg", path,
                   config->accelerator);
      return FALSE;
    }
  if (!g_str_equal (config->on_stop, "keep") && !g_str_equal (config->on_stop, "managed-save"))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "%s: [daemon] on-stop: '%s' is not one of keep, managed-save", path,
                   config->on_stop);
      return FALSE;
    }
  if (!g_str_equal (config->transport, "tunnel") && !g_str_equal (config->transport, "native"))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "%s: [migration] transport: '%s' is not one of tunnel, native", path,
                   config->transport);
      return FALSE;
    }
  for (guint i = 0; config->image_dirs[i] != NULL; i++)
    if (!g_path_is_absolute (config->image_dirs[i]))
      {
        g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                     "%s: [storage] image-dirs: '%s' is not an absolute path", path,
                     config->image_dirs[i]);
        return FALSE;
      }
  if (*config->host_name == '\0')
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "%s: [daemon] host-name is empty", path);
      return FALSE;
    }
  return TRUE;
}

MdConfig *
md_config_load (const char *path, GError **error)
{
  g_autoptr (MdConfig) config = md_config_new_default ();
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) local_error = NULL;
  g_autofree char *default_path = g_build_filename (MD_SYSCONFDIR, "migrationd.conf", NULL);
  const char *file = path != NULL ? path : default_path;
  g_auto (GStrv) groups = NULL;

  if (!g_key_file_load_from_file (kf, file, G_KEY_FILE_NONE, &local_error))
    {
      if (path == NULL && g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return g_steal_pointer (&config);
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "cannot read configuration %s: %s", file,
                   local_error->message);
      return NULL;
    }
  config->config_path = g_strdup (file);

  groups = g_key_file_get_groups (kf, NULL);
  for (guint g = 0; groups[g] != NULL; g++)
    {
      const char *group = groups[g];
      g_auto (GStrv) keys = NULL;

      if (g_str_has_prefix (group, "peer "))
        {
          if (!load_peer_group (config, kf, file, group, error))
            return NULL;
          continue;
        }
      if (g_str_equal (group, "networks"))
        {
          if (!load_networks_group (config, kf, file, error))
            return NULL;
          continue;
        }
      if (!g_str_equal (group, "daemon") && !g_str_equal (group, "tls")
          && !g_str_equal (group, "storage") && !g_str_equal (group, "qemu")
          && !g_str_equal (group, "convergence") && !g_str_equal (group, "migration"))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                       "%s: unknown group [%s] (known: [daemon], [tls], [storage], [qemu], "
                       "[convergence], [migration], [networks], [peer NAME])",
                       file, group);
          return NULL;
        }
      keys = g_key_file_get_keys (kf, group, NULL, NULL);
      for (guint k = 0; keys[k] != NULL; k++)
        {
          const KeyDesc *desc = find_key (group, keys[k]);
          if (desc == NULL)
            {
              g_set_error (error, MD_ERROR, MD_ERROR_CONFIG, "%s: [%s]: unknown key '%s'", file,
                           group, keys[k]);
              return NULL;
            }
          if (!load_key (config, kf, file, desc, error))
            return NULL;
        }
    }

  if (!validate (config, file, error))
    return NULL;
  return g_steal_pointer (&config);
}

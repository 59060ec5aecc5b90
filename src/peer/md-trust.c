/* migrationd: trusted peers and the DN allow-list they make. */
#include "config.h"

#include "md-trust.h"
#include "common/md-error.h"

#include <gio/gio.h>

struct _MdTrust
{
  const MdConfig *config;
  char *path;
  GPtrArray *added; /* MdConfigPeer* */
  GStrv allowed_dns;
};

static void
peer_free (MdConfigPeer *peer)
{
  g_free (peer->name);
  g_free (peer->address);
  g_free (peer->dn);
  g_free (peer);
}

static void
rebuild_allowed_dns (MdTrust *trust)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_autoptr (GPtrArray) peers = md_trust_list (trust);

  for (guint i = 0; trust->config->allowed_dns[i] != NULL; i++)
    g_strv_builder_add (builder, trust->config->allowed_dns[i]);
  for (guint i = 0; i < peers->len; i++)
    {
      const MdConfigPeer *peer = g_ptr_array_index (peers, i);
      if (peer->dn != NULL && *peer->dn != '\0')
        g_strv_builder_add (builder, peer->dn);
    }
  g_strfreev (trust->allowed_dns);
  trust->allowed_dns = g_strv_builder_end (builder);
}

MdTrust *
md_trust_new (const MdConfig *config, const char *state_dir)
{
  MdTrust *trust = g_new0 (MdTrust, 1);
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autoptr (GError) error = NULL;

  trust->config = config;
  trust->path = g_build_filename (state_dir, "peers.conf", NULL);
  trust->added = g_ptr_array_new_with_free_func ((GDestroyNotify) peer_free);
  if (g_key_file_load_from_file (kf, trust->path, G_KEY_FILE_NONE, &error))
    {
      g_auto (GStrv) groups = g_key_file_get_groups (kf, NULL);
      for (guint i = 0; groups[i] != NULL; i++)
        {
          MdConfigPeer *peer;
          if (!g_str_has_prefix (groups[i], "peer "))
            continue;
          peer = g_new0 (MdConfigPeer, 1);
          peer->name = g_strdup (groups[i] + strlen ("peer "));
          peer->address = g_key_file_get_string (kf, groups[i], "address", NULL);
          peer->dn = g_key_file_get_string (kf, groups[i], "dn", NULL);
          if (peer->address == NULL)
            {
              g_warning ("%s: [%s] has no address; ignoring it", trust->path, groups[i]);
              peer_free (peer);
              continue;
            }
          g_ptr_array_add (trust->added, peer);
        }
    }
  else if (!g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    g_warning ("cannot read the added peers from %s: %s", trust->path, error->message);
  rebuild_allowed_dns (trust);
  return trust;
}

void
md_trust_free (MdTrust *trust)
{
  if (trust == NULL)
    return;
  g_free (trust->path);
  g_ptr_array_unref (trust->added);
  g_strfreev (trust->allowed_dns);
  g_free (trust);
}

GPtrArray *
md_trust_list (MdTrust *trust)
{
  GPtrArray *peers = g_ptr_array_new ();

  for (guint i = 0; i < trust->config->peers->len; i++)
    g_ptr_array_add (peers, g_ptr_array_index (trust->config->peers, i));
  for (guint i = 0; i < trust->added->len; i++)
    g_ptr_array_add (peers, g_ptr_array_index (trust->added, i));
  return peers;
}

const MdConfigPeer *
md_trust_find (MdTrust *trust, const char *name)
{
  const MdConfigPeer *peer = md_config_find_peer (trust->config, name);

  for (guint i = 0; peer == NULL && i < trust->added->len; i++)
    if (g_str_equal (((MdConfigPeer *) g_ptr_array_index (trust->added, i))->name, name))
      peer = g_ptr_array_index (trust->added, i);
  return peer;
}

const char *const *
md_trust_allowed_dns (MdTrust *trust)
{
  return (const char *const *) trust->allowed_dns;
}

gboolean
md_trust_check_address (const char *address, GError **error)
{
  g_autoptr (GSocketConnectable) parsed = NULL;
  g_autoptr (GError) local_error = NULL;

  if (address == NULL || *address == '\0')
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "the address is empty; give host[:port] of the peer's migrationd");
      return FALSE;
    }
  parsed = g_network_address_parse (address, MD_DEFAULT_PEER_PORT, &local_error);
  if (parsed == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "'%s' is not host[:port] (port 1-65535): %s", address, local_error->message);
      return FALSE;
    }
  if (g_network_address_get_port (G_NETWORK_ADDRESS (parsed)) == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "'%s': port 0 is not a valid port",
                   address);
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_name (const char *name, GError **error)
{
  if (name == NULL || *name == '\0' || strlen (name) > 64)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "a peer name must be 1 to 64 characters");
      return FALSE;
    }
  for (const char *c = name; *c != '\0'; c++)
    if (!g_ascii_isalnum (*c) && *c != '-' && *c != '_' && *c != '.')
      {
        g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                     "peer name '%s': only letters, digits, '-', '_' and '.' are allowed", name);
        return FALSE;
      }
  return TRUE;
}

/* Wants at least one attribute=value pair, as certtool prints them. */
static gboolean
check_dn (const char *dn, GError **error)
{
  g_auto (GStrv) parts = NULL;

  if (dn == NULL || strchr (dn, '=') == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "certificate DN '%s' is not a DN such as CN=hostB,O=migrationd",
                   dn != NULL ? dn : "");
      return FALSE;
    }
  parts = g_strsplit (dn, ",", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      g_autofree char *part = g_strstrip (g_strdup (parts[i]));
      const char *eq = strchr (part, '=');
      if (eq == NULL || eq == part || eq[1] == '\0')
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "certificate DN '%s': '%s' is not attribute=value", dn, part);
          return FALSE;
        }
    }
  return TRUE;
}

static gboolean
save (MdTrust *trust, GError **error)
{
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  g_autofree char *data = NULL;
  g_autoptr (GError) local_error = NULL;

  for (guint i = 0; i < trust->added->len; i++)
    {
      const MdConfigPeer *peer = g_ptr_array_index (trust->added, i);
      g_autofree char *group = g_strdup_printf ("peer %s", peer->name);
      g_key_file_set_string (kf, group, "address", peer->address);
      if (peer->dn != NULL)
        g_key_file_set_string (kf, group, "dn", peer->dn);
    }
  data = g_key_file_to_data (kf, NULL, NULL);
  if (!g_file_set_contents_full (trust->path, data, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                 &local_error))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot save the trusted peers: %s",
                   local_error->message);
      return FALSE;
    }
  return TRUE;
}

gboolean
md_trust_add (MdTrust *trust, const char *name, const char *address, const char *dn, GError **error)
{
  MdConfigPeer *peer;

  if (!check_name (name, error) || !md_trust_check_address (address, error)
      || !check_dn (dn, error))
    return FALSE;
  if (md_trust_find (trust, name) != NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                   "a peer named %s already exists; remove it first", name);
      return FALSE;
    }
  peer = g_new0 (MdConfigPeer, 1);
  peer->name = g_strdup (name);
  peer->address = g_strdup (address);
  peer->dn = g_strdup (dn);
  g_ptr_array_add (trust->added, peer);
  if (!save (trust, error))
    {
      g_ptr_array_remove (trust->added, peer);
      return FALSE;
    }
  rebuild_allowed_dns (trust);
  return TRUE;
}

gboolean
md_trust_remove (MdTrust *trust, const char *name, GError **error)
{
  MdConfigPeer *removed = NULL;

  if (md_config_find_peer (trust->config, name) != NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "peer %s comes from %s; remove its [peer %s] group there", name,
                   trust->config->config_path ? trust->config->config_path : "migrationd.conf",
                   name);
      return FALSE;
    }
  for (guint i = 0; i < trust->added->len; i++)
    if (g_str_equal (((MdConfigPeer *) g_ptr_array_index (trust->added, i))->name, name))
      removed = g_ptr_array_steal_index (trust->added, i);
  if (removed == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_FOUND, "no trusted peer named %s", name);
      return FALSE;
    }
  if (!save (trust, error))
    {
      g_ptr_array_add (trust->added, removed);
      return FALSE;
    }
  peer_free (removed);
  rebuild_allowed_dns (trust);
  return TRUE;
}

/* migrationd: Begin, the checks of Guest1.Migrate before anything starts:
 * options, destination, and the destination definition. */
#include "config.h"

#include "md-migration-source-private.h"
#include "common/md-error.h"
#include "common/md-options.h"

/* "host", "host:port" or "[v6]:port" with a port in range, or a peer name
 * from the configuration. */
char *
source_resolve_destination (MdManager *manager, const char *destination, GError **error)
{
  const MdConfigPeer *peer = md_manager_find_peer (manager, destination);
  g_autoptr (GNetworkAddress) address = NULL;
  g_autoptr (GError) local_error = NULL;

  if (peer != NULL)
    return g_strdup (peer->address);
  if (destination == NULL || *destination == '\0')
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "destination is empty; give host[:port] of the peer migrationd or a peer name");
      return NULL;
    }
  address =
      (GNetworkAddress *) g_network_address_parse (destination, MD_DEFAULT_PEER_PORT, &local_error);
  if (address == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "destination '%s' is neither host[:port] nor a known peer name: %s", destination,
                   local_error->message);
      return NULL;
    }
  if (g_network_address_get_port (address) == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "destination '%s': port 0 is not a valid port", destination);
      return NULL;
    }
  return g_strdup (destination);
}

/* The cheap part of refusing to migrate to ourselves, before any TLS: our
 * own listen address (or name, or loopback) and peer port. The peer's
 * host UUID check in Hello catches every other way of reaching us. */
gboolean
source_is_this_host (MdManager *manager, const char *destination)
{
  const MdConfig *config = md_manager_get_config (manager);
  g_autoptr (GSocketConnectable) parsed =
      g_network_address_parse (destination, MD_DEFAULT_PEER_PORT, NULL);
  const char *host;

  if (parsed == NULL
      || g_network_address_get_port (G_NETWORK_ADDRESS (parsed)) != config->peer_port)
    return FALSE;
  host = g_network_address_get_hostname (G_NETWORK_ADDRESS (parsed));
  return g_strcmp0 (host, config->listen_address) == 0 || g_strcmp0 (host, config->host_name) == 0
         || g_strcmp0 (host, "localhost") == 0 || g_str_has_prefix (host, "127.")
         || g_strcmp0 (host, "::1") == 0;
}

MdDomain *
source_build_destination_definition (MdManager *manager, MdGuest *guest,
                                     const MdMigrateOptions *opts, GError **error)
{
  const MdDomain *current = md_guest_get_live_definition (guest) != NULL
                                ? md_guest_get_live_definition (guest)
                                : md_guest_get_definition (guest);
  const char *dest_xml = opts->destination_xml;
  const char *dest_name = opts->destination_name;
  g_autoptr (MdDomain) def = NULL;

  if (dest_xml != NULL)
    {
      def = md_domain_parse (dest_xml, error);
      if (def == NULL)
        {
          g_prefix_error (error, "option 'destination-xml': ");
          return NULL;
        }
      if (!md_domain_check_abi_compatible (current, def, error))
        {
          g_prefix_error (error, "option 'destination-xml': ");
          return NULL;
        }
    }
  else
    def = md_domain_copy (current);
  if (dest_name != NULL)
    {
      if (!md_domain_validate_name (dest_name, error))
        {
          g_prefix_error (error, "option 'destination-name': ");
          return NULL;
        }
      g_free (def->name);
      def->name = g_strdup (dest_name);
    }
  return g_steal_pointer (&def);
}

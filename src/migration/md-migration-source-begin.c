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

/* ---- the migration object -------------------------------------------------------------------------- */

static MdJournal *
source_journal (Source *src)
{
  const MdConfig *config = md_manager_get_config (src->manager);
  MdJournal *journal = md_journal_new (config->state_dir, src->migration_id, "outgoing");

  md_journal_set_string (journal, "guest", md_guest_get_name (src->guest));
  md_journal_set_string (journal, "guest-uuid", md_guest_get_uuid (src->guest));
  md_journal_set_string (journal, "peer-address", src->destination);
  md_journal_set_string (journal, "tag", src->tag);
  md_journal_set_int (journal, "was-running", src->was_running);
  md_journal_set_int (journal, "offline", src->offline);
  md_journal_set_int (journal, "undefine-source", src->opts->undefine_source);
  /* A daemon restarted in postcopy recovers the stream until then. */
  md_journal_set_int (journal, "postcopy-recovery-timeout", src->opts->postcopy_recovery_timeout);
  if (md_guest_get_process (src->guest) != NULL)
    md_journal_set_int (journal, "qemu-pid",
                        md_qemu_process_get_pid (md_guest_get_process (src->guest)));
  /* Named now, so the record is on disk long before the object exists
   * (object-add waits for it): a restarted daemon removes it, or finds
   * it was never made. */
  if (src->opts->tls && !src->offline && src->opts->transport != MD_MIGRATE_TRANSPORT_TUNNEL)
    {
      src->tls_object = g_strdup_printf ("md-tls-%s", src->tag);
      md_journal_list_add (journal, "qemu-objects", src->tls_object);
    }
  return journal;
}

static Source *
source_new (MdManager *manager, MdGuest *guest, char *destination, MdDomain *dest_def,
            MdMigrateOptions *opts, GPtrArray *plan, MdStorageCopyMode storage_mode,
            guint owner_uid)
{
  Source *src = g_rc_box_new0 (Source);

  src->manager = manager;
  src->guest = g_object_ref (guest);
  src->opts = opts;
  src->destination = destination;
  src->dest_def = dest_def;
  src->cancellable = g_cancellable_new ();
  src->offline = opts->offline;
  src->storage_mode = storage_mode;
  src->plan = plan;
  src->was_running = md_guest_get_state (guest) == MD_GUEST_STATE_RUNNING;
  src->src_persistent = md_guest_is_persistent (guest);
  src->tag = md_migration_qemu_new_tag ();
  src->migration =
      md_migration_new (manager, md_manager_next_migration_number (manager), MD_MIGRATION_OUTGOING,
                        md_guest_get_object_path (guest), md_guest_get_name (guest),
                        src->destination, owner_uid, opts->given);
  /* Unique across restarts of both daemons: the peer's journal keys on it. */
  src->migration_id =
      g_strdup_printf ("%s:%s:%s", md_dbus_manager1_get_host_uuid (MD_DBUS_MANAGER1 (manager)),
                       md_migration_get_object_path (src->migration), src->tag);
  src->machine = md_machine_new (MD_MIGRATION_OUTGOING, src, src->migration, source_journal (src));
  return src;
}

Source *
source_begin (MdManager *manager, MdGuest *guest, const char *destination, GVariant *options,
              guint owner_uid, GError **error)
{
  const MdConfig *config = md_manager_get_config (manager);
  g_autofree char *resolved = NULL;
  g_autoptr (MdDomain) dest_def = NULL;
  MdGuestState state = md_guest_get_state (guest);
  MdStorageCopyMode storage_mode = MD_STORAGE_COPY_NONE;
  g_autoptr (GPtrArray) plan = NULL;
  g_autoptr (MdMigrateOptions) opts = md_migrate_options_parse (options, NULL, error);
  gboolean offline;
  Source *src;

  /* Parsed and range-checked once (common/md-options); fields from here. */
  if (opts == NULL)
    return NULL;
  offline = opts->offline;
  /* An offline copy goes through the tunnel too: the copier's connections
   * become data streams to qemu-storage-daemon on the peer. */
  md_migrate_options_resolve_transport (opts, g_str_equal (config->transport, "native")
                                                  ? MD_MIGRATE_TRANSPORT_NATIVE
                                                  : MD_MIGRATE_TRANSPORT_TUNNEL);
  md_migrate_options_resolve_parallel (opts);
  if (offline && state != MD_GUEST_STATE_SHUT_OFF)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "option 'offline' needs guest %s shut off; it is %s on host %s",
                   md_guest_get_name (guest), md_guest_state_to_string (state), config->host_name);
      return NULL;
    }
  if (offline && !md_guest_is_persistent (guest))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is transient: an offline migration moves a definition",
                   md_guest_get_name (guest));
      return NULL;
    }
  if (!offline && state != MD_GUEST_STATE_RUNNING && state != MD_GUEST_STATE_PAUSED)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "guest %s is %s on host %s; only a running or paused guest can migrate live "
                   "(use the 'offline' option for a shut-off one)",
                   md_guest_get_name (guest), md_guest_state_to_string (state), config->host_name);
      return NULL;
    }
  if (md_manager_is_recovering (manager))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_STATE,
                   "host %s is still resolving migrations its previous daemon left open; try "
                   "again in a moment",
                   config->host_name);
      return NULL;
    }
  resolved = source_resolve_destination (manager, destination, error);
  if (resolved == NULL)
    return NULL;
  if (source_is_this_host (manager, resolved))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "refusing to migrate to itself: destination '%s' is host %s's own peer "
                   "port; give another host",
                   destination, config->host_name);
      return NULL;
    }
  dest_def = source_build_destination_definition (manager, guest, opts, error);
  if (dest_def == NULL)
    return NULL;
  md_storage_parse_mode (md_migrate_copy_storage_to_string (opts->copy_storage), &storage_mode,
                         NULL);
  plan = md_storage_plan (md_guest_get_live_definition (guest) != NULL
                              ? md_guest_get_live_definition (guest)
                              : md_guest_get_definition (guest),
                          storage_mode, (const char *const *) opts->disks, error);
  if (plan == NULL)
    return NULL;

  src = source_new (manager, guest, g_steal_pointer (&resolved), g_steal_pointer (&dest_def),
                    g_steal_pointer (&opts), g_steal_pointer (&plan), storage_mode, owner_uid);
  return src;
}

/* migrationd: the incoming side of postcopy and its recovery.
 *
 * In postcopy the guest runs here while QEMU still pulls its pages from
 * the source: Finish resumed it, but the migration lasts until QEMU's
 * incoming status is "completed". If the stream breaks (link down, the
 * source paused it), both QEMUs hold part of the guest's memory: neither
 * may be killed or resumed alone. This host keeps its QEMU and waits for
 * the source's Peer1.Recover: a QEMU still in postcopy-active (a dead TCP
 * stream QEMU has not noticed) is paused first (migrate-pause), then QEMU
 * listens on a new socket this daemon bound (migrate-recover) and the
 * source resumes its stream there (migrate with resume=true). When the
 * source has not recovered the stream within the option
 * postcopy-recovery-timeout, the migration is reported needing attention
 * with what each side holds; nothing is killed. */
#include "config.h"

#include "common/md-error.h"
#include "common/md-fault.h"
#include "common/md-listen-socket.h"
#include "common/md-options.h"
#include "md-address.h"
#include "md-migration-dest-private.h"
#include "md-migration-qemu.h"

/* How long QEMU may take to go from postcopy-active to postcopy-paused
 * after migrate-pause (or a recovery attempt to fail). */
#define RECOVER_POLL_MS 100
#define RECOVER_POLLS 100

static void recover_query (Incoming *in);

void
dest_recovery_clear (Incoming *in)
{
  g_clear_handle_id (&in->recovery_deadline_id, g_source_remove);
  g_clear_object (&in->recover_socket);
  g_clear_pointer (&in->recover_fdname, g_free);
  if (in->recover_invocation != NULL)
    g_dbus_method_invocation_return_error (
        g_steal_pointer (&in->recover_invocation), MD_ERROR, MD_ERROR_INVALID_STATE,
        "host %s: migration %s ended during the recovery", host_name (in->dest), in->id);
}

static MdQmp *
incoming_qmp (Incoming *in)
{
  return in->guest != NULL ? md_guest_get_qmp (in->guest) : NULL;
}

/* ---- the end ---------------------------------------------------------------- */

static void
postcopy_completed (Incoming *in)
{
  incoming_stop_events (in);
  g_clear_handle_id (&in->recovery_deadline_id, g_source_remove);
  drop_tls_object (in);
  in->ended = TRUE;
  md_migration_mark_time (in->migration, "postcopy-completed");
  md_migration_complete (in->migration, NULL, 0);
  g_message ("incoming migration %s: postcopy of %s completed%s", in->id, in->def->name,
             in->recovery_attempts > 0 ? " after a recovery" : "");
  incoming_end (in, "running");
}

static void
report_unrecovered (Incoming *in, const char *status)
{
  const char *source = in->opts->source_host != NULL ? in->opts->source_host : "the source host";
  g_autoptr (GError) error = g_error_new (
      MD_ERROR, MD_ERROR_FAILED,
      "host %s, phase postcopy: the postcopy stream of guest %s from host %s broke and was not "
      "recovered within postcopy-recovery-timeout=%u s (%u attempts). The guest's memory is "
      "split: its QEMU here runs but waits (postcopy, QEMU status %s) for pages only host %s "
      "has, in its QEMU left in postcopy-paused. Both QEMUs were kept; killing or resuming "
      "either alone loses the guest. Restore the connection between the hosts, then recover by "
      "hand: QMP migrate-recover on host %s, migrate with resume=true on host %s",
      host_name (in->dest), in->def->name, source, in->opts->postcopy_recovery_timeout,
      in->recovery_attempts, status, source, host_name (in->dest), source);

  in->ended = TRUE;
  incoming_stop_events (in);
  g_warning ("incoming migration %s: %s", in->id, error->message);
  md_migration_set_needs_attention (in->migration, error);
  incoming_end (in, "needs-attention");
}

static void
after_deadline_pause (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      g_message ("incoming migration %s: pausing the stalled postcopy stream: %s", in->id,
                 error->message);
      g_error_free (error);
    }
  if (!in->ended)
    report_unrecovered (in, "postcopy-paused");
}

static void
on_deadline_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);
  const char *status = md_migration_qemu_status (node, "unknown");

  if (in->ended)
    return;
  if (g_str_equal (status, "completed"))
    postcopy_completed (in);
  else if (g_str_equal (status, "postcopy-active"))
    /* A dead stream QEMU has not noticed: make the pause explicit. */
    in_qmp (in, "migrate-pause", NULL, after_deadline_pause);
  else
    report_unrecovered (in, status);
}

static gboolean
on_recovery_deadline (gpointer user_data)
{
  Incoming *in = user_data;
  MdQmp *qmp = incoming_qmp (in);

  in->recovery_deadline_id = 0;
  if (in->ended)
    return G_SOURCE_REMOVE;
  if (qmp == NULL)
    {
      report_unrecovered (in, "gone");
      return G_SOURCE_REMOVE;
    }
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_deadline_status, incoming_ref (in));
  return G_SOURCE_REMOVE;
}

static void
start_deadline (Incoming *in, const char *why)
{
  if (in->recovery_deadline_id != 0 || in->ended)
    return;
  g_message ("incoming migration %s: %s; waiting up to %u s for the source to recover the "
             "postcopy stream",
             in->id, why, in->opts->postcopy_recovery_timeout);
  in->recovery_deadline_id = g_timeout_add_seconds_full (
      G_PRIORITY_DEFAULT, in->opts->postcopy_recovery_timeout, on_recovery_deadline,
      incoming_ref (in), (GDestroyNotify) incoming_unref);
}

/* ---- following QEMU ------------------------------------------------------------ */

static void
watch_status (Incoming *in, const char *status)
{
  if (in->ended)
    return;
  if (g_str_equal (status, "completed"))
    postcopy_completed (in);
  else if (g_str_equal (status, "postcopy-paused"))
    {
      md_migration_set_running_state (in->migration, "postcopy-paused");
      start_deadline (in, "the postcopy stream broke (QEMU: postcopy-paused)");
    }
  else if (g_str_equal (status, "postcopy-recover"))
    md_migration_set_running_state (in->migration, "postcopy-recovering");
  else if (g_str_equal (status, "postcopy-active"))
    {
      md_migration_set_running_state (in->migration, "postcopy");
      if (in->recovery_deadline_id != 0)
        g_message ("incoming migration %s: the postcopy stream of %s is back", in->id,
                   in->def->name);
      g_clear_handle_id (&in->recovery_deadline_id, g_source_remove);
    }
  else if (g_str_equal (status, "failed"))
    {
      g_autoptr (GError) error = g_error_new (
          MD_ERROR, MD_ERROR_QEMU_FAILED,
          "host %s, phase postcopy: the incoming QEMU of %s failed its postcopy migration",
          host_name (in->dest), in->def->name);
      incoming_abort (in, error);
    }
}

static void
on_watch_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp, Incoming *in)
{
  watch_status (in, json_object_get_string_member_with_default (data, "status", ""));
}

static void
on_watch_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);

  if (node != NULL)
    watch_status (in, md_migration_qemu_status (node, ""));
}

/* Finish is done and QEMU still in postcopy: follow it to the end. */
void
dest_recovery_watch (Incoming *in)
{
  MdQmp *qmp = incoming_qmp (in);

  in->postcopy_watch = TRUE;
  md_migration_set_running_state (in->migration, "postcopy");
  if (qmp == NULL)
    return; /* the stopped handler reports it */
  incoming_stop_events (in);
  in->event_qmp = g_object_ref (qmp);
  in->event_id = g_signal_connect (qmp, "event::MIGRATION", G_CALLBACK (on_watch_event), in);
  if (in->conn == NULL || md_peer_connection_is_closed (in->conn))
    start_deadline (in, "the source host's daemon is gone");
  /* The status may have moved on before the events were followed. */
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_watch_status, incoming_ref (in));
}

void
dest_recovery_source_lost (Incoming *in)
{
  /* The stream may still flow (only the source's daemon went away): QEMU
   * completes by itself then. Otherwise the source has until the
   * deadline to come back and recover it. */
  start_deadline (in, "lost the connection to the source host");
}

/* ---- a daemon restarted in postcopy ---------------------------------------- */

static MdMigrateOptions *
journaled_options (MdMigrationDest *dest, MdJournal *journal, GError **error)
{
  const MdConfig *config = md_manager_get_config (dest->manager);
  const MdMigrateOptionsLimits limits = { MD_MIGRATE_OPTIONS_FROM_PEER, config->migration_port_min,
                                          config->migration_port_max };
  const char *text = md_journal_get_string (journal, "options");
  g_autoptr (GVariant) given = NULL;

  if (text == NULL || md_journal_get_string (journal, "owner-token") == NULL
      || md_journal_get_string (journal, "owner-dn") == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "the journal %s has no owner token or options (an older daemon wrote it)",
                   md_journal_get_path (journal));
      return NULL;
    }
  given = g_variant_parse (G_VARIANT_TYPE_VARDICT, text, NULL, NULL, error);
  if (given == NULL)
    {
      g_prefix_error (error, "the options in the journal %s: ", md_journal_get_path (journal));
      return NULL;
    }
  return md_migrate_options_parse (given, &limits, error);
}

gboolean
md_migration_dest_reattach_postcopy (MdMigrationDest *dest, MdJournal *journal, MdGuest *guest,
                                     MdMigration *migration, GError **error)
{
  g_autoptr (MdMigrateOptions) opts = journaled_options (dest, journal, error);
  const char *dn = md_journal_get_string (journal, "owner-dn");
  g_autofree char *normalized = NULL;
  g_auto (GStrv) objects = NULL;
  Incoming *in;

  if (opts == NULL)
    return FALSE;
  normalized = md_peer_normalize_dn (dn);
  in = g_rc_box_new0 (Incoming);
  in->dest = dest;
  in->id = g_strdup (md_journal_get_id (journal));
  in->key = g_strdup_printf ("%s\n%s", normalized, in->id);
  in->owner = md_incoming_owner_restore (dn, md_journal_get_string (journal, "owner-token"));
  in->tag = md_migration_qemu_new_tag ();
  in->opts = g_steal_pointer (&opts);
  in->def = md_domain_copy (md_guest_get_definition (guest));
  in->guest = g_object_ref (guest);
  in->guest_created = md_journal_get_int (journal, "guest-created");
  in->address = g_strdup (md_journal_get_string (journal, "address"));
  in->migration = g_object_ref (migration);
  objects = md_journal_list_get (journal, "qemu-objects");
  for (guint i = 0; objects != NULL && objects[i] != NULL && in->tls_object == NULL; i++)
    if (g_str_has_prefix (objects[i], "md-tls-in-"))
      in->tls_object = g_strdup (objects[i]);
  in->machine = md_machine_restore (MD_MIGRATION_INCOMING, in, migration, journal);
  if (md_machine_get_authority (in->machine) == MD_AUTHORITY_SOURCE)
    md_machine_set_authority (in->machine, MD_AUTHORITY_SPLIT);
  in->prepared = TRUE;
  in->postcopy = TRUE;
  g_hash_table_insert (dest->incoming, in->key, in);
  in->stopped_id =
      g_signal_connect (in->guest, "stopped", G_CALLBACK (incoming_on_qemu_stopped), in);
  g_message ("incoming migration %s: re-attached to the QEMU of %s in postcopy; waiting for the "
             "source host to recover the stream",
             in->id, in->def->name);
  dest_recovery_watch (in);
  return TRUE;
}

/* ---- Peer1.Recover ----------------------------------------------------------- */

static void
recover_failed (Incoming *in, GError *error)
{
  GDBusMethodInvocation *invocation = g_steal_pointer (&in->recover_invocation);

  g_clear_object (&in->recover_socket);
  g_prefix_error (&error, "host %s, phase postcopy: recovery attempt %u of migration %s: ",
                  host_name (in->dest), in->recovery_attempts, in->id);
  g_message ("%s", error->message);
  if (invocation != NULL)
    md_error_return (invocation, error);
  else
    g_error_free (error);
}

static void
after_migrate_recover (Incoming *in, GError *error)
{
  GDBusMethodInvocation *invocation;
  g_autoptr (MdAddress) endpoint = NULL;
  g_autofree char *uri = NULL;
  GVariantBuilder result;

  if (error == NULL && !incoming_tunnelled (in))
    {
      endpoint =
          md_address_new_inet (in->address, md_listen_socket_get_port (in->recover_socket), &error);
      uri = endpoint != NULL ? md_address_to_uri (endpoint, &error) : NULL;
    }
  g_clear_object (&in->recover_socket); /* QEMU listens on its copy */
  if (error != NULL)
    {
      recover_failed (in, error);
      return;
    }
  invocation = g_steal_pointer (&in->recover_invocation);
  g_variant_builder_init (&result, G_VARIANT_TYPE_VARDICT);
  if (in->tunnel != NULL && incoming_tunnelled (in))
    {
      /* The resumed stream comes through the peer port with these tokens. */
      g_message ("incoming migration %s: recovery attempt %u: QEMU listens on a private unix "
                 "socket for a data stream",
                 in->id, in->recovery_attempts);
      md_tunnel_in_describe (in->tunnel, &result);
    }
  else
    {
      g_message ("incoming migration %s: recovery attempt %u: QEMU listens on %s", in->id,
                 in->recovery_attempts, uri);
      g_variant_builder_add (&result, "{sv}", "migration-uri", g_variant_new_string (uri));
    }
  g_variant_builder_add (
      &result, "{sv}", "running",
      g_variant_new_boolean (md_machine_get_authority (in->machine) == MD_AUTHORITY_DESTINATION));
  if (invocation != NULL)
    md_dbus_peer1_complete_recover (NULL, invocation, g_variant_builder_end (&result));
  else
    g_variant_builder_clear (&result);
}

static void
after_recover_getfd (Incoming *in, GError *error)
{
  g_autofree char *uri = NULL;
  JsonObject *args;

  if (error != NULL)
    {
      recover_failed (in, error);
      return;
    }
  uri = g_strdup_printf ("tcp:fd:%s", in->recover_fdname);
  args = json_object_new ();
  json_object_set_string_member (args, "uri", uri);
  in_qmp (in, "migrate-recover", args, after_migrate_recover);
}

static void
on_recovery_tunnel_broken (const GError *error, gpointer user_data)
{
  Incoming *in = user_data;

  /* QEMU pauses the stream again; the source's next attempt follows. */
  if (in->migration != NULL && !in->ended)
    g_message ("incoming migration %s: %s", in->id, error->message);
}

/* transport=tunnel: the resumed stream comes as a data stream through the
 * peer port, joined to a private unix socket QEMU listens on; the old
 * tunnel's relays are gone with the stream (or with the old daemon). No
 * port is opened. */
static GSocket *
recovery_tunnel_socket (Incoming *in, GError **error)
{
  const MdConfig *config = md_manager_get_config (in->dest->manager);
  g_autofree char *tag = g_strdup_printf ("%s-r%u", in->tag, in->recovery_attempts);
  g_autofree char *label =
      g_strdup_printf ("migration %s (recovery %u)", in->id, in->recovery_attempts);
  /* The stream's DN is compared as the listener saw it: the caller's. */
  const char *dn = in->conn != NULL ? md_peer_connection_get_dn (in->conn)
                                    : md_incoming_owner_get_dn (in->owner);
  GSocket *socket;

  g_clear_pointer (&in->tunnel, md_tunnel_in_free);
  in->tunnel = md_tunnel_in_new (in->dest->gate, config->runtime_dir, tag, dn, config->host_name,
                                 label, on_recovery_tunnel_broken, in, error);
  if (in->tunnel == NULL)
    return NULL;
  socket = md_tunnel_in_listen_migration (in->tunnel, 0, error);
  return socket != NULL ? g_object_ref (socket) : NULL;
}

/* QEMU is postcopy-paused: a new listening socket for the resumed stream. */
static void
open_recovery_listener (Incoming *in)
{
  GError *error = NULL;

  if (incoming_tunnelled (in))
    in->recover_socket = recovery_tunnel_socket (in, &error);
  else
    in->recover_socket = bind_listener (in->dest, in->address, 0, "migration-port", &error);
  if (in->recover_socket == NULL)
    {
      recover_failed (in, error);
      return;
    }
  g_free (in->recover_fdname);
  in->recover_fdname = g_strdup_printf ("md-recover-%s-%u", in->tag, in->recovery_attempts);
  in_qmp_getfd (in, in->recover_socket, in->recover_fdname, after_recover_getfd);
}

static void
after_pause (Incoming *in, GError *error)
{
  if (error != NULL)
    {
      /* QEMU may have noticed the broken stream by itself meanwhile. */
      g_message ("incoming migration %s: migrate-pause: %s", in->id, error->message);
      g_error_free (error);
    }
  recover_query (in);
}

static gboolean
on_recover_poll (gpointer user_data)
{
  recover_query (user_data);
  return G_SOURCE_REMOVE;
}

static void
on_recover_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (IncomingRef) in = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  const char *status;

  if (node == NULL)
    {
      recover_failed (in, error);
      return;
    }
  status = md_migration_qemu_status (node, "");
  if (g_str_equal (status, "postcopy-paused"))
    open_recovery_listener (in);
  else if (g_str_equal (status, "postcopy-active") && in->recover_polls == 0)
    {
      /* The source gave up this stream; QEMU here has not noticed. */
      in->recover_polls++;
      in_qmp (in, "migrate-pause", NULL, after_pause);
    }
  else if ((g_str_equal (status, "postcopy-active") || g_str_equal (status, "postcopy-recover"))
           && in->recover_polls++ < RECOVER_POLLS)
    g_timeout_add_full (G_PRIORITY_DEFAULT, RECOVER_POLL_MS, on_recover_poll, incoming_ref (in),
                        (GDestroyNotify) incoming_unref);
  else
    recover_failed (in, g_error_new (MD_ERROR, MD_ERROR_INVALID_STATE,
                                     "the incoming QEMU of %s is in state '%s', not "
                                     "postcopy-paused; try again",
                                     in->def->name, status));
}

static void
recover_query (Incoming *in)
{
  MdQmp *qmp = incoming_qmp (in);

  if (in->ended || qmp == NULL)
    {
      recover_failed (in, g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                       "the incoming QEMU of %s is gone", in->def->name));
      return;
    }
  md_qmp_execute_async (qmp, "query-migrate", NULL, NULL, on_recover_status, incoming_ref (in));
}

gboolean
dest_handle_recover (MdPeerListener *listener, MdPeerConnection *conn,
                     GDBusMethodInvocation *invocation, const char *id, GVariant *options,
                     MdMigrationDest *dest)
{
  g_autoptr (GError) error = NULL;
  Incoming *in = incoming_for_call (dest, conn, id, md_options_get_string (options, "token"),
                                    "Recover", &error);

  if (error != NULL)
    {
      md_error_return (invocation, g_steal_pointer (&error));
      return TRUE;
    }
  if (in == NULL || in->ended || in->machine == NULL || in->guest == NULL
      || md_machine_get_authority (in->machine) == MD_AUTHORITY_SOURCE)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "host %s: migration %s is not in postcopy here; there is nothing to recover",
          host_name (dest), id);
      return TRUE;
    }
  if (in->recover_invocation != NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "host %s: a recovery of migration %s is already under way", host_name (dest), id);
      return TRUE;
    }
  in->recover_invocation = invocation;
  if (in->address == NULL)
    in->address = local_address_of (conn);
  in->recovery_attempts++;
  in->recover_polls = 0;
  md_migration_set_recovery_attempts (in->migration, in->recovery_attempts);
  md_migration_set_running_state (in->migration, "postcopy-recovering");
  md_fault_point ("dest-recover");
  start_deadline (in, "the source asks to recover the postcopy stream");
  recover_query (in);
  return TRUE;
}

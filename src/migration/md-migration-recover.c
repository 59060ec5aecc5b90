/* migrationd: crash resolution at start-up (see the header).
 *
 * The rules, from who held the guest when the previous daemon stopped:
 *   - incoming, source authority: the guest is on the source; the QEMU
 *     prepared here and the images made for it go;
 *   - incoming, split (postcopy) or destination authority: this copy is
 *     the guest (the source QEMU can never run it again): it keeps
 *     running, or is resumed if the daemon died just before "cont";
 *   - outgoing, before Finish: the destination never ran the guest; it
 *     removes its copy when the connection drops, and the guest resumes
 *     here;
 *   - outgoing, at or after Finish: only the destination can say whether
 *     it runs the guest: it is asked (Peer1.Resolve); this QEMU is
 *     stopped only when it confirms, resumed only when it says it
 *     removed its copy, and left paused (needs-attention) otherwise. */
#include "config.h"

#include "md-migration-recover.h"
#include "md-migration-resolve.h"
#include "md-save-recover.h"
#include "common/md-error.h"
#include "md-migration-ask.h"
#include "md-migration-journal.h"
#include "md-migration-machine.h"
#include "md-migration-qemu.h"
#include "md-migration-recover-postcopy.h"
#include "storage/md-storage.h"

#define RECOVER_ASK_TIMEOUT_S 60
#define TOMBSTONE_KEEP_S (24 * 3600)
#define POSTCOPY_WAIT_MS 500
/* After a resumed postcopy stream completed, the destination may take a
 * moment to end its side: "pending" is asked again this many times. */
#define PENDING_ASKS 10

typedef struct
{
  MdManager *manager;
  MdMigrationDest *dest; /* NULL without a peer listener */
  MdJournal *journal;
  MdGuest *guest;
  MdMigration *migration;
  guint waits;        /* postcopy: QEMU still sending */
  gboolean released;  /* the manager's recovery hold is let go (a long postcopy) */
  gboolean streamed;  /* the postcopy stream was followed to its end */
  guint pending_asks; /* the peer said "pending" after that */
} Recovery;

static void
recovery_free (Recovery *rec)
{
  md_journal_free (rec->journal);
  g_clear_object (&rec->guest);
  g_clear_object (&rec->migration);
  g_free (rec);
}

static const char *
host_name (Recovery *rec)
{
  return md_manager_get_config (rec->manager)->host_name;
}

static const char *
guest_name (Recovery *rec)
{
  return md_journal_get_string (rec->journal, "guest");
}

static void
recovery_done (Recovery *rec, const GError *error, const char *outcome)
{
  if (outcome != NULL && g_str_equal (md_journal_get_direction (rec->journal), "incoming"))
    {
      g_autoptr (GError) local = NULL;
      md_journal_set_string (rec->journal, "outcome", outcome);
      md_journal_set_string (rec->journal, "phase", "ended");
      if (!md_journal_commit (rec->journal, &local))
        g_warning ("%s", local->message);
    }
  else
    md_journal_remove (rec->journal);
  if (rec->migration != NULL)
    md_migration_complete (rec->migration, error, 0);
  if (!rec->released)
    md_manager_hold_recovery (rec->manager, FALSE);
  recovery_free (rec);
}

static void
recovery_attention (Recovery *rec, GError *error)
{
  g_autoptr (GError) owned = error;
  g_autoptr (GError) local = NULL;

  md_journal_set_string (rec->journal, "outcome", "needs-attention");
  if (!md_journal_commit (rec->journal, &local))
    g_warning ("%s", local->message);
  if (rec->migration != NULL)
    {
      md_migration_set_needs_attention (rec->migration, error);
      md_migration_resolver_attach (rec->migration, rec->manager, rec->journal, rec->guest);
    }
  if (!rec->released)
    md_manager_hold_recovery (rec->manager, FALSE);
  recovery_free (rec);
}

typedef void (*QmpNext) (Recovery *rec, JsonNode *reply, GError *error);

typedef struct
{
  Recovery *rec;
  QmpNext next;
} QmpCall;

static void
on_qmp_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  QmpCall *call = user_data;
  GError *error = NULL;
  JsonNode *node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (call->next != NULL)
    call->next (call->rec, node, error);
  else
    g_clear_error (&error);
  if (node != NULL)
    json_node_unref (node);
  g_free (call);
}

/* Fire a command at the guest's QEMU; @next (may be NULL) gets the reply
 * and owns @error. */
static void
qmp (Recovery *rec, const char *command, JsonObject *args, QmpNext next)
{
  MdQmp *q = rec->guest != NULL ? md_guest_get_qmp (rec->guest) : NULL;
  QmpCall *call;

  if (q == NULL)
    {
      if (next != NULL)
        next (rec, NULL,
              g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU of %s is gone", guest_name (rec)));
      return;
    }
  call = g_new0 (QmpCall, 1);
  call->rec = rec;
  call->next = next;
  md_qmp_execute_async (q, command, args, NULL, on_qmp_done, call);
}

/* ---- outcomes ------------------------------------------------------------ */

static void
on_destroyed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Recovery *rec = user_data;
  g_autoptr (GError) error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("recovering migration %s: %s", md_journal_get_id (rec->journal), error->message);
  if (g_str_equal (md_journal_get_direction (rec->journal), "incoming"))
    {
      g_auto (GStrv) images = md_journal_list_get (rec->journal, "images");
      md_storage_remove ((const char *const *) images);
      if (md_journal_get_int (rec->journal, "guest-created")
          && !md_guest_is_persistent (rec->guest))
        md_manager_remove_guest (rec->manager, rec->guest);
      recovery_done (rec, NULL, "aborted");
      return;
    }
  if (md_journal_get_int (rec->journal, "undefine-source") && md_guest_is_persistent (rec->guest))
    {
      g_autoptr (GError) local = NULL;
      if (!md_manager_delete_definition (rec->manager, guest_name (rec), &local))
        g_warning ("%s", local->message);
      md_guest_set_persistent (rec->guest, FALSE);
    }
  if (!md_guest_is_persistent (rec->guest))
    md_manager_remove_guest (rec->manager, rec->guest);
  recovery_done (rec, NULL, NULL);
}

/* This copy is not the guest: it goes (and the images made for it). */
static void
remove_this_copy (Recovery *rec)
{
  g_message ("recovering migration %s: removing the copy of %s on host %s",
             md_journal_get_id (rec->journal), guest_name (rec), host_name (rec));
  if (rec->guest != NULL)
    md_guest_end_migration (rec->guest, FALSE);
  if (rec->guest == NULL || !md_guest_is_active (rec->guest))
    {
      g_auto (GStrv) images = md_journal_list_get (rec->journal, "images");
      if (g_str_equal (md_journal_get_direction (rec->journal), "incoming"))
        md_storage_remove ((const char *const *) images);
      recovery_done (rec, NULL,
                     g_str_equal (md_journal_get_direction (rec->journal), "incoming") ? "aborted"
                                                                                       : NULL);
      return;
    }
  md_guest_destroy_async (rec->guest, on_destroyed, rec);
}

static void
on_resumed (Recovery *rec, JsonNode *reply, GError *error)
{
  g_autoptr (GError) owned = error;
  gboolean incoming = g_str_equal (md_journal_get_direction (rec->journal), "incoming");

  if (error != NULL)
    g_warning ("recovering migration %s: resuming %s: %s", md_journal_get_id (rec->journal),
               guest_name (rec), error->message);
  md_guest_end_migration (rec->guest, error == NULL);
  if (incoming)
    recovery_done (rec, NULL, "running");
  else
    {
      g_autoptr (GError) failed = g_error_new (
          MD_ERROR, MD_ERROR_FAILED,
          "host %s: the migration of %s was interrupted by a daemon restart in phase %s; the "
          "guest %s here",
          host_name (rec), guest_name (rec), md_journal_get_string (rec->journal, "phase"),
          error == NULL ? "runs" : "stays paused (resume it with Guest1.Resume)");
      recovery_done (rec, failed, NULL);
    }
}

/* This copy is the guest: undo what the migration set up in QEMU and let
 * it run (if it ran before, for a source). */
static void
keep_this_copy (Recovery *rec)
{
  gboolean incoming = g_str_equal (md_journal_get_direction (rec->journal), "incoming");
  g_auto (GStrv) objects = md_journal_list_get (rec->journal, "qemu-objects");
  g_auto (GStrv) nodes = md_journal_list_get (rec->journal, "qemu-nodes");
  g_auto (GStrv) jobs = md_journal_list_get (rec->journal, "qemu-jobs");

  if (rec->guest == NULL || !md_guest_is_active (rec->guest))
    {
      g_autoptr (GError) lost = g_error_new (
          MD_ERROR, MD_ERROR_QEMU_FAILED,
          "host %s: the QEMU of %s, which held the guest when the daemon stopped, is gone",
          host_name (rec), guest_name (rec));
      recovery_done (rec, lost, incoming ? "lost" : NULL);
      return;
    }
  g_message ("recovering migration %s: %s stays on host %s", md_journal_get_id (rec->journal),
             guest_name (rec), host_name (rec));
  md_migration_qemu_remove_leftovers (
      md_guest_get_qmp (rec->guest), !incoming, incoming ? NULL : (const char *const *) jobs,
      incoming ? NULL : (const char *const *) nodes, (const char *const *) objects);
  if ((incoming && !md_journal_get_int (rec->journal, "paused-on-destination"))
      || (!incoming && md_journal_get_int (rec->journal, "was-running")))
    qmp (rec, "cont", NULL, on_resumed);
  else
    on_resumed (rec, NULL, NULL);
}

/* ---- outgoing at the switch-over: ask the destination ------------------- */

static void confirm_when_sent (Recovery *rec);
static void ask_peer (Recovery *rec);

static void
on_stream_followed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Recovery *rec = user_data;
  GError *error = NULL;

  rec->streamed = TRUE;
  if (!md_postcopy_resume_finish (result, &error))
    {
      recovery_attention (rec, error);
      return;
    }
  /* All pages are on the destination: it runs the guest; it says so. */
  ask_peer (rec);
}

/* QEMU is in postcopy: the destination holds part of the guest. Its
 * stream is followed to the end, and recovered when broken (this may
 * take minutes: new migrations need not wait for it). */
static void
follow_stream (Recovery *rec)
{
  md_journal_set_string (rec->journal, "authority", "split");
  md_migration_set_statistic (rec->migration, "restarted-in-postcopy",
                              g_variant_new_boolean (TRUE));
  if (!rec->released)
    {
      rec->released = TRUE;
      md_manager_hold_recovery (rec->manager, FALSE);
    }
  md_postcopy_resume_async (rec->manager, rec->journal, rec->guest, rec->migration,
                            on_stream_followed, rec);
}

static gboolean
on_postcopy_wait (gpointer user_data)
{
  confirm_when_sent (user_data);
  return G_SOURCE_REMOVE;
}

/* query-migrate's status, "" when QEMU did not answer. */
static const char *
reply_status (JsonNode *reply)
{
  if (reply == NULL || !JSON_NODE_HOLDS_OBJECT (reply))
    return "";
  return json_object_get_string_member_with_default (json_node_get_object (reply), "status", "");
}

static void
on_source_status (Recovery *rec, JsonNode *reply, GError *error)
{
  g_autoptr (GError) owned = error;
  const char *status = reply_status (reply);

  if ((g_str_equal (status, "postcopy-paused") || g_str_equal (status, "postcopy-recover"))
      && !rec->streamed)
    {
      /* The stream broke while no daemon watched: the pages only this QEMU
       * has are needed on the destination. */
      follow_stream (rec);
      return;
    }
  if (g_str_equal (status, "postcopy-paused") || g_str_equal (status, "postcopy-recover"))
    {
      recovery_attention (
          rec, g_error_new (MD_ERROR, MD_ERROR_FAILED,
                            "host %s: the daemon restarted while guest %s was in postcopy to %s "
                            "and the postcopy stream is broken (QEMU status %s): part of the "
                            "guest's memory is only in the QEMU here, which was kept. Do not "
                            "kill it; recover the stream by hand (QMP migrate-recover on %s, "
                            "migrate with resume=true here)",
                            host_name (rec), guest_name (rec),
                            md_journal_get_string (rec->journal, "peer-address"), status,
                            md_journal_get_string (rec->journal, "peer-address")));
      return;
    }
  if (g_str_equal (status, "postcopy-active") || g_str_equal (status, "device"))
    {
      /* The destination still pulls pages from this QEMU. */
      g_timeout_add (POSTCOPY_WAIT_MS, on_postcopy_wait, rec);
      return;
    }
  remove_this_copy (rec);
}

static void
confirm_when_sent (Recovery *rec)
{
  qmp (rec, "query-migrate", NULL, on_source_status);
}

static gboolean
on_ask_again (gpointer user_data)
{
  ask_peer (user_data);
  return G_SOURCE_REMOVE;
}

static void
on_peer_answer (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Recovery *rec = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *outcome = md_migration_ask_peer_finish (result, &error);
  gboolean split = g_strcmp0 (md_journal_get_string (rec->journal, "authority"), "split") == 0;

  if (outcome != NULL && g_str_equal (outcome, "running"))
    {
      g_message ("recovering migration %s: %s runs on the destination",
                 md_journal_get_id (rec->journal), guest_name (rec));
      confirm_when_sent (rec);
      return;
    }
  if (outcome != NULL && !split)
    {
      keep_this_copy (rec);
      return;
    }
  if (outcome != NULL && g_str_equal (outcome, "pending") && rec->streamed
      && rec->pending_asks++ < PENDING_ASKS)
    {
      g_timeout_add_seconds (1, on_ask_again, rec);
      return;
    }
  recovery_attention (
      rec, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                        "host %s: the daemon restarted while guest %s was migrating to %s "
                        "(phase %s) and %s; the guest is left paused here because this host "
                        "cannot prove the copy here is the only one. Check whether it runs on "
                        "%s: if it does, destroy it here; if not, resume it here",
                        host_name (rec), guest_name (rec),
                        md_journal_get_string (rec->journal, "peer-address"),
                        md_journal_get_string (rec->journal, "phase"),
                        outcome != NULL ? "the destination reported it aborted in postcopy"
                                        : error->message,
                        md_journal_get_string (rec->journal, "peer-address")));
}

/* The journal says the source held the guest; QEMU itself may know
 * better: if postcopy had started before the journal caught up, this
 * copy holds part of the guest and must not go. */
static void on_held_incoming_status (Recovery *rec, JsonNode *reply, GError *error);

static void
on_incoming_status (Recovery *rec, JsonNode *reply, GError *error)
{
  g_autoptr (GError) owned = error;
  const char *status = reply_status (reply);

  if (g_str_has_prefix (status, "postcopy"))
    on_held_incoming_status (rec, reply, NULL);
  else
    remove_this_copy (rec);
}

/* The incoming migration goes on in a migration object of the
 * destination (md-migration-dest-recovery.c), which owns the journal from
 * now on. FALSE with @error when the journal cannot support it. */
static gboolean
reattach_incoming (Recovery *rec, GError **error)
{
  gboolean paused = md_journal_get_int (rec->journal, "paused-on-destination");

  if (rec->dest == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "this daemon has no peer listener");
      return FALSE;
    }
  if (!md_migration_dest_reattach_postcopy (rec->dest, rec->journal, rec->guest, rec->migration,
                                            error))
    return FALSE;
  rec->journal = NULL;
  /* The guest runs here in postcopy, unless the user asked otherwise. */
  md_guest_end_migration (rec->guest, TRUE);
  if (!paused)
    qmp (rec, "cont", NULL, NULL);
  md_manager_hold_recovery (rec->manager, FALSE);
  recovery_free (rec);
  return TRUE;
}

/* The journal says this copy holds the guest. A postcopy stream still
 * under way (or broken while no daemon watched) goes on: the migration
 * is open again here, for the source to recover its stream, and ends
 * when QEMU completes. */
static void
on_held_incoming_status (Recovery *rec, JsonNode *reply, GError *error)
{
  g_autoptr (GError) owned = error;
  g_autoptr (GError) reattach_error = NULL;
  const char *status = md_migration_qemu_status (reply, "");

  if (!g_str_has_prefix (status, "postcopy-"))
    {
      keep_this_copy (rec);
      return;
    }
  if (reattach_incoming (rec, &reattach_error))
    return;
  if (!g_str_equal (status, "postcopy-paused") && !g_str_equal (status, "postcopy-recover"))
    {
      g_message ("recovering migration %s: cannot re-attach (%s); QEMU completes the postcopy "
                 "stream by itself",
                 md_journal_get_id (rec->journal), reattach_error->message);
      keep_this_copy (rec);
      return;
    }
  recovery_attention (
      rec,
      g_error_new (MD_ERROR, MD_ERROR_FAILED,
                   "host %s: the daemon restarted while guest %s arrived in postcopy from "
                   "%s and the postcopy stream is broken (QEMU status %s), and this daemon "
                   "cannot take up its recovery: %s. The guest runs here but waits for "
                   "pages only the source's QEMU has. Both QEMUs must be kept; recover "
                   "the stream by hand (QMP migrate-recover here, migrate with "
                   "resume=true on %s)",
                   host_name (rec), guest_name (rec),
                   md_journal_get_string (rec->journal, "peer-address"), status,
                   reattach_error->message, md_journal_get_string (rec->journal, "peer-address")));
}

static void
ask_peer (Recovery *rec)
{
  md_migration_ask_peer_async (md_manager_get_peer_tls_config (rec->manager),
                               md_journal_get_string (rec->journal, "peer-address"),
                               md_journal_get_id (rec->journal), RECOVER_ASK_TIMEOUT_S, NULL,
                               on_peer_answer, rec);
}

/* The journal says the source held the guest before Finish; QEMU may know
 * better (journal writes are queued: the daemon may have died between
 * QEMU's switch to postcopy and the write that records it). In postcopy
 * the destination holds part of the guest: ask it, never cancel here. */
static void
on_outgoing_status (Recovery *rec, JsonNode *reply, GError *error)
{
  g_autoptr (GError) owned = error;
  const char *status = reply_status (reply);

  if (g_str_has_prefix (status, "postcopy"))
    follow_stream (rec);
  else
    keep_this_copy (rec);
}

/* Split authority: a QEMU still in postcopy is followed to the end (and
 * its stream recovered) before the destination is asked. */
static void
on_split_status (Recovery *rec, JsonNode *reply, GError *error)
{
  g_autoptr (GError) owned = error;

  if (g_str_has_prefix (reply_status (reply), "postcopy"))
    follow_stream (rec);
  else
    ask_peer (rec);
}

/* ---- one record ------------------------------------------------------------ */

static void
recover_one (MdManager *manager, MdMigrationDest *dest, MdJournal *journal)
{
  Recovery *rec = g_new0 (Recovery, 1);
  gboolean incoming = g_str_equal (md_journal_get_direction (journal), "incoming");
  MdAuthority authority = md_authority_from_string (md_journal_get_string (journal, "authority"));
  MdPhase phase = md_phase_from_string (md_journal_get_string (journal, "phase"));
  MdGuest *guest = md_manager_find_guest (manager, md_journal_get_string (journal, "guest"));

  rec->manager = manager;
  rec->dest = dest;
  rec->journal = journal;
  rec->guest = guest != NULL ? g_object_ref (guest) : NULL;
  md_manager_hold_recovery (manager, TRUE);
  rec->migration = md_migration_new (manager, md_manager_next_migration_number (manager),
                                     incoming ? MD_MIGRATION_INCOMING : MD_MIGRATION_OUTGOING,
                                     guest != NULL ? md_guest_get_object_path (guest) : "/",
                                     md_journal_get_string (journal, "guest"),
                                     md_journal_get_string (journal, "peer-address")
                                         ? md_journal_get_string (journal, "peer-address")
                                         : "",
                                     0, g_variant_new ("a{sv}", NULL));
  md_migration_set_phase (rec->migration, "resolving");
  md_migration_set_running_state (rec->migration, "running");
  md_migration_set_statistic (rec->migration, "resolves",
                              g_variant_new_string (md_journal_get_id (journal)));
  md_manager_add_migration (manager, md_migration_get_object_path (rec->migration),
                            MD_DBUS_MIGRATION1 (rec->migration));
  if (guest != NULL && md_guest_is_active (guest))
    md_guest_begin_migration (guest, md_migration_get_object_path (rec->migration), incoming);
  g_message ("recovering %s migration %s of %s (phase %s, guest on the %s)",
             md_journal_get_direction (journal), md_journal_get_id (journal),
             md_journal_get_string (journal, "guest"), md_phase_to_string (phase),
             md_authority_to_string (authority));

  if (incoming)
    {
      /* The phase and the authority are separate journal writes: a
       * daemon killed between them left "postcopy" with the source still
       * named, and in postcopy this copy holds part of the guest. */
      if (authority == MD_AUTHORITY_SOURCE && phase != MD_PHASE_POSTCOPY)
        qmp (rec, "query-migrate", NULL, on_incoming_status);
      else if (guest != NULL && md_guest_is_active (guest))
        qmp (rec, "query-migrate", NULL, on_held_incoming_status);
      else
        keep_this_copy (rec);
      return;
    }
  if (authority == MD_AUTHORITY_DESTINATION)
    confirm_when_sent (rec);
  else if (authority == MD_AUTHORITY_SOURCE && phase != MD_PHASE_FINISH
           && phase != MD_PHASE_RESOLVING && phase != MD_PHASE_CONFIRM)
    qmp (rec, "query-migrate", NULL, on_outgoing_status);
  else if (authority == MD_AUTHORITY_SPLIT && guest != NULL && md_guest_is_active (guest))
    qmp (rec, "query-migrate", NULL, on_split_status);
  else
    ask_peer (rec);
}

/* A QEMU prepared for an incoming migration that has no journal (an
 * older daemon, or Prepare died before it wrote one): the source still
 * holds the guest, so it goes. */
static void
remove_unjournaled_incoming (MdManager *manager, GHashTable *journaled)
{
  g_autoptr (GList) guests = md_manager_list_guests (manager);

  for (GList *l = guests; l != NULL; l = l->next)
    {
      MdGuest *guest = l->data;

      if (md_guest_get_state (guest) != MD_GUEST_STATE_MIGRATING_IN
          || g_hash_table_contains (journaled, md_guest_get_name (guest)))
        continue;
      g_message ("guest %s: killing QEMU prepared for an incoming migration that ended with the "
                 "previous daemon",
                 md_guest_get_name (guest));
      md_guest_destroy_async (guest, NULL, NULL);
    }
}

void
md_migration_recover_start (MdManager *manager, MdMigrationDest *dest)
{
  const MdConfig *config = md_manager_get_config (manager);
  g_autoptr (GPtrArray) records = md_journal_list (config->state_dir);
  g_autoptr (GHashTable) journaled = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  md_manager_hold_recovery (manager, TRUE);
  while (records->len > 0)
    {
      MdJournal *journal = g_ptr_array_steal_index (records, 0);
      const char *outcome = md_journal_get_string (journal, "outcome");

      if (outcome != NULL && !g_str_equal (outcome, "needs-attention"))
        {
          /* A tombstone, kept for a source that may still ask. */
          if (now - md_journal_get_int (journal, "written") > TOMBSTONE_KEEP_S)
            md_journal_remove (journal);
          md_journal_free (journal);
          continue;
        }
      if (g_str_equal (md_journal_get_direction (journal), MD_SAVE_JOURNAL_DIRECTION))
        {
          md_save_recover (manager, journal);
          continue;
        }
      if (md_journal_get_string (journal, "guest") != NULL)
        g_hash_table_add (journaled, g_strdup (md_journal_get_string (journal, "guest")));
      recover_one (manager, dest, journal);
    }
  remove_unjournaled_incoming (manager, journaled);
  md_manager_hold_recovery (manager, FALSE);
}

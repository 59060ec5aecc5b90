/* migrationd: Migration1.Resolve (see the header). */
#include "config.h"

#include "md-migration-resolve.h"
#include "common/md-error.h"
#include "md-migration-qemu.h"
#include "storage/md-storage.h"

typedef struct
{
  MdManager *manager;     /* outlives every migration */
  MdMigration *migration; /* owns this resolver */
  MdJournal *journal;
  MdGuest *guest;
  gboolean incoming;
  MdMigrationTuned done;
  gpointer done_data;
} Resolver;

static void
resolver_free (Resolver *r)
{
  md_journal_free (r->journal);
  g_clear_object (&r->guest);
  g_free (r);
}

static const char *
host_name (Resolver *r)
{
  return md_manager_get_config (r->manager)->host_name;
}

static const char *
guest_name (Resolver *r)
{
  return md_dbus_migration1_get_guest_name (MD_DBUS_MIGRATION1 (r->migration));
}

/* The copy here is settled: the record says so (a destination keeps it
 * for a source that asks; a source's goes) and Migration1 completes. */
static void
resolver_finish (Resolver *r, gboolean on_destination, const char *how)
{
  MdMigrationTuned done = g_steal_pointer (&r->done);

  if (r->incoming)
    {
      md_journal_set_string (r->journal, "outcome", on_destination ? "running" : "aborted");
      md_journal_set_string (r->journal, "phase", "ended");
      md_journal_commit_async (r->journal);
    }
  else
    md_journal_remove (r->journal);
  done (NULL, r->done_data);
  md_migration_resolved (r->migration, on_destination, how);
}

static void
resolver_fail (Resolver *r, GError *error)
{
  MdMigrationTuned done = g_steal_pointer (&r->done);

  done (error, r->done_data);
}

/* ---- keep the copy here -------------------------------------------------- */

static void
on_kept_resumed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Resolver *r = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) reply = md_qmp_execute_finish (MD_QMP (source), result, &error);
  g_autofree char *how = NULL;

  if (reply == NULL)
    {
      g_prefix_error (&error, "host %s: resuming %s: ", host_name (r), guest_name (r));
      resolver_fail (r, md_error_convert (error, MD_ERROR_QEMU_FAILED));
      return;
    }
  md_guest_end_migration (r->guest, TRUE);
  how = g_strdup_printf ("resolved by an administrator: guest %s runs on the %s, host %s",
                         guest_name (r), r->incoming ? "destination" : "source", host_name (r));
  resolver_finish (r, r->incoming, how);
}

/* What the migration set up in QEMU goes (QMP runs commands in order, so
 * "cont" below comes after them); then the guest runs, or stays paused. */
static gboolean
keep_here (Resolver *r, gboolean resume, GError **error)
{
  MdQmp *qmp = r->guest != NULL ? md_guest_get_qmp (r->guest) : NULL;
  g_auto (GStrv) objects = md_journal_list_get (r->journal, "qemu-objects");
  g_auto (GStrv) nodes = md_journal_list_get (r->journal, "qemu-nodes");
  g_auto (GStrv) jobs = md_journal_list_get (r->journal, "qemu-jobs");
  g_autofree char *how = NULL;

  if (qmp == NULL || !md_guest_is_active (r->guest))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                   "host %s: the QEMU of %s here is gone: there is no copy to keep on the %s; "
                   "resolve with keep \"%s\" if the other host runs it",
                   host_name (r), guest_name (r), r->incoming ? "destination" : "source",
                   r->incoming ? "source" : "destination");
      return FALSE;
    }
  md_migration_qemu_remove_leftovers (qmp, !r->incoming, (const char *const *) jobs,
                                      (const char *const *) nodes, (const char *const *) objects);
  if (resume)
    {
      md_qmp_execute_async (qmp, "cont", NULL, NULL, on_kept_resumed, r);
      return TRUE;
    }
  md_guest_end_migration (r->guest, FALSE);
  how = g_strdup_printf ("resolved by an administrator: guest %s stays paused on the %s, host %s",
                         guest_name (r), r->incoming ? "destination" : "source", host_name (r));
  resolver_finish (r, r->incoming, how);
  return TRUE;
}

/* ---- stop the copy here --------------------------------------------------- */

/* Everything the migration made here for a copy that is not the guest:
 * a destination's images and transient guest object; a source's
 * definition when undefine-source was asked. */
static void
remove_what_was_made (Resolver *r)
{
  g_autoptr (GError) error = NULL;

  if (r->incoming)
    {
      g_auto (GStrv) images = md_journal_list_get (r->journal, "images");
      md_storage_remove ((const char *const *) images);
    }
  else if (md_journal_get_int (r->journal, "undefine-source") && r->guest != NULL
           && md_guest_is_persistent (r->guest))
    {
      if (!md_manager_delete_definition (r->manager, guest_name (r), &error))
        g_warning ("%s", error->message);
      md_guest_set_persistent (r->guest, FALSE);
    }
  if (r->guest != NULL && !md_guest_is_persistent (r->guest)
      && md_manager_find_guest (r->manager, md_guest_get_name (r->guest)) == r->guest)
    md_manager_remove_guest (r->manager, r->guest);
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Resolver *r = user_data;
  g_autoptr (GError) error = NULL;
  g_autofree char *how = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    {
      g_prefix_error (&error, "host %s: stopping the QEMU of %s: ", host_name (r), guest_name (r));
      resolver_fail (r, md_error_convert (error, MD_ERROR_QEMU_FAILED));
      return;
    }
  remove_what_was_made (r);
  how = g_strdup_printf ("resolved by an administrator: guest %s runs on the %s; its copy on "
                         "host %s was stopped",
                         guest_name (r), r->incoming ? "source" : "destination", host_name (r));
  resolver_finish (r, !r->incoming, how);
}

static void
stop_here (Resolver *r)
{
  g_autofree char *how = NULL;

  if (r->guest != NULL && md_guest_is_active (r->guest))
    {
      md_guest_end_migration (r->guest, FALSE);
      md_guest_destroy_async (r->guest, on_stopped, r);
      return;
    }
  if (r->guest != NULL)
    md_guest_end_migration (r->guest, FALSE);
  remove_what_was_made (r);
  how = g_strdup_printf ("resolved by an administrator: guest %s runs on the %s; host %s had no "
                         "running copy left",
                         guest_name (r), r->incoming ? "source" : "destination", host_name (r));
  resolver_finish (r, !r->incoming, how);
}

static gboolean
resolve (gpointer data, gboolean keep, gboolean resume, MdMigrationTuned done, gpointer user_data,
         GError **error)
{
  Resolver *r = data;

  r->done = done;
  r->done_data = user_data;
  if (resume < 0)
    /* As before the migration: a source that ran, a destination that was
     * not asked to stay paused. */
    resume = r->incoming ? !md_journal_get_int (r->journal, "paused-on-destination")
                         : md_journal_get_int (r->journal, "was-running");
  if (!keep)
    {
      stop_here (r);
      return TRUE;
    }
  if (!keep_here (r, resume, error))
    {
      r->done = NULL;
      return FALSE;
    }
  return TRUE;
}

void
md_migration_resolver_attach (MdMigration *migration, MdManager *manager, MdJournal *journal,
                              MdGuest *guest)
{
  Resolver *r = g_new0 (Resolver, 1);

  r->manager = manager;
  r->migration = migration;
  r->journal = md_journal_dup (journal);
  r->guest = guest != NULL ? g_object_ref (guest) : NULL;
  r->incoming = g_strcmp0 (md_journal_get_direction (journal), "incoming") == 0;
  md_migration_set_resolver (migration, resolve, r, (GDestroyNotify) resolver_free);
}

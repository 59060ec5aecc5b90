/* migrationd: recovering a save that the previous daemon left open.
 *
 * Save keeps a journal record (direction "save") from the moment QEMU may
 * stop the guest until the save has ended. A daemon killed in between
 * leaves QEMU stopped (or still writing), a partial file and perhaps a
 * compressor. Before the file has its final name the save has not
 * happened: QEMU's stream is cancelled, the partial file and the
 * compressor go, and the guest runs again if it ran before. Once the file
 * has its name (phase "committed") the save has happened: QEMU goes and
 * the guest is saved, as the save would have ended. */
#include "config.h"

#include "md-save-recover.h"
#include "md-save-private.h"
#include "common/md-error.h"
#include "common/md-file-remove.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <signal.h>
#include <stdlib.h>

typedef struct
{
  MdManager *manager;
  MdJournal *journal;
  MdGuest *guest;
} SaveRecovery;

static void
save_recovery_free (SaveRecovery *rec)
{
  md_journal_free (rec->journal);
  g_clear_object (&rec->guest);
  g_free (rec);
}

static const char *
host_name (SaveRecovery *rec)
{
  return md_manager_get_config (rec->manager)->host_name;
}

static const char *
guest_name (SaveRecovery *rec)
{
  return md_journal_get_string (rec->journal, "guest");
}

static void
recovered (SaveRecovery *rec, const char *what)
{
  g_message ("host %s: the save of guest %s to %s that the previous daemon left open: %s",
             host_name (rec), guest_name (rec), md_journal_get_string (rec->journal, "path"), what);
  md_journal_remove (rec->journal);
  md_manager_hold_recovery (rec->manager, FALSE);
  save_recovery_free (rec);
}

/* The compressor of the old save, if it still runs: its input is QEMU's
 * stream, which is cancelled, so what it would write is useless. */
static void
stop_old_filter (SaveRecovery *rec)
{
  GPid pid = (GPid) md_journal_get_int (rec->journal, "filter-pid");
  guint64 start = (guint64) md_journal_get_int (rec->journal, "filter-start");

  if (pid <= 0 || start == 0 || md_save_process_start_time (pid) != start)
    return;
  if (kill (pid, SIGKILL) == 0)
    g_message ("host %s: stopped the compressor (pid %d) of the unfinished save of %s",
               host_name (rec), (int) pid, guest_name (rec));
}

static void
remove_partial (SaveRecovery *rec)
{
  const char *partial = md_journal_get_string (rec->journal, "partial");

  if (partial != NULL)
    md_file_remove_in_background (g_strdup (partial));
}

/* ---- the file was complete: the save happened -------------------------- */

static void
on_saved_qemu_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SaveRecovery *rec = user_data;
  g_autoptr (GError) error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    g_warning ("host %s: stopping the QEMU of saved guest %s: %s", host_name (rec),
               guest_name (rec), error->message);
  md_guest_mark_saved (rec->guest, md_journal_get_int (rec->journal, "managed") != 0);
  recovered (rec, "the file was complete; the guest is saved and its QEMU stopped");
}

/* ---- the file was not complete: the guest goes on as before ------------- */

static void
on_resumed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SaveRecovery *rec = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      g_warning ("host %s: guest %s stays paused after the unfinished save (resume it with "
                 "Guest1.Resume): %s",
                 host_name (rec), guest_name (rec), error->message);
      recovered (rec, "removed the partial file; the guest could not be resumed");
      return;
    }
  recovered (rec, "removed the partial file; the guest runs again");
}

static void
on_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SaveRecovery *rec = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  gboolean running = node != NULL
                     && json_object_get_boolean_member_with_default (json_node_get_object (node),
                                                                     "running", FALSE);

  if (node == NULL || running || md_journal_get_int (rec->journal, "was-running") == 0)
    {
      recovered (rec, running ? "removed the partial file; the guest kept running"
                              : "removed the partial file; the guest stays paused as it was");
      return;
    }
  md_qmp_execute_async (MD_QMP (source), "cont", NULL, NULL, on_resumed, rec);
}

static void
on_cancelled (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SaveRecovery *rec = user_data;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);

  /* Only now, with QEMU's stream closed, is the compressor's input done. */
  stop_old_filter (rec);
  remove_partial (rec);
  md_qmp_execute_async (MD_QMP (source), "query-status", NULL, NULL, on_status, rec);
}

void
md_save_recover (MdManager *manager, MdJournal *journal)
{
  SaveRecovery *rec = g_new0 (SaveRecovery, 1);
  MdGuest *guest;
  MdQmp *qmp;

  rec->manager = manager;
  rec->journal = journal;
  md_manager_hold_recovery (manager, TRUE);
  guest = md_manager_find_guest (manager, guest_name (rec));
  rec->guest = guest != NULL ? g_object_ref (guest) : NULL;
  qmp = guest != NULL && md_guest_is_active (guest) ? md_guest_get_qmp (guest) : NULL;
  g_message ("host %s: recovering the save of guest %s (phase %s)", host_name (rec),
             guest_name (rec), md_journal_get_string (journal, "phase"));

  if (g_strcmp0 (md_journal_get_string (journal, "phase"), "committed") == 0)
    {
      stop_old_filter (rec);
      if (rec->guest != NULL && md_guest_is_active (rec->guest))
        md_guest_destroy_async (rec->guest, on_saved_qemu_stopped, rec);
      else
        {
          if (rec->guest != NULL)
            md_guest_mark_saved (rec->guest, md_journal_get_int (journal, "managed") != 0);
          recovered (rec, "the file was complete; the guest is saved");
        }
      return;
    }
  if (qmp == NULL)
    {
      stop_old_filter (rec);
      remove_partial (rec);
      recovered (rec, "removed the partial file; the guest's QEMU was gone");
      return;
    }
  /* Whatever QEMU still writes (or wrote) goes nowhere useful. */
  md_qmp_execute_async (qmp, "migrate_cancel", NULL, NULL, on_cancelled, rec);
}

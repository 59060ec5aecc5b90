/* migrationd: [daemon] on-stop = managed-save — guests survive a host
 * reboot. When the daemon stops, every running or paused persistent guest
 * is managed-saved (all at once; each failure is logged and that guest
 * keeps running) and its name recorded in save/restore-at-start; when the
 * daemon starts again those guests are restored and the list removed.
 * Guests a user managed-saved by hand are not in the list and stay saved. */
#include "config.h"

#include "md-save-private.h"
#include "common/md-error.h"
#include "common/md-file-remove.h"

#include <errno.h>
#include <glib/gstdio.h>

#define RESTORE_LIST "restore-at-start"

typedef struct
{
  MdManager *manager;
  guint pending;
  GString *saved; /* names, one a line */
  GTask *task;
} SaveAll;

static char *
list_path (MdManager *manager)
{
  return g_build_filename (md_manager_get_config (manager)->state_dir, "save", RESTORE_LIST, NULL);
}

static void
save_all_step_done (SaveAll *all)
{
  g_autofree char *path = NULL;
  g_autoptr (GError) error = NULL;

  if (--all->pending > 0)
    return;
  path = list_path (all->manager);
  /* The daemon is stopping and this is one small file: written here, at
   * the very end, synchronously. */
  if (all->saved->len > 0 && !g_file_set_contents (path, all->saved->str, -1, &error))
    g_warning ("cannot record the guests to restore at start in %s: %s (start them by hand; "
               "their managed saves are kept)",
               path, error->message);
  g_task_return_boolean (all->task, TRUE);
  g_object_unref (all->task);
  g_string_free (all->saved, TRUE);
  g_free (all);
}

typedef struct
{
  SaveAll *all;
  char *name;
} SaveOne;

static void
on_saved_one (MdDbusMigration1 *migration, gboolean success, const char *error_name,
              const char *error_message, gpointer user_data)
{
  SaveOne *one = user_data;

  g_signal_handlers_disconnect_by_data (migration, one);
  if (success)
    g_string_append_printf (one->all->saved, "%s\n", one->name);
  else
    g_warning ("on-stop: guest %s could not be saved and keeps running: %s", one->name,
               error_message);
  save_all_step_done (one->all);
  g_free (one->name);
  g_free (one);
}

static void
on_save_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SaveOne *one = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (MdMigration) migration = md_save_start_finish (result, &error);

  if (migration == NULL)
    {
      g_warning ("on-stop: guest %s could not be saved and keeps running: %s", one->name,
                 error->message);
      save_all_step_done (one->all);
      g_free (one->name);
      g_free (one);
      return;
    }
  if (md_migration_is_finished (migration))
    {
      const GError *failed = md_migration_get_error (migration);
      on_saved_one (MD_DBUS_MIGRATION1 (migration), failed == NULL, "",
                    failed ? failed->message : "", one);
      return;
    }
  g_signal_connect (migration, "completed", G_CALLBACK (on_saved_one), one);
}

void
md_save_all_async (MdManager *manager, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GList) guests = md_manager_list_guests (manager);
  g_autoptr (GVariant) options = g_variant_ref_sink (g_variant_new ("a{sv}", NULL));
  SaveAll *all = g_new0 (SaveAll, 1);

  all->manager = manager;
  all->saved = g_string_new (NULL);
  all->task = g_task_new (manager, NULL, callback, user_data);
  all->pending = 1; /* released below, once every save has started */
  for (GList *l = guests; l != NULL; l = l->next)
    {
      MdGuest *guest = l->data;
      MdGuestState state = md_guest_get_state (guest);
      SaveOne *one;

      if (!md_guest_is_persistent (guest)
          || (state != MD_GUEST_STATE_RUNNING && state != MD_GUEST_STATE_PAUSED))
        continue;
      one = g_new0 (SaveOne, 1);
      one->all = all;
      one->name = g_strdup (md_guest_get_name (guest));
      all->pending++;
      g_message ("on-stop: managed-saving guest %s", one->name);
      md_save_start_async (manager, guest, NULL, options, 0, TRUE, on_save_started, one);
    }
  save_all_step_done (all);
}

gboolean
md_save_all_finish (MdManager *manager, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- at start ---------------------------------------------------------------- */

static void
on_restored (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MdManager *manager = MD_MANAGER (source);
  g_autofree char *name = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (MdGuest) guest = md_save_restore_finish (result, &error);

  if (guest == NULL)
    {
      g_warning ("on-stop: guest %s could not be restored at start; its managed save is kept "
                 "(Start retries it): %s",
                 name, error->message);
      return;
    }
  md_guest_set_has_managed_save (guest, FALSE);
  md_file_remove_in_background (md_save_managed_path (manager, name));
  g_message ("on-stop: guest %s restored", name);
}

void
md_save_restore_at_start (MdManager *manager)
{
  g_autofree char *path = list_path (manager);
  g_autofree char *contents = NULL;
  g_auto (GStrv) names = NULL;
  g_autoptr (GVariant) options = NULL;

  /* Start-up reads its files before the main loop serves anyone. */
  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return;
  g_unlink (path);
  options = g_variant_ref_sink (g_variant_new ("a{sv}", NULL));
  names = g_strsplit (contents, "\n", -1);
  for (guint i = 0; names[i] != NULL; i++)
    {
      MdGuest *guest = md_manager_find_guest (manager, names[i]);
      g_autofree char *saved = NULL;

      if (*names[i] == '\0')
        continue;
      if (guest == NULL || md_guest_is_active (guest)
          || !md_dbus_guest1_get_has_managed_save (MD_DBUS_GUEST1 (guest)))
        {
          g_warning ("on-stop: guest %s is no longer defined or has no managed save; not "
                     "restored",
                     names[i]);
          continue;
        }
      saved = md_save_managed_path (manager, names[i]);
      g_message ("on-stop: restoring guest %s", names[i]);
      md_save_restore_async (manager, saved, options, guest, on_restored, g_strdup (names[i]));
    }
}

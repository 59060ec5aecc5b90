/* migrationd: a running guest's runtime record. QEMU outlives a daemon
 * restart (the daemon stopping must never stop a guest), so what the next
 * daemon needs to adopt it (the live definition, its QMP socket and log,
 * its identity) is on disk while it runs, and read back here. */
#include "config.h"

#include "md-guest-private.h"
#include "md-isolation.h"
#include "common/md-error.h"

#include <glib/gstdio.h>

char *
guest_runtime_name (MdGuest *self)
{
  return g_strdup (self->def->name);
}

static void
copy_member (JsonObject *object, const char *name, JsonNode *node, gpointer user_data)
{
  json_object_set_member (user_data, name, json_node_copy (node));
}

void
guest_write_runtime_record (MdGuest *self)
{
  const MdConfig *config = self->host->config;
  g_autoptr (JsonObject) extra = json_object_new ();
  g_autofree char *xml = md_domain_format (self->live);
  g_autofree char *name = guest_runtime_name (self);
  g_autoptr (GError) error = NULL;

  json_object_set_string_member (extra, "xml", xml);
  json_object_set_boolean_member (extra, "persistent", self->persistent);
  json_object_set_boolean_member (extra, "incoming", self->incoming);
  if (self->isolation != NULL)
    json_object_foreach_member (self->isolation, copy_member, extra);
  if (!md_qemu_runtime_write (config->runtime_dir, name, md_qemu_process_get_pid (self->proc),
                              self->live->uuid, self->qmp_path, self->log_path, extra, &error))
    g_warning ("guest %s: cannot record the running QEMU (a daemon restart would lose "
               "track of it): %s",
               self->def->name, error->message);
}

void
guest_remove_runtime_record (MdGuest *self)
{
  g_autofree char *name = guest_runtime_name (self);
  g_autoptr (GError) error = NULL;

  if (!md_qemu_runtime_remove (self->host->config->runtime_dir, name, &error))
    g_warning ("guest %s: %s", self->def->name, error->message);
}

/* ---- Re-attach after a daemon restart ---------------------------------- */

static void
on_reattach_status (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdGuest *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);
  const char *status;

  if (node == NULL)
    {
      guest_release_process (self, MD_GUEST_STATE_SHUT_OFF);
      self->busy = NULL;
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  status = json_object_get_string_member_with_default (json_node_get_object (node), "status", "");
  if (self->incoming)
    guest_set_state (self, MD_GUEST_STATE_MIGRATING_IN);
  else if (g_str_equal (status, "running"))
    guest_set_state (self, MD_GUEST_STATE_RUNNING);
  else if (g_str_equal (status, "guest-panicked"))
    guest_set_state (self, MD_GUEST_STATE_CRASHED);
  else
    guest_set_state (self, MD_GUEST_STATE_PAUSED);
  self->busy = NULL;
  g_message ("guest %s: re-attached to QEMU pid %d (%s)", self->def->name,
             md_qemu_process_get_pid (self->proc), status);
  g_task_return_boolean (task, TRUE);
}

static void
on_reattach_qmp (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdGuest *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQmp) qmp = md_qmp_connect_finish (result, &error);

  if (qmp == NULL || self->proc == NULL)
    {
      guest_release_process (self, MD_GUEST_STATE_SHUT_OFF);
      self->busy = NULL;
      if (error == NULL)
        error = g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU exited while re-attaching");
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  guest_attach_qmp (self, qmp);
  md_qmp_execute_async (self->qmp, "query-status", NULL, NULL, on_reattach_status,
                        g_steal_pointer (&task));
}

static void
copy_isolation_member (JsonObject *object, const char *name, JsonNode *node, gpointer user_data)
{
  if (g_str_equal (name, "uid") || g_str_equal (name, "gid") || g_str_equal (name, "shared-user")
      || g_str_equal (name, "cgroup"))
    json_object_set_member (user_data, name, json_node_copy (node));
}

void
md_guest_reattach_async (MdGuest *self, MdQemuRuntime *record, GCancellable *cancellable,
                         GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQemuProcess) proc = NULL;
  const char *xml = json_object_get_string_member_with_default (record->extra, "xml", NULL);
  g_autoptr (MdDomain) live = NULL;

  g_task_set_source_tag (task, md_guest_reattach_async);
  if (xml == NULL || (live = md_domain_parse (xml, &error)) == NULL)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_FAILED,
                               "runtime record of %s has no usable definition: %s", record->name,
                               error ? error->message : "no xml");
      return;
    }
  proc = md_qemu_process_new_for_pid (record->pid, record->uuid, record->log_path, &error);
  if (proc == NULL)
    {
      /* QEMU died while we were away: its socket is all that is left. */
      if (record->qmp_path != NULL)
        g_unlink (record->qmp_path);
      md_isolation_release (self->host, record->extra);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  /* Its uid stays reserved: no new guest may get it while it runs. */
  md_isolation_reserve (self->host, record->extra);
  self->isolation = json_object_new ();
  json_object_foreach_member (record->extra, copy_isolation_member, self->isolation);
  /* A QEMU prepared for an incoming migration is adopted as migrating-in:
   * the migration journal (md-migration-recover.c) decides whether it
   * holds the guest (after the switch-over) or must go (before it). */
  self->incoming = json_object_get_boolean_member_with_default (record->extra, "incoming", FALSE);
  self->live = g_steal_pointer (&live);
  g_free (self->qmp_path);
  self->qmp_path = g_strdup (record->qmp_path);
  g_free (self->log_path);
  self->log_path = g_strdup (record->log_path);
  self->busy = "re-attaching";
  guest_attach_process (self, proc);
  md_qmp_connect_full_async (self->qmp_path, self->log_path, MD_QMP_DEFAULT_CONNECT_TIMEOUT_MS,
                             cancellable, on_reattach_qmp, g_steal_pointer (&task));
}

gboolean
md_guest_reattach_finish (MdGuest *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* migrationd: following a guest's QEMU. Its exit and its QMP events are
 * what move the guest's state, and the ways the daemon stops it
 * (Shutdown's power-off with its timeout, Destroy) end in that same exit,
 * so they live here too. */
#include "config.h"

#include "md-guest-private.h"
#include "md-isolation.h"
#include "common/md-error.h"
#include "qemu/md-qemu-argv.h"
#include "qemu/md-qemu-log.h"

#include <glib/gstdio.h>
#include <sys/wait.h>

static void on_qmp_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp,
                          MdGuest *self);
static void on_process_exited (MdQemuProcess *proc, int wait_status, MdGuest *self);

void
guest_release_process (MdGuest *self, MdGuestState final_state)
{
  const MdConfig *config = self->host->config;

  if (self->qmp != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->qmp, self);
      md_qmp_close (self->qmp);
      g_clear_object (&self->qmp);
    }
  if (self->proc != NULL)
    {
      g_signal_handlers_disconnect_by_data (self->proc, self);
      g_clear_object (&self->proc);
    }
  guest_remove_runtime_record (self);
  if (self->qmp_path != NULL)
    g_unlink (self->qmp_path);
  if (self->live != NULL)
    md_qemu_remove_runtime_files (self->live, config->runtime_dir);
  md_isolation_release (self->host, self->isolation);
  g_clear_pointer (&self->isolation, json_object_unref);
  g_clear_pointer (&self->live, md_domain_free);
  self->stop_requested = FALSE;
  self->incoming = FALSE;
  md_dbus_guest1_set_migration (MD_DBUS_GUEST1 (self), "/");
  guest_set_state (self, final_state);
}

void
guest_attach_process (MdGuest *self, MdQemuProcess *proc)
{
  self->proc = g_object_ref (proc);
  g_signal_connect (proc, "exited", G_CALLBACK (on_process_exited), self);
}

void
guest_attach_qmp (MdGuest *self, MdQmp *qmp)
{
  self->qmp = g_object_ref (qmp);
  g_signal_connect (qmp, "event", G_CALLBACK (on_qmp_event), self);
  md_qemu_process_watch_qmp (self->proc, qmp);
}

static void
complete_shutdown (MdGuest *self, GError *error)
{
  g_autoptr (GTask) task = g_steal_pointer (&self->shutdown_task);

  g_clear_handle_id (&self->shutdown_timeout_id, g_source_remove);
  if (task == NULL)
    return;
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_process_exited (MdQemuProcess *proc, int wait_status, MdGuest *self)
{
  g_autoptr (MdGuest) keep = g_object_ref (self);
  gboolean abnormal = FALSE;
  g_autofree char *tail = NULL;

  if (self->start_wait != NULL && self->qmp == NULL)
    g_cancellable_cancel (self->start_wait);
  if (wait_status != -1)
    abnormal =
        WIFSIGNALED (wait_status) || (WIFEXITED (wait_status) && WEXITSTATUS (wait_status) != 0);
  if (!self->stop_requested && abnormal)
    {
      tail = md_qemu_log_tail (self->log_path, 5);
      g_warning ("guest %s on host %s: QEMU exited unexpectedly (status %d)%s%s", self->def->name,
                 guest_host_name (self), wait_status, tail ? "; its log ends with:\n" : "",
                 tail ? tail : "");
    }
  else
    g_message ("guest %s on host %s: QEMU exited", self->def->name, guest_host_name (self));

  guest_release_process (self, (!self->stop_requested && abnormal) ? MD_GUEST_STATE_CRASHED
                                                                   : MD_GUEST_STATE_SHUT_OFF);
  complete_shutdown (self, NULL);
  guest_emit_stopped (self);
}

static void
on_quit_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, NULL);
}

/* Politely first: QEMU flushes its disks on quit. */
static void
request_quit (MdGuest *self)
{
  self->stop_requested = TRUE;
  if (self->qmp != NULL && !md_qmp_is_closed (self->qmp))
    md_qmp_execute_async (self->qmp, "quit", NULL, NULL, on_quit_done, NULL);
}

static void
on_qmp_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp, MdGuest *self)
{
  const MdDomain *dom = self->live != NULL ? self->live : self->def;

  g_debug ("guest %s: QMP event %s", self->def->name, name);
  if (g_str_equal (name, "STOP"))
    {
      if (self->state == MD_GUEST_STATE_RUNNING)
        guest_set_state (self, MD_GUEST_STATE_PAUSED);
    }
  else if (g_str_equal (name, "RESUME"))
    {
      if (self->state == MD_GUEST_STATE_PAUSED || self->state == MD_GUEST_STATE_CRASHED)
        guest_set_state (self, MD_GUEST_STATE_RUNNING);
    }
  else if (g_str_equal (name, "SHUTDOWN"))
    {
      /* QEMU runs with -no-shutdown, so we decide what a power-off or a
       * reboot means, as the definition says. */
      const char *reason = json_object_get_string_member_with_default (data, "reason", "");
      gboolean reboot =
          g_str_equal (reason, "guest-reset") || g_str_equal (reason, "host-qmp-reset");
      MdDomainLifecycle action = reboot ? dom->on_reboot : dom->on_poweroff;

      if (self->shutdown_task != NULL || action != MD_DOMAIN_LIFECYCLE_RESTART)
        request_quit (self);
    }
  else if (g_str_equal (name, "GUEST_PANICKED"))
    {
      guest_set_state (self, MD_GUEST_STATE_CRASHED);
      if (dom->on_crash == MD_DOMAIN_LIFECYCLE_DESTROY)
        request_quit (self);
    }
}

static gboolean
on_shutdown_timeout (gpointer user_data)
{
  MdGuest *self = user_data;
  guint timeout = self->shutdown_timeout;

  self->shutdown_timeout_id = 0;
  self->busy = NULL;
  complete_shutdown (self,
                     g_error_new (MD_ERROR, MD_ERROR_TIMEOUT,
                                  "host %s: guest %s did not power off within %u s after "
                                  "an ACPI power-button press; it keeps running. Check "
                                  "that the guest handles ACPI, or use Destroy to force it off",
                                  guest_host_name (self), self->def->name, timeout));
  return G_SOURCE_REMOVE;
}

static void
on_powerdown_sent (GObject *source, GAsyncResult *result, gpointer user_data)
{
  MdGuest *self = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL && self->shutdown_task != NULL)
    {
      self->busy = NULL;
      g_prefix_error (&error, "host %s: cannot shut down guest %s: ", guest_host_name (self),
                      self->def->name);
      complete_shutdown (self, error);
    }
  else if (error != NULL)
    g_error_free (error);
  g_object_unref (self);
}

void
md_guest_shutdown_async (MdGuest *self, guint timeout, GAsyncReadyCallback callback,
                         gpointer user_data)
{
  self->busy = "shutting down";
  self->shutdown_task = g_task_new (self, NULL, callback, user_data);
  self->shutdown_timeout = timeout;
  self->shutdown_timeout_id = g_timeout_add_seconds (timeout, on_shutdown_timeout, self);
  md_qmp_execute_async (self->qmp, "system_powerdown", NULL, NULL, on_powerdown_sent,
                        g_object_ref (self));
}

gboolean
md_guest_shutdown_finish (MdGuest *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
on_destroy_killed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdGuest *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;

  if (!md_qemu_process_kill_finish (MD_QEMU_PROCESS (source), result, &error))
    {
      self->busy = NULL;
      g_prefix_error (&error, "host %s: destroying guest %s: ", guest_host_name (self),
                      self->def->name);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  /* The process is gone; if its exit was not seen yet, account for it now. */
  if (self->proc == MD_QEMU_PROCESS (source))
    on_process_exited (self->proc, md_qemu_process_get_wait_status (self->proc), self);
  self->busy = NULL;
  g_task_return_boolean (task, TRUE);
}

void
md_guest_destroy_async (MdGuest *self, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (self, NULL, callback, user_data);

  g_task_set_source_tag (task, md_guest_destroy_async);
  if (self->proc == NULL)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_INVALID_STATE,
                               "guest %s is not running on host %s", self->def->name,
                               guest_host_name (self));
      return;
    }
  self->busy = "destroying";
  request_quit (self);
  md_qemu_process_kill_async (self->proc, 3000, NULL, on_destroy_killed, g_steal_pointer (&task));
}

gboolean
md_guest_destroy_finish (MdGuest *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

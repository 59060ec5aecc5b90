/* migrationd: starting a guest's QEMU, fresh or for an incoming
 * migration: the definition checked first, the files opened in a worker
 * (they may block on the file system), QEMU spawned isolated, then QMP.
 * A failed start leaves nothing behind. */
#include "config.h"

#include "md-guest-private.h"
#include "md-isolation.h"
#include "md-machined.h"
#include "common/md-error.h"
#include "qemu/md-qemu-argv.h"
#include "qemu/md-qemu-caps.h"
#include "qemu/md-qemu-log.h"

#include <errno.h>
#include <glib/gstdio.h>

typedef struct
{
  gboolean paused;
  gboolean incoming;
  gboolean spawned; /* this start wrote its part of the QEMU log */
  char *logs;
  MdQemuArgvOptions opts;
} StartData;

static void
start_data_free (StartData *data)
{
  g_free (data->logs);
  g_free (data);
}

static void
start_fail (MdGuest *self, GTask *task, GError *error)
{
  StartData *data = g_task_get_task_data (task);
  g_autofree char *prefix = g_strdup_printf (
      "host %s: starting guest %s failed: ", guest_host_name (self), self->def->name);
  /* Only a QEMU we spawned wrote this start's part of the log. */
  md_qemu_log_explain_start_failure (error, prefix, data->spawned ? self->log_path : NULL);
  if (self->proc != NULL && !md_qemu_process_has_exited (self->proc))
    {
      /* Nothing may be left behind by a failed start. */
      self->stop_requested = TRUE;
      md_qemu_process_kill_async (self->proc, 1000, NULL, NULL, NULL);
    }
  guest_release_process (self, MD_GUEST_STATE_SHUT_OFF);
  self->busy = NULL;
  g_task_return_error (task, error);
}

static void
on_start_cont (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdGuest *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  guest_set_state (self, MD_GUEST_STATE_RUNNING);
  self->busy = NULL;
  g_task_return_boolean (task, TRUE);
}

static void
on_start_qmp (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdGuest *self = g_task_get_source_object (task);
  StartData *data = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQmp) qmp = md_qmp_connect_finish (result, &error);

  g_clear_object (&self->start_wait);
  if (qmp == NULL && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_clear_error (&error);
      g_set_error (&error, MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU exited during start-up");
    }
  if (qmp == NULL)
    {
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  if (self->proc == NULL)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_QEMU_FAILED,
                               "host %s: guest %s: QEMU exited during start-up",
                               guest_host_name (self), self->def->name);
      self->busy = NULL;
      return;
    }
  guest_attach_qmp (self, qmp);
  guest_write_runtime_record (self);
  /* QEMU read the graphics passwords while starting; the files go now. */
  md_qemu_remove_secrets (self->live, self->host->config->runtime_dir);
  if (data->incoming)
    {
      guest_set_state (self, MD_GUEST_STATE_MIGRATING_IN);
      self->busy = NULL;
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (data->paused)
    {
      guest_set_state (self, MD_GUEST_STATE_PAUSED);
      self->busy = NULL;
      g_task_return_boolean (task, TRUE);
      return;
    }
  md_qmp_execute_async (self->qmp, "cont", NULL, NULL, on_start_cont, g_steal_pointer (&task));
}

static char *
log_dir (MdGuest *self)
{
  return g_build_filename (self->host->config->state_dir, "log", NULL);
}

/* QEMU gets its QMP socket, bound and listening, as this descriptor. */
#define QMP_CHILD_FD 3

static void start_internal (MdGuest *self, MdDomain *live, gboolean paused, gboolean incoming,
                            GCancellable *cancellable, GAsyncReadyCallback callback,
                            gpointer user_data);

void
md_guest_start_async (MdGuest *self, gboolean paused, GCancellable *cancellable,
                      GAsyncReadyCallback callback, gpointer user_data)
{
  start_internal (self, NULL, paused, FALSE, cancellable, callback, user_data);
}

void
md_guest_start_incoming_async (MdGuest *self, MdDomain *live, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data)
{
  start_internal (self, live, TRUE, TRUE, cancellable, callback, user_data);
}

static void spawn_qemu (MdGuest *self, GTask *task, MdQemuFiles *files);

/* Worker thread: the daemon opens the guest's images, serial files and
 * sockets, which may block on the file system. Nothing else touches
 * self->live while the guest is busy starting. */
static void
open_files_thread (GTask *open, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  MdGuest *self = source;
  StartData *data = g_task_get_task_data (task_data);
  GError *error = NULL;
  MdQemuFiles *files = md_qemu_open_guest_files (self->live, &data->opts, guest_host_name (self),
                                                 QMP_CHILD_FD + 1, &error);

  if (files == NULL)
    g_task_return_error (open, error);
  else
    g_task_return_pointer (open, files, (GDestroyNotify) md_qemu_files_free);
}

static void
on_files_opened (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdGuest *self = MD_GUEST (source);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQemuFiles) files = g_task_propagate_pointer (G_TASK (result), &error);

  if (files == NULL)
    {
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  spawn_qemu (self, g_steal_pointer (&task), files);
}

/* The definition is checked before anything is opened for it (the real
 * argv, with descriptors and graphics ports, is built when they exist). */
static gboolean
check_argv (MdGuest *self, const MdQemuArgvOptions *opts, GError **error)
{
  MdQemuArgvOptions check = *opts;
  g_autofree int *ports = g_new0 (int, self->live->graphics->len + 1);
  g_auto (GStrv) argv = NULL;

  for (guint i = 0; i < self->live->graphics->len; i++)
    ports[i] = 5900;
  check.graphics_ports = ports;
  check.n_graphics_ports = self->live->graphics->len;
  argv = md_qemu_build_argv (self->live, &check, error);
  return argv != NULL;
}

static void
start_internal (MdGuest *self, MdDomain *live, gboolean paused, gboolean incoming,
                GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (MdDomain) owned_live = live;
  g_autoptr (GTask) task = g_task_new (self, cancellable, callback, user_data);
  const MdConfig *config = self->host->config;
  const MdQemuCaps *caps = self->host->caps;
  g_autofree char *name = guest_runtime_name (self);
  g_autofree char *qmp_file = g_strdup_printf ("%s.qmp", name);
  g_autoptr (GError) error = NULL;
  g_autoptr (GTask) open = NULL;
  StartData *data = g_new0 (StartData, 1);
  MdQemuArgvOptions *opts = &data->opts;
  const char *accel;

  data->paused = paused;
  data->incoming = incoming;
  data->logs = log_dir (self);
  g_task_set_task_data (task, data, (GDestroyNotify) start_data_free);
  g_task_set_source_tag (task, md_guest_start_async);

  if (self->busy != NULL)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_INVALID_STATE,
                               "guest %s is busy (%s); try again when that is done",
                               self->def->name, self->busy);
      return;
    }
  if (md_guest_is_active (self))
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_INVALID_STATE,
                               "guest %s is already %s on host %s", self->def->name,
                               md_guest_state_to_string (self->state), guest_host_name (self));
      return;
    }
  if (g_mkdir_with_parents (data->logs, 0750) < 0
      || g_mkdir_with_parents (config->runtime_dir, 0700) < 0)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_FAILED,
                               "host %s: cannot create %s or %s: %s", guest_host_name (self),
                               data->logs, config->runtime_dir, g_strerror (errno));
      return;
    }

  accel = md_qemu_caps_pick_accel (caps, config->accelerator, &error);
  if (accel == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  g_free (self->qmp_path);
  self->qmp_path = g_build_filename (config->runtime_dir, qmp_file, NULL);
  g_free (self->log_path);
  self->log_path = g_strdup_printf ("%s/%s.log", data->logs, name);
  g_unlink (self->qmp_path);

  self->live = owned_live != NULL ? g_steal_pointer (&owned_live) : md_domain_copy (self->def);
  self->incoming = incoming;
  opts->incoming_defer = incoming;
  opts->qemu_binary = self->live->emulator != NULL ? NULL : config->qemu_binary;
  opts->accel = accel;
  opts->machine = self->live->os.machine;
  opts->qmp_socket = self->qmp_path;
  opts->qmp_listen_fd = QMP_CHILD_FD;
  /* With the QMP socket passed as a descriptor, the pidfile is what names
   * this host's runtime directory on QEMU's command line (and admins'
   * ps output shows whose QEMU it is); a confined QEMU has none. */
  opts->runtime_dir = config->runtime_dir;
  opts->serial_log_dir = data->logs;
  opts->sandbox = caps->sandbox;
  opts->runtime_files_dir = config->runtime_dir;
  opts->networks = config->networks;
  /* Bridged interfaces get a tap the daemon made (it can: it is root). */
  opts->taps = md_qemu_identity_enabled ();
  if (!check_argv (self, opts, &error))
    {
      g_clear_pointer (&self->live, md_domain_free);
      g_prefix_error (&error, "host %s: guest %s: ", guest_host_name (self), self->def->name);
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  self->busy = "starting";
  self->stop_requested = FALSE;
  open = g_task_new (self, NULL, on_files_opened, g_object_ref (task));
  g_task_set_task_data (open, task, NULL);
  g_task_run_in_thread (open, open_files_thread);
}

/* QEMU with the files the daemon opened, as the guest's own identity. */
static void
spawn_qemu (MdGuest *self, GTask *task_in, MdQemuFiles *files)
{
  g_autoptr (GTask) task = task_in;
  StartData *data = g_task_get_task_data (task);
  const MdConfig *config = self->host->config;
  g_autoptr (GError) error = NULL;
  g_autoptr (MdIsolation) iso = md_isolation_new (self->host, self->live, &error);
  g_autoptr (MdQemuProcess) proc = NULL;
  g_autofree char *argv_line = NULL;
  g_auto (GStrv) argv = NULL;
  int qmp_fd;

  if (iso == NULL)
    {
      g_prefix_error (&error, "host %s: guest %s: no identity for QEMU: ", guest_host_name (self),
                      self->def->name);
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  data->opts.files = files;
  if (md_isolation_is_confined (iso))
    data->opts.runtime_dir = NULL;
  argv = md_qemu_build_start_argv (self->live, &data->opts, config->host_name, &error);
  if (argv == NULL)
    {
      g_prefix_error (&error, "host %s: guest %s: ", guest_host_name (self), self->def->name);
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  argv_line = g_strjoinv (" ", argv);
  g_message ("guest %s: starting %s", self->def->name, argv_line);
  qmp_fd = md_qemu_listen_qmp (self->qmp_path, QMP_CHILD_FD + 1, &error);
  if (qmp_fd < 0)
    {
      g_prefix_error (&error, "host %s: guest %s: QMP socket %s: ", guest_host_name (self),
                      self->def->name, self->qmp_path);
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  md_qemu_files_take_at (files, qmp_fd, QMP_CHILD_FD);
  proc = md_isolation_spawn (iso, (const char *const *) argv, self->log_path, files, &error);
  if (proc == NULL)
    {
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  self->isolation = json_object_new ();
  md_isolation_record (iso, self->isolation);
  guest_attach_process (self, proc);
  md_machined_register (g_dbus_interface_skeleton_get_connection (G_DBUS_INTERFACE_SKELETON (self)),
                        self->def->name, self->def->uuid, md_qemu_process_get_pid (proc),
                        self->live->memory + (guint64) config->qemu_memory_overhead * 1024 * 1024,
                        config->qemu_tasks_max);
  data->spawned = TRUE;
  g_clear_object (&self->start_wait);
  self->start_wait = g_cancellable_new ();
  md_qmp_connect_full_async (self->qmp_path, self->log_path, 30000, self->start_wait, on_start_qmp,
                             g_steal_pointer (&task));
}

gboolean
md_guest_start_finish (MdGuest *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

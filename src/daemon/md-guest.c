/* migrationd: org.migrationd.Guest1 — one guest, its definitions and its
 * QEMU process. State follows QMP events and process exit, never a guess. */
#include "config.h"

#include "md-guest.h"
#include "md-isolation.h"
#include "md-machined.h"
#include "common/md-error.h"
#include "common/md-options.h"
#include "qemu/md-qemu-argv.h"
#include "qemu/md-qemu-caps.h"
#include "qemu/md-qemu-log.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <sys/wait.h>

struct _MdGuest
{
  MdDbusGuest1Skeleton parent_instance;

  MdHost *host;   /* not owned: the manager's, which outlives its guests */
  MdDomain *def;  /* persistent definition, or the transient one */
  MdDomain *live; /* what QEMU runs with; NULL when shut off */
  gboolean persistent;
  MdGuestState state;
  char *object_path;

  MdQemuProcess *proc;
  MdQmp *qmp;
  char *qmp_path;
  char *log_path;

  /* One lifecycle operation at a time; its name for messages. */
  const char *busy;
  /* Shutdown waits for QEMU to go away, or for its own timeout. */
  GTask *shutdown_task;
  guint shutdown_timeout_id;
  guint shutdown_timeout; /* seconds, for the message */
  /* Set when we asked QEMU to go away, so its exit is not a crash. */
  gboolean stop_requested;
  /* QEMU waits for an incoming migration: a daemon restart must kill it,
   * since the migration it belongs to died with the old daemon. */
  gboolean incoming;
  GCancellable *start_wait; /* cancelled if QEMU exits before QMP is up */
  /* The running QEMU's identity and cgroup as its runtime record keeps
   * them (md_isolation_record()); NULL when shut off. */
  JsonObject *isolation;
};

enum
{
  SIGNAL_STOPPED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void md_guest_iface_init (MdDbusGuest1Iface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (MdGuest, md_guest, MD_DBUS_TYPE_GUEST1_SKELETON,
                               G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_GUEST1, md_guest_iface_init))

const char *
md_guest_state_to_string (MdGuestState state)
{
  switch (state)
    {
    case MD_GUEST_STATE_SHUT_OFF:
      return "shut-off";
    case MD_GUEST_STATE_RUNNING:
      return "running";
    case MD_GUEST_STATE_PAUSED:
      return "paused";
    case MD_GUEST_STATE_MIGRATING_OUT:
      return "migrating-out";
    case MD_GUEST_STATE_MIGRATING_IN:
      return "migrating-in";
    case MD_GUEST_STATE_CRASHED:
      return "crashed";
    case MD_GUEST_STATE_SAVED:
      return "saved";
    }
  g_assert_not_reached ();
}

static const char *
host_name (MdGuest *self)
{
  return self->host->config->host_name;
}

/* Publishes what the definition and process say as D-Bus properties. */
static void
sync_properties (MdGuest *self)
{
  MdDbusGuest1 *iface = MD_DBUS_GUEST1 (self);
  const MdDomain *dom = self->live != NULL ? self->live : self->def;
  GVariantBuilder disks;

  g_variant_builder_init (&disks, G_VARIANT_TYPE ("a(ssss)"));
  for (guint i = 0; i < dom->disks->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (dom->disks, i);
      g_variant_builder_add (&disks, "(ssss)", disk->target, disk->source ? disk->source : "",
                             md_domain_disk_format_to_string (disk->format),
                             md_domain_disk_bus_to_string (disk->bus));
    }

  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  md_dbus_guest1_set_name (iface, dom->name);
  md_dbus_guest1_set_uuid (iface, dom->uuid);
  md_dbus_guest1_set_title (iface, dom->title ? dom->title : "");
  md_dbus_guest1_set_state (iface, md_guest_state_to_string (self->state));
  md_dbus_guest1_set_persistent (iface, self->persistent);
  md_dbus_guest1_set_pid (iface, self->proc ? (guint) md_qemu_process_get_pid (self->proc) : 0);
  md_dbus_guest1_set_memory (iface, dom->memory);
  md_dbus_guest1_set_vcpus (iface, dom->vcpus);
  md_dbus_guest1_set_machine (iface, dom->os.machine ? dom->os.machine : "");
  md_dbus_guest1_set_disks (iface, g_variant_builder_end (&disks));
}

static void
set_state (MdGuest *self, MdGuestState state)
{
  if (self->state == state)
    return;
  g_debug ("guest %s: %s -> %s", self->def->name, md_guest_state_to_string (self->state),
           md_guest_state_to_string (state));
  self->state = state;
  sync_properties (self);
}

/* ---- process and QMP plumbing ---------------------------------------- */

static void on_qmp_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp,
                          MdGuest *self);
static void on_process_exited (MdQemuProcess *proc, int wait_status, MdGuest *self);
static void request_quit (MdGuest *self);

static char *
runtime_name (MdGuest *self)
{
  return g_strdup (self->def->name);
}

static void
copy_member (JsonObject *object, const char *name, JsonNode *node, gpointer user_data)
{
  json_object_set_member (user_data, name, json_node_copy (node));
}

static void
write_runtime_record (MdGuest *self)
{
  const MdConfig *config = self->host->config;
  g_autoptr (JsonObject) extra = json_object_new ();
  g_autofree char *xml = md_domain_format (self->live);
  g_autofree char *name = runtime_name (self);
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

/* Forgets QEMU: the process is gone (or we gave up on it). */
static void
release_process (MdGuest *self, MdGuestState final_state)
{
  const MdConfig *config = self->host->config;
  g_autofree char *name = runtime_name (self);
  g_autoptr (GError) error = NULL;

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
  if (!md_qemu_runtime_remove (config->runtime_dir, name, &error))
    g_warning ("guest %s: %s", self->def->name, error->message);
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
  set_state (self, final_state);
}

static void
attach_process (MdGuest *self, MdQemuProcess *proc)
{
  self->proc = g_object_ref (proc);
  g_signal_connect (proc, "exited", G_CALLBACK (on_process_exited), self);
}

static void
attach_qmp (MdGuest *self, MdQmp *qmp)
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
                 host_name (self), wait_status, tail ? "; its log ends with:\n" : "",
                 tail ? tail : "");
    }
  else
    g_message ("guest %s on host %s: QEMU exited", self->def->name, host_name (self));

  release_process (self, (!self->stop_requested && abnormal) ? MD_GUEST_STATE_CRASHED
                                                             : MD_GUEST_STATE_SHUT_OFF);
  complete_shutdown (self, NULL);
  g_signal_emit (self, signals[SIGNAL_STOPPED], 0);
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
        set_state (self, MD_GUEST_STATE_PAUSED);
    }
  else if (g_str_equal (name, "RESUME"))
    {
      if (self->state == MD_GUEST_STATE_PAUSED || self->state == MD_GUEST_STATE_CRASHED)
        set_state (self, MD_GUEST_STATE_RUNNING);
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
      set_state (self, MD_GUEST_STATE_CRASHED);
      if (dom->on_crash == MD_DOMAIN_LIFECYCLE_DESTROY)
        request_quit (self);
    }
}

/* ---- Start ------------------------------------------------------------ */

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
  g_autofree char *prefix =
      g_strdup_printf ("host %s: starting guest %s failed: ", host_name (self), self->def->name);
  /* Only a QEMU we spawned wrote this start's part of the log. */
  md_qemu_log_explain_start_failure (error, prefix, data->spawned ? self->log_path : NULL);
  if (self->proc != NULL && !md_qemu_process_has_exited (self->proc))
    {
      /* Nothing may be left behind by a failed start. */
      self->stop_requested = TRUE;
      md_qemu_process_kill_async (self->proc, 1000, NULL, NULL, NULL);
    }
  release_process (self, MD_GUEST_STATE_SHUT_OFF);
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
  set_state (self, MD_GUEST_STATE_RUNNING);
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
                               "host %s: guest %s: QEMU exited during start-up", host_name (self),
                               self->def->name);
      self->busy = NULL;
      return;
    }
  attach_qmp (self, qmp);
  write_runtime_record (self);
  /* QEMU read the graphics passwords while starting; the files go now. */
  md_qemu_remove_secrets (self->live, self->host->config->runtime_dir);
  if (data->incoming)
    {
      set_state (self, MD_GUEST_STATE_MIGRATING_IN);
      self->busy = NULL;
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (data->paused)
    {
      set_state (self, MD_GUEST_STATE_PAUSED);
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
  MdQemuFiles *files = md_qemu_open_guest_files (self->live, &data->opts, host_name (self),
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
  g_autofree char *name = runtime_name (self);
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
                               md_guest_state_to_string (self->state), host_name (self));
      return;
    }
  if (g_mkdir_with_parents (data->logs, 0750) < 0
      || g_mkdir_with_parents (config->runtime_dir, 0700) < 0)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_FAILED,
                               "host %s: cannot create %s or %s: %s", host_name (self), data->logs,
                               config->runtime_dir, g_strerror (errno));
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
      g_prefix_error (&error, "host %s: guest %s: ", host_name (self), self->def->name);
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
      g_prefix_error (&error, "host %s: guest %s: no identity for QEMU: ", host_name (self),
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
      g_prefix_error (&error, "host %s: guest %s: ", host_name (self), self->def->name);
      start_fail (self, task, g_steal_pointer (&error));
      return;
    }
  argv_line = g_strjoinv (" ", argv);
  g_message ("guest %s: starting %s", self->def->name, argv_line);
  qmp_fd = md_qemu_listen_qmp (self->qmp_path, QMP_CHILD_FD + 1, &error);
  if (qmp_fd < 0)
    {
      g_prefix_error (&error, "host %s: guest %s: QMP socket %s: ", host_name (self),
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
  attach_process (self, proc);
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
      release_process (self, MD_GUEST_STATE_SHUT_OFF);
      self->busy = NULL;
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  status = json_object_get_string_member_with_default (json_node_get_object (node), "status", "");
  if (self->incoming)
    set_state (self, MD_GUEST_STATE_MIGRATING_IN);
  else if (g_str_equal (status, "running"))
    set_state (self, MD_GUEST_STATE_RUNNING);
  else if (g_str_equal (status, "guest-panicked"))
    set_state (self, MD_GUEST_STATE_CRASHED);
  else
    set_state (self, MD_GUEST_STATE_PAUSED);
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
      release_process (self, MD_GUEST_STATE_SHUT_OFF);
      self->busy = NULL;
      if (error == NULL)
        error = g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED, "QEMU exited while re-attaching");
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  attach_qmp (self, qmp);
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
  attach_process (self, proc);
  md_qmp_connect_full_async (self->qmp_path, self->log_path, 10000, cancellable, on_reattach_qmp,
                             g_steal_pointer (&task));
}

gboolean
md_guest_reattach_finish (MdGuest *self, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- Destroy ------------------------------------------------------------ */

static void
on_destroy_killed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  MdGuest *self = g_task_get_source_object (task);
  g_autoptr (GError) error = NULL;

  if (!md_qemu_process_kill_finish (MD_QEMU_PROCESS (source), result, &error))
    {
      self->busy = NULL;
      g_prefix_error (&error, "host %s: destroying guest %s: ", host_name (self), self->def->name);
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
                               host_name (self));
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

/* ---- D-Bus methods -------------------------------------------------------- */

static const MdOptionSpec no_options[] = { { NULL, NULL } };
static const MdOptionSpec start_options[] = { { "start-paused", "b" }, { NULL, NULL } };
static const MdOptionSpec shutdown_options[] = { { "timeout", "u" }, { NULL, NULL } };
static const MdOptionSpec getxml_options[] = { { "inactive", "b" }, { NULL, NULL } };

static gboolean
check_options (GDBusMethodInvocation *invocation, GVariant *options, const MdOptionSpec *specs,
               const char *method)
{
  GError *error = NULL;

  if (md_options_check (options, specs, method, &error))
    return TRUE;
  md_error_return (invocation, error);
  return FALSE;
}

static gboolean
check_idle_and_active (MdGuest *self, GDBusMethodInvocation *invocation, const char *what)
{
  if (self->busy != NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "cannot %s guest %s: it is busy (%s)", what,
                                             self->def->name, self->busy);
      return FALSE;
    }
  if (self->qmp == NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE, "cannot %s guest %s: it is %s on host %s",
          what, self->def->name, md_guest_state_to_string (self->state), host_name (self));
      return FALSE;
    }
  return TRUE;
}

static void
on_start_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  if (!md_guest_start_finish (MD_GUEST (source), result, &error))
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_start (MD_DBUS_GUEST1 (source), invocation);
}

static void
remove_in_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  if (g_unlink (task_data) < 0 && errno != ENOENT)
    g_task_return_new_error (task, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot remove %s: %s",
                             (const char *) task_data, g_strerror (errno));
  else
    g_task_return_boolean (task, TRUE);
}

static void
on_managed_save_removed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  /* The guest runs: a failure here only leaves a stale file. */
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_warning ("guest %s: %s", MD_GUEST (source)->def->name, error->message);
      g_error_free (error);
    }
  md_guest_set_has_managed_save (MD_GUEST (source), FALSE);
  md_dbus_guest1_complete_start (MD_DBUS_GUEST1 (source), invocation);
}

static void
on_managed_restore_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdGuest *self = MD_GUEST (g_dbus_method_invocation_get_user_data (invocation));
  g_autoptr (MdGuest) guest = NULL;
  g_autoptr (GTask) task = NULL;
  GError *error = NULL;

  guest = self->host->restore_guest_finish (result, &error);
  if (guest == NULL)
    {
      g_autofree char *saved = md_guest_managed_save_path (self->host->config, self->def->name);
      g_prefix_error (&error,
                      "starting guest %s from its managed save (remove %s to start it "
                      "afresh): ",
                      self->def->name, saved);
      md_error_return (invocation, error);
      return;
    }
  task = g_task_new (self, NULL, on_managed_save_removed, invocation);
  g_task_set_task_data (task, md_guest_managed_save_path (self->host->config, self->def->name),
                        g_free);
  g_task_run_in_thread (task, remove_in_thread);
}

static gboolean
handle_start (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (!check_options (invocation, options, start_options, "Start"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  if (md_dbus_guest1_get_has_managed_save (object) && self->proc == NULL && self->busy == NULL)
    {
      g_autofree char *path = md_guest_managed_save_path (self->host->config, self->def->name);
      self->host->restore_guest (self->host->owner, path, options, self, on_managed_restore_done,
                                 invocation);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  md_guest_start_async (self, md_options_get_boolean (options, "start-paused", FALSE), NULL,
                        on_start_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

/* A QMP command whose only effect the caller needs is success or not. */
typedef void (*CompleteFunc) (MdDbusGuest1 *object, GDBusMethodInvocation *invocation);

typedef struct
{
  MdGuest *guest;
  GDBusMethodInvocation *invocation;
  CompleteFunc complete;
  const char *what;
} SimpleCall;

static void
on_simple_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SimpleCall *call = user_data;
  GError *error = NULL;
  g_autoptr (JsonNode) node = md_qmp_execute_finish (MD_QMP (source), result, &error);

  if (node == NULL)
    {
      g_prefix_error (&error, "host %s: cannot %s guest %s: ", host_name (call->guest), call->what,
                      call->guest->def->name);
      md_error_return (call->invocation, error);
    }
  else
    call->complete (MD_DBUS_GUEST1 (call->guest), call->invocation);
  g_object_unref (call->guest);
  g_free (call);
}

static gboolean
simple_qmp_method (MdGuest *self, GDBusMethodInvocation *invocation, GVariant *options,
                   const char *method, const char *what, const char *command, CompleteFunc complete)
{
  SimpleCall *call;

  if (!check_options (invocation, options, no_options, method)
      || !check_idle_and_active (self, invocation, what))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  call = g_new0 (SimpleCall, 1);
  call->guest = g_object_ref (self);
  call->invocation = invocation;
  call->complete = complete;
  call->what = what;
  md_qmp_execute_async (self->qmp, command, NULL, NULL, on_simple_done, call);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_pause (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (self->qmp != NULL && self->busy == NULL && self->state != MD_GUEST_STATE_RUNNING)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "cannot pause guest %s: it is %s", self->def->name,
                                             md_guest_state_to_string (self->state));
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  return simple_qmp_method (self, invocation, options, "Pause", "pause", "stop",
                            md_dbus_guest1_complete_pause);
}

static gboolean
handle_resume (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (self->qmp != NULL && self->busy == NULL && self->state != MD_GUEST_STATE_PAUSED)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "cannot resume guest %s: it is %s", self->def->name,
                                             md_guest_state_to_string (self->state));
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  return simple_qmp_method (self, invocation, options, "Resume", "resume", "cont",
                            md_dbus_guest1_complete_resume);
}

static gboolean
handle_reset (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  return simple_qmp_method (MD_GUEST (object), invocation, options, "Reset", "reset",
                            "system_reset", md_dbus_guest1_complete_reset);
}

static void
on_destroy_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  if (!md_guest_destroy_finish (MD_GUEST (source), result, &error))
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_destroy (MD_DBUS_GUEST1 (source), invocation);
}

static gboolean
handle_destroy (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  if (!check_options (invocation, options, no_options, "Destroy"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  /* Destroy is the way out of anything, a pending Shutdown included. */
  if (self->proc == NULL)
    {
      g_dbus_method_invocation_return_error (
          invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
          "cannot destroy guest %s: it is %s on host %s", self->def->name,
          md_guest_state_to_string (self->state), host_name (self));
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  md_guest_destroy_async (self, on_destroy_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
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
                                  host_name (self), self->def->name, timeout));
  return G_SOURCE_REMOVE;
}

static void
on_shutdown_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  GError *error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_shutdown (MD_DBUS_GUEST1 (source), invocation);
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
      g_prefix_error (&error, "host %s: cannot shut down guest %s: ", host_name (self),
                      self->def->name);
      complete_shutdown (self, error);
    }
  else if (error != NULL)
    g_error_free (error);
  g_object_unref (self);
}

/* A day: longer is a typo, not a guest that takes its time. */
#define MD_GUEST_SHUTDOWN_TIMEOUT_MAX (24 * 3600)

static gboolean
handle_shutdown (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  guint timeout = self->host->config->shutdown_timeout;

  if (!check_options (invocation, options, shutdown_options, "Shutdown")
      || !check_idle_and_active (self, invocation, "shut down"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  timeout = md_options_get_uint32 (options, "timeout", timeout);
  if (timeout == 0 || timeout > MD_GUEST_SHUTDOWN_TIMEOUT_MAX)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                             "option 'timeout' of Shutdown must be 1-%u s, not %u",
                                             MD_GUEST_SHUTDOWN_TIMEOUT_MAX, timeout);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  md_guest_shutdown_async (self, timeout, on_shutdown_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
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

static gboolean
handle_undefine (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  GError *error = NULL;

  if (!check_options (invocation, options, no_options, "Undefine"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  if (!self->host->undefine_guest (self->host->owner, self, &error))
    return md_error_return (invocation, error);
  md_dbus_guest1_complete_undefine (object, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_get_xml (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  g_autofree char *xml = NULL;
  gboolean inactive;

  if (!check_options (invocation, options, getxml_options, "GetXML"))
    return G_DBUS_METHOD_INVOCATION_HANDLED;
  inactive = md_options_get_boolean (options, "inactive", FALSE);
  xml = md_domain_format (!inactive && self->live != NULL ? self->live : self->def);
  md_dbus_guest1_complete_get_xml (object, invocation, xml);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_migrate (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, const char *destination,
                GVariant *options)
{
  MdGuest *self = MD_GUEST (object);
  guint uid_plus_one =
      GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (invocation), MD_AUTH_CALLER_UID_KEY));
  g_autofree char *migration = NULL;
  GError *error = NULL;

  if (self->busy != NULL)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "cannot migrate guest %s: it is busy (%s)",
                                             self->def->name, self->busy);
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  if (g_strcmp0 (md_dbus_guest1_get_migration (object), "/") != 0)
    {
      g_dbus_method_invocation_return_error (invocation, MD_ERROR, MD_ERROR_INVALID_STATE,
                                             "guest %s is already migrating (%s)", self->def->name,
                                             md_dbus_guest1_get_migration (object));
      return G_DBUS_METHOD_INVOCATION_HANDLED;
    }
  /* The engine sits above guests: the service wired it in (md-host.h). */
  migration = self->host->migrate_guest (self->host->owner, self, destination, options,
                                         uid_plus_one > 0 ? uid_plus_one - 1 : 0, &error);
  if (migration == NULL)
    return md_error_return (invocation, error);
  md_dbus_guest1_complete_migrate (object, invocation, migration);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static guint
caller_uid (GDBusMethodInvocation *invocation)
{
  guint uid_plus_one =
      GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (invocation), MD_AUTH_CALLER_UID_KEY));

  return uid_plus_one > 0 ? uid_plus_one - 1 : 0;
}

static void
on_save_started (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdDbusGuest1 *object = MD_DBUS_GUEST1 (source);
  MdGuest *self = MD_GUEST (source);
  g_autofree char *migration = NULL;
  GError *error = NULL;

  migration = self->host->save_guest_finish (result, &error);
  if (migration == NULL)
    md_error_return (invocation, error);
  else if (g_str_equal (g_dbus_method_invocation_get_method_name (invocation), "ManagedSave"))
    md_dbus_guest1_complete_managed_save (object, invocation, migration);
  else
    md_dbus_guest1_complete_save (object, invocation, migration);
}

static gboolean
handle_save (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, const char *file,
             GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  self->host->save_guest (self->host->owner, self, file, options, caller_uid (invocation), FALSE,
                          on_save_started, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static gboolean
handle_managed_save (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  self->host->save_guest (self->host->owner, self, NULL, options, caller_uid (invocation), TRUE,
                          on_save_started, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
on_restore_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GDBusMethodInvocation *invocation = user_data;
  MdGuest *self = MD_GUEST (g_dbus_method_invocation_get_user_data (invocation));
  g_autoptr (MdGuest) guest = NULL;
  GError *error = NULL;

  guest = self->host->restore_guest_finish (result, &error);
  if (guest == NULL)
    md_error_return (invocation, error);
  else
    md_dbus_guest1_complete_restore (MD_DBUS_GUEST1 (self), invocation);
}

static gboolean
handle_restore (MdDbusGuest1 *object, GDBusMethodInvocation *invocation, const char *file,
                GVariant *options)
{
  MdGuest *self = MD_GUEST (object);

  self->host->restore_guest (self->host->owner, file, options, self, on_restore_done, invocation);
  return G_DBUS_METHOD_INVOCATION_HANDLED;
}

static void
md_guest_iface_init (MdDbusGuest1Iface *iface)
{
  iface->handle_start = handle_start;
  iface->handle_shutdown = handle_shutdown;
  iface->handle_destroy = handle_destroy;
  iface->handle_pause = handle_pause;
  iface->handle_resume = handle_resume;
  iface->handle_reset = handle_reset;
  iface->handle_undefine = handle_undefine;
  iface->handle_get_xml = handle_get_xml;
  iface->handle_migrate = handle_migrate;
  iface->handle_save = handle_save;
  iface->handle_restore = handle_restore;
  iface->handle_managed_save = handle_managed_save;
}

/* ---- object ---------------------------------------------------------------- */

static void
md_guest_dispose (GObject *object)
{
  MdGuest *self = MD_GUEST (object);

  /* The daemon stopping must never stop QEMU: only drop our handles. */
  g_clear_handle_id (&self->shutdown_timeout_id, g_source_remove);
  if (self->qmp != NULL)
    g_signal_handlers_disconnect_by_data (self->qmp, self);
  if (self->proc != NULL)
    g_signal_handlers_disconnect_by_data (self->proc, self);
  g_clear_object (&self->qmp);
  g_clear_object (&self->proc);
  G_OBJECT_CLASS (md_guest_parent_class)->dispose (object);
}

static void
md_guest_finalize (GObject *object)
{
  MdGuest *self = MD_GUEST (object);

  md_domain_free (self->def);
  g_clear_pointer (&self->live, md_domain_free);
  g_free (self->object_path);
  g_clear_object (&self->start_wait);
  g_free (self->qmp_path);
  g_free (self->log_path);
  g_clear_pointer (&self->isolation, json_object_unref);
  G_OBJECT_CLASS (md_guest_parent_class)->finalize (object);
}

static void
md_guest_class_init (MdGuestClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = md_guest_dispose;
  object_class->finalize = md_guest_finalize;

  signals[SIGNAL_STOPPED] = g_signal_new ("stopped", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
md_guest_init (MdGuest *self)
{
}

MdGuest *
md_guest_new (MdHost *host, MdDomain *def, gboolean persistent)
{
  MdGuest *self = g_object_new (MD_TYPE_GUEST, NULL);
  g_autofree char *escaped = g_dbus_escape_object_path (def->name);

  self->host = host;
  self->def = def;
  self->persistent = persistent;
  self->state = MD_GUEST_STATE_SHUT_OFF;
  self->object_path = g_strdup_printf ("%s/guest/%s", MD_MANAGER_PATH, escaped);
  md_dbus_guest1_set_migration (MD_DBUS_GUEST1 (self), "/");
  sync_properties (self);
  md_auth_attach (host->auth, G_DBUS_INTERFACE_SKELETON (self));
  return self;
}

const char *
md_guest_get_name (MdGuest *self)
{
  return self->def->name;
}

const char *
md_guest_get_uuid (MdGuest *self)
{
  return self->def->uuid;
}

const char *
md_guest_get_object_path (MdGuest *self)
{
  return self->object_path;
}

MdGuestState
md_guest_get_state (MdGuest *self)
{
  return self->state;
}

gboolean
md_guest_is_active (MdGuest *self)
{
  return self->proc != NULL;
}

gboolean
md_guest_is_persistent (MdGuest *self)
{
  return self->persistent;
}

void
md_guest_set_persistent (MdGuest *self, gboolean persistent)
{
  self->persistent = persistent;
  if (self->proc != NULL && self->live != NULL)
    write_runtime_record (self);
  sync_properties (self);
}

const MdDomain *
md_guest_get_definition (MdGuest *self)
{
  return self->def;
}

const MdDomain *
md_guest_get_live_definition (MdGuest *self)
{
  return self->live;
}

void
md_guest_set_definition (MdGuest *self, MdDomain *def)
{
  md_domain_free (self->def);
  self->def = def;
  sync_properties (self);
}

void
md_guest_begin_migration (MdGuest *self, const char *migration_path, gboolean incoming)
{
  md_dbus_guest1_set_migration (MD_DBUS_GUEST1 (self), migration_path);
  set_state (self, incoming ? MD_GUEST_STATE_MIGRATING_IN : MD_GUEST_STATE_MIGRATING_OUT);
}

void
md_guest_end_migration (MdGuest *self, gboolean running)
{
  md_dbus_guest1_set_migration (MD_DBUS_GUEST1 (self), "/");
  if (self->incoming)
    {
      self->incoming = FALSE;
      if (self->proc != NULL)
        write_runtime_record (self);
    }
  if (self->proc != NULL)
    set_state (self, running ? MD_GUEST_STATE_RUNNING : MD_GUEST_STATE_PAUSED);
  else if (self->state == MD_GUEST_STATE_MIGRATING_OUT
           || self->state == MD_GUEST_STATE_MIGRATING_IN)
    set_state (self, MD_GUEST_STATE_SHUT_OFF); /* an offline migration: no QEMU ran */
  else
    sync_properties (self);
}

gboolean
md_guest_is_busy (MdGuest *self)
{
  return self->busy != NULL;
}

void
md_guest_mark_saved (MdGuest *self, gboolean managed)
{
  if (managed)
    md_dbus_guest1_set_has_managed_save (MD_DBUS_GUEST1 (self), TRUE);
  if (self->proc == NULL)
    set_state (self, MD_GUEST_STATE_SAVED);
}

char *
md_guest_managed_save_path (const MdConfig *config, const char *name)
{
  g_autofree char *file = g_strdup_printf ("%s.save", name);

  return g_build_filename (config->state_dir, "save", file, NULL);
}

void
md_guest_settle_stopped (MdGuest *self)
{
  if (self->proc != NULL)
    return;
  set_state (self, md_dbus_guest1_get_has_managed_save (MD_DBUS_GUEST1 (self))
                       ? MD_GUEST_STATE_SAVED
                       : MD_GUEST_STATE_SHUT_OFF);
}

void
md_guest_set_has_managed_save (MdGuest *self, gboolean has)
{
  md_dbus_guest1_set_has_managed_save (MD_DBUS_GUEST1 (self), has);
  if (!has && self->state == MD_GUEST_STATE_SAVED)
    set_state (self, MD_GUEST_STATE_SHUT_OFF);
  else if (has && self->proc == NULL)
    set_state (self, MD_GUEST_STATE_SAVED);
}

MdQmp *
md_guest_get_qmp (MdGuest *self)
{
  return self->qmp;
}

MdQemuProcess *
md_guest_get_process (MdGuest *self)
{
  return self->proc;
}

/* migrationd: QEMU processes: spawn, re-attach, exit notification, kill,
 * runtime records.
 *
 * Our own children are watched with GSubprocess (exact wait status). A QEMU
 * adopted after a daemon restart is not our child, so it is watched through
 * a pidfd (readable once the process has exited, immune to PID reuse), or by
 * polling /proc when the kernel has no pidfd_open(); a closing QMP
 * connection triggers an immediate check. */
#include "config.h"

#include <gio/gunixsocketaddress.h>

#include "md-qemu.h"

#include "common/md-error.h"

#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define KILL_STUCK_TIMEOUT_MS 30000
#define POLL_SLOW_MS 1000
#define POLL_FAST_MS 50
#define RUNTIME_VERSION 1

struct _MdQemuProcess
{
  GObject parent_instance;

  GPid pid;
  char *log_path;
  GSubprocess *subprocess; /* set for our own children */

  /* re-attached processes */
  int pidfd;
  guint64 start_time;
  GSource *pidfd_source;
  GSource *poll_source;
  guint poll_interval_ms;
  MdQmp *qmp;
  gulong qmp_closed_id;

  gboolean exited;
  int wait_status;
  GList *kill_tasks; /* GTask*, owned */
};

G_DEFINE_TYPE (MdQemuProcess, md_qemu_process, G_TYPE_OBJECT)

enum
{
  SIGNAL_EXITED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

typedef struct
{
  GSource *grace_source;
  GSource *stuck_source;
  GSource *cancel_source;
} KillData;

static void
destroy_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static void
kill_data_free (KillData *data)
{
  destroy_source (&data->grace_source);
  destroy_source (&data->stuck_source);
  destroy_source (&data->cancel_source);
  g_free (data);
}

/* ---- /proc ---- */

/* State letter and start time (clock ticks after boot) of @pid; FALSE if
 * there is no such process. */
static gboolean
proc_stat (GPid pid, char *state, guint64 *start_time)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *contents = NULL;
  g_auto (GStrv) fields = NULL;
  const char *rparen;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return FALSE;
  /* "pid (comm) S ...": comm may hold spaces and parentheses. */
  rparen = strrchr (contents, ')');
  if (rparen == NULL || rparen[1] != ' ')
    return FALSE;
  fields = g_strsplit (rparen + 2, " ", 0);
  if (g_strv_length (fields) < 20)
    return FALSE;
  if (state != NULL)
    *state = fields[0][0];
  if (start_time != NULL)
    *start_time = g_ascii_strtoull (fields[19], NULL, 10);
  return TRUE;
}

static int
pidfd_open_compat (GPid pid)
{
#ifdef SYS_pidfd_open
  return (int) syscall (SYS_pidfd_open, (pid_t) pid, 0);
#else
  errno = ENOSYS;
  return -1;
#endif
}

static gboolean
pidfd_has_exited (int pidfd)
{
  struct pollfd pfd = { .fd = pidfd, .events = POLLIN };

  return poll (&pfd, 1, 0) > 0;
}

/* For a re-attached process: is it gone (exited, a zombie, or its PID now
 * belongs to someone else)? */
static gboolean
adopted_is_gone (MdQemuProcess *self)
{
  char state = 0;
  guint64 start_time = 0;

  if (self->pidfd >= 0)
    return pidfd_has_exited (self->pidfd);
  if (!proc_stat (self->pid, &state, &start_time))
    return TRUE;
  return state == 'Z' || state == 'X' || start_time != self->start_time;
}

static gboolean
cmdline_has_uuid (GPid pid, const char *uuid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/cmdline", (int) pid);
  g_autofree char *contents = NULL;
  gsize len = 0;
  const char *prev = NULL;

  if (!g_file_get_contents (path, &contents, &len, NULL))
    return FALSE;
  for (gsize off = 0; off < len;)
    {
      const char *arg = contents + off;

      if (prev != NULL && (strcmp (prev, "-uuid") == 0 || strcmp (prev, "--uuid") == 0)
          && g_ascii_strcasecmp (arg, uuid) == 0)
        return TRUE;
      prev = arg;
      off += strlen (arg) + 1;
    }
  return FALSE;
}

/* ---- exit ---- */

static void
emit_exited (MdQemuProcess *self, int wait_status)
{
  GList *tasks;

  if (self->exited)
    return;
  g_object_ref (self);
  self->exited = TRUE;
  self->wait_status = wait_status;
  g_debug ("QEMU pid %d exited (wait status %d)", (int) self->pid, wait_status);

  destroy_source (&self->pidfd_source);
  destroy_source (&self->poll_source);
  if (self->pidfd >= 0)
    {
      close (self->pidfd);
      self->pidfd = -1;
    }
  if (self->qmp != NULL)
    {
      g_clear_signal_handler (&self->qmp_closed_id, self->qmp);
      g_clear_object (&self->qmp);
    }

  tasks = g_steal_pointer (&self->kill_tasks);
  for (GList *l = tasks; l != NULL; l = l->next)
    {
      GTask *task = l->data;

      g_task_set_task_data (task, NULL, NULL); /* stops the timers */
      g_task_return_boolean (task, TRUE);
    }
  g_list_free_full (tasks, g_object_unref);

  g_signal_emit (self, signals[SIGNAL_EXITED], 0, wait_status);
  g_object_unref (self);
}

static void
on_child_exited (GObject *source, GAsyncResult *res, gpointer user_data)
{
  GWeakRef *weak = user_data;
  g_autoptr (MdQemuProcess) self = g_weak_ref_get (weak);

  g_weak_ref_clear (weak);
  g_free (weak);
  /* Only fails when cancelled, which we never do. */
  g_subprocess_wait_finish (G_SUBPROCESS (source), res, NULL);
  if (self != NULL)
    emit_exited (self, g_subprocess_get_status (G_SUBPROCESS (source)));
}

static gboolean
on_pidfd_readable (int fd, GIOCondition condition, gpointer user_data)
{
  MdQemuProcess *self = user_data;

  g_clear_pointer (&self->pidfd_source, g_source_unref);
  emit_exited (self, -1);
  return G_SOURCE_REMOVE;
}

static void start_poll (MdQemuProcess *self, guint interval_ms);

static gboolean
on_poll (gpointer user_data)
{
  MdQemuProcess *self = user_data;

  if (adopted_is_gone (self))
    {
      g_clear_pointer (&self->poll_source, g_source_unref);
      emit_exited (self, -1);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
start_poll (MdQemuProcess *self, guint interval_ms)
{
  if (self->exited || self->subprocess != NULL)
    return;
  if (self->poll_source != NULL && self->poll_interval_ms <= interval_ms)
    return;
  destroy_source (&self->poll_source);
  self->poll_interval_ms = interval_ms;
  self->poll_source = g_timeout_source_new (interval_ms);
  g_source_set_callback (self->poll_source, on_poll, self, NULL);
  g_source_set_static_name (self->poll_source, "[migrationd] QEMU exit poll");
  g_source_attach (self->poll_source, NULL);
}

static void
on_qmp_closed (MdQmp *qmp, const GError *error, gpointer user_data)
{
  MdQemuProcess *self = user_data;

  /* QMP goes away a moment before the process does; look closely now. */
  if (self->subprocess == NULL && !self->exited)
    {
      if (adopted_is_gone (self))
        emit_exited (self, -1);
      else
        start_poll (self, POLL_FAST_MS);
    }
}

void
md_qemu_process_watch_qmp (MdQemuProcess *self, MdQmp *qmp)
{
  g_return_if_fail (MD_IS_QEMU_PROCESS (self));
  g_return_if_fail (MD_IS_QMP (qmp));

  if (self->exited)
    return;
  if (self->qmp != NULL)
    {
      g_clear_signal_handler (&self->qmp_closed_id, self->qmp);
      g_clear_object (&self->qmp);
    }
  self->qmp = g_object_ref (qmp);
  self->qmp_closed_id = g_signal_connect (qmp, "closed", G_CALLBACK (on_qmp_closed), self);
  if (md_qmp_is_closed (qmp))
    on_qmp_closed (qmp, md_qmp_get_close_error (qmp), self);
}

/* ---- spawn ---- */

static void
child_setup (gpointer user_data)
{
  /* Own session and process group: a signal to the daemon's group (Ctrl-C,
   * a service manager stopping the daemon) must not reach the guests. */
  setsid ();
  if (user_data != NULL)
    md_qemu_confine_child_setup (user_data);
}

static void
write_log_header (int fd, const char *const *argv)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_utc ();
  g_autofree char *stamp = g_date_time_format_iso8601 (now);
  g_autofree char *cmd = g_strjoinv (" ", (char **) argv);
  g_autofree char *line = g_strdup_printf ("%s: migrationd starting: %s\n", stamp, cmd);
  gsize len = strlen (line);
  gssize n;

  /* Best effort, so that the log shows which run a message belongs to. */
  do
    n = write (fd, line, len);
  while (n < 0 && errno == EINTR);
}

MdQemuProcess *
md_qemu_spawn_full (const char *const *argv, const char *log_path, const int *source_fds,
                    const int *target_fds, guint n_fds, GError **error)
{
  return md_qemu_spawn_confined (argv, log_path, source_fds, target_fds, n_fds, NULL, error);
}

MdQemuProcess *
md_qemu_spawn_confined (const char *const *argv, const char *log_path, const int *source_fds,
                        const int *target_fds, guint n_fds, MdQemuConfine *confine, GError **error)
{
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GSubprocess) subprocess = NULL;
  g_autoptr (GError) local_error = NULL;
  MdQemuProcess *self;
  GWeakRef *weak;
  int log_fd;
  int err_fd;

  g_return_val_if_fail (argv != NULL && argv[0] != NULL, NULL);
  g_return_val_if_fail (log_path != NULL, NULL);
  g_return_val_if_fail (n_fds == 0 || (source_fds != NULL && target_fds != NULL), NULL);

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_NONE);
  for (guint i = 0; i < n_fds; i++)
    g_subprocess_launcher_take_fd (launcher, source_fds[i], target_fds[i]);

  log_fd = open (log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOCTTY, 0640);
  if (log_fd < 0)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                   "Cannot start QEMU: cannot open its log file %s: %s (check that the "
                   "directory exists and is writable)",
                   log_path, g_strerror (errsv));
      return NULL;
    }
  err_fd = fcntl (log_fd, F_DUPFD_CLOEXEC, 3);
  if (err_fd < 0)
    {
      int errsv = errno;

      close (log_fd);
      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED, "Cannot start QEMU: dup(): %s",
                   g_strerror (errsv));
      return NULL;
    }
  write_log_header (log_fd, argv);
  g_subprocess_launcher_take_stdout_fd (launcher, log_fd);
  g_subprocess_launcher_take_stderr_fd (launcher, err_fd);
  g_subprocess_launcher_set_child_setup (launcher, child_setup, confine, NULL);
  /* A confined QEMU could not reach the daemon's working directory. */
  if (confine != NULL)
    g_subprocess_launcher_set_cwd (launcher, "/");

  subprocess = g_subprocess_launcher_spawnv (launcher, argv, &local_error);
  if (subprocess == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                   "Cannot start QEMU (%s): %s (is QEMU installed? see the qemu_binary option)",
                   argv[0], local_error->message);
      return NULL;
    }

  self = g_object_new (MD_TYPE_QEMU_PROCESS, NULL);
  self->subprocess = g_steal_pointer (&subprocess);
  self->pid = (GPid) atoi (g_subprocess_get_identifier (self->subprocess));
  self->log_path = g_strdup (log_path);
  proc_stat (self->pid, NULL, &self->start_time);

  weak = g_new0 (GWeakRef, 1);
  g_weak_ref_init (weak, self);
  g_subprocess_wait_async (self->subprocess, NULL, on_child_exited, weak);
  g_debug ("Started QEMU pid %d, log %s", (int) self->pid, log_path);
  return self;
}

MdQemuProcess *
md_qemu_spawn (const char *const *argv, const char *log_path, GError **error)
{
  return md_qemu_spawn_full (argv, log_path, NULL, NULL, 0, error);
}

MdQemuProcess *
md_qemu_process_new_for_pid (GPid pid, const char *expected_uuid, const char *log_path,
                             GError **error)
{
  MdQemuProcess *self;
  char state = 0;
  guint64 start_time = 0;
  int pidfd;

  g_return_val_if_fail (expected_uuid != NULL, NULL);

  if (pid <= 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "Invalid QEMU process id %d",
                   (int) pid);
      return NULL;
    }

  /* Open the pidfd first: if the PID is recycled after our checks, the
   * pidfd still names the process we checked (and reports it exited). */
  pidfd = pidfd_open_compat (pid);
  if (pidfd < 0 && errno != ENOSYS)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_NOT_FOUND, "QEMU process %d (uuid %s) is gone: %s",
                   (int) pid, expected_uuid, g_strerror (errsv));
      return NULL;
    }

  if (!proc_stat (pid, &state, &start_time) || state == 'Z' || state == 'X')
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_FOUND, "QEMU process %d (uuid %s) has exited",
                   (int) pid, expected_uuid);
      goto fail;
    }
  if (!cmdline_has_uuid (pid, expected_uuid))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_FOUND,
                   "Process %d is not the QEMU of guest %s (its command line has no "
                   "\"-uuid %s\"; the PID was probably reused after QEMU exited)",
                   (int) pid, expected_uuid, expected_uuid);
      goto fail;
    }
  if (pidfd >= 0 && pidfd_has_exited (pidfd))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_FOUND, "QEMU process %d (uuid %s) has exited",
                   (int) pid, expected_uuid);
      goto fail;
    }

  self = g_object_new (MD_TYPE_QEMU_PROCESS, NULL);
  self->pid = pid;
  self->start_time = start_time;
  self->log_path = g_strdup (log_path);
  self->pidfd = pidfd;
  if (pidfd >= 0)
    {
      self->pidfd_source = g_unix_fd_source_new (pidfd, G_IO_IN);
      g_source_set_callback (self->pidfd_source, G_SOURCE_FUNC (on_pidfd_readable), self, NULL);
      g_source_set_static_name (self->pidfd_source, "[migrationd] QEMU pidfd");
      g_source_attach (self->pidfd_source, NULL);
    }
  else
    start_poll (self, POLL_SLOW_MS);
  g_debug ("Re-attached to QEMU pid %d (uuid %s)", (int) pid, expected_uuid);
  return self;

fail:
  if (pidfd >= 0)
    close (pidfd);
  return NULL;
}

/* ---- kill ---- */

static gboolean
send_signal (MdQemuProcess *self, int signum)
{
  if (self->exited)
    return TRUE;
  if (self->subprocess != NULL)
    {
      /* GSubprocess does not signal a reaped child, so no PID reuse. */
      g_subprocess_send_signal (self->subprocess, signum);
      return TRUE;
    }
#ifdef SYS_pidfd_send_signal
  if (self->pidfd >= 0)
    return syscall (SYS_pidfd_send_signal, self->pidfd, signum, NULL, 0) == 0 || errno == ESRCH;
#endif
  if (adopted_is_gone (self))
    return TRUE;
  return kill (self->pid, signum) == 0 || errno == ESRCH;
}

static void
kill_task_fail (GTask *task, GError *error)
{
  MdQemuProcess *self = g_task_get_source_object (task);
  GList *link = g_list_find (self->kill_tasks, task);

  if (link == NULL)
    {
      g_error_free (error);
      return;
    }
  self->kill_tasks = g_list_delete_link (self->kill_tasks, link);
  g_task_set_task_data (task, NULL, NULL);
  g_task_return_error (task, error);
  g_object_unref (task);
}

static gboolean
on_kill_stuck (gpointer user_data)
{
  GTask *task = user_data;
  MdQemuProcess *self = g_task_get_source_object (task);
  KillData *data = g_task_get_task_data (task);

  g_clear_pointer (&data->stuck_source, g_source_unref);
  kill_task_fail (task, g_error_new (MD_ERROR, MD_ERROR_TIMEOUT,
                                     "QEMU process %d is still there %d s after SIGKILL "
                                     "(stuck in the kernel, e.g. on storage I/O?)",
                                     (int) self->pid, KILL_STUCK_TIMEOUT_MS / 1000));
  return G_SOURCE_REMOVE;
}

static gboolean
on_kill_grace (gpointer user_data)
{
  GTask *task = user_data;
  MdQemuProcess *self = g_task_get_source_object (task);
  KillData *data = g_task_get_task_data (task);

  g_clear_pointer (&data->grace_source, g_source_unref);
  g_debug ("QEMU pid %d ignored SIGTERM, sending SIGKILL", (int) self->pid);
  send_signal (self, SIGKILL);
  if (self->subprocess == NULL)
    start_poll (self, POLL_FAST_MS);
  data->stuck_source = g_timeout_source_new (KILL_STUCK_TIMEOUT_MS);
  g_source_set_callback (data->stuck_source, on_kill_stuck, task, NULL);
  g_source_attach (data->stuck_source, g_task_get_context (task));
  return G_SOURCE_REMOVE;
}

static gboolean
on_kill_cancelled (GCancellable *cancellable, gpointer user_data)
{
  GTask *task = user_data;
  MdQemuProcess *self = g_task_get_source_object (task);
  KillData *data = g_task_get_task_data (task);

  g_clear_pointer (&data->cancel_source, g_source_unref);
  kill_task_fail (task, g_error_new (MD_ERROR, MD_ERROR_CANCELLED,
                                     "Stopping QEMU process %d was cancelled (SIGTERM was "
                                     "already sent)",
                                     (int) self->pid));
  return G_SOURCE_REMOVE;
}

void
md_qemu_process_kill_async (MdQemuProcess *self, guint grace_ms, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  KillData *data;

  g_return_if_fail (MD_IS_QEMU_PROCESS (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, md_qemu_process_kill_async);
  g_task_set_check_cancellable (task, FALSE);

  if (self->exited)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }

  data = g_new0 (KillData, 1);
  g_task_set_task_data (task, data, (GDestroyNotify) kill_data_free);
  self->kill_tasks = g_list_prepend (self->kill_tasks, g_object_ref (task));

  send_signal (self, SIGTERM);
  if (self->subprocess == NULL)
    start_poll (self, POLL_FAST_MS);

  /* The sources hold no reference: the task lives in kill_tasks until it
   * completes, and completing it destroys them with the task data. */
  data->grace_source = g_timeout_source_new (grace_ms);
  g_source_set_callback (data->grace_source, on_kill_grace, task, NULL);
  g_source_attach (data->grace_source, g_task_get_context (task));
  if (cancellable != NULL)
    {
      data->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (data->cancel_source, G_SOURCE_FUNC (on_kill_cancelled), task, NULL);
      g_source_attach (data->cancel_source, g_task_get_context (task));
    }
}

gboolean
md_qemu_process_kill_finish (MdQemuProcess *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- accessors ---- */

GPid
md_qemu_process_get_pid (MdQemuProcess *self)
{
  g_return_val_if_fail (MD_IS_QEMU_PROCESS (self), 0);
  return self->pid;
}

const char *
md_qemu_process_get_log_path (MdQemuProcess *self)
{
  g_return_val_if_fail (MD_IS_QEMU_PROCESS (self), NULL);
  return self->log_path;
}

gboolean
md_qemu_process_is_child (MdQemuProcess *self)
{
  g_return_val_if_fail (MD_IS_QEMU_PROCESS (self), FALSE);
  return self->subprocess != NULL;
}

gboolean
md_qemu_process_has_exited (MdQemuProcess *self)
{
  g_return_val_if_fail (MD_IS_QEMU_PROCESS (self), TRUE);
  return self->exited;
}

int
md_qemu_process_get_wait_status (MdQemuProcess *self)
{
  g_return_val_if_fail (MD_IS_QEMU_PROCESS (self), -1);
  return self->exited ? self->wait_status : -1;
}

/* ---- log ---- */

/* ---- runtime records ---- */

static gboolean
check_record_name (const char *name, GError **error)
{
  if (name == NULL || name[0] == '\0' || name[0] == '.' || strchr (name, '/') != NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "Invalid runtime record name \"%s\": it must be a plain file name",
                   name != NULL ? name : "(null)");
      return FALSE;
    }
  return TRUE;
}

static char *
record_path (const char *runtime_dir, const char *name)
{
  g_autofree char *file = g_strconcat (name, ".json", NULL);

  return g_build_filename (runtime_dir, file, NULL);
}

void
md_qemu_runtime_free (MdQemuRuntime *record)
{
  if (record == NULL)
    return;
  g_free (record->name);
  g_free (record->uuid);
  g_free (record->qmp_path);
  g_free (record->log_path);
  g_clear_pointer (&record->extra, json_object_unref);
  g_free (record);
}

gboolean
md_qemu_runtime_write (const char *runtime_dir, const char *name, GPid pid, const char *uuid,
                       const char *qmp_path, const char *log_path, JsonObject *extra,
                       GError **error)
{
  g_autoptr (JsonBuilder) builder = json_builder_new_immutable ();
  g_autoptr (JsonGenerator) generator = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autoptr (GError) local_error = NULL;
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  guint64 start_time = 0;
  gsize len = 0;

  g_return_val_if_fail (runtime_dir != NULL, FALSE);
  g_return_val_if_fail (uuid != NULL && qmp_path != NULL, FALSE);

  if (!check_record_name (name, error))
    return FALSE;
  if (g_mkdir_with_parents (runtime_dir, 0700) < 0)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "Cannot create runtime directory %s: %s (check the runtime_dir option)",
                   runtime_dir, g_strerror (errsv));
      return FALSE;
    }
  proc_stat (pid, NULL, &start_time);

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "version");
  json_builder_add_int_value (builder, RUNTIME_VERSION);
  json_builder_set_member_name (builder, "name");
  json_builder_add_string_value (builder, name);
  json_builder_set_member_name (builder, "pid");
  json_builder_add_int_value (builder, pid);
  json_builder_set_member_name (builder, "start-time");
  json_builder_add_int_value (builder, (gint64) start_time);
  json_builder_set_member_name (builder, "uuid");
  json_builder_add_string_value (builder, uuid);
  json_builder_set_member_name (builder, "qmp");
  json_builder_add_string_value (builder, qmp_path);
  if (log_path != NULL)
    {
      json_builder_set_member_name (builder, "log");
      json_builder_add_string_value (builder, log_path);
    }
  json_builder_set_member_name (builder, "extra");
  if (extra != NULL)
    json_builder_add_value (builder, json_node_init_object (json_node_alloc (), extra));
  else
    {
      json_builder_begin_object (builder);
      json_builder_end_object (builder);
    }
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  text = json_generator_to_data (generator, &len);

  path = record_path (runtime_dir, name);
  if (!g_file_set_contents_full (path, text, (gssize) len, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                 &local_error))
    {
      g_propagate_error (error, md_error_convert (local_error, MD_ERROR_FAILED));
      md_error_prefix (error, "Cannot write QEMU runtime record: ");
      return FALSE;
    }
  return TRUE;
}

static MdQemuRuntime *
runtime_parse (const char *path, const char *contents, gsize len, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) local_error = NULL;
  g_autoptr (MdQemuRuntime) record = NULL;
  JsonNode *root;
  JsonObject *obj;
  JsonNode *extra;

  if (!json_parser_load_from_data (parser, contents, (gssize) len, &local_error))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "QEMU runtime record %s is corrupt: %s (remove it if no QEMU runs for it)", path,
                   local_error->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    goto corrupt;
  obj = json_node_get_object (root);

  record = g_new0 (MdQemuRuntime, 1);
  record->name = g_strdup (json_object_get_string_member_with_default (obj, "name", NULL));
  record->pid = (GPid) json_object_get_int_member_with_default (obj, "pid", 0);
  record->start_time = (guint64) json_object_get_int_member_with_default (obj, "start-time", 0);
  record->uuid = g_strdup (json_object_get_string_member_with_default (obj, "uuid", NULL));
  record->qmp_path = g_strdup (json_object_get_string_member_with_default (obj, "qmp", NULL));
  record->log_path = g_strdup (json_object_get_string_member_with_default (obj, "log", NULL));
  extra = json_object_get_member (obj, "extra");
  if (extra != NULL && JSON_NODE_HOLDS_OBJECT (extra))
    record->extra = json_object_ref (json_node_get_object (extra));
  else
    record->extra = json_object_new ();
  if (record->name == NULL || record->pid <= 0 || record->uuid == NULL || record->qmp_path == NULL)
    goto corrupt;
  return g_steal_pointer (&record);

corrupt:
  g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
               "QEMU runtime record %s is corrupt: it lacks name, pid, uuid or qmp (remove it "
               "if no QEMU runs for it)",
               path);
  return NULL;
}

MdQemuRuntime *
md_qemu_runtime_read (const char *runtime_dir, const char *name, GError **error)
{
  g_autofree char *path = NULL;
  g_autofree char *contents = NULL;
  g_autoptr (GError) local_error = NULL;
  gsize len = 0;

  if (!check_record_name (name, error))
    return NULL;
  path = record_path (runtime_dir, name);
  if (!g_file_get_contents (path, &contents, &len, &local_error))
    {
      if (error != NULL)
        {
          *error = md_error_convert (local_error, MD_ERROR_FAILED);
          md_error_prefix (error, "Cannot read QEMU runtime record: ");
        }
      return NULL;
    }
  return runtime_parse (path, contents, len, error);
}

static int
compare_records (gconstpointer a, gconstpointer b)
{
  const MdQemuRuntime *ra = *(MdQemuRuntime *const *) a;
  const MdQemuRuntime *rb = *(MdQemuRuntime *const *) b;

  return g_strcmp0 (ra->name, rb->name);
}

GPtrArray *
md_qemu_runtime_list (const char *runtime_dir, GError **error)
{
  g_autoptr (GPtrArray) records =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_qemu_runtime_free);
  g_autoptr (GDir) dir = NULL;
  g_autoptr (GError) local_error = NULL;
  const char *entry;

  dir = g_dir_open (runtime_dir, 0, &local_error);
  if (dir == NULL)
    {
      if (g_error_matches (local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        return g_steal_pointer (&records);
      if (error != NULL)
        {
          *error = md_error_convert (local_error, MD_ERROR_FAILED);
          md_error_prefix (error, "Cannot list QEMU runtime records: ");
        }
      return NULL;
    }
  while ((entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *name = NULL;
      g_autoptr (GError) read_error = NULL;
      MdQemuRuntime *record;

      if (entry[0] == '.' || !g_str_has_suffix (entry, ".json"))
        continue;
      name = g_strndup (entry, strlen (entry) - strlen (".json"));
      record = md_qemu_runtime_read (runtime_dir, name, &read_error);
      if (record == NULL)
        {
          g_warning ("Skipping QEMU runtime record: %s", read_error->message);
          continue;
        }
      g_ptr_array_add (records, record);
    }
  g_ptr_array_sort (records, compare_records);
  return g_steal_pointer (&records);
}

gboolean
md_qemu_runtime_remove (const char *runtime_dir, const char *name, GError **error)
{
  g_autofree char *path = NULL;

  if (!check_record_name (name, error))
    return FALSE;
  /* QEMU removes its -pidfile only when it exits cleanly; a QEMU killed
   * while no daemon watched it leaves the file behind. */
  {
    g_autofree char *pid_file = g_strdup_printf ("%s.pid", name);
    g_autofree char *pid_path = g_build_filename (runtime_dir, pid_file, NULL);

    g_unlink (pid_path);
  }
  path = record_path (runtime_dir, name);
  if (g_unlink (path) < 0 && errno != ENOENT)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "Cannot remove QEMU runtime record %s: %s",
                   path, g_strerror (errsv));
      return FALSE;
    }
  return TRUE;
}

/* ---- GObject ---- */

static void
md_qemu_process_dispose (GObject *object)
{
  MdQemuProcess *self = MD_QEMU_PROCESS (object);

  destroy_source (&self->pidfd_source);
  destroy_source (&self->poll_source);
  if (self->qmp != NULL)
    {
      g_clear_signal_handler (&self->qmp_closed_id, self->qmp);
      g_clear_object (&self->qmp);
    }
  G_OBJECT_CLASS (md_qemu_process_parent_class)->dispose (object);
}

static void
md_qemu_process_finalize (GObject *object)
{
  MdQemuProcess *self = MD_QEMU_PROCESS (object);

  /* Never kills QEMU: the guest outlives this object and the daemon. */
  if (self->pidfd >= 0)
    close (self->pidfd);
  g_clear_object (&self->subprocess);
  g_free (self->log_path);
  G_OBJECT_CLASS (md_qemu_process_parent_class)->finalize (object);
}

static void
md_qemu_process_class_init (MdQemuProcessClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = md_qemu_process_dispose;
  object_class->finalize = md_qemu_process_finalize;

  signals[SIGNAL_EXITED] = g_signal_new ("exited", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                                         NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_INT);
}

static void
md_qemu_process_init (MdQemuProcess *self)
{
  self->pidfd = -1;
  self->wait_status = -1;
}

int
md_qemu_listen_qmp (const char *path, int min_fd, GError **error)
{
  g_autoptr (GSocket) sock =
      g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, error);
  g_autoptr (GSocketAddress) address = g_unix_socket_address_new (path);

  if (sock == NULL || !g_socket_bind (sock, address, FALSE, error)
      || !g_socket_listen (sock, error))
    return -1;
  return fcntl (g_socket_get_fd (sock), F_DUPFD_CLOEXEC, min_fd);
}

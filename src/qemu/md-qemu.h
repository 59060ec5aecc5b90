/* migrationd: QEMU processes: spawn, re-attach after a daemon restart, kill,
 * and the small runtime records that let a restarted daemon find them. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "md-qemu-confine.h"
#include "md-qemu-log.h"
#include "md-qmp.h"

G_BEGIN_DECLS

#define MD_TYPE_QEMU_PROCESS (md_qemu_process_get_type ())
G_DECLARE_FINAL_TYPE (MdQemuProcess, md_qemu_process, MD, QEMU_PROCESS, GObject)

/* Signal "exited":
 *   void handler (MdQemuProcess *proc, int wait_status, gpointer user_data);
 * Emitted once when the process is gone. @wait_status is the waitpid()
 * status for our own children (use WIFEXITED() etc. or
 * g_spawn_check_wait_status()) and -1 for re-attached processes, whose
 * status nobody can know. */

/* Start QEMU with @argv (argv[0] is the binary, looked up in PATH). Its
 * stdout and stderr are appended to @log_path (created 0640 if needed),
 * stdin is /dev/null. QEMU gets its own session (setsid) and no parent-death
 * signal, so it survives a crash or restart of the daemon and a signal to
 * the daemon's process group does not reach it. */
MdQemuProcess *md_qemu_spawn (const char *const *argv, const char *log_path, GError **error);

/* Same, also handing descriptors to QEMU: @source_fds[i] (taken: closed in
 * the daemon) becomes @target_fds[i] in QEMU, e.g. for -add-fd or
 * -incoming fd:N. */
MdQemuProcess *md_qemu_spawn_full (const char *const *argv, const char *log_path,
                                   const int *source_fds, const int *target_fds, guint n_fds,
                                   GError **error);

/* Same, confined (md-qemu-confine.h): QEMU runs as the confinement's
 * identity in its own mount namespace and cgroup, without capabilities.
 * @confine (nullable) must stay alive until this returns. */
MdQemuProcess *md_qemu_spawn_confined (const char *const *argv, const char *log_path,
                                       const int *source_fds, const int *target_fds, guint n_fds,
                                       MdQemuConfine *confine, GError **error);

/* A unix socket bound to @path and listening, as a close-on-exec
 * descriptor >= @min_fd (-1 with @error): QEMU inherits it for QMP
 * (-chardev socket,fd=N,server=on), so the daemon's connect succeeds at
 * once and the greeting comes as soon as QEMU is up, with no retry loop. */
int md_qemu_listen_qmp (const char *path, int min_fd, GError **error);

/* Adopt a QEMU started by an earlier instance of the daemon. The PID is only
 * trusted if /proc/<pid>/cmdline has "-uuid <expected_uuid>" (the PID may
 * have been reused by an unrelated process) and the process is alive (not a
 * zombie). MD_ERROR_NOT_FOUND otherwise. @log_path (nullable) is only used
 * for messages. Exit is noticed through a pidfd (or polling /proc when the
 * kernel has none) and promptly when a QMP connection given to
 * md_qemu_process_watch_qmp() closes. */
MdQemuProcess *md_qemu_process_new_for_pid (GPid pid, const char *expected_uuid,
                                            const char *log_path, GError **error);

GPid md_qemu_process_get_pid (MdQemuProcess *proc);
const char *md_qemu_process_get_log_path (MdQemuProcess *proc);
/* TRUE if we spawned it (exit status known), FALSE if re-attached. */
gboolean md_qemu_process_is_child (MdQemuProcess *proc);
gboolean md_qemu_process_has_exited (MdQemuProcess *proc);
/* The "exited" status (-1 while running or when unknown). */
int md_qemu_process_get_wait_status (MdQemuProcess *proc);

/* When @qmp closes, check at once (and then every 50 ms) whether the process
 * is gone, instead of waiting for the slower fallback poll. */
void md_qemu_process_watch_qmp (MdQemuProcess *proc, MdQmp *qmp);

/* SIGTERM, then SIGKILL after @grace_ms if it is still there; completes when
 * the process is really gone (reaped for our children, vanished from /proc
 * or a zombie for re-attached ones). Completes at once if it already exited.
 * MD_ERROR_TIMEOUT if it survives SIGKILL for 30 s (stuck in the kernel). */
void md_qemu_process_kill_async (MdQemuProcess *proc, guint grace_ms, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data);
gboolean md_qemu_process_kill_finish (MdQemuProcess *proc, GAsyncResult *result, GError **error);

/* Runtime records: <runtime_dir>/<name>.json, one per running QEMU. */
typedef struct
{
  char *name;
  GPid pid;
  guint64 start_time; /* /proc/<pid>/stat starttime when written, 0 unknown */
  char *uuid;
  char *qmp_path;
  char *log_path;
  JsonObject *extra; /* never NULL (empty if none) */
} MdQemuRuntime;

void md_qemu_runtime_free (MdQemuRuntime *record);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdQemuRuntime, md_qemu_runtime_free)

/* Write atomically (g_file_set_contents, mode 0600), creating @runtime_dir
 * (0700) if needed. @name must be a plain file name (no '/', not starting
 * with '.'). @extra (nullable) is stored as is for the caller's own data. */
gboolean md_qemu_runtime_write (const char *runtime_dir, const char *name, GPid pid,
                                const char *uuid, const char *qmp_path, const char *log_path,
                                JsonObject *extra, GError **error);
MdQemuRuntime *md_qemu_runtime_read (const char *runtime_dir, const char *name, GError **error);
/* All records in @runtime_dir, sorted by name (GPtrArray of MdQemuRuntime*,
 * frees its elements). A missing directory is an empty list; an unreadable
 * record is skipped with a warning. */
GPtrArray *md_qemu_runtime_list (const char *runtime_dir, GError **error);
/* Removing a record that does not exist is not an error. */
gboolean md_qemu_runtime_remove (const char *runtime_dir, const char *name, GError **error);

G_END_DECLS

/* Tests for md-qmp (QMP client) and md-qemu (QEMU processes), against a real
 * QEMU (TCG, no guest code: started with -S). */
#include "config.h"

#include "common/md-error.h"
#include "qemu/md-qemu.h"
#include "qemu/md-qmp.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_UUID "6f1d2c3a-8b4e-4f5a-9c7d-0e1f2a3b4c5d"
#define WRONG_UUID "00000000-1111-2222-3333-444444444444"
#define WAIT_MS 20000

typedef struct
{
  char *tmpdir;
  char *qmp_path;
  char *log_path;
  MdQemuProcess *proc;
  GPid pid;
  MdQmp *qmp;
} Fixture;

/* ---- helpers ---- */

static gboolean
on_wait_timeout (gpointer user_data)
{
  gboolean *timed_out = user_data;

  *timed_out = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterate the main loop until *flag is set; fail the test after @ms. */
static void
run_until (const gboolean *flag, guint ms)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add (ms, on_wait_timeout, &timed_out);

  while (!*flag && !timed_out)
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
  g_assert_true (*flag);
}

static void
run_for (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, on_wait_timeout, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

typedef struct
{
  gboolean done;
  GAsyncResult *result;
} Waiter;

static void
on_async_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Waiter *w = user_data;

  w->result = g_object_ref (result);
  w->done = TRUE;
}

static void
waiter_clear (Waiter *w)
{
  g_clear_object (&w->result);
  w->done = FALSE;
}

static JsonNode *
execute (MdQmp *qmp, const char *command, JsonObject *arguments, GError **error)
{
  Waiter w = { 0 };
  JsonNode *ret;

  md_qmp_execute_async (qmp, command, arguments, NULL, on_async_done, &w);
  run_until (&w.done, WAIT_MS);
  ret = md_qmp_execute_finish (qmp, w.result, error);
  waiter_clear (&w);
  return ret;
}

static JsonNode *
execute_with_fd (MdQmp *qmp, const char *command, JsonObject *arguments, int fd, GError **error)
{
  Waiter w = { 0 };
  JsonNode *ret;

  md_qmp_execute_with_fd_async (qmp, command, arguments, fd, NULL, on_async_done, &w);
  run_until (&w.done, WAIT_MS);
  ret = md_qmp_execute_finish (qmp, w.result, error);
  waiter_clear (&w);
  return ret;
}

static char *
query_status (MdQmp *qmp)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = execute (qmp, "query-status", NULL, &error);

  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (ret));
  return g_strdup (json_object_get_string_member (json_node_get_object (ret), "status"));
}

static gboolean
pid_exists (GPid pid)
{
  return kill (pid, 0) == 0 || errno != ESRCH;
}

/* Gone, or a zombie waiting for its parent. */
static gboolean
pid_gone_or_zombie (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *contents = NULL;
  const char *rparen;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return TRUE;
  rparen = strrchr (contents, ')');
  return rparen != NULL && (rparen[2] == 'Z' || rparen[2] == 'X');
}

/* Every QEMU this test started, killed if an assertion aborts the test
 * (teardown does not run then). */
static volatile sig_atomic_t n_spawned;
static volatile pid_t spawned[64];

static void
on_abort (int signum)
{
  for (int i = 0; i < n_spawned; i++)
    kill (spawned[i], SIGKILL);
  signal (signum, SIG_DFL);
  raise (signum);
}

static MdQemuProcess *
spawn_qemu (Fixture *fx)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *chardev =
      g_strdup_printf ("socket,id=mon,path=%s,server=on,wait=off", fx->qmp_path);
  /* +avx512f makes TCG print a warning on stderr, so the log has content. */
  const char *argv[] = {
    MD_QEMU_BINARY, "-machine",
    "pc,accel=tcg", "-m",
    "64",           "-nodefaults",
    "-display",     "none",
    "-S",           "-no-user-config",
    "-uuid",        TEST_UUID,
    "-cpu",         "qemu64,+avx512f",
    "-chardev",     chardev,
    "-mon",         "chardev=mon,mode=control",
    NULL,
  };
  MdQemuProcess *proc = md_qemu_spawn (argv, fx->log_path, &error);

  g_assert_no_error (error);
  g_assert_nonnull (proc);
  fx->pid = md_qemu_process_get_pid (proc);
  g_assert_cmpint (fx->pid, >, 0);
  if (n_spawned < (int) G_N_ELEMENTS (spawned))
    spawned[n_spawned++] = fx->pid;
  return proc;
}

static MdQmp *
connect_qmp (Fixture *fx, guint timeout_ms, GError **error)
{
  Waiter w = { 0 };
  MdQmp *qmp;

  md_qmp_connect_full_async (fx->qmp_path, fx->log_path, timeout_ms, NULL, on_async_done, &w);
  run_until (&w.done, timeout_ms + WAIT_MS);
  qmp = md_qmp_connect_finish (w.result, error);
  waiter_clear (&w);
  return qmp;
}

static void
rm_rf (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);

  if (dir != NULL)
    {
      const char *entry;

      while ((entry = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, entry, NULL);

          rm_rf (child);
        }
      g_dir_close (dir);
    }
  g_remove (path);
}

static void
fixture_setup (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  /* A trapped subprocess works in its parent's directory. */
  if (g_test_subprocess () && g_getenv ("MD_TEST_DIR") != NULL)
    fx->tmpdir = g_strdup (g_getenv ("MD_TEST_DIR"));
  else
    fx->tmpdir = g_dir_make_tmp ("md-test-qmp-XXXXXX", &error);
  g_assert_no_error (error);
  fx->qmp_path = g_build_filename (fx->tmpdir, "qmp.sock", NULL);
  fx->log_path = g_build_filename (fx->tmpdir, "qemu.log", NULL);
}

/* Spawn QEMU and connect: most tests start like this. */
static void
fixture_setup_running (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fixture_setup (fx, data);
  fx->proc = spawn_qemu (fx);
  fx->qmp = connect_qmp (fx, 30000, &error);
  g_assert_no_error (error);
  g_assert_nonnull (fx->qmp);
}

static void
fixture_teardown (Fixture *fx, gconstpointer data)
{
  g_clear_object (&fx->qmp);
  /* Never leave a QEMU behind, even when the test failed half-way. */
  if (fx->pid > 0 && pid_exists (fx->pid) && !pid_gone_or_zombie (fx->pid))
    {
      kill (fx->pid, SIGCONT);
      kill (fx->pid, SIGKILL);
    }
  if (fx->proc != NULL && md_qemu_process_is_child (fx->proc))
    {
      gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

      while (!md_qemu_process_has_exited (fx->proc) && g_get_monotonic_time () < deadline)
        g_main_context_iteration (NULL, FALSE);
    }
  g_clear_object (&fx->proc);
  rm_rf (fx->tmpdir);
  g_free (fx->tmpdir);
  g_free (fx->qmp_path);
  g_free (fx->log_path);
}

/* ---- event recording ---- */

typedef struct
{
  guint count;
  char *last_name;
  gint64 last_timestamp;
  char *last_reason; /* data["reason"] if any */
} EventLog;

static void
on_event (MdQmp *qmp, const char *name, JsonObject *data, gint64 timestamp_us, gpointer user_data)
{
  EventLog *log = user_data;

  g_assert_nonnull (data);
  log->count++;
  g_free (log->last_name);
  log->last_name = g_strdup (name);
  log->last_timestamp = timestamp_us;
  g_free (log->last_reason);
  log->last_reason = g_strdup (json_object_get_string_member_with_default (data, "reason", NULL));
}

static void
event_log_clear (EventLog *log)
{
  g_free (log->last_name);
  g_free (log->last_reason);
}

typedef struct
{
  gboolean closed;
  GError *error;
} ClosedLog;

static void
on_closed (MdQmp *qmp, const GError *error, gpointer user_data)
{
  ClosedLog *log = user_data;

  g_assert_false (log->closed);
  g_assert_nonnull (error);
  log->closed = TRUE;
  log->error = g_error_copy (error);
}

typedef struct
{
  gboolean exited;
  int status;
} ExitLog;

static void
on_exited (MdQemuProcess *proc, int status, gpointer user_data)
{
  ExitLog *log = user_data;

  g_assert_false (log->exited);
  log->exited = TRUE;
  log->status = status;
}

/* ---- QMP tests ---- */

static void
test_status_and_events (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;
  g_autofree char *status = NULL;
  EventLog resume = { 0 };
  EventLog stop = { 0 };
  EventLog all = { 0 };
  guint major = 0;
  gint64 now = g_get_real_time ();

  md_qmp_get_qemu_version (fx->qmp, &major, NULL, NULL);
  g_assert_cmpuint (major, >=, 7);
  g_assert_nonnull (md_qmp_get_greeting (fx->qmp));

  status = query_status (fx->qmp);
  g_assert_true (g_strcmp0 (status, "prelaunch") == 0 || g_strcmp0 (status, "paused") == 0);

  g_signal_connect (fx->qmp, "event::RESUME", G_CALLBACK (on_event), &resume);
  g_signal_connect (fx->qmp, "event::STOP", G_CALLBACK (on_event), &stop);
  g_signal_connect (fx->qmp, "event", G_CALLBACK (on_event), &all);

  ret = execute (fx->qmp, "cont", NULL, &error);
  g_assert_no_error (error);
  g_clear_pointer (&ret, json_node_unref);
  run_until ((gboolean *) &resume.count, WAIT_MS);
  g_assert_cmpstr (resume.last_name, ==, "RESUME");
  g_assert_cmpuint (stop.count, ==, 0);
  /* QEMU's timestamp, in µs since the epoch. */
  g_assert_cmpint (resume.last_timestamp, >=, now - 60 * G_USEC_PER_SEC);
  g_assert_cmpint (resume.last_timestamp, <=, g_get_real_time () + 60 * G_USEC_PER_SEC);
  g_clear_pointer (&status, g_free);
  status = query_status (fx->qmp);
  g_assert_cmpstr (status, ==, "running");

  ret = execute (fx->qmp, "stop", NULL, &error);
  g_assert_no_error (error);
  g_clear_pointer (&ret, json_node_unref);
  run_until ((gboolean *) &stop.count, WAIT_MS);
  g_assert_cmpstr (stop.last_name, ==, "STOP");
  g_assert_cmpuint (resume.count, ==, 1);
  g_assert_cmpuint (all.count, >=, 2);
  g_clear_pointer (&status, g_free);
  status = query_status (fx->qmp);
  g_assert_cmpstr (status, ==, "paused");

  g_signal_handlers_disconnect_by_data (fx->qmp, &resume);
  g_signal_handlers_disconnect_by_data (fx->qmp, &stop);
  g_signal_handlers_disconnect_by_data (fx->qmp, &all);
  event_log_clear (&resume);
  event_log_clear (&stop);
  event_log_clear (&all);
}

static void
test_unknown_command (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;
  g_autoptr (JsonObject) args = json_object_new ();
  g_autofree char *status = NULL;

  ret = execute (fx->qmp, "foo", NULL, &error);
  g_assert_null (ret);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_true (g_str_has_prefix (error->message, "QEMU: "));
  g_assert_nonnull (strstr (error->message, "The command foo has not been found"));
  g_assert_nonnull (strstr (error->message, "CommandNotFound"));
  g_clear_error (&error);

  /* Bad arguments: QEMU's own text comes through as well. */
  json_object_set_string_member (args, "no-such-argument", "x");
  ret = execute (fx->qmp, "query-status", args, &error);
  g_assert_null (ret);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, "no-such-argument"));
  g_assert_nonnull (strstr (error->message, "GenericError"));

  /* The connection is still usable. */
  status = query_status (fx->qmp);
  g_assert_nonnull (status);
}

static void
test_in_flight (Fixture *fx, gconstpointer data)
{
  const char *commands[] = { "query-status", "query-version", "query-kvm", "query-name" };
  Waiter w[G_N_ELEMENTS (commands)] = { 0 };
  guint n = G_N_ELEMENTS (commands);

  for (guint i = 0; i < n; i++)
    md_qmp_execute_async (fx->qmp, commands[i], NULL, NULL, on_async_done, &w[i]);
  for (guint i = 0; i < n; i++)
    g_assert_false (w[i].done);
  for (guint i = 0; i < n; i++)
    run_until (&w[i].done, WAIT_MS);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (JsonNode) ret = md_qmp_execute_finish (fx->qmp, w[i].result, &error);
      JsonObject *obj;

      g_assert_no_error (error);
      g_assert_true (JSON_NODE_HOLDS_OBJECT (ret));
      obj = json_node_get_object (ret);
      /* Each caller got the answer to its own command. */
      if (i == 0)
        g_assert_true (json_object_has_member (obj, "status"));
      else if (i == 1)
        g_assert_true (json_object_has_member (obj, "qemu"));
      else if (i == 2)
        g_assert_true (json_object_has_member (obj, "enabled"));
      else
        g_assert_false (json_object_has_member (obj, "status"));
      waiter_clear (&w[i]);
    }
}

static char *
qemu_fd_target (GPid pid, int qemu_fd)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/fd/%d", (int) pid, qemu_fd);

  return g_file_read_link (path, NULL);
}

/* Does QEMU hold a descriptor on the pipe with inode @ino? */
static gboolean
qemu_has_pipe (GPid pid, ino_t ino)
{
  g_autofree char *dir_path = g_strdup_printf ("/proc/%d/fd", (int) pid);
  g_autofree char *want = g_strdup_printf ("pipe:[%lu]", (unsigned long) ino);
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  const char *entry;

  g_assert_nonnull (dir);
  while ((entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *target = qemu_fd_target (pid, atoi (entry));

      if (g_strcmp0 (target, want) == 0)
        return TRUE;
    }
  return FALSE;
}

static void
test_fd_passing (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;
  g_autoptr (JsonObject) args = json_object_new ();
  g_autoptr (JsonObject) add_args = json_object_new ();
  g_autoptr (JsonObject) rm_args = json_object_new ();
  struct stat st;
  int fds[2];
  int fdset_id;

  g_assert_no_errno (pipe (fds));
  g_assert_no_errno (fstat (fds[1], &st));
  g_assert_false (qemu_has_pipe (fx->pid, st.st_ino));
  json_object_set_string_member (args, "fdname", "migfd");

  /* Without SCM_RIGHTS QEMU refuses, which shows the fd really travels. */
  ret = execute (fx->qmp, "getfd", args, &error);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, "No file descriptor supplied via SCM_RIGHTS"));
  g_clear_error (&error);

  ret = execute_with_fd (fx->qmp, "getfd", args, fds[1], &error);
  g_assert_no_error (error);
  g_assert_nonnull (ret);
  g_clear_pointer (&ret, json_node_unref);
  g_assert_true (qemu_has_pipe (fx->pid, st.st_ino));

  ret = execute (fx->qmp, "closefd", args, &error);
  g_assert_no_error (error);
  g_clear_pointer (&ret, json_node_unref);
  g_assert_false (qemu_has_pipe (fx->pid, st.st_ino));

  /* add-fd: the fd lands in an fd set QEMU reports back. */
  json_object_set_int_member (add_args, "fdset-id", 7);
  ret = execute_with_fd (fx->qmp, "add-fd", add_args, fds[0], &error);
  g_assert_no_error (error);
  fdset_id = (int) json_object_get_int_member (json_node_get_object (ret), "fdset-id");
  g_assert_cmpint (fdset_id, ==, 7);
  g_assert_true (qemu_has_pipe (fx->pid, st.st_ino));
  g_clear_pointer (&ret, json_node_unref);
  json_object_set_int_member (rm_args, "fdset-id", 7);
  ret = execute (fx->qmp, "remove-fd", rm_args, &error);
  g_assert_no_error (error);
  g_clear_pointer (&ret, json_node_unref);

  close (fds[0]);
  close (fds[1]);
}

static void
test_quit (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;
  ClosedLog closed = { 0 };
  ExitLog exited = { 0 };
  EventLog shutdown = { 0 };

  g_signal_connect (fx->qmp, "closed", G_CALLBACK (on_closed), &closed);
  g_signal_connect (fx->qmp, "event::SHUTDOWN", G_CALLBACK (on_event), &shutdown);
  g_signal_connect (fx->proc, "exited", G_CALLBACK (on_exited), &exited);

  ret = execute (fx->qmp, "quit", NULL, &error);
  g_assert_no_error (error);
  run_until (&closed.closed, WAIT_MS);
  run_until (&exited.exited, WAIT_MS);
  g_assert_cmpuint (shutdown.count, ==, 1);
  g_assert_cmpstr (shutdown.last_reason, ==, "host-qmp-quit");

  g_assert_true (md_qmp_is_closed (fx->qmp));
  g_assert_error (closed.error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (closed.error->message, fx->qmp_path));
  /* The tail of QEMU's log explains what happened to it. */
  g_assert_nonnull (strstr (closed.error->message, fx->log_path));
  g_assert_nonnull (strstr (closed.error->message, "avx512f"));

  g_assert_true (WIFEXITED (exited.status));
  g_assert_cmpint (WEXITSTATUS (exited.status), ==, 0);
  g_assert_true (md_qemu_process_has_exited (fx->proc));
  g_assert_cmpint (kill (fx->pid, 0), ==, -1);
  g_assert_cmpint (errno, ==, ESRCH);

  /* Commands after the end fail with the same explanation. */
  g_clear_pointer (&ret, json_node_unref);
  ret = execute (fx->qmp, "query-status", NULL, &error);
  g_assert_null (ret);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, "query-status"));
  g_assert_nonnull (strstr (error->message, "avx512f"));

  g_clear_error (&closed.error);
  event_log_clear (&shutdown);
}

static void
test_pending_fail_on_death (Fixture *fx, gconstpointer data)
{
  Waiter w1 = { 0 };
  Waiter w2 = { 0 };
  ClosedLog closed = { 0 };
  ExitLog exited = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;

  g_signal_connect (fx->qmp, "closed", G_CALLBACK (on_closed), &closed);
  g_signal_connect (fx->proc, "exited", G_CALLBACK (on_exited), &exited);

  /* A stopped QEMU cannot answer: these commands stay pending. */
  g_assert_no_errno (kill (fx->pid, SIGSTOP));
  md_qmp_execute_async (fx->qmp, "query-status", NULL, NULL, on_async_done, &w1);
  md_qmp_execute_async (fx->qmp, "query-version", NULL, NULL, on_async_done, &w2);
  run_for (300);
  g_assert_false (w1.done);
  g_assert_false (w2.done);

  g_assert_no_errno (kill (fx->pid, SIGKILL));
  run_until (&w1.done, WAIT_MS);
  run_until (&w2.done, WAIT_MS);
  run_until (&closed.closed, WAIT_MS);
  run_until (&exited.exited, WAIT_MS);

  ret = md_qmp_execute_finish (fx->qmp, w1.result, &error);
  g_assert_null (ret);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, "'query-status'"));
  g_assert_nonnull (strstr (error->message, fx->log_path));
  g_assert_nonnull (strstr (error->message, "avx512f"));
  g_clear_error (&error);
  ret = md_qmp_execute_finish (fx->qmp, w2.result, &error);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, "'query-version'"));

  g_assert_true (WIFSIGNALED (exited.status));
  g_assert_cmpint (WTERMSIG (exited.status), ==, SIGKILL);

  waiter_clear (&w1);
  waiter_clear (&w2);
  g_clear_error (&closed.error);
}

static void
test_cancel_command (Fixture *fx, gconstpointer data)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;
  g_autofree char *status = NULL;
  Waiter w = { 0 };

  g_assert_no_errno (kill (fx->pid, SIGSTOP));
  md_qmp_execute_async (fx->qmp, "query-version", NULL, cancellable, on_async_done, &w);
  run_for (200);
  g_assert_false (w.done);
  g_cancellable_cancel (cancellable);
  run_until (&w.done, WAIT_MS);
  ret = md_qmp_execute_finish (fx->qmp, w.result, &error);
  g_assert_null (ret);
  g_assert_error (error, MD_ERROR, MD_ERROR_CANCELLED);
  waiter_clear (&w);

  /* The late reply to the cancelled command is dropped; the next command
   * gets its own answer. */
  g_assert_no_errno (kill (fx->pid, SIGCONT));
  status = query_status (fx->qmp);
  g_assert_nonnull (status);
  g_assert_false (md_qmp_is_closed (fx->qmp));
}

static void
test_max_message_size (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;
  ClosedLog closed = { 0 };

  g_signal_connect (fx->qmp, "closed", G_CALLBACK (on_closed), &closed);
  /* The QAPI schema is hundreds of KiB in one line. */
  md_qmp_set_max_message_size (fx->qmp, 4096);
  ret = execute (fx->qmp, "query-qmp-schema", NULL, &error);
  g_assert_null (ret);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, "exceeds the 4096 byte limit"));
  run_until (&closed.closed, WAIT_MS);
  g_assert_nonnull (strstr (closed.error->message, "exceeds"));
  g_clear_error (&closed.error);
}

static void
test_schema_within_limit (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;

  /* A big reply spread over many reads is reassembled. */
  ret = execute (fx->qmp, "query-qmp-schema", NULL, &error);
  g_assert_no_error (error);
  g_assert_true (JSON_NODE_HOLDS_ARRAY (ret));
  g_assert_cmpuint (json_array_get_length (json_node_get_array (ret)), >, 100);
}

static void
test_connect_timeout (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQmp) qmp = NULL;
  gint64 start = g_get_monotonic_time ();

  qmp = connect_qmp (fx, 300, &error);
  g_assert_null (qmp);
  g_assert_error (error, MD_ERROR, MD_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (error->message, fx->qmp_path));
  g_assert_cmpint (g_get_monotonic_time () - start, >=, 250 * 1000);
}

static void
test_connect_cancel (Fixture *fx, gconstpointer data)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQmp) qmp = NULL;
  Waiter w = { 0 };

  md_qmp_connect_async (fx->qmp_path, cancellable, on_async_done, &w);
  run_for (150);
  g_assert_false (w.done);
  g_cancellable_cancel (cancellable);
  run_until (&w.done, WAIT_MS);
  qmp = md_qmp_connect_finish (w.result, &error);
  g_assert_null (qmp);
  g_assert_error (error, MD_ERROR, MD_ERROR_CANCELLED);
  waiter_clear (&w);
}

/* Connecting before QEMU has created its socket retries until it has. */
static void
test_connect_retry (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *status = NULL;
  Waiter w = { 0 };

  md_qmp_connect_full_async (fx->qmp_path, fx->log_path, 30000, NULL, on_async_done, &w);
  run_for (300);
  g_assert_false (w.done);
  fx->proc = spawn_qemu (fx);
  run_until (&w.done, 30000);
  fx->qmp = md_qmp_connect_finish (w.result, &error);
  g_assert_no_error (error);
  waiter_clear (&w);
  status = query_status (fx->qmp);
  g_assert_cmpstr (status, ==, "prelaunch");
}

static void
test_close_explicit (Fixture *fx, gconstpointer data)
{
  ClosedLog closed = { 0 };
  Waiter w = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;

  g_signal_connect (fx->qmp, "closed", G_CALLBACK (on_closed), &closed);
  g_assert_no_errno (kill (fx->pid, SIGSTOP));
  md_qmp_execute_async (fx->qmp, "query-status", NULL, NULL, on_async_done, &w);
  run_for (100);
  md_qmp_close (fx->qmp);
  g_assert_true (closed.closed);
  g_assert_error (closed.error, MD_ERROR, MD_ERROR_CANCELLED);
  run_until (&w.done, WAIT_MS);
  ret = md_qmp_execute_finish (fx->qmp, w.result, &error);
  g_assert_error (error, MD_ERROR, MD_ERROR_CANCELLED);
  g_clear_error (&error);
  waiter_clear (&w);
  g_clear_error (&closed.error);
  g_assert_no_errno (kill (fx->pid, SIGCONT));

  /* QEMU keeps running and accepts a new connection. */
  g_clear_object (&fx->qmp);
  fx->qmp = connect_qmp (fx, 10000, &error);
  g_assert_no_error (error);
  g_free (query_status (fx->qmp));
}

/* ---- process tests ---- */

static void
test_spawn_detached (Fixture *fx, gconstpointer data)
{
  g_autofree char *stdin_target = qemu_fd_target (fx->pid, 0);
  g_autofree char *stderr_target = qemu_fd_target (fx->pid, 2);

  g_assert_true (md_qemu_process_is_child (fx->proc));
  g_assert_false (md_qemu_process_has_exited (fx->proc));
  /* Own session, so signals to the daemon's process group miss it. */
  g_assert_cmpint (getsid (fx->pid), ==, fx->pid);
  g_assert_cmpint (getpgid (fx->pid), ==, fx->pid);
  g_assert_cmpint (getpgid (fx->pid), !=, getpgid (0));
  g_assert_cmpstr (stdin_target, ==, "/dev/null");
  g_assert_cmpstr (stderr_target, ==, fx->log_path);
}

static void
test_kill (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonNode) ret = NULL;
  g_autofree char *log = NULL;
  ExitLog exited = { 0 };
  Waiter w = { 0 };
  gint64 start;

  ret = execute (fx->qmp, "cont", NULL, &error);
  g_assert_no_error (error);
  g_signal_connect (fx->proc, "exited", G_CALLBACK (on_exited), &exited);

  start = g_get_monotonic_time ();
  md_qemu_process_kill_async (fx->proc, 10000, NULL, on_async_done, &w);
  run_until (&w.done, WAIT_MS);
  g_assert_true (md_qemu_process_kill_finish (fx->proc, w.result, &error));
  g_assert_no_error (error);
  waiter_clear (&w);
  /* SIGTERM sufficed: well before the grace period ran out. */
  g_assert_cmpint (g_get_monotonic_time () - start, <, 9 * G_USEC_PER_SEC);

  g_assert_true (exited.exited);
  g_assert_cmpint (kill (fx->pid, 0), ==, -1);
  g_assert_cmpint (errno, ==, ESRCH);
  g_assert_true (g_file_get_contents (fx->log_path, &log, NULL, NULL));
  g_assert_nonnull (strstr (log, "terminating on signal 15"));
  g_assert_nonnull (strstr (log, "migrationd starting: "));

  /* Killing what is already gone completes at once. */
  md_qemu_process_kill_async (fx->proc, 1000, NULL, on_async_done, &w);
  run_until (&w.done, WAIT_MS);
  g_assert_true (md_qemu_process_kill_finish (fx->proc, w.result, &error));
  waiter_clear (&w);
}

static void
test_kill_escalates (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  ExitLog exited = { 0 };
  Waiter w = { 0 };

  g_signal_connect (fx->proc, "exited", G_CALLBACK (on_exited), &exited);
  /* A stopped process does not act on SIGTERM; only SIGKILL ends it. */
  g_assert_no_errno (kill (fx->pid, SIGSTOP));
  md_qemu_process_kill_async (fx->proc, 300, NULL, on_async_done, &w);
  run_until (&w.done, WAIT_MS);
  g_assert_true (md_qemu_process_kill_finish (fx->proc, w.result, &error));
  g_assert_no_error (error);
  waiter_clear (&w);
  g_assert_true (exited.exited);
  g_assert_true (WIFSIGNALED (exited.status));
  g_assert_cmpint (WTERMSIG (exited.status), ==, SIGKILL);
  g_assert_cmpint (kill (fx->pid, 0), ==, -1);
  g_assert_cmpint (errno, ==, ESRCH);
}

static void
test_spawn_failure (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQemuProcess) proc = NULL;
  g_autofree char *bad_log = g_build_filename (fx->tmpdir, "no-such-dir", "qemu.log", NULL);
  const char *argv[] = { "/nonexistent/qemu-system-x86_64", "-S", NULL };
  const char *ok_argv[] = { MD_QEMU_BINARY, "-S", NULL };

  proc = md_qemu_spawn (argv, fx->log_path, &error);
  g_assert_null (proc);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, "/nonexistent/qemu-system-x86_64"));
  g_clear_error (&error);

  proc = md_qemu_spawn (ok_argv, bad_log, &error);
  g_assert_null (proc);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
  g_assert_nonnull (strstr (error->message, bad_log));
}

static void
test_reattach (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQemuProcess) adopted = NULL;
  g_autoptr (MdQemuProcess) wrong = NULL;
  g_autoptr (MdQemuProcess) late = NULL;
  g_autoptr (JsonNode) ret = NULL;
  g_autofree char *status = NULL;
  ClosedLog closed = { 0 };
  ExitLog exited = { 0 };

  /* The old daemon goes away: its objects vanish, QEMU stays. */
  g_clear_object (&fx->qmp);
  g_clear_object (&fx->proc);
  run_for (200);
  g_assert_true (pid_exists (fx->pid));
  g_assert_false (pid_gone_or_zombie (fx->pid));

  wrong = md_qemu_process_new_for_pid (fx->pid, WRONG_UUID, fx->log_path, &error);
  g_assert_null (wrong);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, WRONG_UUID));
  g_clear_error (&error);

  /* A PID that is not QEMU at all (ours) is refused too. */
  wrong = md_qemu_process_new_for_pid (getpid (), TEST_UUID, NULL, &error);
  g_assert_null (wrong);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_FOUND);
  g_clear_error (&error);

  adopted = md_qemu_process_new_for_pid (fx->pid, TEST_UUID, fx->log_path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (adopted);
  g_assert_false (md_qemu_process_is_child (adopted));
  g_assert_cmpint (md_qemu_process_get_pid (adopted), ==, fx->pid);

  fx->qmp = connect_qmp (fx, 10000, &error);
  g_assert_no_error (error);
  status = query_status (fx->qmp);
  g_assert_cmpstr (status, ==, "prelaunch");
  md_qemu_process_watch_qmp (adopted, fx->qmp);

  g_signal_connect (fx->qmp, "closed", G_CALLBACK (on_closed), &closed);
  g_signal_connect (adopted, "exited", G_CALLBACK (on_exited), &exited);
  ret = execute (fx->qmp, "quit", NULL, &error);
  g_assert_no_error (error);
  run_until (&closed.closed, WAIT_MS);
  run_until (&exited.exited, WAIT_MS);
  g_assert_cmpint (exited.status, ==, -1);
  g_assert_cmpint (md_qemu_process_get_wait_status (adopted), ==, -1);
  g_assert_true (pid_gone_or_zombie (fx->pid));

  late = md_qemu_process_new_for_pid (fx->pid, TEST_UUID, fx->log_path, &error);
  g_assert_null (late);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_FOUND);
  g_clear_error (&closed.error);
}

static void
test_reattach_kill (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQemuProcess) adopted = NULL;
  ExitLog exited = { 0 };
  Waiter w = { 0 };

  g_clear_object (&fx->qmp);
  g_clear_object (&fx->proc);

  adopted = md_qemu_process_new_for_pid (fx->pid, TEST_UUID, fx->log_path, &error);
  g_assert_no_error (error);
  g_signal_connect (adopted, "exited", G_CALLBACK (on_exited), &exited);
  g_assert_no_errno (kill (fx->pid, SIGSTOP));
  md_qemu_process_kill_async (adopted, 300, NULL, on_async_done, &w);
  run_until (&w.done, WAIT_MS);
  g_assert_true (md_qemu_process_kill_finish (adopted, w.result, &error));
  g_assert_no_error (error);
  waiter_clear (&w);
  g_assert_true (exited.exited);
  g_assert_cmpint (exited.status, ==, -1);
  g_assert_true (pid_gone_or_zombie (fx->pid));
}

/* QEMU outlives a daemon killed together with its whole process group, and
 * the next daemon adopts it. */
static void
test_survives_daemon_crash (Fixture *fx, gconstpointer data)
{
  g_autofree char *pidfile = g_build_filename (fx->tmpdir, "qemu.pid", NULL);
  g_autofree char *contents = NULL;
  g_autofree char *log = NULL;
  g_autofree char *status = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (MdQemuProcess) adopted = NULL;
  Waiter w = { 0 };

  if (g_test_subprocess ())
    {
      g_autofree char *pid_text = NULL;

      /* The doomed daemon: its own process group, spawn, then a SIGTERM to
       * the group as a service manager or Ctrl-C would send. */
      setpgid (0, 0);
      fx->proc = spawn_qemu (fx);
      pid_text = g_strdup_printf ("%d", (int) fx->pid);
      g_assert_true (g_file_set_contents (pidfile, pid_text, -1, NULL));
      kill (0, SIGTERM);
      run_for (10000);
      return;
    }

  g_setenv ("MD_TEST_DIR", fx->tmpdir, TRUE);
  g_test_trap_subprocess (NULL, 30 * G_USEC_PER_SEC, G_TEST_SUBPROCESS_DEFAULT);
  g_unsetenv ("MD_TEST_DIR");
  g_test_trap_assert_failed ();
  g_assert_true (g_file_get_contents (pidfile, &contents, NULL, NULL));
  fx->pid = atoi (contents);
  g_assert_cmpint (fx->pid, >, 0);
  spawned[n_spawned++] = fx->pid;

  run_for (300);
  g_assert_true (pid_exists (fx->pid));
  g_assert_false (pid_gone_or_zombie (fx->pid));
  g_assert_true (g_file_get_contents (fx->log_path, &log, NULL, NULL));
  g_assert_null (strstr (log, "terminating on signal"));

  adopted = md_qemu_process_new_for_pid (fx->pid, TEST_UUID, fx->log_path, &error);
  g_assert_no_error (error);
  fx->qmp = connect_qmp (fx, 10000, &error);
  g_assert_no_error (error);
  status = query_status (fx->qmp);
  g_assert_cmpstr (status, ==, "prelaunch");
  md_qemu_process_watch_qmp (adopted, fx->qmp);

  md_qemu_process_kill_async (adopted, 5000, NULL, on_async_done, &w);
  run_until (&w.done, WAIT_MS);
  g_assert_true (md_qemu_process_kill_finish (adopted, w.result, &error));
  g_assert_no_error (error);
  waiter_clear (&w);
  g_assert_true (pid_gone_or_zombie (fx->pid));
}

/* ---- runtime records ---- */

static void
test_runtime_records (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *dir = g_build_filename (fx->tmpdir, "run", "migrationd", NULL);
  g_autofree char *corrupt = g_build_filename (dir, "broken.json", NULL);
  g_autoptr (JsonObject) extra = json_object_new ();
  g_autoptr (MdQemuRuntime) record = NULL;
  g_autoptr (GPtrArray) list = NULL;
  GLogLevelFlags fatal_mask;
  struct stat st;

  list = md_qemu_runtime_list (dir, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (list->len, ==, 0);
  g_clear_pointer (&list, g_ptr_array_unref);

  json_object_set_string_member (extra, "migration", "/org/migrationd/migration/3");
  json_object_set_int_member (extra, "vnc-port", 5901);
  g_assert_true (md_qemu_runtime_write (dir, "web", getpid (), TEST_UUID, "/run/x/web.qmp",
                                        "/var/log/web.log", extra, &error));
  g_assert_no_error (error);
  g_assert_true (
      md_qemu_runtime_write (dir, "db", 4242, WRONG_UUID, "/run/x/db.qmp", NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_no_errno (g_stat (dir, &st));
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);

  record = md_qemu_runtime_read (dir, "web", &error);
  g_assert_no_error (error);
  g_assert_cmpstr (record->name, ==, "web");
  g_assert_cmpint (record->pid, ==, getpid ());
  g_assert_cmpuint (record->start_time, >, 0);
  g_assert_cmpstr (record->uuid, ==, TEST_UUID);
  g_assert_cmpstr (record->qmp_path, ==, "/run/x/web.qmp");
  g_assert_cmpstr (record->log_path, ==, "/var/log/web.log");
  g_assert_cmpstr (json_object_get_string_member (record->extra, "migration"), ==,
                   "/org/migrationd/migration/3");
  g_assert_cmpint (json_object_get_int_member (record->extra, "vnc-port"), ==, 5901);
  g_clear_pointer (&record, md_qemu_runtime_free);

  /* Overwrite replaces the record. */
  g_assert_true (
      md_qemu_runtime_write (dir, "db", 4343, WRONG_UUID, "/run/x/db.qmp", NULL, NULL, &error));
  g_assert_true (g_file_set_contents (corrupt, "{ not json", -1, NULL));

  /* The corrupt record is skipped with a warning (not fatal here). */
  fatal_mask = g_log_set_always_fatal (G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  list = md_qemu_runtime_list (dir, &error);
  g_log_set_always_fatal (fatal_mask);
  g_assert_no_error (error);
  g_assert_cmpuint (list->len, ==, 2);
  g_assert_cmpstr (((MdQemuRuntime *) list->pdata[0])->name, ==, "db");
  g_assert_cmpint (((MdQemuRuntime *) list->pdata[0])->pid, ==, 4343);
  g_assert_null (((MdQemuRuntime *) list->pdata[0])->log_path);
  g_assert_nonnull (((MdQemuRuntime *) list->pdata[0])->extra);
  g_assert_cmpstr (((MdQemuRuntime *) list->pdata[1])->name, ==, "web");
  g_clear_pointer (&list, g_ptr_array_unref);

  record = md_qemu_runtime_read (dir, "broken", &error);
  g_assert_null (record);
  g_assert_error (error, MD_ERROR, MD_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, corrupt));
  g_clear_error (&error);

  record = md_qemu_runtime_read (dir, "absent", &error);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_FOUND);
  g_clear_error (&error);

  g_assert_false (md_qemu_runtime_write (dir, "../escape", 1, TEST_UUID, "/x", NULL, NULL, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  g_assert_true (md_qemu_runtime_remove (dir, "web", &error));
  g_assert_true (md_qemu_runtime_remove (dir, "web", &error));
  g_assert_true (md_qemu_runtime_remove (dir, "broken", &error));
  g_assert_no_error (error);
  list = md_qemu_runtime_list (dir, &error);
  g_assert_cmpuint (list->len, ==, 1);
  g_assert_cmpstr (((MdQemuRuntime *) list->pdata[0])->name, ==, "db");
}

static void
test_log_tail (Fixture *fx, gconstpointer data)
{
  g_autoptr (GString) text = g_string_new (NULL);
  g_autofree char *tail = NULL;

  g_assert_null (md_qemu_log_tail (fx->log_path, 10));
  g_assert_true (g_file_set_contents (fx->log_path, "", 0, NULL));
  g_assert_null (md_qemu_log_tail (fx->log_path, 10));

  for (int i = 0; i < 5000; i++)
    g_string_append_printf (text, "line %d\n", i);
  g_assert_true (g_file_set_contents (fx->log_path, text->str, (gssize) text->len, NULL));
  tail = md_qemu_log_tail (fx->log_path, 3);
  g_assert_cmpstr (tail, ==, "line 4997\nline 4998\nline 4999");
}

int
main (int argc, char **argv)
{
  g_autofree char *qemu = NULL;

  g_test_init (&argc, &argv, NULL);
  /* A dying QEMU must not kill the test with SIGPIPE. */
  signal (SIGPIPE, SIG_IGN);
  signal (SIGABRT, on_abort);
  signal (SIGTRAP, on_abort);

  qemu = g_find_program_in_path (MD_QEMU_BINARY);
  if (qemu == NULL)
    {
      /* test.sh installs qemu-system-x86; never count a missing QEMU as a pass. */
      g_printerr ("%s not found in PATH\n", MD_QEMU_BINARY);
      return 1;
    }

#define ADD(path, setup, func) g_test_add (path, Fixture, NULL, setup, func, fixture_teardown)
  ADD ("/qmp/status-and-events", fixture_setup_running, test_status_and_events);
  ADD ("/qmp/unknown-command", fixture_setup_running, test_unknown_command);
  ADD ("/qmp/in-flight", fixture_setup_running, test_in_flight);
  ADD ("/qmp/fd-passing", fixture_setup_running, test_fd_passing);
  ADD ("/qmp/quit", fixture_setup_running, test_quit);
  ADD ("/qmp/pending-fail-on-death", fixture_setup_running, test_pending_fail_on_death);
  ADD ("/qmp/cancel-command", fixture_setup_running, test_cancel_command);
  ADD ("/qmp/max-message-size", fixture_setup_running, test_max_message_size);
  ADD ("/qmp/large-reply", fixture_setup_running, test_schema_within_limit);
  ADD ("/qmp/connect-timeout", fixture_setup, test_connect_timeout);
  ADD ("/qmp/connect-cancel", fixture_setup, test_connect_cancel);
  ADD ("/qmp/connect-retry", fixture_setup, test_connect_retry);
  ADD ("/qmp/close", fixture_setup_running, test_close_explicit);
  ADD ("/qemu/spawn-detached", fixture_setup_running, test_spawn_detached);
  ADD ("/qemu/spawn-failure", fixture_setup, test_spawn_failure);
  ADD ("/qemu/kill", fixture_setup_running, test_kill);
  ADD ("/qemu/kill-escalates", fixture_setup_running, test_kill_escalates);
  ADD ("/qemu/reattach", fixture_setup_running, test_reattach);
  ADD ("/qemu/reattach-kill", fixture_setup_running, test_reattach_kill);
  ADD ("/qemu/survives-daemon-crash", fixture_setup, test_survives_daemon_crash);
  ADD ("/qemu/runtime-records", fixture_setup, test_runtime_records);
  ADD ("/qemu/log-tail", fixture_setup, test_log_tail);
#undef ADD

  return g_test_run ();
}

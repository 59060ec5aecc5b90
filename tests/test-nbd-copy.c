/* Tests for md-nbd-copy (the offline disk copier) against real NBD servers:
 * qemu-nbd and qemu-storage-daemon serving images made at test time. */
#include "config.h"

#include "common/md-error.h"
#include "storage/md-nbd-copy.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (G_GUINT64_CONSTANT (1024) * 1024)
#define GiB (1024 * MiB)
#define WAIT_MS 120000

typedef struct
{
  GSubprocess *proc;
  char *name;
  char *log;
} Server;

typedef struct
{
  char *tmpdir;
  GPtrArray *servers;
} Fixture;

/* ---- helpers ---- */

static void
server_free (Server *server)
{
  g_object_unref (server->proc);
  g_free (server->name);
  g_free (server->log);
  g_free (server);
}

static void
fixture_setup (Fixture *fx, gconstpointer data)
{
  g_autoptr (GError) error = NULL;

  fx->tmpdir = g_dir_make_tmp ("md-nbd-copy-XXXXXX", &error);
  g_assert_no_error (error);
  fx->servers = g_ptr_array_new_with_free_func ((GDestroyNotify) server_free);
}

static void
rm_rf (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *child = g_build_filename (path, name, NULL);

      if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
        rm_rf (child);
      else
        g_unlink (child);
    }
  g_rmdir (path);
}

/* Kill every server and check that each one is really gone. */
static void
fixture_teardown (Fixture *fx, gconstpointer data)
{
  for (guint i = 0; i < fx->servers->len; i++)
    {
      Server *server = g_ptr_array_index (fx->servers, i);
      const char *id = g_subprocess_get_identifier (server->proc);
      g_autofree char *proc_path = NULL;

      if (id == NULL)
        continue; /* already exited and reaped */
      proc_path = g_strdup_printf ("/proc/%s", id);
      g_subprocess_send_signal (server->proc, SIGTERM);
      g_assert_true (g_subprocess_wait (server->proc, NULL, NULL));
      g_assert_false (g_file_test (proc_path, G_FILE_TEST_EXISTS));
    }
  g_ptr_array_unref (fx->servers);
  rm_rf (fx->tmpdir);
  g_free (fx->tmpdir);
}

static char *
tmp_path (Fixture *fx, const char *name)
{
  return g_build_filename (fx->tmpdir, name, NULL);
}

static gboolean
have_tools (void)
{
  const char *tools[] = { "qemu-img", "qemu-nbd", "qemu-storage-daemon" };

  for (guint i = 0; i < G_N_ELEMENTS (tools); i++)
    {
      g_autofree char *path = g_find_program_in_path (tools[i]);

      if (path == NULL)
        {
          g_test_skip_printf ("%s not installed (Debian package qemu-utils)", tools[i]);
          return FALSE;
        }
    }
  return TRUE;
}

/* Run a command to completion; fail the test if it fails. */
static void
run_cmd (const char *const *argv)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;

  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err, &status,
                &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, NULL))
    g_error ("%s failed: %s%s", argv[0], out, err);
}

static void
qemu_img_create (const char *path, const char *format, guint64 size)
{
  g_autofree char *size_str = g_strdup_printf ("%" G_GUINT64_FORMAT, size);
  const char *argv[] = { "qemu-img", "create", "-q", "-f", format, path, size_str, NULL };

  run_cmd (argv);
}

/* qemu-img compare: TRUE when the guest-visible contents are identical. */
static gboolean
images_identical (const char *a, const char *fmt_a, const char *b, const char *fmt_b)
{
  const char *argv[] = { "qemu-img", "compare", "-q", "-f", fmt_a, "-F", fmt_b, a, b, NULL };
  g_autoptr (GError) error = NULL;
  int status = 0;

  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, &status,
                &error);
  g_assert_no_error (error);
  return g_spawn_check_wait_status (status, NULL);
}

static void
fill_random (GRand *rand, guchar *buf, gsize len)
{
  for (gsize i = 0; i + 4 <= len; i += 4)
    {
      guint32 v = g_rand_int (rand);

      memcpy (buf + i, &v, 4);
    }
}

/* A sparse raw image of @size with @n_chunks chunks of @chunk bytes of
 * random data at distinct chunk-aligned random offsets, the rest holes.
 * Returns the offsets (sorted) in *offsets if asked. */
static void
make_sparse_image (const char *path, guint64 size, guint n_chunks, gsize chunk, guint32 seed,
                   GArray **offsets)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (seed);
  g_autofree guchar *buf = g_malloc (chunk);
  g_autoptr (GArray) offs = g_array_new (FALSE, FALSE, sizeof (guint64));
  guint64 n_slots = size / chunk;
  g_autofree gboolean *used = g_new0 (gboolean, n_slots);
  int fd;

  g_assert_cmpuint (n_chunks, <=, n_slots);
  qemu_img_create (path, "raw", size);
  fd = open (path, O_WRONLY);
  g_assert_cmpint (fd, >=, 0);
  for (guint i = 0; i < n_chunks; i++)
    {
      guint64 slot;

      do
        slot = g_rand_int_range (rand, 0, n_slots);
      while (used[slot]);
      used[slot] = TRUE;
    }
  for (guint64 slot = 0; slot < n_slots; slot++)
    if (used[slot])
      {
        guint64 off = slot * chunk;

        fill_random (rand, buf, chunk);
        g_assert_cmpint (pwrite (fd, buf, chunk, off), ==, (gssize) chunk);
        g_array_append_val (offs, off);
      }
  g_assert_cmpint (close (fd), ==, 0);
  if (offsets != NULL)
    *offsets = g_steal_pointer (&offs);
}

static void
poke (const char *path, guint64 offset, guchar value)
{
  int fd = open (path, O_WRONLY);

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pwrite (fd, &value, 1, offset), ==, 1);
  g_assert_cmpint (fsync (fd), ==, 0);
  g_assert_cmpint (close (fd), ==, 0);
}

static guchar
peek (const char *path, guint64 offset)
{
  int fd = open (path, O_RDONLY);
  guchar value = 0;

  g_assert_cmpint (fd, >=, 0);
  g_assert_cmpint (pread (fd, &value, 1, offset), ==, 1);
  g_assert_cmpint (close (fd), ==, 0);
  return value;
}

static guint64
allocated_bytes (const char *path)
{
  GStatBuf st;

  g_assert_cmpint (g_stat (path, &st), ==, 0);
  return (guint64) st.st_blocks * 512;
}

/* A port nobody listens on right now (the kernel picks it). */
static guint16
free_port (void)
{
  g_autoptr (GSocket) sock =
      g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;
  g_autoptr (GError) error = NULL;

  g_assert_nonnull (sock);
  g_socket_bind (sock, addr, TRUE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (sock, &error);
  g_assert_no_error (error);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static void
die_with_parent (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

/* Start a server (argv) and wait until it accepts connections on the unix
 * socket @sock_path or on 127.0.0.1:@port. The test blocks here on purpose:
 * only the copier must never block. */
static Server *
start_server (Fixture *fx, const char *name, const char *const *argv, const char *sock_path,
              guint16 port)
{
  g_autoptr (GSubprocessLauncher) launcher =
      g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_autoptr (GError) error = NULL;
  Server *server = g_new0 (Server, 1);
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;

  server->name = g_strdup (name);
  server->log = g_strdup_printf ("%s/%s.log", fx->tmpdir, name);
  g_subprocess_launcher_set_flags (launcher, G_SUBPROCESS_FLAGS_STDERR_MERGE);
  /* A failed assertion skips the teardown: the servers must not outlive us. */
  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  g_subprocess_launcher_set_stdout_file_path (launcher, server->log);
  server->proc = g_subprocess_launcher_spawnv (launcher, argv, &error);
  g_assert_no_error (error);
  g_ptr_array_add (fx->servers, server);

  for (;;)
    {
      g_autoptr (GSocketClient) client = g_socket_client_new ();
      g_autoptr (GSocketConnectable) addr = NULL;
      g_autoptr (GSocketConnection) conn = NULL;

      if (sock_path != NULL)
        addr = G_SOCKET_CONNECTABLE (g_unix_socket_address_new (sock_path));
      else
        addr = g_network_address_new ("127.0.0.1", port);
      conn = g_socket_client_connect (client, addr, NULL, NULL);
      if (conn != NULL)
        break;
      if (g_subprocess_get_identifier (server->proc) == NULL || g_get_monotonic_time () > deadline)
        {
          g_autofree char *log = NULL;

          g_file_get_contents (server->log, &log, NULL, NULL);
          g_error ("%s did not start: %s", name, log != NULL ? log : "");
        }
      g_usleep (20000);
    }
  return server;
}

/* qemu-nbd -t on a unix socket; returns the NBD URI. @shared > 1 makes
 * qemu-nbd accept that many clients and advertise multi-conn. */
static char *
serve_qemu_nbd (Fixture *fx, const char *name, const char *image, const char *format,
                gboolean read_only, guint shared)
{
  g_autofree char *sock = g_strdup_printf ("%s/%s.sock", fx->tmpdir, name);
  g_autofree char *shared_arg = g_strdup_printf ("--shared=%u", shared);
  const char *argv[] = { "qemu-nbd",
                         "-t",
                         "-f",
                         format,
                         "-x",
                         name,
                         "-k",
                         sock,
                         shared_arg,
                         image,
                         read_only ? "--read-only" : NULL,
                         NULL };

  start_server (fx, name, argv, sock, 0);
  return g_strdup_printf ("nbd+unix:///%s?socket=%s", name, sock);
}

typedef struct
{
  guint n_progress;
  guint64 last_done;
  guint64 last_total;
  gboolean went_backwards;
  MdNbdCopyPhase last_phase;
  GCancellable *cancel_when_started;
  /* main loop responsiveness */
  gint64 last_tick;
  gint64 max_gap;
} Watch;

static void
on_progress (MdNbdCopy *copy, guint64 done, guint64 total, gpointer user_data)
{
  Watch *watch = user_data;
  MdNbdCopyPhase phase = md_nbd_copy_get_phase (copy);

  if (phase == watch->last_phase && done < watch->last_done)
    watch->went_backwards = TRUE;
  watch->last_phase = phase;
  watch->n_progress++;
  watch->last_done = done;
  watch->last_total = total;
  if (watch->cancel_when_started != NULL && done > 0)
    g_cancellable_cancel (watch->cancel_when_started);
}

/* The main loop kept running during the copy: no stall of a second, or
 * of a third of the copy when a loaded machine (sanitizers, other jobs)
 * makes everything slower. A copier that blocked the loop would stall it
 * for the whole copy. */
static void
assert_loop_ran (const Watch *watch, gint64 elapsed_us)
{
  g_assert_cmpint (watch->max_gap, <, MAX (G_USEC_PER_SEC, elapsed_us / 3));
}

static gboolean
on_tick (gpointer user_data)
{
  Watch *watch = user_data;
  gint64 now = g_get_monotonic_time ();

  if (watch->last_tick != 0)
    watch->max_gap = MAX (watch->max_gap, now - watch->last_tick);
  watch->last_tick = now;
  return G_SOURCE_CONTINUE;
}

static void
on_run_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* Run @copy on the default main context, watching progress and how long
 * the loop ever goes without running a 10 ms timer. */
static gboolean
run_copy (MdNbdCopy *copy, GCancellable *cancellable, Watch *watch, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;
  gint64 deadline = g_get_monotonic_time () + WAIT_MS * 1000;
  guint tick = g_timeout_add (10, on_tick, watch);
  gulong handler = g_signal_connect (copy, "progress", G_CALLBACK (on_progress), watch);
  gboolean ok;

  md_nbd_copy_run_async (copy, cancellable, on_run_done, &result);
  while (result == NULL)
    {
      g_main_context_iteration (NULL, TRUE);
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
    }
  g_source_remove (tick);
  g_signal_handler_disconnect (copy, handler);
  ok = md_nbd_copy_run_finish (copy, result, error);
  if (!ok)
    g_test_message ("copy failed as reported to the user: %s", (*error)->message);
  /* Nothing of the copier may fire after it reported. */
  for (int i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  return ok;
}

static void
assert_contains (const char *haystack, const char *needle)
{
  if (strstr (haystack, needle) == NULL)
    g_error ("expected \"%s\" in: %s", needle, haystack);
}

/* ---- tests ---- */

/* A 1 GiB sparse image with 64 MiB of data: only the data travels, the
 * result is identical, multi-conn is used, and verify passes. */
static void
test_sparse_copy (Fixture *fx, gconstpointer data)
{
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;
  g_autoptr (MdNbdCopy) copy = NULL;
  g_autoptr (GError) error = NULL;
  Watch watch = { 0 };
  double seconds;

  if (!have_tools ())
    return;
  make_sparse_image (src, GiB, 64, MiB, 1, NULL);
  qemu_img_create (dst, "raw", GiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 4);
  dst_uri = serve_qemu_nbd (fx, "dst", dst, "raw", FALSE, 4);

  copy = md_nbd_copy_new (src_uri, dst_uri);
  md_nbd_copy_set_verify (copy, TRUE);
  md_nbd_copy_set_labels (copy, "vda", "host-a", "host-b");
  g_assert_true (run_copy (copy, NULL, &watch, &error));
  g_assert_no_error (error);

  g_assert_true (images_identical (src, "raw", dst, "raw"));
  g_assert_cmpuint (md_nbd_copy_get_phase (copy), ==, MD_NBD_COPY_PHASE_DONE);
  g_assert_cmpuint (md_nbd_copy_get_bytes_total (copy), ==, GiB);
  /* qemu keeps the first 4 KiB of a raw file allocated (it probes the
   * alignment), so the allocation is the data plus at most that block. */
  g_assert_cmpuint (md_nbd_copy_get_bytes_allocated (copy), >=, 64 * MiB);
  g_assert_cmpuint (md_nbd_copy_get_bytes_allocated (copy), <=, 64 * MiB + 4096);
  g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), >=, 64 * MiB);
  g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), <=, 64 * MiB + 4096);
  g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy) + md_nbd_copy_get_bytes_zeroed (copy), ==,
                    GiB);
  g_assert_cmpuint (md_nbd_copy_get_bytes_verified (copy), ==, GiB);
  g_assert_cmpuint (md_nbd_copy_get_connections_used (copy), ==, MD_NBD_COPY_DEFAULT_CONNECTIONS);
  /* The destination stays sparse. */
  g_assert_cmpuint (allocated_bytes (dst), <, 80 * MiB);

  /* Progress: reached the end, never backwards, at most ~4 per second
   * (plus one at the end of each phase). */
  g_assert_cmpuint (watch.n_progress, >=, 2);
  g_assert_false (watch.went_backwards);
  g_assert_cmpuint (watch.last_done, ==, GiB);
  g_assert_cmpuint (watch.last_total, ==, GiB);
  seconds = md_nbd_copy_get_elapsed (copy) / 1e6;
  g_assert_cmpfloat (seconds, >, 0);
  g_assert_cmpuint (watch.n_progress, <=, (guint) (seconds * 4) + 4);
  assert_loop_ran (&watch, md_nbd_copy_get_elapsed (copy));
}

/* A qcow2 source served without multi-conn to a raw destination: one
 * connection, same guest-visible contents. */
static void
test_qcow2_to_raw (Fixture *fx, gconstpointer data)
{
  g_autofree char *raw = tmp_path (fx, "data.raw");
  g_autofree char *src = tmp_path (fx, "src.qcow2");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;
  g_autoptr (MdNbdCopy) copy = NULL;
  g_autoptr (GError) error = NULL;
  Watch watch = { 0 };

  if (!have_tools ())
    return;
  make_sparse_image (raw, 256 * MiB, 40, 512 * 1024, 2, NULL);
  {
    const char *argv[] = {
      "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, src, NULL
    };

    run_cmd (argv);
  }
  qemu_img_create (dst, "raw", 256 * MiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "qcow2", TRUE, 1);
  dst_uri = serve_qemu_nbd (fx, "dst", dst, "raw", FALSE, 1);

  copy = md_nbd_copy_new (src_uri, dst_uri);
  md_nbd_copy_set_verify (copy, TRUE);
  g_assert_true (run_copy (copy, NULL, &watch, &error));
  g_assert_no_error (error);
  g_assert_true (images_identical (src, "qcow2", dst, "raw"));
  g_assert_cmpuint (md_nbd_copy_get_connections_used (copy), ==, 1);
  g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), ==, 40 * 512 * 1024);
  g_assert_cmpuint (md_nbd_copy_get_bytes_verified (copy), ==, 256 * MiB);
}

/* A destination that is not fresh: stale data where the source has holes
 * must be zeroed, data overwritten. Also a destination larger than the
 * source, and a small request size with few requests in flight. */
static void
test_dirty_destination (Fixture *fx, gconstpointer data)
{
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;
  g_autoptr (MdNbdCopy) copy = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) offsets = NULL;
  Watch watch = { 0 };

  if (!have_tools ())
    return;
  make_sparse_image (src, 64 * MiB, 8, MiB, 3, &offsets);
  make_sparse_image (dst, 65 * MiB, 30, MiB, 4, NULL);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 2);
  dst_uri = serve_qemu_nbd (fx, "dst", dst, "raw", FALSE, 2);

  copy = md_nbd_copy_new (src_uri, dst_uri);
  md_nbd_copy_set_request_size (copy, 64 * 1024);
  md_nbd_copy_set_requests (copy, 3);
  md_nbd_copy_set_verify (copy, TRUE);
  g_assert_true (run_copy (copy, NULL, &watch, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (md_nbd_copy_get_connections_used (copy), ==, 2);
  g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), >=, 8 * MiB);
  g_assert_cmpuint (md_nbd_copy_get_bytes_verified (copy), ==, 64 * MiB);
  {
    /* qemu-img compare checks the common 64 MiB and that the destination's
     * extra MiB is zero; make that tail zero so only the copy is judged. */
    const char *argv[] = { "truncate", "-s", "64M", dst, NULL };

    run_cmd (argv);
  }
  g_assert_true (images_identical (src, "raw", dst, "raw"));
}

/* verify-only against a destination altered after the copy: the first
 * differing offset is named, in data and in a hole. */
static void
test_verify_mismatch (Fixture *fx, gconstpointer data)
{
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;
  g_autoptr (GArray) offsets = NULL;
  Watch watch = { 0 };
  guint64 data_off, hole_off = 0;

  if (!have_tools ())
    return;
  make_sparse_image (src, 128 * MiB, 16, MiB, 5, &offsets);
  qemu_img_create (dst, "raw", 128 * MiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 4);
  dst_uri = serve_qemu_nbd (fx, "dst", dst, "raw", FALSE, 4);

  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, dst_uri);
    g_autoptr (GError) error = NULL;

    g_assert_true (run_copy (copy, NULL, &watch, &error));
    g_assert_no_error (error);
  }
  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, dst_uri);
    g_autoptr (GError) error = NULL;

    md_nbd_copy_set_verify_only (copy, TRUE);
    g_assert_true (run_copy (copy, NULL, &watch, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), ==, 0);
    g_assert_cmpuint (md_nbd_copy_get_bytes_verified (copy), ==, 128 * MiB);
  }

  /* One byte changed in the middle of the 5th data chunk. */
  data_off = g_array_index (offsets, guint64, 4) + 123457;
  poke (dst, data_off, peek (dst, data_off) ^ 0x5a);
  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, dst_uri);
    g_autoptr (GError) error = NULL;
    g_autofree char *expect = g_strdup_printf ("at offset %" G_GUINT64_FORMAT, data_off);

    md_nbd_copy_set_verify_only (copy, TRUE);
    md_nbd_copy_set_labels (copy, "vda", "host-a", "host-b");
    g_assert_false (run_copy (copy, NULL, &watch, &error));
    g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
    assert_contains (error->message, "disk vda");
    assert_contains (error->message, "verification failed");
    assert_contains (error->message, "host-b");
    assert_contains (error->message, expect);
  }
  poke (dst, data_off, peek (src, data_off));

  /* One byte of data where the source has a hole. */
  for (guint64 off = 8 * MiB; off < 128 * MiB; off += MiB)
    {
      gboolean used = FALSE;

      for (guint i = 0; i < offsets->len; i++)
        used |= g_array_index (offsets, guint64, i) == off;
      if (!used)
        {
          hole_off = off + 777;
          break;
        }
    }
  g_assert_cmpuint (hole_off, !=, 0);
  poke (dst, hole_off, 0x42);
  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, dst_uri);
    g_autoptr (GError) error = NULL;
    g_autofree char *expect = g_strdup_printf ("at offset %" G_GUINT64_FORMAT, hole_off);

    md_nbd_copy_set_verify_only (copy, TRUE);
    g_assert_false (run_copy (copy, NULL, &watch, &error));
    g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
    assert_contains (error->message, "has data where zeros are expected");
    assert_contains (error->message, expect);
  }
}

/* The destination server fails writes to one sector (blkdebug): the copy
 * fails naming disk, direction, offset and host. */
static void
test_write_error (Fixture *fx, gconstpointer data)
{
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *sock = tmp_path (fx, "dst.sock");
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;
  g_autofree char *file_arg = NULL;
  g_autofree char *dbg_arg = NULL;
  g_autofree char *server_arg = NULL;
  g_autofree char *expect = NULL;
  g_autoptr (GArray) offsets = NULL;
  g_autoptr (MdNbdCopy) copy = NULL;
  g_autoptr (GError) error = NULL;
  Watch watch = { 0 };
  guint64 bad;

  if (!have_tools ())
    return;
  make_sparse_image (src, 64 * MiB, 10, MiB, 6, &offsets);
  qemu_img_create (dst, "raw", 64 * MiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 4);

  /* EIO for writes covering a sector 64 KiB into the 7th data chunk; the
   * copier's 1 MiB requests start at the chunk. */
  bad = g_array_index (offsets, guint64, 6);
  file_arg = g_strdup_printf ("driver=file,node-name=file0,filename=%s", dst);
  dbg_arg = g_strdup_printf ("driver=blkdebug,node-name=dbg0,image=file0,"
                             "inject-error.0.event=pwritev,inject-error.0.iotype=write,"
                             "inject-error.0.errno=5,inject-error.0.sector=%" G_GUINT64_FORMAT,
                             (bad + 65536) / 512);
  server_arg = g_strdup_printf ("addr.type=unix,addr.path=%s", sock);
  {
    const char *argv[] = { "qemu-storage-daemon",
                           "--blockdev",
                           file_arg,
                           "--blockdev",
                           dbg_arg,
                           "--nbd-server",
                           server_arg,
                           "--export",
                           "type=nbd,id=exp0,node-name=dbg0,name=dst,writable=on",
                           NULL };

    start_server (fx, "qsd", argv, sock, 0);
  }
  dst_uri = g_strdup_printf ("nbd+unix:///dst?socket=%s", sock);

  copy = md_nbd_copy_new (src_uri, dst_uri);
  md_nbd_copy_set_labels (copy, "vda", "host-a", "host-b");
  g_assert_false (run_copy (copy, NULL, &watch, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
  expect = g_strdup_printf (
      "disk vda: NBD write at offset %" G_GUINT64_FORMAT " to host host-b failed: ", bad);
  assert_contains (error->message, expect);
  assert_contains (error->message, g_strerror (EIO));
  assert_contains (error->message, "the destination image is incomplete and must not be used");
  g_assert_cmpuint (md_nbd_copy_get_phase (copy), !=, MD_NBD_COPY_PHASE_DONE);
}

/* Problems found before anything is written: a smaller destination, a
 * read-only one, a missing server. */
static void
test_bad_destination (Fixture *fx, gconstpointer data)
{
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *small = tmp_path (fx, "small.raw");
  g_autofree char *ro = tmp_path (fx, "ro.raw");
  g_autofree char *src_uri = NULL;
  g_autofree char *small_uri = NULL;
  g_autofree char *ro_uri = NULL;
  g_autofree char *missing_uri = NULL;
  Watch watch = { 0 };

  if (!have_tools ())
    return;
  make_sparse_image (src, 32 * MiB, 4, MiB, 7, NULL);
  qemu_img_create (small, "raw", 16 * MiB);
  qemu_img_create (ro, "raw", 32 * MiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 1);
  small_uri = serve_qemu_nbd (fx, "small", small, "raw", FALSE, 1);
  ro_uri = serve_qemu_nbd (fx, "ro", ro, "raw", TRUE, 1);
  missing_uri = g_strdup_printf ("nbd+unix:///x?socket=%s/missing.sock", fx->tmpdir);

  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, small_uri);
    g_autoptr (GError) error = NULL;

    md_nbd_copy_set_labels (copy, "vdb", "host-a", "host-b");
    g_assert_false (run_copy (copy, NULL, &watch, &error));
    g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
    assert_contains (error->message, "disk vdb: ");
    assert_contains (error->message, "on host host-b is smaller (16777216 bytes)");
    assert_contains (error->message, "on host host-a (33554432 bytes)");
  }
  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, ro_uri);
    g_autoptr (GError) error = NULL;

    md_nbd_copy_set_labels (copy, "vdb", "host-a", "host-b");
    g_assert_false (run_copy (copy, NULL, &watch, &error));
    g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
    assert_contains (error->message, "on host host-b is read-only");
  }
  g_assert_true (allocated_bytes (small) <= 4096 && allocated_bytes (ro) <= 4096);
  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, missing_uri);
    g_autoptr (GError) error = NULL;

    g_assert_false (run_copy (copy, NULL, &watch, &error));
    g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
    assert_contains (error->message, "cannot connect to the destination NBD export nbd+unix:///x");
    assert_contains (error->message, "No such file or directory");
  }
}

/* Cancel mid-copy: Cancelled, the main loop kept running, the servers are
 * still healthy (and are killed by the teardown, which checks they exit). */
static void
test_cancel (Fixture *fx, gconstpointer data)
{
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;
  g_autoptr (MdNbdCopy) copy = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Watch watch = { 0 };

  if (!have_tools ())
    return;
  make_sparse_image (src, 512 * MiB, 384, MiB, 8, NULL);
  qemu_img_create (dst, "raw", 512 * MiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 4);
  dst_uri = serve_qemu_nbd (fx, "dst", dst, "raw", FALSE, 4);

  copy = md_nbd_copy_new (src_uri, dst_uri);
  /* Slow it down so that it is surely mid-way at the first progress. */
  md_nbd_copy_set_connections (copy, 1);
  md_nbd_copy_set_requests (copy, 1);
  md_nbd_copy_set_request_size (copy, 16 * 1024);
  md_nbd_copy_set_labels (copy, "vda", "host-a", "host-b");
  watch.cancel_when_started = cancellable;
  g_assert_false (run_copy (copy, cancellable, &watch, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_CANCELLED);
  assert_contains (error->message, "disk vda: copy cancelled");
  assert_contains (error->message, "the destination image is incomplete and must not be used");
  g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), >, 0);
  g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), <, 384 * MiB);
  assert_loop_ran (&watch, md_nbd_copy_get_elapsed (copy));
  /* Stopping took no drain timeout: cancelled within a second of starting. */
  g_assert_cmpint (md_nbd_copy_get_elapsed (copy), <, 5 * G_USEC_PER_SEC);
  for (guint i = 0; i < fx->servers->len; i++)
    g_assert_nonnull (
        g_subprocess_get_identifier (((Server *) g_ptr_array_index (fx->servers, i))->proc));

  /* The servers still serve: a second, uncancelled copy completes. */
  {
    g_autoptr (MdNbdCopy) again = md_nbd_copy_new (src_uri, dst_uri);
    g_autoptr (GError) error2 = NULL;
    Watch watch2 = { 0 };

    g_assert_true (run_copy (again, NULL, &watch2, &error2));
    g_assert_no_error (error2);
  }
  g_assert_true (images_identical (src, "raw", dst, "raw"));
}

/* The servers go away mid-copy: the copy fails (does not hang), naming the
 * host. */
static void
test_server_dies (Fixture *fx, gconstpointer data)
{
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *src_uri = NULL;
  g_autofree char *dst_uri = NULL;
  g_autoptr (MdNbdCopy) copy = NULL;
  g_autoptr (GError) error = NULL;
  Server *dst_server;
  Watch watch = { 0 };

  if (!have_tools ())
    return;
  make_sparse_image (src, 512 * MiB, 384, MiB, 9, NULL);
  qemu_img_create (dst, "raw", 512 * MiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 1);
  dst_uri = serve_qemu_nbd (fx, "dst", dst, "raw", FALSE, 1);
  dst_server = g_ptr_array_index (fx->servers, 1);

  copy = md_nbd_copy_new (src_uri, dst_uri);
  md_nbd_copy_set_requests (copy, 1);
  md_nbd_copy_set_request_size (copy, 16 * 1024);
  md_nbd_copy_set_labels (copy, "vda", "host-a", "host-b");
  g_signal_connect_swapped (copy, "progress", G_CALLBACK (g_subprocess_force_exit),
                            dst_server->proc);
  g_assert_false (run_copy (copy, NULL, &watch, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
  assert_contains (error->message, "disk vda: ");
  assert_contains (error->message, "host-b");
  assert_contains (error->message, "the destination image is incomplete and must not be used");
}

/* TLS: a qemu-storage-daemon NBD server with tls-creds-x509, the PKI made by
 * data/migrationd-tls-setup; nbds:// works, plaintext fails clearly, a
 * client with another CA is refused. */
static void
test_tls (Fixture *fx, gconstpointer data)
{
  const char *setup = g_getenv ("MD_TLS_SETUP");
  g_autofree char *certtool = g_find_program_in_path ("certtool");
  g_autofree char *src = tmp_path (fx, "src.raw");
  g_autofree char *dst = tmp_path (fx, "dst.raw");
  g_autofree char *pki = tmp_path (fx, "pki");
  g_autofree char *other = tmp_path (fx, "other-pki");
  g_autofree char *host_dir = NULL;
  g_autofree char *other_dir = NULL;
  g_autofree char *tls_arg = NULL;
  g_autofree char *file_arg = NULL;
  g_autofree char *server_arg = NULL;
  g_autofree char *src_uri = NULL;
  g_autofree char *tls_uri = NULL;
  g_autofree char *plain_uri = NULL;
  guint16 port;
  Watch watch = { 0 };

  if (!have_tools ())
    return;
  if (setup == NULL || certtool == NULL)
    {
      g_test_skip ("MD_TLS_SETUP not set or certtool (gnutls-bin) missing");
      return;
    }
  {
    const char *argv[] = { setup, "--out", pki, "localhost=127.0.0.1", NULL };
    const char *argv2[] = { setup, "--out", other, "localhost=127.0.0.1", NULL };

    run_cmd (argv);
    run_cmd (argv2);
  }
  host_dir = g_build_filename (pki, "localhost", NULL);
  other_dir = g_build_filename (other, "localhost", NULL);

  make_sparse_image (src, 64 * MiB, 12, MiB, 10, NULL);
  qemu_img_create (dst, "raw", 64 * MiB);
  src_uri = serve_qemu_nbd (fx, "src", src, "raw", TRUE, 4);

  port = free_port ();
  tls_arg =
      g_strdup_printf ("tls-creds-x509,id=tls0,dir=%s,endpoint=server,verify-peer=on", host_dir);
  file_arg = g_strdup_printf ("driver=file,node-name=file0,filename=%s", dst);
  server_arg =
      g_strdup_printf ("addr.type=inet,addr.host=127.0.0.1,addr.port=%u,tls-creds=tls0", port);
  {
    const char *argv[] = { "qemu-storage-daemon",
                           "--object",
                           tls_arg,
                           "--blockdev",
                           file_arg,
                           "--nbd-server",
                           server_arg,
                           "--export",
                           "type=nbd,id=exp0,node-name=file0,name=dst,writable=on",
                           NULL };

    start_server (fx, "qsd-tls", argv, NULL, port);
  }
  tls_uri = g_strdup_printf ("nbds://127.0.0.1:%u/dst", port);
  plain_uri = g_strdup_printf ("nbd://127.0.0.1:%u/dst", port);

  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, tls_uri);
    g_autoptr (GError) error = NULL;

    md_nbd_copy_set_tls_certificates (copy, host_dir);
    md_nbd_copy_set_verify (copy, TRUE);
    g_assert_true (run_copy (copy, NULL, &watch, &error));
    g_assert_no_error (error);
    g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), >=, 12 * MiB);
  }
  g_assert_true (images_identical (src, "raw", dst, "raw"));
  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, plain_uri);
    g_autoptr (GError) error = NULL;

    md_nbd_copy_set_labels (copy, "vda", "host-a", "host-b");
    g_assert_false (run_copy (copy, NULL, &watch, &error));
    g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
    assert_contains (error->message, "cannot connect to the destination NBD export");
    assert_contains (error->message, "on host host-b");
    assert_contains (error->message, "TLS");
    g_assert_cmpuint (md_nbd_copy_get_bytes_copied (copy), ==, 0);
  }
  {
    g_autoptr (MdNbdCopy) copy = md_nbd_copy_new (src_uri, tls_uri);
    g_autoptr (GError) error = NULL;

    md_nbd_copy_set_tls_certificates (copy, other_dir);
    g_assert_false (run_copy (copy, NULL, &watch, &error));
    g_assert_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED);
    assert_contains (error->message, "certificate");
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

#define ADD(path, func) g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("/nbd-copy/sparse", test_sparse_copy);
  ADD ("/nbd-copy/qcow2-to-raw", test_qcow2_to_raw);
  ADD ("/nbd-copy/dirty-destination", test_dirty_destination);
  ADD ("/nbd-copy/verify-mismatch", test_verify_mismatch);
  ADD ("/nbd-copy/write-error", test_write_error);
  ADD ("/nbd-copy/bad-destination", test_bad_destination);
  ADD ("/nbd-copy/cancel", test_cancel);
  ADD ("/nbd-copy/server-dies", test_server_dies);
  ADD ("/nbd-copy/tls", test_tls);
#undef ADD
  return g_test_run ();
}

/* md-nbd-copy-cli: run migrationd's NBD copier (src/md-nbd-copy.c) from the
 * command line, for bench/nbd-copy.sh and manual checks. Not installed.
 *
 *   md-nbd-copy-cli [OPTIONS] SRC-URI DST-URI
 *
 * On success prints one line of key=value statistics to stdout. */
#include "config.h"

#include "storage/md-nbd-copy.h"

#include <glib-unix.h>
#include <signal.h>
#include <stdlib.h>

typedef struct
{
  GMainLoop *loop;
  GError *error;
  gboolean progress;
} Run;

static void
on_progress (MdNbdCopy *copy, guint64 done, guint64 total, gpointer user_data)
{
  g_printerr ("\r%s %5.1f%%", md_nbd_copy_phase_to_string (md_nbd_copy_get_phase (copy)),
              total > 0 ? 100.0 * done / total : 100.0);
}

static void
on_done (GObject *object, GAsyncResult *result, gpointer user_data)
{
  Run *run = user_data;

  md_nbd_copy_run_finish (MD_NBD_COPY (object), result, &run->error);
  g_main_loop_quit (run->loop);
}

static gboolean
on_signal (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
  int connections = MD_NBD_COPY_DEFAULT_CONNECTIONS;
  int requests = MD_NBD_COPY_DEFAULT_REQUESTS;
  int request_size = MD_NBD_COPY_DEFAULT_REQUEST_SIZE;
  gboolean verify = FALSE, verify_only = FALSE, dst_zero = FALSE, progress = FALSE;
  g_autofree char *tls_dir = NULL;
  g_autofree char *disk = NULL;
  GOptionEntry entries[] = {
    { "connections", 'C', 0, G_OPTION_ARG_INT, &connections, "Connections per side (if multi-conn)",
      "N" },
    { "requests", 'R', 0, G_OPTION_ARG_INT, &requests, "Requests in flight per connection", "N" },
    { "request-size", 'S', 0, G_OPTION_ARG_INT, &request_size, "Largest request in bytes",
      "BYTES" },
    { "verify", 0, 0, G_OPTION_ARG_NONE, &verify, "Compare the images after copying", NULL },
    { "verify-only", 0, 0, G_OPTION_ARG_NONE, &verify_only, "Only compare the images", NULL },
    { "destination-is-zero", 0, 0, G_OPTION_ARG_NONE, &dst_zero,
      "The destination reads as zeros (fresh image)", NULL },
    { "tls-certificates", 0, 0, G_OPTION_ARG_FILENAME, &tls_dir,
      "Directory with ca-cert.pem, client-cert.pem, client-key.pem", "DIR" },
    { "disk", 0, 0, G_OPTION_ARG_STRING, &disk, "Disk name for messages", "NAME" },
    { "progress", 'p', 0, G_OPTION_ARG_NONE, &progress, "Show progress on stderr", NULL },
    { NULL },
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("SRC-URI DST-URI");
  g_autoptr (GError) error = NULL;
  g_autoptr (MdNbdCopy) copy = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Run run = { 0 };

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("md-nbd-copy-cli: %s\n", error->message);
      return 2;
    }
  if (argc != 3)
    {
      g_printerr ("md-nbd-copy-cli: need a source and a destination URI (see --help)\n");
      return 2;
    }

  copy = md_nbd_copy_new (argv[1], argv[2]);
  md_nbd_copy_set_connections (copy, connections);
  md_nbd_copy_set_requests (copy, requests);
  md_nbd_copy_set_request_size (copy, request_size);
  md_nbd_copy_set_verify (copy, verify);
  md_nbd_copy_set_verify_only (copy, verify_only);
  md_nbd_copy_set_destination_is_zero (copy, dst_zero);
  md_nbd_copy_set_tls_certificates (copy, tls_dir);
  md_nbd_copy_set_labels (copy, disk, NULL, NULL);
  if (progress)
    g_signal_connect (copy, "progress", G_CALLBACK (on_progress), &run);

  run.loop = g_main_loop_new (NULL, FALSE);
  g_unix_signal_add (SIGINT, on_signal, cancellable);
  g_unix_signal_add (SIGTERM, on_signal, cancellable);
  md_nbd_copy_run_async (copy, cancellable, on_done, &run);
  g_main_loop_run (run.loop);
  g_main_loop_unref (run.loop);
  if (progress)
    g_printerr ("\n");

  if (run.error != NULL)
    {
      g_printerr ("md-nbd-copy-cli: %s\n", run.error->message);
      g_error_free (run.error);
      return 1;
    }
  g_print ("size=%" G_GUINT64_FORMAT " allocated=%" G_GUINT64_FORMAT " copied=%" G_GUINT64_FORMAT
           " zeroed=%" G_GUINT64_FORMAT " verified=%" G_GUINT64_FORMAT
           " connections=%u seconds=%.3f\n",
           md_nbd_copy_get_bytes_total (copy), md_nbd_copy_get_bytes_allocated (copy),
           md_nbd_copy_get_bytes_copied (copy), md_nbd_copy_get_bytes_zeroed (copy),
           md_nbd_copy_get_bytes_verified (copy), md_nbd_copy_get_connections_used (copy),
           md_nbd_copy_get_elapsed (copy) / 1e6);
  return EXIT_SUCCESS;
}

/* migrationd: the relay of a tunnel data stream (see md-relay.h). */
#include "config.h"

#include "md-relay.h"

#include "common/md-error.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Large enough that a TLS write carries many records per call and a
 * QEMU write of a multifd packet (512 KiB) moves in one piece. */
#define RELAY_BUFFER_SIZE (1024 * 1024)

enum
{
  FIRST_END_NONE,
  FIRST_END_LOCAL,
  FIRST_END_PEER,
};

struct _MdRelay
{
  gatomicrefcount ref;
  GIOStream *tls;
  GSocket *tcp; /* under @tls: shut down to wake a blocked thread */
  int local_fd;
  char *label;
  MdRelayDone done;
  gpointer user_data;
  GMainContext *context;

  gint stopped;      /* atomic: md_relay_stop() came */
  gint running;      /* atomic: directions still copying */
  gint peer_ended;   /* atomic: the peer's side ended first */
  gint local_ended;  /* atomic */
  gint first_end;    /* atomic: which side's orderly end came first (FIRST_END_*) */
  GMutex lock;       /* guards @error */
  GError *error;     /* the first failure */
  guint64 bytes_out; /* __atomic builtins: the main loop reads them */
  guint64 bytes_in;
};

static MdRelay *
relay_ref (MdRelay *relay)
{
  g_atomic_ref_count_inc (&relay->ref);
  return relay;
}

static void
relay_unref (MdRelay *relay)
{
  if (!g_atomic_ref_count_dec (&relay->ref))
    return;
  if (relay->local_fd >= 0)
    close (relay->local_fd);
  g_clear_object (&relay->tls);
  g_clear_object (&relay->tcp);
  g_main_context_unref (relay->context);
  g_clear_error (&relay->error);
  g_mutex_clear (&relay->lock);
  g_free (relay->label);
  g_free (relay);
}

/* Both sockets down: whichever thread is blocked wakes with an error or
 * an end of stream. */
static void
relay_shutdown (MdRelay *relay)
{
  shutdown (relay->local_fd, SHUT_RDWR);
  if (relay->tcp != NULL)
    g_socket_shutdown (relay->tcp, TRUE, TRUE, NULL);
}

static void
relay_fail (MdRelay *relay, const char *direction, GError *error)
{
  g_mutex_lock (&relay->lock);
  if (relay->error == NULL && !g_atomic_int_get (&relay->stopped))
    relay->error = g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED, "%s: %s: %s", relay->label,
                                direction, error->message);
  g_mutex_unlock (&relay->lock);
  g_error_free (error);
  relay_shutdown (relay);
}

static gboolean
relay_report (gpointer user_data)
{
  MdRelay *relay = user_data;
  MdRelayEnd how;

  if (g_atomic_int_get (&relay->stopped))
    return G_SOURCE_REMOVE;
  if (relay->error != NULL)
    how = MD_RELAY_FAILED;
  else if (g_atomic_int_get (&relay->peer_ended) && !g_atomic_int_get (&relay->local_ended))
    how = MD_RELAY_PEER_ENDED;
  else
    how = MD_RELAY_CLEAN;
  relay->done (relay, how, relay->error, relay->user_data);
  return G_SOURCE_REMOVE;
}

/* The last direction to end closes the streams and reports. */
static void
direction_over (MdRelay *relay)
{
  if (!g_atomic_int_dec_and_test (&relay->running))
    return;
  /* Both directions are over: closing neither reads nor waits for data. */
  g_io_stream_close (relay->tls, NULL, NULL);
  g_main_context_invoke_full (relay->context, G_PRIORITY_DEFAULT, relay_report, relay_ref (relay),
                              (GDestroyNotify) relay_unref);
}

static gboolean
write_local (int fd, const guint8 *buf, gsize len, GError **error)
{
  while (len > 0)
    {
      ssize_t n = send (fd, buf, len, MSG_NOSIGNAL);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       "writing to QEMU's socket: %s", g_strerror (saved));
          return FALSE;
        }
      buf += n;
      len -= (gsize) n;
    }
  return TRUE;
}

/* QEMU -> peer: read the local socket, write TLS records. */
static gpointer
relay_to_peer (gpointer data)
{
  MdRelay *relay = data;
  GOutputStream *out = g_io_stream_get_output_stream (relay->tls);
  g_autofree guint8 *buf = g_malloc (RELAY_BUFFER_SIZE);
  GError *error = NULL;

  for (;;)
    {
      ssize_t n = read (relay->local_fd, buf, RELAY_BUFFER_SIZE);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;
          error = g_error_new (G_IO_ERROR, g_io_error_from_errno (saved),
                               "reading QEMU's socket: %s", g_strerror (saved));
          relay_fail (relay, "towards the peer", error);
          break;
        }
      if (n == 0)
        {
          g_atomic_int_set (&relay->local_ended, 1);
          g_atomic_int_compare_and_exchange (&relay->first_end, FIRST_END_NONE, FIRST_END_LOCAL);
          /* End this direction only. Not with a TLS close_notify: GLib's
           * TLS connection makes a close wait for the read blocked in
           * the other thread, which waits for the peer to close: both
           * ends would wait for ever. A TCP half-close instead; the
           * receiving end takes it as an orderly end of stream
           * (require-close-notify off), and QEMU's stream format says
           * itself whether it arrived whole. */
          if (relay->tcp != NULL && !g_socket_shutdown (relay->tcp, FALSE, TRUE, &error))
            relay_fail (relay, "closing towards the peer", error);
          break;
        }
      if (!g_output_stream_write_all (out, buf, (gsize) n, NULL, NULL, &error))
        {
          relay_fail (relay, "sending to the peer", error);
          break;
        }
      __atomic_add_fetch (&relay->bytes_out, (guint64) n, __ATOMIC_RELAXED);
    }
  direction_over (relay);
  relay_unref (relay);
  return NULL;
}

/* Peer -> QEMU: decrypt TLS records, write the local socket. */
static gpointer
relay_to_local (gpointer data)
{
  MdRelay *relay = data;
  GInputStream *in = g_io_stream_get_input_stream (relay->tls);
  g_autofree guint8 *buf = g_malloc (RELAY_BUFFER_SIZE);
  GError *error = NULL;

  for (;;)
    {
      gssize n = g_input_stream_read (in, buf, RELAY_BUFFER_SIZE, NULL, &error);

      if (n < 0)
        {
          relay_fail (relay, "receiving from the peer", error);
          break;
        }
      if (n == 0)
        {
          g_atomic_int_set (&relay->peer_ended, 1);
          g_atomic_int_compare_and_exchange (&relay->first_end, FIRST_END_NONE, FIRST_END_PEER);
          shutdown (relay->local_fd, SHUT_WR);
          break;
        }
      if (!write_local (relay->local_fd, buf, (gsize) n, &error))
        {
          relay_fail (relay, "towards QEMU", error);
          break;
        }
      __atomic_add_fetch (&relay->bytes_in, (guint64) n, __ATOMIC_RELAXED);
    }
  direction_over (relay);
  relay_unref (relay);
  return NULL;
}

static GSocket *
tcp_socket_of (GIOStream *tls)
{
  g_autoptr (GIOStream) base = NULL;
  GSocketConnection *conn;

  g_object_get (tls, "base-io-stream", &base, NULL);
  if (G_IS_SOCKET_CONNECTION (base))
    conn = G_SOCKET_CONNECTION (base);
  else
    conn = base != NULL ? g_object_get_data (G_OBJECT (base), "md-socket") : NULL;
  return conn != NULL ? g_object_ref (g_socket_connection_get_socket (conn)) : NULL;
}

MdRelay *
md_relay_start (GIOStream *tls, int local_fd, const char *label, MdRelayDone done,
                gpointer user_data)
{
  MdRelay *relay = g_new0 (MdRelay, 1);
  g_autofree char *name_out = NULL;
  g_autofree char *name_in = NULL;

  g_atomic_ref_count_init (&relay->ref);
  g_mutex_init (&relay->lock);
  relay->tls = g_object_ref (tls);
  relay->tcp = tcp_socket_of (tls);
  relay->local_fd = local_fd;
  relay->label = g_strdup (label);
  relay->done = done;
  relay->user_data = user_data;
  relay->context = g_main_context_ref_thread_default ();
  relay->running = 2;
  g_tls_connection_set_require_close_notify (G_TLS_CONNECTION (tls), FALSE);
  /* Blocking I/O from here on, each direction in its thread. */
  if (relay->tcp != NULL)
    {
      g_socket_set_blocking (relay->tcp, TRUE);
      /* Every TLS record goes out at once: with Nagle a record shorter
       * than a segment waits for the previous one's ACK (and the peer's
       * delayed ACK), which stalls the stream. */
      g_socket_set_option (relay->tcp, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
    }
  name_out = g_strdup_printf ("md-relay-out");
  name_in = g_strdup_printf ("md-relay-in");
  g_thread_unref (g_thread_new (name_out, relay_to_peer, relay_ref (relay)));
  g_thread_unref (g_thread_new (name_in, relay_to_local, relay_ref (relay)));
  return relay;
}

void
md_relay_stop (MdRelay *relay)
{
  if (relay == NULL)
    return;
  g_atomic_int_set (&relay->stopped, 1);
  relay_shutdown (relay);
  relay_unref (relay);
}

const char *
md_relay_get_label (MdRelay *relay)
{
  return relay->label;
}

guint64
md_relay_get_bytes_out (MdRelay *relay)
{
  return __atomic_load_n (&relay->bytes_out, __ATOMIC_RELAXED);
}

guint64
md_relay_get_bytes_in (MdRelay *relay)
{
  return __atomic_load_n (&relay->bytes_in, __ATOMIC_RELAXED);
}

gboolean
md_relay_peer_ended_first (MdRelay *relay)
{
  return g_atomic_int_get (&relay->first_end) == FIRST_END_PEER;
}

/* migrationd: keepalives and a deadline on a peer connection (see
 * md-peer-liveness.h). */
#include "config.h"

#include "md-peer-liveness.h"

/* What the GDBus filter (worker thread) and the main-context side share:
 * the time anything last arrived. */
typedef struct
{
  gint64 last_rx; /* monotonic µs, atomic */
} RxClock;

struct _MdPeerLiveness
{
  GDBusConnection *dbus;
  char *label;
  guint timeout;  /* s */
  guint interval; /* ms between pings */
  RxClock *clock; /* rc box, one reference held by the filter */
  guint filter_id;
  guint timer_id;
  gboolean ping_pending;
  gboolean stopped;
  GCancellable *cancellable; /* of the ping in flight */
  MdPeerLivenessDeadFunc on_dead;
  gpointer user_data;
};

static GDBusMessage *
rx_filter (GDBusConnection *connection, GDBusMessage *message, gboolean incoming,
           gpointer user_data)
{
  RxClock *clock = user_data;

  /* GLib has no 64-bit atomics; GCC and clang have these builtins. */
  if (incoming)
    __atomic_store_n (&clock->last_rx, g_get_monotonic_time (), __ATOMIC_RELAXED);
  return message;
}

static void
rx_clock_release (gpointer data)
{
  g_atomic_rc_box_release (data);
}

static void
liveness_clear (gpointer data)
{
  MdPeerLiveness *self = data;

  g_clear_object (&self->cancellable);
  g_clear_object (&self->dbus);
  g_free (self->label);
}

static void
liveness_release (MdPeerLiveness *self)
{
  g_rc_box_release_full (self, liveness_clear);
}

static void
on_ping_reply (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
      g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);
  MdPeerLiveness *self = user_data; /* the ping's reference */

  self->ping_pending = FALSE;
  /* A failed ping is no verdict: the clock decides (an error reply is a
   * sign of life too, and the filter saw it). */
  if (error != NULL && !self->stopped)
    g_debug ("peer %s: keepalive: %s", self->label, error->message);
  liveness_release (self);
}

/* Shuts the socket under the TLS stream down first: closing a TLS stream
 * writes close_notify, which must not wait on a dead link. */
static void
shutdown_socket (GDBusConnection *dbus)
{
  GIOStream *stream = g_dbus_connection_get_stream (dbus);
  g_autoptr (GIOStream) base = NULL;

  if (G_IS_TLS_CONNECTION (stream))
    g_object_get (stream, "base-io-stream", &base, NULL);
  else if (stream != NULL)
    base = g_object_ref (stream);
  if (G_IS_SOCKET_CONNECTION (base))
    g_socket_shutdown (g_socket_connection_get_socket (G_SOCKET_CONNECTION (base)), TRUE, TRUE,
                       NULL);
}

static gboolean
on_tick (gpointer user_data)
{
  MdPeerLiveness *self = user_data;
  gint64 last = __atomic_load_n (&self->clock->last_rx, __ATOMIC_RELAXED);
  gint64 silent = g_get_monotonic_time () - last;

  if (g_dbus_connection_is_closed (self->dbus))
    {
      self->timer_id = 0;
      return G_SOURCE_REMOVE;
    }
  if (silent >= (gint64) self->timeout * G_USEC_PER_SEC)
    {
      g_autofree char *reason = g_strdup_printf (
          "no sign of life from the migrationd of %s for %u s (peer-timeout): the network "
          "between the hosts is down or that daemon is stuck",
          self->label, self->timeout);

      g_message ("peer %s: closing the connection: %s", self->label, reason);
      self->timer_id = 0;
      shutdown_socket (self->dbus);
      g_dbus_connection_close (self->dbus, NULL, NULL, NULL);
      if (self->on_dead != NULL)
        self->on_dead (reason, self->user_data);
      return G_SOURCE_REMOVE;
    }
  if (!self->ping_pending)
    {
      self->ping_pending = TRUE;
      g_dbus_connection_call (self->dbus, NULL, "/", "org.freedesktop.DBus.Peer", "Ping", NULL,
                              NULL, G_DBUS_CALL_FLAGS_NONE, (int) self->timeout * 1000,
                              self->cancellable, on_ping_reply, g_rc_box_acquire (self));
    }
  return G_SOURCE_CONTINUE;
}

MdPeerLiveness *
md_peer_liveness_start (GDBusConnection *dbus, const char *label, guint timeout,
                        MdPeerLivenessDeadFunc on_dead, gpointer user_data)
{
  MdPeerLiveness *self = g_rc_box_new0 (MdPeerLiveness);

  self->dbus = g_object_ref (dbus);
  self->label = g_strdup (label);
  self->timeout = timeout > 0 ? timeout : MD_PEER_DEFAULT_LIVENESS_TIMEOUT;
  /* Five chances per timeout, so one lost ping decides nothing. */
  self->interval = MAX (self->timeout * 1000 / 5, 200);
  self->clock = g_atomic_rc_box_new0 (RxClock);
  self->clock->last_rx = g_get_monotonic_time ();
  self->cancellable = g_cancellable_new ();
  self->on_dead = on_dead;
  self->user_data = user_data;
  self->filter_id = g_dbus_connection_add_filter (
      dbus, rx_filter, g_atomic_rc_box_acquire (self->clock), rx_clock_release);
  self->timer_id = g_timeout_add (self->interval, on_tick, self);
  return self;
}

void
md_peer_liveness_stop (MdPeerLiveness *self)
{
  if (self == NULL)
    return;
  self->stopped = TRUE;
  self->on_dead = NULL;
  g_clear_handle_id (&self->timer_id, g_source_remove);
  g_cancellable_cancel (self->cancellable);
  g_dbus_connection_remove_filter (self->dbus, self->filter_id);
  g_atomic_rc_box_release (self->clock);
  self->clock = NULL;
  liveness_release (self);
}

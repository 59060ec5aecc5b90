/* migrationd: transport=tunnel (see md-tunnel.h). */
#include "config.h"

#include "md-tunnel.h"

#include "common/md-error.h"
#include "common/md-fault.h"
#include "peer/md-relay.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <gio/gunixsocketaddress.h>
#include <glib-unix.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONNECT_RETRY_MS 10

/* ---- shared ---- */

static char *
make_private_dir (const char *parent, const char *tag, GError **error)
{
  g_autofree char *dir = g_strdup_printf ("%s/tunnel-%s", parent, tag);

  if (g_mkdir_with_parents (parent, 0700) != 0 || g_mkdir (dir, 0700) != 0)
    {
      int saved = errno;
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "cannot create the tunnel's socket directory %s: %s; check the runtime "
                   "directory",
                   dir, g_strerror (saved));
      return NULL;
    }
  return g_steal_pointer (&dir);
}

/* A listening unix socket at @path, mode 0600 (its directory is 0700). */
static GSocket *
listen_unix (const char *path, guint backlog, GError **error)
{
  g_autoptr (GSocket) socket = NULL;
  g_autoptr (GSocketAddress) address = g_unix_socket_address_new (path);
  g_autoptr (GError) local = NULL;

  socket =
      g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, &local);
  if (socket != NULL)
    g_socket_set_listen_backlog (socket, (gint) backlog);
  if (socket == NULL || !g_socket_bind (socket, address, FALSE, &local) || g_chmod (path, 0600) != 0
      || !g_socket_listen (socket, &local))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot listen on the tunnel socket %s: %s",
                   path, local != NULL ? local->message : g_strerror (errno));
      return NULL;
    }
  return g_steal_pointer (&socket);
}

static void
remove_dir (const char *dir)
{
  g_autoptr (GDir) d = dir != NULL ? g_dir_open (dir, 0, NULL) : NULL;
  const char *name;

  if (d == NULL)
    return;
  while ((name = g_dir_read_name (d)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);
      g_unlink (path);
    }
  if (g_rmdir (dir) != 0)
    g_warning ("cannot remove the tunnel's socket directory %s: %s", dir, g_strerror (errno));
}

void
md_tunnel_remove_stale (const char *dir_parent)
{
  g_autoptr (GDir) d = g_dir_open (dir_parent, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name (d)) != NULL)
    if (g_str_has_prefix (name, "tunnel-"))
      {
        g_autofree char *dir = g_build_filename (dir_parent, name, NULL);
        g_message ("removing %s, left by an earlier daemon", dir);
        remove_dir (dir);
      }
}

static void
stop_relays (GPtrArray *relays)
{
  for (guint i = 0; i < relays->len; i++)
    md_relay_stop (g_ptr_array_index (relays, i));
  g_ptr_array_set_size (relays, 0);
}

/* ---- destination ---- */

typedef struct
{
  MdTunnelIn *tunnel;
  char *token;
  char *label;
  gboolean nbd;
  char *target; /* nbd: the disk */
  guint index;  /* migration streams: the order QEMU opened them in */
} InSlot;

typedef struct
{
  InSlot *slot;
  GIOStream *stream;
} Arrived;

struct _MdTunnelIn
{
  MdDataStreamGate *gate;
  char *dir;
  char *dn;
  char *host_name;
  char *label;
  MdTunnelBroken broken;
  gpointer user_data;
  char *migration_path;
  GSocket *migration_listen;
  char *nbd_path;
  GSocket *nbd_listen;
  GPtrArray *slots;   /* InSlot* */
  GPtrArray *arrived; /* migration streams by index (NULL: not yet), GIOStream* */
  guint next_index;   /* the next migration stream QEMU must get */
  GQueue ready;       /* Arrived*: waiting for QEMU to take the connection */
  guint retry_id;
  GPtrArray *relays; /* MdRelay* */
  guint live;        /* relays still copying */
  gboolean released; /* the migration is over: free when the last relay ends */
  gboolean has_failed;
};

static void
in_slot_free (gpointer data)
{
  InSlot *slot = data;

  g_free (slot->token);
  g_free (slot->label);
  g_free (slot->target);
  g_free (slot);
}

static void
in_fail (MdTunnelIn *tunnel, GError *error)
{
  if (!tunnel->has_failed)
    {
      tunnel->has_failed = TRUE;
      g_message ("%s", error->message);
      tunnel->broken (error, tunnel->user_data);
    }
  g_error_free (error);
}

static void
on_in_relay_done (MdRelay *relay, MdRelayEnd how, const GError *error, gpointer user_data)
{
  MdTunnelIn *tunnel = user_data;

  tunnel->live--;
  if (tunnel->released)
    {
      if (how == MD_RELAY_FAILED)
        g_message ("host %s: after the migration: %s", tunnel->host_name, error->message);
      if (tunnel->live == 0)
        md_tunnel_in_free (tunnel);
      return;
    }
  /* Orderly ends are the migration's business (QEMU tells); an error
   * means the stream broke. */
  if (how == MD_RELAY_FAILED)
    in_fail (tunnel, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED, "host %s: %s", tunnel->host_name,
                                  error->message));
}

/* A connection to QEMU's listening socket: -1 with EAGAIN when its
 * backlog is full (try again soon), else the connected fd, blocking. */
static int
connect_qemu (const char *path, GError **error)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

  g_strlcpy (addr.sun_path, path, sizeof addr.sun_path);
  if (fd >= 0 && connect (fd, (struct sockaddr *) &addr, sizeof addr) == 0
      && g_unix_set_fd_nonblocking (fd, FALSE, NULL))
    return fd;
  {
    int saved = errno;
    if (fd >= 0)
      close (fd);
    errno = saved;
    if (saved != EAGAIN)
      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                   "cannot reach QEMU's socket %s: %s (did QEMU exit?)", path, g_strerror (saved));
    return -1;
  }
}

static gboolean in_drain_ready (gpointer user_data);

static void
in_schedule_retry (MdTunnelIn *tunnel)
{
  if (tunnel->retry_id == 0)
    tunnel->retry_id = g_timeout_add (CONNECT_RETRY_MS, in_drain_ready, tunnel);
}

/* Joins the ready streams to QEMU, oldest first; QEMU's backlog may be
 * full for a moment (it accepts as it goes). */
static gboolean
in_drain_ready (gpointer user_data)
{
  MdTunnelIn *tunnel = user_data;
  Arrived *a;

  tunnel->retry_id = 0;
  while ((a = g_queue_peek_head (&tunnel->ready)) != NULL)
    {
      g_autoptr (GError) error = NULL;
      const char *path = a->slot->nbd ? tunnel->nbd_path : tunnel->migration_path;
      int fd = connect_qemu (path, &error);

      if (fd < 0 && error == NULL)
        {
          in_schedule_retry (tunnel);
          break;
        }
      g_queue_pop_head (&tunnel->ready);
      if (fd < 0)
        {
          g_prefix_error (&error, "host %s: %s: ", tunnel->host_name, a->slot->label);
          in_fail (tunnel, g_steal_pointer (&error));
        }
      else
        {
          tunnel->live++;
          g_ptr_array_add (tunnel->relays, md_relay_start (a->stream, fd, a->slot->label,
                                                           on_in_relay_done, tunnel));
        }
      g_object_unref (a->stream);
      g_free (a);
    }
  return G_SOURCE_REMOVE;
}

static void
in_ready (MdTunnelIn *tunnel, InSlot *slot, GIOStream *stream)
{
  Arrived *a = g_new0 (Arrived, 1);

  a->slot = slot;
  a->stream = g_object_ref (stream);
  g_queue_push_tail (&tunnel->ready, a);
}

static void
on_in_stream (GIOStream *stream, const char *token, gpointer user_data)
{
  InSlot *slot = user_data;
  MdTunnelIn *tunnel = slot->tunnel;

  if (slot->nbd)
    in_ready (tunnel, slot, stream);
  else
    {
      g_ptr_array_index (tunnel->arrived, slot->index) = g_object_ref (stream);
      /* QEMU 7.2 takes the first connection as the main channel: hand
       * them over in the source QEMU's order. */
      while (tunnel->next_index < tunnel->arrived->len
             && g_ptr_array_index (tunnel->arrived, tunnel->next_index) != NULL)
        {
          InSlot *next = NULL;
          GIOStream *s = g_ptr_array_index (tunnel->arrived, tunnel->next_index);

          for (guint i = 0; i < tunnel->slots->len; i++)
            {
              InSlot *candidate = g_ptr_array_index (tunnel->slots, i);
              if (!candidate->nbd && candidate->index == tunnel->next_index)
                next = candidate;
            }
          in_ready (tunnel, next, s);
          g_clear_object (&g_ptr_array_index (tunnel->arrived, tunnel->next_index));
          tunnel->next_index++;
        }
    }
  in_drain_ready (tunnel);
}

MdTunnelIn *
md_tunnel_in_new (MdDataStreamGate *gate, const char *dir_parent, const char *tag, const char *dn,
                  const char *host_name, const char *label, MdTunnelBroken broken,
                  gpointer user_data, GError **error)
{
  g_autofree char *dir = make_private_dir (dir_parent, tag, error);
  MdTunnelIn *tunnel;

  if (dir == NULL)
    return NULL;
  tunnel = g_new0 (MdTunnelIn, 1);
  tunnel->gate = gate;
  tunnel->dir = g_steal_pointer (&dir);
  tunnel->dn = g_strdup (dn);
  tunnel->host_name = g_strdup (host_name);
  tunnel->label = g_strdup (label);
  tunnel->broken = broken;
  tunnel->user_data = user_data;
  tunnel->slots = g_ptr_array_new_with_free_func (in_slot_free);
  tunnel->arrived = g_ptr_array_new ();
  tunnel->relays = g_ptr_array_new ();
  g_queue_init (&tunnel->ready);
  return tunnel;
}

static InSlot *
in_add_slot (MdTunnelIn *tunnel, gboolean nbd, guint index, const char *what)
{
  InSlot *slot = g_new0 (InSlot, 1);

  slot->tunnel = tunnel;
  slot->nbd = nbd;
  slot->index = index;
  slot->label = g_strdup_printf ("data stream '%s' of %s", what, tunnel->label);
  slot->token = md_data_stream_gate_add (tunnel->gate, tunnel->dn, slot->label, on_in_stream, slot);
  g_ptr_array_add (tunnel->slots, slot);
  return slot;
}

GSocket *
md_tunnel_in_listen_migration (MdTunnelIn *tunnel, guint multifd, GError **error)
{
  tunnel->migration_path = g_build_filename (tunnel->dir, "migration.sock", NULL);
  tunnel->migration_listen = listen_unix (tunnel->migration_path, multifd + 1, error);
  if (tunnel->migration_listen == NULL)
    return NULL;
  for (guint i = 0; i <= multifd; i++)
    {
      g_autofree char *what =
          i == 0 ? g_strdup ("migration") : g_strdup_printf ("multifd-%u", i - 1);
      in_add_slot (tunnel, FALSE, i, what);
      g_ptr_array_add (tunnel->arrived, NULL);
    }
  return tunnel->migration_listen;
}

GSocket *
md_tunnel_in_listen_nbd (MdTunnelIn *tunnel, const char *const *targets, GError **error)
{
  tunnel->nbd_path = g_build_filename (tunnel->dir, "nbd.sock", NULL);
  tunnel->nbd_listen = listen_unix (tunnel->nbd_path, 16, error);
  if (tunnel->nbd_listen == NULL)
    return NULL;
  for (guint i = 0; targets[i] != NULL; i++)
    {
      g_autofree char *what = g_strdup_printf ("nbd-%s", targets[i]);
      InSlot *slot = in_add_slot (tunnel, TRUE, i, what);
      slot->target = g_strdup (targets[i]);
    }
  return tunnel->nbd_listen;
}

void
md_tunnel_in_describe (MdTunnelIn *tunnel, GVariantBuilder *builder)
{
  g_autoptr (GPtrArray) migration = g_ptr_array_new ();
  GVariantBuilder nbd;

  g_variant_builder_init (&nbd, G_VARIANT_TYPE ("a{ss}"));
  for (guint i = 0; i < tunnel->slots->len; i++)
    {
      InSlot *slot = g_ptr_array_index (tunnel->slots, i);
      if (slot->nbd)
        g_variant_builder_add (&nbd, "{ss}", slot->target, slot->token);
      else
        g_ptr_array_add (migration, slot->token);
    }
  g_ptr_array_add (migration, NULL);
  if (migration->len > 1)
    g_variant_builder_add (builder, "{sv}", "tunnel-migration-tokens",
                           g_variant_new_strv ((const char *const *) migration->pdata, -1));
  g_variant_builder_add (builder, "{sv}", "tunnel-nbd-tokens", g_variant_builder_end (&nbd));
}

static void
in_close_doors (MdTunnelIn *tunnel)
{
  for (guint i = 0; i < tunnel->slots->len; i++)
    md_data_stream_gate_revoke (tunnel->gate,
                                ((InSlot *) g_ptr_array_index (tunnel->slots, i))->token);
  g_clear_handle_id (&tunnel->retry_id, g_source_remove);
  g_clear_object (&tunnel->migration_listen);
  g_clear_object (&tunnel->nbd_listen);
  remove_dir (tunnel->dir);
}

void
md_tunnel_in_release (MdTunnelIn *tunnel)
{
  if (tunnel == NULL)
    return;
  in_close_doors (tunnel);
  tunnel->released = TRUE;
  if (tunnel->live == 0)
    md_tunnel_in_free (tunnel);
}

guint
md_tunnel_in_get_streams (MdTunnelIn *tunnel)
{
  return tunnel->relays->len;
}

void
md_tunnel_in_free (MdTunnelIn *tunnel)
{
  Arrived *a;

  if (tunnel == NULL)
    return;
  in_close_doors (tunnel);
  stop_relays (tunnel->relays);
  g_ptr_array_unref (tunnel->relays);
  while ((a = g_queue_pop_head (&tunnel->ready)) != NULL)
    {
      g_io_stream_close (a->stream, NULL, NULL);
      g_object_unref (a->stream);
      g_free (a);
    }
  for (guint i = 0; i < tunnel->arrived->len; i++)
    if (g_ptr_array_index (tunnel->arrived, i) != NULL)
      {
        g_io_stream_close (g_ptr_array_index (tunnel->arrived, i), NULL, NULL);
        g_object_unref (g_ptr_array_index (tunnel->arrived, i));
      }
  g_ptr_array_unref (tunnel->arrived);
  g_ptr_array_unref (tunnel->slots);
  g_free (tunnel->dir);
  g_free (tunnel->migration_path);
  g_free (tunnel->nbd_path);
  g_free (tunnel->dn);
  g_free (tunnel->host_name);
  g_free (tunnel->label);
  g_free (tunnel);
}

/* ---- source ---- */

typedef struct _OutPort OutPort;

/* One connection of QEMU's, on its way to a data stream. */
typedef struct
{
  OutPort *port;
  int fd;
  char *label;
  GCancellable *cancellable;
} OutConn;

struct _OutPort
{
  MdTunnelOut *tunnel;
  char *path;      /* where the daemon bound it */
  char *qemu_path; /* the same socket as QEMU sees it */
  char *what;      /* "migration" or "nbd-vda" */
  GSocket *listen;
  GSource *source;
  GStrv tokens; /* one per connection QEMU may make, in order */
  guint used;
};

struct _MdTunnelOut
{
  MdPeerTlsConfig cfg; /* borrowed strings: the manager's, alive as long as it */
  char *peer_address;
  char *peer_name;
  char *dir;      /* the daemon's path of the socket directory */
  char *qemu_dir; /* the same directory as the source QEMU sees it */
  uid_t qemu_uid; /* who may connect: the QEMU's own identity */
  gid_t qemu_gid;
  char *label;
  char *local_name; /* who connects here: "QEMU", "the disk copier" */
  /* The local client ends every stream itself (the NBD copier): a peer
   * that ends one first broke it. */
  gboolean client_ends;
  MdTunnelBroken broken;
  gpointer user_data;
  GPtrArray *ports;      /* OutPort* */
  GPtrArray *relays;     /* MdRelay* */
  GPtrArray *nbd_relays; /* the NBD ones among @relays (no references) */
  GCancellable *cancellable;
  guint live;        /* relays still copying */
  gboolean released; /* the migration is over: free when the last relay ends */
  gboolean has_failed;
};

static void
out_fail (MdTunnelOut *tunnel, GError *error)
{
  if (!tunnel->has_failed && !g_cancellable_is_cancelled (tunnel->cancellable))
    {
      tunnel->has_failed = TRUE;
      g_message ("%s", error->message);
      tunnel->broken (error, tunnel->user_data);
    }
  g_error_free (error);
}

static void
on_out_relay_done (MdRelay *relay, MdRelayEnd how, const GError *error, gpointer user_data)
{
  MdTunnelOut *tunnel = user_data;

  tunnel->live--;
  if (tunnel->released)
    {
      if (how == MD_RELAY_FAILED)
        g_message ("after the migration: %s", error->message);
      if (tunnel->live == 0)
        md_tunnel_out_free (tunnel);
      return;
    }
  if (how == MD_RELAY_FAILED)
    out_fail (tunnel, g_error_copy (error));
  else if (how == MD_RELAY_PEER_ENDED || (tunnel->client_ends && md_relay_peer_ended_first (relay)))
    out_fail (tunnel,
              g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED,
                           "%s: host %s closed the stream before %s here finished "
                           "with it",
                           md_relay_get_label (relay), tunnel->peer_name, tunnel->local_name));
}

static void
out_conn_free (OutConn *conn)
{
  if (conn->fd >= 0)
    close (conn->fd);
  g_clear_object (&conn->cancellable);
  g_free (conn->label);
  g_free (conn);
}

static void
on_out_stream_open (GObject *source, GAsyncResult *result, gpointer user_data)
{
  OutConn *conn = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GIOStream) stream = md_data_stream_open_finish (result, &error);
  MdTunnelOut *tunnel;

  if (g_cancellable_is_cancelled (conn->cancellable))
    {
      /* The tunnel is gone. */
      if (stream != NULL)
        g_io_stream_close (stream, NULL, NULL);
      out_conn_free (conn);
      return;
    }
  tunnel = conn->port->tunnel;
  if (stream == NULL)
    {
      g_prefix_error (&error, "opening a data stream to host %s: ", tunnel->peer_name);
      out_fail (tunnel, g_steal_pointer (&error));
      out_conn_free (conn);
      return;
    }
  tunnel->live++;
  g_ptr_array_add (tunnel->relays,
                   md_relay_start (stream, conn->fd, conn->label, on_out_relay_done, tunnel));
  if (g_str_has_prefix (conn->port->what, "nbd-"))
    {
      g_ptr_array_add (tunnel->nbd_relays,
                       g_ptr_array_index (tunnel->relays, tunnel->relays->len - 1));
      md_fault_point ("source-disk-stream-open");
    }
  conn->fd = -1;
  out_conn_free (conn);
}

static gboolean
on_out_accept (GSocket *socket, GIOCondition condition, gpointer user_data)
{
  OutPort *port = user_data;
  MdTunnelOut *tunnel = port->tunnel;
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocket) accepted = g_socket_accept (socket, NULL, &error);
  OutConn *conn;

  if (accepted == NULL)
    return G_SOURCE_CONTINUE;
  if (port->tokens == NULL || port->tokens[port->used] == NULL)
    {
      out_fail (tunnel, g_error_new (MD_ERROR, MD_ERROR_FAILED,
                                     "%s: %s opened more '%s' connections than host %s "
                                     "prepared data streams for (%u)",
                                     tunnel->label, tunnel->local_name, port->what,
                                     tunnel->peer_name, port->used));
      return G_SOURCE_CONTINUE;
    }
  conn = g_new0 (OutConn, 1);
  conn->port = port;
  /* Not inherited by the QEMUs and helpers the daemon starts later. */
  conn->fd = fcntl (g_socket_get_fd (accepted), F_DUPFD_CLOEXEC, 0);
  conn->cancellable = g_object_ref (tunnel->cancellable);
  if (g_str_equal (port->what, "migration") && port->used > 0)
    conn->label = g_strdup_printf ("data stream 'multifd-%u' of %s to host %s", port->used - 1,
                                   tunnel->label, tunnel->peer_name);
  else
    conn->label = g_strdup_printf ("data stream '%s' of %s to host %s", port->what, tunnel->label,
                                   tunnel->peer_name);
  if (conn->fd < 0 || !g_unix_set_fd_nonblocking (conn->fd, FALSE, NULL))
    {
      out_fail (tunnel,
                g_error_new (MD_ERROR, MD_ERROR_FAILED, "%s: %s", conn->label, g_strerror (errno)));
      out_conn_free (conn);
      return G_SOURCE_CONTINUE;
    }
  md_data_stream_open_async (&tunnel->cfg, tunnel->peer_address, port->tokens[port->used++],
                             conn->label, tunnel->cancellable, on_out_stream_open, conn);
  return G_SOURCE_CONTINUE;
}

static void
out_port_free (gpointer data)
{
  OutPort *port = data;

  if (port->source != NULL)
    {
      g_source_destroy (port->source);
      g_source_unref (port->source);
    }
  g_clear_object (&port->listen);
  g_strfreev (port->tokens);
  g_free (port->path);
  g_free (port->qemu_path);
  g_free (port->what);
  g_free (port);
}

static gboolean
out_add_port (MdTunnelOut *tunnel, const char *what, GStrv tokens, GError **error)
{
  OutPort *port = g_new0 (OutPort, 1);

  port->tunnel = tunnel;
  port->what = g_strdup (what);
  port->tokens = tokens;
  port->path = g_strdup_printf ("%s/%s.sock", tunnel->dir, what);
  port->qemu_path = g_strdup_printf ("%s/%s.sock", tunnel->qemu_dir, what);
  g_ptr_array_add (tunnel->ports, port);
  port->listen = listen_unix (port->path, g_strv_length (tokens) + 1, error);
  if (port->listen == NULL)
    return FALSE;
  if (chown (port->path, tunnel->qemu_uid, tunnel->qemu_gid) != 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "cannot give the tunnel socket %s to QEMU's uid %u: %s", port->path,
                   (guint) tunnel->qemu_uid, g_strerror (errno));
      return FALSE;
    }
  port->source = g_socket_create_source (port->listen, G_IO_IN, NULL);
  g_source_set_callback (port->source, G_SOURCE_FUNC (on_out_accept), port, NULL);
  g_source_attach (port->source, NULL);
  return TRUE;
}

static gboolean valid_target (const char *target);

static MdTunnelOut *
out_new (const MdPeerTlsConfig *cfg, const char *peer_address, const char *peer_name,
         const char *label, const char *local_name, MdTunnelBroken broken, gpointer user_data)
{
  MdTunnelOut *tunnel = g_new0 (MdTunnelOut, 1);

  tunnel->cfg = *cfg;
  tunnel->peer_address = g_strdup (peer_address);
  tunnel->peer_name = g_strdup (peer_name);
  tunnel->label = g_strdup (label);
  tunnel->local_name = g_strdup (local_name);
  tunnel->broken = broken;
  tunnel->user_data = user_data;
  tunnel->ports = g_ptr_array_new_with_free_func (out_port_free);
  tunnel->relays = g_ptr_array_new ();
  tunnel->nbd_relays = g_ptr_array_new ();
  tunnel->cancellable = g_cancellable_new ();
  return tunnel;
}

/* One port per token list of Prepare's answer (@info). */
static gboolean
out_add_ports (MdTunnelOut *tunnel, GVariant *info, GError **error)
{
  g_auto (GStrv) migration = NULL;
  g_autoptr (GVariant) nbd = NULL;
  GVariantIter iter;
  const char *target, *token;

  g_variant_lookup (info, "tunnel-migration-tokens", "^as", &migration);
  if (migration != NULL && !out_add_port (tunnel, "migration", g_steal_pointer (&migration), error))
    return FALSE;
  nbd = g_variant_lookup_value (info, "tunnel-nbd-tokens", G_VARIANT_TYPE ("a{ss}"));
  if (nbd == NULL)
    return TRUE;
  g_variant_iter_init (&iter, nbd);
  while (g_variant_iter_next (&iter, "{&s&s}", &target, &token))
    {
      g_autofree char *what = g_strdup_printf ("nbd-%s", target);
      const char *one[] = { token, NULL };

      if (!valid_target (target))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_PEER_FAILED,
                       "host %s sent an unusable disk target name in Prepare", tunnel->peer_name);
          return FALSE;
        }
      if (!out_add_port (tunnel, what, g_strdupv ((char **) one), error))
        return FALSE;
    }
  return TRUE;
}

MdTunnelOut *
md_tunnel_out_new (const MdPeerTlsConfig *cfg, const char *peer_address, const char *peer_name,
                   GPid qemu_pid, const char *tag, const char *label, GVariant *info,
                   MdTunnelBroken broken, gpointer user_data, GError **error)
{
  MdTunnelOut *tunnel = out_new (cfg, peer_address, peer_name, label, "QEMU", broken, user_data);
  g_autofree char *proc = g_strdup_printf ("/proc/%d", (int) qemu_pid);
  g_autofree char *dir_parent = g_strdup_printf ("/proc/%d/root/tmp", (int) qemu_pid);
  struct stat st;

  /* The sockets live in the source QEMU's own /tmp (private to it when it
   * is confined), owned by its uid: only that QEMU and we can reach them. */
  if (qemu_pid <= 0 || stat (proc, &st) != 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                   "the source QEMU (pid %d) is gone; no tunnel for it", (int) qemu_pid);
      md_tunnel_out_free (tunnel);
      return NULL;
    }
  tunnel->qemu_uid = st.st_uid;
  tunnel->qemu_gid = st.st_gid;
  tunnel->dir = make_private_dir (dir_parent, tag, error);
  if (tunnel->dir == NULL)
    {
      md_tunnel_out_free (tunnel);
      return NULL;
    }
  tunnel->qemu_dir = g_strdup_printf ("/tmp/tunnel-%s", tag);
  if (chown (tunnel->dir, tunnel->qemu_uid, tunnel->qemu_gid) != 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "cannot give the tunnel directory %s to QEMU's uid %u: %s", tunnel->dir,
                   (guint) tunnel->qemu_uid, g_strerror (errno));
      md_tunnel_out_free (tunnel);
      return NULL;
    }
  if (!out_add_ports (tunnel, info, error))
    {
      md_tunnel_out_free (tunnel);
      return NULL;
    }
  return tunnel;
}

MdTunnelOut *
md_tunnel_out_new_local (const MdPeerTlsConfig *cfg, const char *peer_address,
                         const char *peer_name, const char *dir_parent, const char *tag,
                         const char *label, GVariant *info, MdTunnelBroken broken,
                         gpointer user_data, GError **error)
{
  MdTunnelOut *tunnel =
      out_new (cfg, peer_address, peer_name, label, "the disk copier", broken, user_data);
  g_autofree char *out_tag = g_strdup_printf ("out-%s", tag);

  /* Only the daemon reaches a 0700 directory of its runtime directory;
   * the copier ends each of its NBD connections itself. */
  tunnel->client_ends = TRUE;
  tunnel->qemu_uid = getuid ();
  tunnel->qemu_gid = getgid ();
  tunnel->dir = make_private_dir (dir_parent, out_tag, error);
  tunnel->qemu_dir = g_strdup (tunnel->dir); /* the copier runs here */
  if (tunnel->dir == NULL || !out_add_ports (tunnel, info, error))
    {
      md_tunnel_out_free (tunnel);
      return NULL;
    }
  return tunnel;
}

/* A disk target names a socket file: only what a disk target may be. */
static gboolean
valid_target (const char *target)
{
  gsize len = strlen (target);

  if (len == 0 || len > 32)
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (target[i]) && target[i] != '_' && target[i] != '-')
      return FALSE;
  return TRUE;
}

static OutPort *
out_find_port (MdTunnelOut *tunnel, const char *what)
{
  for (guint i = 0; i < tunnel->ports->len; i++)
    {
      OutPort *port = g_ptr_array_index (tunnel->ports, i);
      if (g_str_equal (port->what, what))
        return port;
    }
  return NULL;
}

const char *
md_tunnel_out_get_migration_path (MdTunnelOut *tunnel)
{
  OutPort *port = out_find_port (tunnel, "migration");

  return port != NULL ? port->qemu_path : NULL;
}

const char *
md_tunnel_out_get_nbd_path (MdTunnelOut *tunnel, const char *target)
{
  g_autofree char *what = g_strdup_printf ("nbd-%s", target);
  OutPort *port = out_find_port (tunnel, what);

  return port != NULL ? port->qemu_path : NULL;
}

void
md_tunnel_out_release (MdTunnelOut *tunnel)
{
  if (tunnel == NULL)
    return;
  /* No new streams; the ones running drain what QEMU already wrote. */
  g_ptr_array_set_size (tunnel->ports, 0);
  remove_dir (tunnel->dir);
  tunnel->released = TRUE;
  if (tunnel->live == 0)
    md_tunnel_out_free (tunnel);
}

guint64
md_tunnel_out_get_disk_bytes (MdTunnelOut *tunnel)
{
  guint64 sum = 0;

  for (guint i = 0; i < tunnel->nbd_relays->len; i++)
    sum += md_relay_get_bytes_out (g_ptr_array_index (tunnel->nbd_relays, i));
  return sum;
}

guint
md_tunnel_out_get_streams (MdTunnelOut *tunnel)
{
  return tunnel->relays->len;
}

void
md_tunnel_out_free (MdTunnelOut *tunnel)
{
  if (tunnel == NULL)
    return;
  g_cancellable_cancel (tunnel->cancellable);
  g_ptr_array_unref (tunnel->nbd_relays);
  stop_relays (tunnel->relays);
  g_ptr_array_unref (tunnel->relays);
  g_ptr_array_unref (tunnel->ports);
  remove_dir (tunnel->dir);
  g_object_unref (tunnel->cancellable);
  g_free (tunnel->dir);
  g_free (tunnel->qemu_dir);
  g_free (tunnel->peer_address);
  g_free (tunnel->peer_name);
  g_free (tunnel->label);
  g_free (tunnel->local_name);
  g_free (tunnel);
}

/* migrationd: the NBD copier's connections: one libnbd handle per
 * connection, all polled by one GSource on the caller's main context
 * (never a blocking libnbd call), the checks on the first pair, and the
 * messages that name the host and export when something fails. */
#include "config.h"

#include "md-nbd-copy-private.h"

#include <string.h>

/* ---- messages ---- */

char *
copy_where (MdNbdCopy *self, Side side)
{
  if (self->label[side] != NULL)
    return g_strdup_printf ("host %s", self->label[side]);
  return g_strdup_printf ("NBD server %s", self->uri[side]);
}

/* "the source export URI on host A", without the host when unlabelled. */
char *
copy_export_desc (MdNbdCopy *self, Side side)
{
  return g_strdup_printf ("the %s NBD export %s%s%s", side == SIDE_SRC ? "source" : "destination",
                          self->uri[side], self->label[side] != NULL ? " on host " : "",
                          self->label[side] != NULL ? self->label[side] : "");
}

/* What the failure means for the destination image. */
const char *
copy_consequence (MdNbdCopy *self)
{
  if (self->verify_only)
    return "";
  if (self->phase == MD_NBD_COPY_PHASE_VERIFYING)
    return "; the destination image could not be verified and must not be used";
  return "; the destination image is incomplete and must not be used";
}

void
copy_set_error (MdNbdCopy *self, MdError code, const char *format, ...)
{
  va_list ap;
  g_autofree char *message = NULL;

  if (self->error != NULL)
    return;
  va_start (ap, format);
  message = g_strdup_vprintf (format, ap);
  va_end (ap);
  if (self->disk != NULL)
    self->error = g_error_new (MD_ERROR, code, "disk %s: %s", self->disk, message);
  else
    self->error = g_error_new_literal (MD_ERROR, code, message);
  self->stopping = TRUE; /* the first error wins; stop issuing, drain, report */
}

/* An NBD command failed: name the direction, offset and host. */
void
copy_fail_io (MdNbdCopy *self, const char *what, Side side, guint64 offset, const char *reason)
{
  g_autofree char *host = copy_where (self, side);

  copy_set_error (self, MD_ERROR_STORAGE_FAILED,
                  "NBD %s at offset %" G_GUINT64_FORMAT " %s %s failed: %s%s", what, offset,
                  side == SIDE_SRC ? "from" : "to", host, reason, copy_consequence (self));
}

/* An aio call returned -1: libnbd's message for this thread says why. */
void
copy_fail_issue (MdNbdCopy *self, const char *what, Side side, guint64 offset)
{
  const char *msg = nbd_get_error ();

  copy_fail_io (self, what, side, offset, msg != NULL ? msg : "unknown libnbd error");
}

void
copy_fail_conn (MdNbdCopy *self, Conn *conn, const char *reason)
{
  g_autofree char *host = copy_where (self, conn->side);
  g_autofree char *export = copy_export_desc (self, conn->side);
  const char *hint = "";

  if (!conn->ready && conn->index > 0)
    {
      /* An extra connection for multi-conn that the server does not take
       * (e.g. qemu-nbd --shared=N with N smaller than our count): carry on
       * with the connections that work. */
      g_debug ("NBD copy: extra connection %u to %s not used: %s", conn->index, export, reason);
      conn->dropped = TRUE;
      return;
    }
  if (!conn->ready)
    {
      /* A server that insists on TLS refuses a plaintext client; one that
       * wants a client certificate drops a client without one. */
      if (!g_str_has_prefix (self->uri[conn->side], "nbds")
          && (strstr (reason, "TLS") != NULL || strstr (reason, "policy") != NULL))
        hint = " (the server requires TLS: use an nbds:// URI and set the TLS certificates)";
      else if (g_str_has_prefix (self->uri[conn->side], "nbds") && self->tls_dir == NULL)
        hint = " (no TLS certificates directory was set)";
      copy_set_error (self, MD_ERROR_STORAGE_FAILED, "cannot connect to %s: %s%s", export, reason,
                      hint);
      return;
    }
  copy_set_error (self, MD_ERROR_STORAGE_FAILED, "NBD connection %u to %s (%s) failed: %s%s",
                  conn->index, host, self->uri[conn->side], reason, copy_consequence (self));
}

/* ---- the GSource that drives every handle ---- */

typedef struct
{
  GSource source;
  MdNbdCopy *self;
} NbdSource;

/* The GPollFDs are our own (g_source_add_poll()) so that prepare() can set
 * the events from libnbd's direction in place: g_source_modify_unix_fd()
 * would wake the context up on every change, costing an eventfd write and
 * an extra loop iteration per command. GLib reads .events after prepare(). */
static gboolean
nbd_source_prepare (GSource *source, gint *timeout)
{
  MdNbdCopy *self = ((NbdSource *) source)->self;

  *timeout = -1;
  for (guint i = 0; i < self->conns->len; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);
      int fd = conn->nbd != NULL && !conn->dropped ? nbd_aio_get_fd (conn->nbd) : -1;
      unsigned dir;

      /* The descriptor appears while connecting and vanishes when the
       * handle dies. */
      if (fd != conn->pfd.fd)
        {
          if (conn->pfd.fd >= 0)
            g_source_remove_poll (source, &conn->pfd);
          conn->pfd.fd = fd;
          conn->pfd.revents = 0;
          if (fd >= 0)
            g_source_add_poll (source, &conn->pfd);
        }
      if (fd < 0)
        continue;
      dir = nbd_aio_get_direction (conn->nbd);
      conn->pfd.events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? G_IO_IN : 0)
                         | ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? G_IO_OUT : 0);
    }
  return self->pump_pending;
}

static gboolean
nbd_source_check (GSource *source)
{
  MdNbdCopy *self = ((NbdSource *) source)->self;

  if (self->pump_pending)
    return TRUE;
  for (guint i = 0; i < self->conns->len; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);

      if (conn->pfd.fd >= 0 && conn->pfd.revents != 0)
        return TRUE;
    }
  return FALSE;
}

static gboolean
nbd_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  g_autoptr (MdNbdCopy) self = g_object_ref (((NbdSource *) source)->self);

  if (self->dispatching)
    return G_SOURCE_CONTINUE; /* a nested main loop in a signal handler */
  self->dispatching = TRUE;
  self->pump_pending = FALSE;
  for (guint i = 0; i < self->conns->len && !self->finished; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);
      GIOCondition revents = conn->pfd.revents;
      unsigned dir;
      int r = 0;

      conn->pfd.revents = 0;
      if (conn->pfd.fd < 0 || revents == 0)
        continue;
      dir = nbd_aio_get_direction (conn->nbd);
      if ((revents & G_IO_IN)
          || ((revents & (G_IO_HUP | G_IO_ERR)) && (dir & LIBNBD_AIO_DIRECTION_READ)))
        r = nbd_aio_notify_read (conn->nbd);
      else if ((revents & (G_IO_OUT | G_IO_HUP | G_IO_ERR)) && (dir & LIBNBD_AIO_DIRECTION_WRITE))
        r = nbd_aio_notify_write (conn->nbd);
      if (r == -1)
        {
          const char *msg = nbd_get_error ();

          copy_fail_conn (self, conn, msg != NULL ? msg : "connection lost");
        }
    }
  copy_pump (self);
  self->dispatching = FALSE;
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs nbd_source_funcs = {
  .prepare = nbd_source_prepare,
  .check = nbd_source_check,
  .dispatch = nbd_source_dispatch,
};

/* The GSource that drives every handle of @self's run. */
GSource *
copy_source_new (MdNbdCopy *self)
{
  GSource *source = g_source_new (&nbd_source_funcs, sizeof (NbdSource));

  ((NbdSource *) source)->self = self;
  g_source_set_name (source, "md-nbd-copy");
  /* Otherwise GLib removes and re-adds our descriptors around every
   * dispatch, and each re-add wakes the context up once more. */
  g_source_set_can_recurse (source, TRUE);
  return source;
}

/* ---- connections ---- */

Conn *
copy_conn_new (MdNbdCopy *self, Side side, guint index)
{
  Conn *conn = g_new0 (Conn, 1);
  g_autofree char *name = g_strdup_printf ("%s%u", side == SIDE_SRC ? "src" : "dst", index);
  struct nbd_handle *nbd;

  conn->self = self;
  conn->side = side;
  conn->index = index;
  conn->pfd.fd = -1;
  g_ptr_array_add (self->conns, conn);

  nbd = nbd_create ();
  if (nbd == NULL)
    {
      copy_fail_conn (self, conn, nbd_get_error ());
      return NULL;
    }
  conn->nbd = nbd;
  if (nbd_set_handle_name (nbd, name) == -1
      || nbd_set_uri_allow_transports (nbd,
                                       LIBNBD_ALLOW_TRANSPORT_TCP | LIBNBD_ALLOW_TRANSPORT_UNIX)
             == -1
      || nbd_add_meta_context (nbd, BASE_ALLOCATION) == -1
      || (self->tls_dir != NULL && nbd_set_tls_certificates (nbd, self->tls_dir) == -1)
      || nbd_aio_connect_uri (nbd, self->uri[side]) == -1)
    {
      copy_fail_conn (self, conn, nbd_get_error ());
      return NULL;
    }
  return conn;
}

void
copy_conn_free (Conn *conn)
{
  /* Commands still in flight are abandoned: libnbd does not call their
   * completion callbacks from nbd_close() and stops using their buffers. */
  nbd_close (conn->nbd);
  g_free (conn);
}

Conn *
copy_find_conn (MdNbdCopy *self, Side side, guint index)
{
  for (guint i = 0; i < self->conns->len; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);

      if (conn->side == side && conn->index == index)
        return conn;
    }
  return NULL;
}

guint
copy_total_in_flight (MdNbdCopy *self)
{
  guint n = 0;

  for (guint i = 0; i < self->conns->len; i++)
    n += ((Conn *) g_ptr_array_index (self->conns, i))->in_flight;
  return n;
}

/* The first connection of each side is up: check that the pair fits, then
 * decide how many connections to use and open the others. */
static void
first_pair_ready (MdNbdCopy *self, Conn *src, Conn *dst)
{
  g_autofree char *src_export = copy_export_desc (self, SIDE_SRC);
  g_autofree char *dst_export = copy_export_desc (self, SIDE_DST);
  int64_t src_size = nbd_get_size (src->nbd);
  int64_t dst_size = nbd_get_size (dst->nbd);
  gboolean multi;
  guint n;

  if (src_size < 0 || dst_size < 0)
    {
      copy_set_error (self, MD_ERROR_STORAGE_FAILED, "cannot read the export size: %s",
                      nbd_get_error ());
      return;
    }
  self->size = src_size;
  self->dst_size = dst_size;
  if (self->dst_size < self->size)
    {
      copy_set_error (
          self, MD_ERROR_STORAGE_FAILED,
          "%s is smaller (%" G_GUINT64_FORMAT " bytes) than %s (%" G_GUINT64_FORMAT
          " bytes); create the destination image with at least the source's virtual size",
          dst_export, self->dst_size, src_export, self->size);
      return;
    }
  if (!self->verify_only && nbd_is_read_only (dst->nbd) == 1)
    {
      copy_set_error (self, MD_ERROR_STORAGE_FAILED,
                      "%s is read-only; it must be exported writable", dst_export);
      return;
    }

  multi = nbd_can_multi_conn (src->nbd) == 1 && nbd_can_multi_conn (dst->nbd) == 1;
  n = multi ? self->connections_wanted : 1;
  self->can_bs[SIDE_SRC] = nbd_can_meta_context (src->nbd, BASE_ALLOCATION) == 1;
  self->can_bs[SIDE_DST] = nbd_can_meta_context (dst->nbd, BASE_ALLOCATION) == 1;
  self->dst_can_zero = nbd_can_zero (dst->nbd) == 1;
  self->dst_can_flush = nbd_can_flush (dst->nbd) == 1;
  self->io_size = self->request_size;
  for (Side side = SIDE_SRC; side <= SIDE_DST; side++)
    {
      int64_t max =
          nbd_get_block_size (side == SIDE_SRC ? src->nbd : dst->nbd, LIBNBD_SIZE_MAXIMUM);

      if (max > 0 && (guint64) max < self->io_size)
        self->io_size = max;
    }
  if (!self->dst_can_zero)
    self->zero_buf = g_malloc0 (self->io_size);

  self->n_workers = n;
  self->workers = g_new0 (Worker, n);
  for (guint i = 0; i < n; i++)
    {
      Worker *w = &self->workers[i];

      w->self = self;
      w->index = i;
      w->slots = g_new0 (Slot, self->requests);
      for (guint j = 0; j < self->requests; j++)
        w->slots[j].worker = w;
      w->src_ext = g_array_new (FALSE, FALSE, sizeof (Extent));
      w->dst_ext = g_array_new (FALSE, FALSE, sizeof (Extent));
      w->bs_ctx[SIDE_SRC] = (BsCtx){ w, SIDE_SRC };
      w->bs_ctx[SIDE_DST] = (BsCtx){ w, SIDE_DST };
      if (i > 0)
        {
          copy_conn_new (self, SIDE_SRC, i);
          copy_conn_new (self, SIDE_DST, i);
        }
      w->src = copy_find_conn (self, SIDE_SRC, i);
      w->dst = copy_find_conn (self, SIDE_DST, i);
    }
}

/* Notice connections that became ready. The copy starts as soon as the
 * first pair is up; further pairs join when they are. */
void
copy_connect_progress (MdNbdCopy *self)
{
  for (guint i = 0; i < self->conns->len && !self->stopping; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);

      if (conn->ready || conn->dropped)
        continue;
      if (nbd_aio_is_ready (conn->nbd) == 1)
        conn->ready = TRUE;
      else if (nbd_aio_is_dead (conn->nbd) == 1 || nbd_aio_is_closed (conn->nbd) == 1)
        copy_fail_conn (self, conn, "the server closed the connection during the handshake");
    }
  if (self->stopping)
    return;
  if (self->workers == NULL)
    {
      Conn *src = copy_find_conn (self, SIDE_SRC, 0);
      Conn *dst = copy_find_conn (self, SIDE_DST, 0);

      if (src == NULL || dst == NULL || !src->ready || !dst->ready)
        return;
      first_pair_ready (self, src, dst);
      if (self->stopping)
        return;
      copy_start_pass (self,
                       self->verify_only ? MD_NBD_COPY_PHASE_VERIFYING : MD_NBD_COPY_PHASE_COPYING);
    }
  for (guint i = 0; i < self->n_workers; i++)
    {
      Worker *w = &self->workers[i];

      if (!w->ready && w->src != NULL && w->dst != NULL && w->src->ready && w->dst->ready)
        {
          w->ready = TRUE;
          self->connections_used++;
        }
    }
}

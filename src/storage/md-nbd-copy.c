/* migrationd: extent-aware disk copy between two NBD exports.
 *
 * Like nbdcopy, but as a module of the daemon: every libnbd handle is driven
 * by one GSource on the caller's main context (nbd_aio_get_fd() and
 * nbd_aio_get_direction() decide what to poll for, nbd_aio_notify_read() and
 * _write() advance the state machines), and no blocking libnbd call is ever
 * made. Work is split into ranges of RANGE_SIZE; each worker (one source and
 * one destination connection) takes the next range, asks both servers for
 * base:allocation block status over it, and then keeps up to `requests`
 * commands in flight: reads of data extents (each followed by a write of
 * the same bytes), write-zeroes for zero extents where the destination does
 * not already read as zeros, nothing where it does.
 *
 * libnbd calls completion callbacks with the handle lock held, so they only
 * record the result and queue the slot; everything else happens in pump(),
 * which runs after every dispatch. */
#include "config.h"

#include "md-nbd-copy.h"

#include "common/md-error.h"

#include <errno.h>
#include <libnbd.h>
#include <string.h>

#define RANGE_SIZE (G_GUINT64_CONSTANT (64) * 1024 * 1024)
#define PROGRESS_INTERVAL_MS 250
#define DRAIN_TIMEOUT_MS 5000
#define BASE_ALLOCATION "base:allocation"

typedef enum
{
  SIDE_SRC,
  SIDE_DST,
} Side;

typedef struct _Worker Worker;

/* User data of a block status command: which worker, which side. */
typedef struct
{
  Worker *worker;
  Side side;
} BsCtx;

typedef struct
{
  MdNbdCopy *self;
  struct nbd_handle *nbd;
  Side side;
  guint index;
  GPollFD pfd; /* .fd -1 while not polled */
  gboolean ready;
  gboolean dropped;
  guint in_flight; /* our commands whose completion callback has not run */
} Conn;

typedef struct
{
  guint64 offset;
  guint64 length;
  guint32 flags;
} Extent;

typedef enum
{
  SLOT_FREE,
  SLOT_READ,        /* source read, a write follows */
  SLOT_WRITE,       /* destination write of data */
  SLOT_WRITE_ZEROS, /* destination write of a zero buffer (no write-zeroes support) */
  SLOT_ZERO,        /* destination write-zeroes */
  SLOT_VERIFY,      /* source and destination reads, then compare */
  SLOT_VERIFY_ZERO, /* destination read, must be all zeros */
} SlotOp;

typedef struct
{
  Worker *worker;
  SlotOp op;
  guint64 offset;
  gsize length;
  gboolean dst_zero; /* destination known to read as zeros over the slot */
  guchar *buf;
  guchar *buf2;
  guint pending;
  int src_err;
  int dst_err;
} Slot;

struct _Worker
{
  MdNbdCopy *self;
  guint index;
  Conn *src;
  Conn *dst;
  gboolean ready; /* both connections are up */
  Slot *slots;
  guint n_busy;
  /* The range being worked on: [pos, range_end); extents known up to covered. */
  gboolean active;
  guint64 pos;
  guint64 range_end;
  guint64 covered;
  GArray *src_ext;
  GArray *dst_ext;
  guint src_i;
  guint dst_i;
  BsCtx bs_ctx[2];
  guint bs_pending;
  gboolean bs_started;
  guint64 bs_end;
  int bs_err[2];
  gboolean flush_pending;
  int flush_err;
};

struct _MdNbdCopy
{
  GObject parent_instance;

  char *uri[2];
  char *label[2];
  char *disk;
  char *tls_dir;
  guint connections_wanted;
  guint requests;
  guint request_size;
  gboolean verify;
  gboolean verify_only;
  gboolean dst_is_zero;

  /* Run state. */
  GTask *task;
  GSource *source;
  GSource *cancel_source;
  GSource *drain_source;
  GSource *progress_source;
  MdNbdCopyPhase phase;
  GPtrArray *conns; /* Conn*, all handles of both sides */
  Worker *workers;
  guint n_workers;
  GQueue completed; /* Slot* whose callbacks have all run */
  gboolean pump_pending;
  gboolean dispatching;
  gboolean stopping;
  gboolean finished;
  gboolean dst_written;
  GError *error;

  guint64 size;
  guint64 dst_size;
  guint64 next_range;
  guint io_size;
  gboolean can_bs[2];
  gboolean dst_can_zero;
  gboolean dst_can_flush;
  guchar *zero_buf;

  guint64 bytes_allocated;
  guint64 bytes_copied;
  guint64 bytes_zeroed;
  guint64 bytes_verified;
  guint64 last_progress;
  guint connections_used;
  gint64 start_us;
  gint64 end_us;
};

G_DEFINE_TYPE (MdNbdCopy, md_nbd_copy, G_TYPE_OBJECT)

enum
{
  SIGNAL_PROGRESS,
  N_SIGNALS,
};

static guint signals[N_SIGNALS];

static void pump (MdNbdCopy *self);

/* ---- messages ---- */

static char *
where (MdNbdCopy *self, Side side)
{
  if (self->label[side] != NULL)
    return g_strdup_printf ("host %s", self->label[side]);
  return g_strdup_printf ("NBD server %s", self->uri[side]);
}

/* "the source export URI on host A", without the host when unlabelled. */
static char *
export_desc (MdNbdCopy *self, Side side)
{
  return g_strdup_printf ("the %s NBD export %s%s%s", side == SIDE_SRC ? "source" : "destination",
                          self->uri[side], self->label[side] != NULL ? " on host " : "",
                          self->label[side] != NULL ? self->label[side] : "");
}

/* What the failure means for the destination image. */
static const char *
consequence (MdNbdCopy *self)
{
  if (self->verify_only)
    return "";
  if (self->phase == MD_NBD_COPY_PHASE_VERIFYING)
    return "; the destination image could not be verified and must not be used";
  return "; the destination image is incomplete and must not be used";
}

static void set_error (MdNbdCopy *self, MdError code, const char *format, ...) G_GNUC_PRINTF (3, 4);

static void
set_error (MdNbdCopy *self, MdError code, const char *format, ...)
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
static void
fail_io (MdNbdCopy *self, const char *what, Side side, guint64 offset, const char *reason)
{
  g_autofree char *host = where (self, side);

  set_error (self, MD_ERROR_STORAGE_FAILED,
             "NBD %s at offset %" G_GUINT64_FORMAT " %s %s failed: %s%s", what, offset,
             side == SIDE_SRC ? "from" : "to", host, reason, consequence (self));
}

/* An aio call returned -1: libnbd's message for this thread says why. */
static void
fail_issue (MdNbdCopy *self, const char *what, Side side, guint64 offset)
{
  const char *msg = nbd_get_error ();

  fail_io (self, what, side, offset, msg != NULL ? msg : "unknown libnbd error");
}

static void
fail_conn (MdNbdCopy *self, Conn *conn, const char *reason)
{
  g_autofree char *host = where (self, conn->side);
  g_autofree char *export = export_desc (self, conn->side);
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
      set_error (self, MD_ERROR_STORAGE_FAILED, "cannot connect to %s: %s%s", export, reason, hint);
      return;
    }
  set_error (self, MD_ERROR_STORAGE_FAILED, "NBD connection %u to %s (%s) failed: %s%s",
             conn->index, host, self->uri[conn->side], reason, consequence (self));
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

          fail_conn (self, conn, msg != NULL ? msg : "connection lost");
        }
    }
  pump (self);
  self->dispatching = FALSE;
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs nbd_source_funcs = {
  .prepare = nbd_source_prepare,
  .check = nbd_source_check,
  .dispatch = nbd_source_dispatch,
};

/* ---- connections ---- */

static Conn *
conn_new (MdNbdCopy *self, Side side, guint index)
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
      fail_conn (self, conn, nbd_get_error ());
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
      fail_conn (self, conn, nbd_get_error ());
      return NULL;
    }
  return conn;
}

static void
conn_free (Conn *conn)
{
  /* Commands still in flight are abandoned: libnbd does not call their
   * completion callbacks from nbd_close() and stops using their buffers. */
  nbd_close (conn->nbd);
  g_free (conn);
}

static Conn *
find_conn (MdNbdCopy *self, Side side, guint index)
{
  for (guint i = 0; i < self->conns->len; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);

      if (conn->side == side && conn->index == index)
        return conn;
    }
  return NULL;
}

static guint
total_in_flight (MdNbdCopy *self)
{
  guint n = 0;

  for (guint i = 0; i < self->conns->len; i++)
    n += ((Conn *) g_ptr_array_index (self->conns, i))->in_flight;
  return n;
}

/* ---- progress ---- */

static guint64
progress_done (MdNbdCopy *self)
{
  if (self->phase == MD_NBD_COPY_PHASE_VERIFYING)
    return self->bytes_verified;
  if (self->phase == MD_NBD_COPY_PHASE_COPYING)
    return self->bytes_copied + self->bytes_zeroed;
  return 0;
}

static void
emit_progress (MdNbdCopy *self, guint64 done)
{
  self->last_progress = done;
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, done, self->size);
}

static gboolean
on_progress_tick (gpointer user_data)
{
  MdNbdCopy *self = user_data;
  guint64 done = progress_done (self);

  if ((self->phase == MD_NBD_COPY_PHASE_COPYING || self->phase == MD_NBD_COPY_PHASE_VERIFYING)
      && done != self->last_progress)
    emit_progress (self, done);
  return G_SOURCE_CONTINUE;
}

/* ---- workers ---- */

static void
worker_reset (Worker *w)
{
  w->active = FALSE;
  w->pos = w->range_end = w->covered = 0;
  g_array_set_size (w->src_ext, 0);
  g_array_set_size (w->dst_ext, 0);
  w->src_i = w->dst_i = 0;
}

static Slot *
worker_get_slot (Worker *w)
{
  MdNbdCopy *self = w->self;

  for (guint i = 0; i < self->requests; i++)
    if (w->slots[i].op == SLOT_FREE)
      {
        w->n_busy++;
        return &w->slots[i];
      }
  g_assert_not_reached ();
}

static void
slot_release (Slot *slot)
{
  slot->op = SLOT_FREE;
  slot->worker->n_busy--;
}

static guchar *
slot_buf (MdNbdCopy *self, guchar **buf)
{
  if (*buf == NULL)
    *buf = g_malloc (self->io_size);
  return *buf;
}

static void
slot_completed (Slot *slot)
{
  if (--slot->pending == 0)
    {
      MdNbdCopy *self = slot->worker->self;

      g_queue_push_tail (&self->completed, slot);
      self->pump_pending = TRUE;
    }
}

static int
on_src_done (void *user_data, int *error)
{
  Slot *slot = user_data;

  slot->worker->src->in_flight--;
  slot->src_err = *error;
  slot_completed (slot);
  return 1;
}

static int
on_dst_done (void *user_data, int *error)
{
  Slot *slot = user_data;

  slot->worker->dst->in_flight--;
  slot->dst_err = *error;
  slot_completed (slot);
  return 1;
}

static int
on_extent (void *user_data, const char *metacontext, uint64_t offset, uint32_t *entries,
           size_t nr_entries, int *error)
{
  BsCtx *ctx = user_data;
  Worker *w = ctx->worker;
  GArray *ext = ctx->side == SIDE_SRC ? w->src_ext : w->dst_ext;

  if (strcmp (metacontext, BASE_ALLOCATION) != 0)
    return 0;
  /* A server may describe more than was asked: keep only [start, bs_end). */
  for (size_t i = 0; i + 1 < nr_entries && offset < w->bs_end; i += 2)
    {
      Extent e = { offset, MIN ((guint64) entries[i], w->bs_end - offset), entries[i + 1] };

      if (e.length == 0)
        break;
      g_array_append_val (ext, e);
      offset += e.length;
    }
  return 0;
}

static int
on_bs_done (void *user_data, int *error)
{
  BsCtx *ctx = user_data;
  Worker *w = ctx->worker;

  (ctx->side == SIDE_SRC ? w->src : w->dst)->in_flight--;
  if (*error != 0)
    w->bs_err[ctx->side] = *error;
  w->bs_pending--;
  w->self->pump_pending = TRUE;
  return 1;
}

static int
on_flush_done (void *user_data, int *error)
{
  Worker *w = user_data;

  w->dst->in_flight--;
  w->flush_err = *error;
  w->flush_pending = FALSE;
  w->self->pump_pending = TRUE;
  return 1;
}

/* Ask both sides for block status over [covered, range_end). A side that
 * cannot answer gets one synthetic extent: data for the source; for the
 * destination, zero only when the caller said it is all zeros. */
static void
worker_start_bs (Worker *w)
{
  MdNbdCopy *self = w->self;
  gboolean copying = self->phase == MD_NBD_COPY_PHASE_COPYING;
  guint64 count = w->range_end - w->covered;

  g_array_set_size (w->src_ext, 0);
  g_array_set_size (w->dst_ext, 0);
  w->src_i = w->dst_i = 0;
  w->bs_end = w->range_end;
  w->bs_err[SIDE_SRC] = w->bs_err[SIDE_DST] = 0;
  w->bs_started = TRUE;

  for (Side side = SIDE_SRC; side <= SIDE_DST; side++)
    {
      Conn *conn = side == SIDE_SRC ? w->src : w->dst;
      GArray *ext = side == SIDE_SRC ? w->src_ext : w->dst_ext;
      gboolean trust_option = side == SIDE_DST && copying && self->dst_is_zero;

      if (!self->can_bs[side] || trust_option)
        {
          Extent e = { w->covered, count, trust_option ? LIBNBD_STATE_ZERO : 0 };

          g_array_append_val (ext, e);
          continue;
        }
      if (nbd_aio_block_status (
              conn->nbd, count, w->covered,
              (nbd_extent_callback){ .callback = on_extent, .user_data = &w->bs_ctx[side] },
              (nbd_completion_callback){ .callback = on_bs_done, .user_data = &w->bs_ctx[side] }, 0)
          == -1)
        {
          fail_issue (self, "block-status", side, w->covered);
          return;
        }
      conn->in_flight++;
      w->bs_pending++;
    }
}

static guint64
extents_end (GArray *ext)
{
  const Extent *last;

  if (ext->len == 0)
    return 0;
  last = &g_array_index (ext, Extent, ext->len - 1);
  return last->offset + last->length;
}

/* Both answers are in: move `covered` to where both sides are known. */
static void
worker_finish_bs (Worker *w)
{
  MdNbdCopy *self = w->self;
  guint64 end;

  w->bs_started = FALSE;
  for (Side side = SIDE_SRC; side <= SIDE_DST; side++)
    if (w->bs_err[side] != 0)
      {
        fail_io (self, "block-status", side, w->covered, g_strerror (w->bs_err[side]));
        return;
      }
  end = MIN (extents_end (w->src_ext), extents_end (w->dst_ext));
  if (end <= w->covered)
    {
      fail_io (self, "block-status", extents_end (w->src_ext) <= w->covered ? SIDE_SRC : SIDE_DST,
               w->covered, "the server described no extents");
      return;
    }
  if (self->phase == MD_NBD_COPY_PHASE_COPYING
      || (self->verify_only && self->phase == MD_NBD_COPY_PHASE_VERIFYING))
    for (guint i = 0; i < w->src_ext->len; i++)
      {
        const Extent *e = &g_array_index (w->src_ext, Extent, i);

        if (!(e->flags & LIBNBD_STATE_ZERO) && e->offset < end)
          self->bytes_allocated += MIN (e->offset + e->length, end) - e->offset;
      }
  w->covered = end;
}

static const Extent *
find_extent (GArray *ext, guint *idx, guint64 pos)
{
  while (*idx < ext->len)
    {
      const Extent *e = &g_array_index (ext, Extent, *idx);

      if (pos < e->offset + e->length)
        return e;
      (*idx)++;
    }
  g_assert_not_reached ();
}

static gboolean
issue_pread (MdNbdCopy *self, Slot *slot, Side side, guchar *buf)
{
  Conn *conn = side == SIDE_SRC ? slot->worker->src : slot->worker->dst;

  if (nbd_aio_pread (
          conn->nbd, buf, slot->length, slot->offset,
          (nbd_completion_callback){ .callback = side == SIDE_SRC ? on_src_done : on_dst_done,
                                     .user_data = slot },
          0)
      == -1)
    {
      fail_issue (self, "read", side, slot->offset);
      return FALSE;
    }
  conn->in_flight++;
  return TRUE;
}

static gboolean
issue_write (MdNbdCopy *self, Slot *slot, SlotOp op)
{
  Conn *conn = slot->worker->dst;
  nbd_completion_callback cb = { .callback = on_dst_done, .user_data = slot };
  int64_t r;

  slot->op = op;
  slot->pending = 1;
  slot->src_err = slot->dst_err = 0;
  if (op == SLOT_ZERO)
    r = nbd_aio_zero (conn->nbd, slot->length, slot->offset, cb, 0);
  else
    r = nbd_aio_pwrite (conn->nbd, op == SLOT_WRITE ? slot->buf : self->zero_buf, slot->length,
                        slot->offset, cb, 0);
  self->dst_written = TRUE;
  if (r == -1)
    {
      fail_issue (self, op == SLOT_ZERO ? "write-zeroes" : "write", SIDE_DST, slot->offset);
      slot_release (slot);
      return FALSE;
    }
  conn->in_flight++;
  return TRUE;
}

static Slot *
slot_start (Worker *w, SlotOp op, gsize length, guint pending)
{
  Slot *slot = worker_get_slot (w);

  slot->op = op;
  slot->offset = w->pos;
  slot->length = length;
  slot->pending = pending;
  slot->dst_zero = FALSE;
  slot->src_err = slot->dst_err = 0;
  w->pos += length;
  return slot;
}

static void
worker_issue_copy (Worker *w)
{
  MdNbdCopy *self = w->self;
  const Extent *s = find_extent (w->src_ext, &w->src_i, w->pos);
  const Extent *d = find_extent (w->dst_ext, &w->dst_i, w->pos);
  guint64 s_end = MIN (s->offset + s->length, w->covered);
  guint64 d_end = MIN (d->offset + d->length, w->covered);
  gboolean d_zero = (d->flags & LIBNBD_STATE_ZERO) != 0;
  guint64 end;
  Slot *slot;

  if (!(s->flags & LIBNBD_STATE_ZERO))
    {
      slot = slot_start (w, SLOT_READ, MIN (s_end - w->pos, self->io_size), 1);
      slot->dst_zero = d_zero && slot->offset + slot->length <= d_end;
      if (!issue_pread (self, slot, SIDE_SRC, slot_buf (self, &slot->buf)))
        slot_release (slot);
      return;
    }
  end = MIN (s_end, d_end);
  if (d_zero)
    {
      /* Reads as zeros on both sides already. */
      self->bytes_zeroed += end - w->pos;
      w->pos = end;
      return;
    }
  if (self->dst_can_zero)
    {
      slot = slot_start (w, SLOT_ZERO, end - w->pos, 1);
      issue_write (self, slot, SLOT_ZERO);
    }
  else
    {
      slot = slot_start (w, SLOT_WRITE_ZEROS, MIN (end - w->pos, self->io_size), 1);
      issue_write (self, slot, SLOT_WRITE_ZEROS);
    }
}

static void
worker_issue_verify (Worker *w)
{
  MdNbdCopy *self = w->self;
  const Extent *s = find_extent (w->src_ext, &w->src_i, w->pos);
  const Extent *d = find_extent (w->dst_ext, &w->dst_i, w->pos);
  guint64 s_end = MIN (s->offset + s->length, w->covered);
  guint64 d_end = MIN (d->offset + d->length, w->covered);
  guint64 end;
  Slot *slot;

  if (!(s->flags & LIBNBD_STATE_ZERO))
    {
      slot = slot_start (w, SLOT_VERIFY, MIN (s_end - w->pos, self->io_size), 2);
      if (!issue_pread (self, slot, SIDE_SRC, slot_buf (self, &slot->buf)))
        {
          slot_release (slot);
          return;
        }
      /* If the second read cannot be issued, the first one's completion
       * still comes and releases the slot. */
      if (!issue_pread (self, slot, SIDE_DST, slot_buf (self, &slot->buf2)))
        slot->pending--;
      return;
    }
  end = MIN (s_end, d_end);
  if (d->flags & LIBNBD_STATE_ZERO)
    {
      self->bytes_verified += end - w->pos;
      w->pos = end;
      return;
    }
  slot = slot_start (w, SLOT_VERIFY_ZERO, MIN (end - w->pos, self->io_size), 1);
  if (!issue_pread (self, slot, SIDE_DST, slot_buf (self, &slot->buf2)))
    slot_release (slot);
}

static void
worker_fill (Worker *w)
{
  MdNbdCopy *self = w->self;

  while (!self->stopping && w->ready)
    {
      if (!w->active)
        {
          if (self->next_range >= self->size)
            return;
          w->active = TRUE;
          w->pos = w->covered = self->next_range;
          w->range_end = MIN (self->next_range + RANGE_SIZE, self->size);
          self->next_range = w->range_end;
        }
      if (w->bs_pending > 0)
        return;
      if (w->bs_started)
        {
          worker_finish_bs (w);
          continue;
        }
      if (w->pos >= w->range_end)
        {
          w->active = FALSE;
          continue;
        }
      if (w->pos >= w->covered)
        {
          worker_start_bs (w);
          continue;
        }
      if (w->n_busy >= self->requests)
        return;
      if (self->phase == MD_NBD_COPY_PHASE_COPYING)
        worker_issue_copy (w);
      else
        worker_issue_verify (w);
    }
}

static gboolean
worker_idle (Worker *w)
{
  return !w->active && w->bs_pending == 0 && !w->bs_started && w->n_busy == 0;
}

/* ---- completions ---- */

static gboolean
buf_is_zero (const guchar *buf, gsize len)
{
  return len == 0 || (buf[0] == 0 && memcmp (buf, buf + 1, len - 1) == 0);
}

static const char *
slot_what (SlotOp op)
{
  switch (op)
    {
    case SLOT_WRITE:
    case SLOT_WRITE_ZEROS:
      return "write";
    case SLOT_ZERO:
      return "write-zeroes";
    default:
      return "read";
    }
}

static void
verify_mismatch (MdNbdCopy *self, guint64 offset, const char *what)
{
  g_autofree char *src = where (self, SIDE_SRC);
  g_autofree char *dst = where (self, SIDE_DST);

  set_error (
      self, MD_ERROR_STORAGE_FAILED,
      "verification failed: the destination on %s %s the source on %s at offset %" G_GUINT64_FORMAT
      "%s",
      dst, what, src, offset, self->verify_only ? "" : "; the destination image must not be used");
}

static void
slot_process (MdNbdCopy *self, Slot *slot)
{
  if (slot->src_err != 0)
    fail_io (self, slot_what (slot->op), SIDE_SRC, slot->offset, g_strerror (slot->src_err));
  else if (slot->dst_err != 0)
    fail_io (self, slot_what (slot->op), SIDE_DST, slot->offset, g_strerror (slot->dst_err));
  if (self->stopping)
    {
      slot_release (slot);
      return;
    }

  switch (slot->op)
    {
    case SLOT_READ:
      if (buf_is_zero (slot->buf, slot->length))
        {
          if (slot->dst_zero)
            {
              self->bytes_zeroed += slot->length;
              slot_release (slot);
              return;
            }
          if (self->dst_can_zero)
            {
              issue_write (self, slot, SLOT_ZERO);
              return;
            }
        }
      issue_write (self, slot, SLOT_WRITE);
      return;
    case SLOT_WRITE:
      self->bytes_copied += slot->length;
      break;
    case SLOT_WRITE_ZEROS:
    case SLOT_ZERO:
      self->bytes_zeroed += slot->length;
      break;
    case SLOT_VERIFY:
      if (memcmp (slot->buf, slot->buf2, slot->length) != 0)
        {
          gsize i = 0;

          while (slot->buf[i] == slot->buf2[i])
            i++;
          verify_mismatch (self, slot->offset + i, "differs from");
          break;
        }
      self->bytes_verified += slot->length;
      break;
    case SLOT_VERIFY_ZERO:
      if (!buf_is_zero (slot->buf2, slot->length))
        {
          gsize i = 0;

          while (slot->buf2[i] == 0)
            i++;
          verify_mismatch (self, slot->offset + i, "has data where zeros are expected from");
          break;
        }
      self->bytes_verified += slot->length;
      break;
    case SLOT_FREE:
      g_assert_not_reached ();
    }
  slot_release (slot);
}

/* ---- phases ---- */

/* Only after the handles are closed: libnbd may write into read buffers
 * until then. */
static void
free_workers (MdNbdCopy *self)
{
  for (guint i = 0; i < self->n_workers; i++)
    {
      Worker *w = &self->workers[i];

      for (guint j = 0; j < self->requests; j++)
        {
          g_free (w->slots[j].buf);
          g_free (w->slots[j].buf2);
        }
      g_free (w->slots);
      g_array_unref (w->src_ext);
      g_array_unref (w->dst_ext);
    }
  g_clear_pointer (&self->workers, g_free);
  self->n_workers = 0;
}

static void
finish (MdNbdCopy *self)
{
  g_autoptr (GTask) task = g_steal_pointer (&self->task);

  if (self->finished)
    return;
  self->finished = TRUE;
  self->end_us = g_get_monotonic_time ();
  if (self->error == NULL)
    self->phase = MD_NBD_COPY_PHASE_DONE;

  g_source_destroy (self->source);
  g_clear_pointer (&self->source, g_source_unref);
  if (self->cancel_source != NULL)
    g_source_destroy (self->cancel_source);
  g_clear_pointer (&self->cancel_source, g_source_unref);
  if (self->drain_source != NULL)
    g_source_destroy (self->drain_source);
  g_clear_pointer (&self->drain_source, g_source_unref);
  g_source_destroy (self->progress_source);
  g_clear_pointer (&self->progress_source, g_source_unref);

  for (guint i = 0; i < self->conns->len; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);

      /* A polite goodbye where the connection is idle; nbd_close() below
       * drops whatever is still in flight (only after an error). */
      if (conn->nbd != NULL && nbd_aio_is_ready (conn->nbd) == 1)
        nbd_aio_disconnect (conn->nbd, 0);
    }
  g_ptr_array_set_size (self->conns, 0);
  free_workers (self);
  g_clear_pointer (&self->zero_buf, g_free);
  g_queue_clear (&self->completed);

  if (self->error != NULL)
    g_task_return_error (task, g_steal_pointer (&self->error));
  else
    g_task_return_boolean (task, TRUE);
}

static void
start_pass (MdNbdCopy *self, MdNbdCopyPhase phase)
{
  self->phase = phase;
  self->next_range = 0;
  self->last_progress = 0;
  for (guint i = 0; i < self->n_workers; i++)
    worker_reset (&self->workers[i]);
}

static void
start_flush (MdNbdCopy *self)
{
  self->phase = MD_NBD_COPY_PHASE_FLUSHING;
  if (!self->dst_can_flush)
    return;
  for (guint i = 0; i < self->n_workers; i++)
    {
      Worker *w = &self->workers[i];

      w->flush_err = 0;
      if (!w->ready)
        continue;
      if (nbd_aio_flush (w->dst->nbd,
                         (nbd_completion_callback){ .callback = on_flush_done, .user_data = w }, 0)
          == -1)
        {
          g_autofree char *host = where (self, SIDE_DST);

          set_error (self, MD_ERROR_STORAGE_FAILED, "NBD flush to %s failed: %s%s", host,
                     nbd_get_error (), consequence (self));
          return;
        }
      w->dst->in_flight++;
      w->flush_pending = TRUE;
    }
}

static void
flush_progress (MdNbdCopy *self)
{
  for (guint i = 0; i < self->n_workers; i++)
    if (self->workers[i].flush_pending)
      return;
  for (guint i = 0; i < self->n_workers; i++)
    if (self->workers[i].flush_err != 0)
      {
        g_autofree char *host = where (self, SIDE_DST);

        set_error (self, MD_ERROR_STORAGE_FAILED, "NBD flush to %s failed: %s%s", host,
                   g_strerror (self->workers[i].flush_err), consequence (self));
        return;
      }
  if (self->verify)
    start_pass (self, MD_NBD_COPY_PHASE_VERIFYING);
  else
    finish (self);
}

static void
pass_progress (MdNbdCopy *self)
{
  for (guint i = 0; i < self->n_workers; i++)
    worker_fill (&self->workers[i]);
  if (self->stopping || self->next_range < self->size)
    return;
  for (guint i = 0; i < self->n_workers; i++)
    if (!worker_idle (&self->workers[i]))
      return;
  emit_progress (self, self->size);
  if (self->phase == MD_NBD_COPY_PHASE_COPYING)
    {
      start_flush (self);
      if (!self->stopping)
        flush_progress (self);
    }
  else
    finish (self);
}

/* The first connection of each side is up: check that the pair fits, then
 * decide how many connections to use and open the others. */
static void
first_pair_ready (MdNbdCopy *self, Conn *src, Conn *dst)
{
  g_autofree char *src_export = export_desc (self, SIDE_SRC);
  g_autofree char *dst_export = export_desc (self, SIDE_DST);
  int64_t src_size = nbd_get_size (src->nbd);
  int64_t dst_size = nbd_get_size (dst->nbd);
  gboolean multi;
  guint n;

  if (src_size < 0 || dst_size < 0)
    {
      set_error (self, MD_ERROR_STORAGE_FAILED, "cannot read the export size: %s",
                 nbd_get_error ());
      return;
    }
  self->size = src_size;
  self->dst_size = dst_size;
  if (self->dst_size < self->size)
    {
      set_error (self, MD_ERROR_STORAGE_FAILED,
                 "%s is smaller (%" G_GUINT64_FORMAT " bytes) than %s (%" G_GUINT64_FORMAT
                 " bytes); create the destination image with at least the source's virtual size",
                 dst_export, self->dst_size, src_export, self->size);
      return;
    }
  if (!self->verify_only && nbd_is_read_only (dst->nbd) == 1)
    {
      set_error (self, MD_ERROR_STORAGE_FAILED, "%s is read-only; it must be exported writable",
                 dst_export);
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
          conn_new (self, SIDE_SRC, i);
          conn_new (self, SIDE_DST, i);
        }
      w->src = find_conn (self, SIDE_SRC, i);
      w->dst = find_conn (self, SIDE_DST, i);
    }
}

/* Notice connections that became ready. The copy starts as soon as the
 * first pair is up; further pairs join when they are. */
static void
connect_progress (MdNbdCopy *self)
{
  for (guint i = 0; i < self->conns->len && !self->stopping; i++)
    {
      Conn *conn = g_ptr_array_index (self->conns, i);

      if (conn->ready || conn->dropped)
        continue;
      if (nbd_aio_is_ready (conn->nbd) == 1)
        conn->ready = TRUE;
      else if (nbd_aio_is_dead (conn->nbd) == 1 || nbd_aio_is_closed (conn->nbd) == 1)
        fail_conn (self, conn, "the server closed the connection during the handshake");
    }
  if (self->stopping)
    return;
  if (self->workers == NULL)
    {
      Conn *src = find_conn (self, SIDE_SRC, 0);
      Conn *dst = find_conn (self, SIDE_DST, 0);

      if (src == NULL || dst == NULL || !src->ready || !dst->ready)
        return;
      first_pair_ready (self, src, dst);
      if (self->stopping)
        return;
      start_pass (self,
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

static gboolean
on_drain_timeout (gpointer user_data)
{
  /* The task's reference to us goes away in finish(). */
  g_autoptr (MdNbdCopy) self = g_object_ref (user_data);

  finish (self);
  return G_SOURCE_REMOVE;
}

static void
pump (MdNbdCopy *self)
{
  Slot *slot;

  if (self->finished)
    return;
  while ((slot = g_queue_pop_head (&self->completed)) != NULL)
    slot_process (self, slot);

  if (!self->stopping)
    connect_progress (self);
  if (!self->stopping)
    switch (self->phase)
      {
      case MD_NBD_COPY_PHASE_CONNECTING:
        break;
      case MD_NBD_COPY_PHASE_COPYING:
      case MD_NBD_COPY_PHASE_VERIFYING:
        pass_progress (self);
        break;
      case MD_NBD_COPY_PHASE_FLUSHING:
        flush_progress (self);
        if (self->phase == MD_NBD_COPY_PHASE_VERIFYING && !self->stopping)
          pass_progress (self);
        break;
      case MD_NBD_COPY_PHASE_IDLE:
      case MD_NBD_COPY_PHASE_DONE:
        break;
      }
  if (self->finished)
    return;
  if (self->stopping)
    {
      if (total_in_flight (self) == 0)
        {
          finish (self);
          return;
        }
      if (self->drain_source == NULL)
        {
          self->drain_source = g_timeout_source_new (DRAIN_TIMEOUT_MS);
          g_source_set_callback (self->drain_source, on_drain_timeout, self, NULL);
          g_source_attach (self->drain_source, g_main_context_get_thread_default ());
        }
    }
  if (!g_queue_is_empty (&self->completed))
    self->pump_pending = TRUE;
}

static gboolean
on_cancelled (GCancellable *cancellable, gpointer user_data)
{
  g_autoptr (MdNbdCopy) self = g_object_ref (user_data);

  if (self->finished)
    return G_SOURCE_REMOVE;
  set_error (self, MD_ERROR_CANCELLED,
             "copy cancelled in phase %s after %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
             " bytes%s",
             md_nbd_copy_phase_to_string (self->phase), progress_done (self), self->size,
             self->dst_written ? consequence (self) : "");
  pump (self);
  return G_SOURCE_REMOVE;
}

/* ---- public API ---- */

void
md_nbd_copy_run_async (MdNbdCopy *self, GCancellable *cancellable, GAsyncReadyCallback callback,
                       gpointer user_data)
{
  GMainContext *context = g_main_context_get_thread_default ();
  g_return_if_fail (MD_IS_NBD_COPY (self));
  g_return_if_fail (self->task == NULL && self->phase == MD_NBD_COPY_PHASE_IDLE);

  self->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (self->task, md_nbd_copy_run_async);
  /* Cancellation is reported with our own message, after draining. */
  g_task_set_check_cancellable (self->task, FALSE);
  self->start_us = g_get_monotonic_time ();
  self->phase = MD_NBD_COPY_PHASE_CONNECTING;

  self->source = g_source_new (&nbd_source_funcs, sizeof (NbdSource));
  ((NbdSource *) self->source)->self = self;
  g_source_set_name (self->source, "md-nbd-copy");
  /* Otherwise GLib removes and re-adds our descriptors around every
   * dispatch, and each re-add wakes the context up once more. */
  g_source_set_can_recurse (self->source, TRUE);
  g_source_attach (self->source, context);

  if (cancellable != NULL)
    {
      self->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (self->cancel_source, G_SOURCE_FUNC (on_cancelled), self, NULL);
      g_source_attach (self->cancel_source, context);
    }
  self->progress_source = g_timeout_source_new (PROGRESS_INTERVAL_MS);
  g_source_set_callback (self->progress_source, on_progress_tick, self, NULL);
  g_source_attach (self->progress_source, context);

  /* Failures here are reported from the first dispatch, never before this
   * function returns. */
  if (conn_new (self, SIDE_SRC, 0) != NULL)
    conn_new (self, SIDE_DST, 0);
  self->pump_pending = TRUE;
}

gboolean
md_nbd_copy_run_finish (MdNbdCopy *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

MdNbdCopy *
md_nbd_copy_new (const char *src_uri, const char *dst_uri)
{
  MdNbdCopy *self;

  g_return_val_if_fail (src_uri != NULL && dst_uri != NULL, NULL);
  self = g_object_new (MD_TYPE_NBD_COPY, NULL);
  self->uri[SIDE_SRC] = g_strdup (src_uri);
  self->uri[SIDE_DST] = g_strdup (dst_uri);
  return self;
}

void
md_nbd_copy_set_connections (MdNbdCopy *self, guint connections)
{
  g_return_if_fail (MD_IS_NBD_COPY (self) && self->phase == MD_NBD_COPY_PHASE_IDLE);
  self->connections_wanted = CLAMP (connections, 1, MD_NBD_COPY_MAX_CONNECTIONS);
}

void
md_nbd_copy_set_requests (MdNbdCopy *self, guint requests)
{
  g_return_if_fail (MD_IS_NBD_COPY (self) && self->phase == MD_NBD_COPY_PHASE_IDLE);
  self->requests = CLAMP (requests, 1, MD_NBD_COPY_MAX_REQUESTS);
}

void
md_nbd_copy_set_request_size (MdNbdCopy *self, guint request_size)
{
  g_return_if_fail (MD_IS_NBD_COPY (self) && self->phase == MD_NBD_COPY_PHASE_IDLE);
  self->request_size = CLAMP (request_size, 4096, MD_NBD_COPY_MAX_REQUEST_SIZE);
}

void
md_nbd_copy_set_verify (MdNbdCopy *self, gboolean verify)
{
  g_return_if_fail (MD_IS_NBD_COPY (self) && self->phase == MD_NBD_COPY_PHASE_IDLE);
  self->verify = verify;
}

void
md_nbd_copy_set_verify_only (MdNbdCopy *self, gboolean verify_only)
{
  g_return_if_fail (MD_IS_NBD_COPY (self) && self->phase == MD_NBD_COPY_PHASE_IDLE);
  self->verify_only = verify_only;
  if (verify_only)
    self->verify = TRUE;
}

void
md_nbd_copy_set_destination_is_zero (MdNbdCopy *self, gboolean is_zero)
{
  g_return_if_fail (MD_IS_NBD_COPY (self) && self->phase == MD_NBD_COPY_PHASE_IDLE);
  self->dst_is_zero = is_zero;
}

void
md_nbd_copy_set_tls_certificates (MdNbdCopy *self, const char *dir)
{
  g_return_if_fail (MD_IS_NBD_COPY (self) && self->phase == MD_NBD_COPY_PHASE_IDLE);
  g_free (self->tls_dir);
  self->tls_dir = g_strdup (dir);
}

void
md_nbd_copy_set_labels (MdNbdCopy *self, const char *disk, const char *src_host,
                        const char *dst_host)
{
  g_return_if_fail (MD_IS_NBD_COPY (self));
  g_free (self->disk);
  self->disk = g_strdup (disk);
  g_free (self->label[SIDE_SRC]);
  self->label[SIDE_SRC] = g_strdup (src_host);
  g_free (self->label[SIDE_DST]);
  self->label[SIDE_DST] = g_strdup (dst_host);
}

MdNbdCopyPhase
md_nbd_copy_get_phase (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), MD_NBD_COPY_PHASE_IDLE);
  return self->phase;
}

const char *
md_nbd_copy_phase_to_string (MdNbdCopyPhase phase)
{
  static const char *const names[] = { "idle",     "connecting", "copying",
                                       "flushing", "verifying",  "done" };

  return (guint) phase < G_N_ELEMENTS (names) ? names[phase] : "unknown";
}

guint64
md_nbd_copy_get_bytes_total (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), 0);
  return self->size;
}

guint64
md_nbd_copy_get_bytes_allocated (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), 0);
  return self->bytes_allocated;
}

guint64
md_nbd_copy_get_bytes_copied (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), 0);
  return self->bytes_copied;
}

guint64
md_nbd_copy_get_bytes_zeroed (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), 0);
  return self->bytes_zeroed;
}

guint64
md_nbd_copy_get_bytes_verified (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), 0);
  return self->bytes_verified;
}

guint
md_nbd_copy_get_connections_used (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), 0);
  return self->connections_used;
}

gint64
md_nbd_copy_get_elapsed (MdNbdCopy *self)
{
  g_return_val_if_fail (MD_IS_NBD_COPY (self), 0);
  if (self->start_us == 0)
    return 0;
  return (self->finished ? self->end_us : g_get_monotonic_time ()) - self->start_us;
}

static void
md_nbd_copy_finalize (GObject *object)
{
  MdNbdCopy *self = MD_NBD_COPY (object);

  /* A run holds a reference through its task, so none is in progress. */
  g_ptr_array_unref (self->conns);
  free_workers (self);
  g_free (self->zero_buf);
  g_clear_error (&self->error);
  for (Side side = SIDE_SRC; side <= SIDE_DST; side++)
    {
      g_free (self->uri[side]);
      g_free (self->label[side]);
    }
  g_free (self->disk);
  g_free (self->tls_dir);
  G_OBJECT_CLASS (md_nbd_copy_parent_class)->finalize (object);
}

static void
md_nbd_copy_class_init (MdNbdCopyClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = md_nbd_copy_finalize;

  signals[SIGNAL_PROGRESS] =
      g_signal_new ("progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                    G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_UINT64);
}

static void
md_nbd_copy_init (MdNbdCopy *self)
{
  self->connections_wanted = MD_NBD_COPY_DEFAULT_CONNECTIONS;
  self->requests = MD_NBD_COPY_DEFAULT_REQUESTS;
  self->request_size = MD_NBD_COPY_DEFAULT_REQUEST_SIZE;
  self->conns = g_ptr_array_new_with_free_func ((GDestroyNotify) conn_free);
  g_queue_init (&self->completed);
}

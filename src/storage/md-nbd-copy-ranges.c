/* migrationd: the NBD copier's workers. Each worker (one source and one
 * destination connection) takes the next range, asks both servers for
 * base:allocation block status over it, then keeps up to `requests`
 * commands in flight: reads of data extents (each followed by a write of
 * the same bytes), write-zeroes for zero extents where the destination
 * does not already read as zeros, nothing where it does; in the verify
 * pass, reads of both sides and a compare. Completion callbacks only
 * record the result and queue the slot (libnbd holds the handle lock);
 * copy_slot_process() does the rest from copy_pump(). */
#include "config.h"

#include "md-nbd-copy-private.h"

#include <string.h>

/* ---- workers ---- */

void
copy_worker_reset (Worker *w)
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

int
copy_on_flush_done (void *user_data, int *error)
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
          copy_fail_issue (self, "block-status", side, w->covered);
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
        copy_fail_io (self, "block-status", side, w->covered, g_strerror (w->bs_err[side]));
        return;
      }
  end = MIN (extents_end (w->src_ext), extents_end (w->dst_ext));
  if (end <= w->covered)
    {
      copy_fail_io (self, "block-status",
                    extents_end (w->src_ext) <= w->covered ? SIDE_SRC : SIDE_DST, w->covered,
                    "the server described no extents");
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
      copy_fail_issue (self, "read", side, slot->offset);
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
      copy_fail_issue (self, op == SLOT_ZERO ? "write-zeroes" : "write", SIDE_DST, slot->offset);
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

void
copy_worker_fill (Worker *w)
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

gboolean
copy_worker_idle (Worker *w)
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
  g_autofree char *src = copy_where (self, SIDE_SRC);
  g_autofree char *dst = copy_where (self, SIDE_DST);

  copy_set_error (
      self, MD_ERROR_STORAGE_FAILED,
      "verification failed: the destination on %s %s the source on %s at offset %" G_GUINT64_FORMAT
      "%s",
      dst, what, src, offset, self->verify_only ? "" : "; the destination image must not be used");
}

void
copy_slot_process (MdNbdCopy *self, Slot *slot)
{
  if (slot->src_err != 0)
    copy_fail_io (self, slot_what (slot->op), SIDE_SRC, slot->offset, g_strerror (slot->src_err));
  else if (slot->dst_err != 0)
    copy_fail_io (self, slot_what (slot->op), SIDE_DST, slot->offset, g_strerror (slot->dst_err));
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

/* Only after the handles are closed: libnbd may write into read buffers
 * until then. */
void
copy_free_workers (MdNbdCopy *self)
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

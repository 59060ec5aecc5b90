/* migrationd: extent-aware disk copy between two NBD exports (the object,
 * its run and its phases; md-nbd-copy-private.h lists the other modules).
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
 * record the result and queue the slot; everything else happens in copy_pump(),
 * which runs after every dispatch. */
#include "config.h"

#include "md-nbd-copy-private.h"

G_DEFINE_TYPE (MdNbdCopy, md_nbd_copy, G_TYPE_OBJECT)

enum
{
  SIGNAL_PROGRESS,
  N_SIGNALS,
};

static guint signals[N_SIGNALS];

/* ---- progress ---- */

guint64
copy_progress_done (MdNbdCopy *self)
{
  if (self->phase == MD_NBD_COPY_PHASE_VERIFYING)
    return self->bytes_verified;
  if (self->phase == MD_NBD_COPY_PHASE_COPYING)
    return self->bytes_copied + self->bytes_zeroed;
  return 0;
}

void
copy_emit_progress (MdNbdCopy *self, guint64 done)
{
  self->last_progress = done;
  g_signal_emit (self, signals[SIGNAL_PROGRESS], 0, done, self->size);
}

static gboolean
on_progress_tick (gpointer user_data)
{
  MdNbdCopy *self = user_data;
  guint64 done = copy_progress_done (self);

  if ((self->phase == MD_NBD_COPY_PHASE_COPYING || self->phase == MD_NBD_COPY_PHASE_VERIFYING)
      && done != self->last_progress)
    copy_emit_progress (self, done);
  return G_SOURCE_CONTINUE;
}

/* ---- phases ---- */

void
copy_finish (MdNbdCopy *self)
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
  copy_free_workers (self);
  g_clear_pointer (&self->zero_buf, g_free);
  g_queue_clear (&self->completed);

  if (self->error != NULL)
    g_task_return_error (task, g_steal_pointer (&self->error));
  else
    g_task_return_boolean (task, TRUE);
}

void
copy_start_pass (MdNbdCopy *self, MdNbdCopyPhase phase)
{
  self->phase = phase;
  self->next_range = 0;
  self->last_progress = 0;
  for (guint i = 0; i < self->n_workers; i++)
    copy_worker_reset (&self->workers[i]);
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
      if (nbd_aio_flush (
              w->dst->nbd,
              (nbd_completion_callback){ .callback = copy_on_flush_done, .user_data = w }, 0)
          == -1)
        {
          g_autofree char *host = copy_where (self, SIDE_DST);

          copy_set_error (self, MD_ERROR_STORAGE_FAILED, "NBD flush to %s failed: %s%s", host,
                          nbd_get_error (), copy_consequence (self));
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
        g_autofree char *host = copy_where (self, SIDE_DST);

        copy_set_error (self, MD_ERROR_STORAGE_FAILED, "NBD flush to %s failed: %s%s", host,
                        g_strerror (self->workers[i].flush_err), copy_consequence (self));
        return;
      }
  if (self->verify)
    copy_start_pass (self, MD_NBD_COPY_PHASE_VERIFYING);
  else
    copy_finish (self);
}

static void
pass_progress (MdNbdCopy *self)
{
  for (guint i = 0; i < self->n_workers; i++)
    copy_worker_fill (&self->workers[i]);
  if (self->stopping || self->next_range < self->size)
    return;
  for (guint i = 0; i < self->n_workers; i++)
    if (!copy_worker_idle (&self->workers[i]))
      return;
  copy_emit_progress (self, self->size);
  if (self->phase == MD_NBD_COPY_PHASE_COPYING)
    {
      start_flush (self);
      if (!self->stopping)
        flush_progress (self);
    }
  else
    copy_finish (self);
}

static gboolean
on_drain_timeout (gpointer user_data)
{
  /* The task's reference to us goes away in copy_finish(). */
  g_autoptr (MdNbdCopy) self = g_object_ref (user_data);

  copy_finish (self);
  return G_SOURCE_REMOVE;
}

void
copy_pump (MdNbdCopy *self)
{
  Slot *slot;

  if (self->finished)
    return;
  while ((slot = g_queue_pop_head (&self->completed)) != NULL)
    copy_slot_process (self, slot);

  if (!self->stopping)
    copy_connect_progress (self);
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
      if (copy_total_in_flight (self) == 0)
        {
          copy_finish (self);
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
  copy_set_error (self, MD_ERROR_CANCELLED,
                  "copy cancelled in phase %s after %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT
                  " bytes%s",
                  md_nbd_copy_phase_to_string (self->phase), copy_progress_done (self), self->size,
                  self->dst_written ? copy_consequence (self) : "");
  copy_pump (self);
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

  self->source = copy_source_new (self);
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
  if (copy_conn_new (self, SIDE_SRC, 0) != NULL)
    copy_conn_new (self, SIDE_DST, 0);
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
  copy_free_workers (self);
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
  self->conns = g_ptr_array_new_with_free_func ((GDestroyNotify) copy_conn_free);
  g_queue_init (&self->completed);
}

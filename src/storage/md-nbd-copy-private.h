/* migrationd: the libnbd copier's insides, shared by its modules:
 *   md-nbd-copy.c              the object, its run (pump) and its phases;
 *   md-nbd-copy-connections.c  libnbd handles, the GSource that polls them,
 *                              the first pair's checks, failure messages;
 *   md-nbd-copy-ranges.c       workers: block status of a range, reads,
 *                              writes, zeroes and compares, completions.
 * Not for use outside storage/md-nbd-copy*.c. */
#pragma once

#include "md-nbd-copy.h"

#include "common/md-error.h"

#include <libnbd.h>

G_BEGIN_DECLS

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

/* ---- md-nbd-copy.c ---- */

/* Runs after every dispatch: completions, connections, the phase's work. */
void copy_pump (MdNbdCopy *self);
/* Ends the run (once): closes the handles, returns the task. */
void copy_finish (MdNbdCopy *self);
void copy_start_pass (MdNbdCopy *self, MdNbdCopyPhase phase);
guint64 copy_progress_done (MdNbdCopy *self);
void copy_emit_progress (MdNbdCopy *self, guint64 done);

/* ---- md-nbd-copy-connections.c ---- */

/* "host A", or the NBD server's URI when unlabelled. */
char *copy_where (MdNbdCopy *self, Side side);
char *copy_export_desc (MdNbdCopy *self, Side side);
const char *copy_consequence (MdNbdCopy *self);
/* The first error wins; sets `stopping`. */
void copy_set_error (MdNbdCopy *self, MdError code, const char *format, ...) G_GNUC_PRINTF (3, 4);
void copy_fail_io (MdNbdCopy *self, const char *what, Side side, guint64 offset,
                   const char *reason);
void copy_fail_issue (MdNbdCopy *self, const char *what, Side side, guint64 offset);
void copy_fail_conn (MdNbdCopy *self, Conn *conn, const char *reason);
GSource *copy_source_new (MdNbdCopy *self);
Conn *copy_conn_new (MdNbdCopy *self, Side side, guint index);
void copy_conn_free (Conn *conn);
Conn *copy_find_conn (MdNbdCopy *self, Side side, guint index);
guint copy_total_in_flight (MdNbdCopy *self);
/* Notices connections that became ready; starts the first pass once the
 * first pair is up. */
void copy_connect_progress (MdNbdCopy *self);

/* ---- md-nbd-copy-ranges.c ---- */

void copy_worker_reset (Worker *w);
/* Takes ranges and keeps up to `requests` commands in flight. */
void copy_worker_fill (Worker *w);
gboolean copy_worker_idle (Worker *w);
void copy_slot_process (MdNbdCopy *self, Slot *slot);
int copy_on_flush_done (void *user_data, int *error);
/* Only after the handles are closed. */
void copy_free_workers (MdNbdCopy *self);

G_END_DECLS

/* migrationd: what the outgoing migration's modules share (source engine
 * and its storage half). Not for other modules. */
#pragma once

#include "md-migration-source.h"
#include "storage/md-offline-copy.h"
#include "storage/md-storage.h"

G_BEGIN_DECLS

#define POLL_INTERVAL_MS 250

typedef struct
{
  MdManager *manager;
  MdGuest *guest;
  MdMigration *migration;
  GVariant *options;
  char *destination;
  char *migration_id;
  char *peer_token; /* from Prepare: proves to the peer that we prepared it */

  MdPeerConnection *peer;
  gulong peer_closed_id;
  gulong peer_aborted_id;
  GCancellable *cancellable;
  MdDomain *dest_def;
  char *tls_object; /* id of our tls-creds object in QEMU, or NULL */

  MdStorageCopyMode storage_mode;
  GPtrArray *plan;      /* MdDomainDisk* to copy, borrowed from the live definition */
  GVariant *disks_info; /* what the peer needs to create their targets */
  char *nbd_host;       /* the peer's NBD server */
  GStrv fresh_targets;  /* the peer created these images: all zero */
  guint16 nbd_port;
  MdQmp *mirror_qmp; /* BLOCK_JOB_COMPLETED tells why a mirror stopped */
  gulong mirror_event_id;
  GError *mirror_error; /* the first mirror's failure, worded for the user */
  guint mirrors_added;  /* NBD client nodes + mirror jobs made so far */
  gboolean mirrors_ready;
  guint64 disk_total;
  guint64 disk_processed;
  guint64 disk_rate;
  gint64 disk_sample_time;

  gboolean offline;
  gboolean was_running;
  gboolean src_persistent;
  gboolean qemu_migrating; /* "migrate" was issued and not yet over */
  gboolean postcopy_started;
  gboolean peer_resumed; /* Finish succeeded: the guest runs there */
  gboolean finishing;    /* the failure path is under way */
  guint poll_id;
  gboolean poll_pending; /* one query-migrate/query-block-jobs at a time */
  char *uri;             /* where the peer's QEMU listens */
  MdQmp *event_qmp;      /* MIGRATION events trigger an immediate poll */
  gulong event_id;
  gboolean asked_again;
  guint abort_id;
  guint64 downtime;
  GError *error; /* the first error */
  gboolean done;
  gint refs; /* one for the run, one per pending callback */
} Source;

typedef Source SourceRef;

Source *source_ref (Source *src);
void source_unref (Source *src);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SourceRef, source_unref)

/* QMP commands whose answer only matters as success or failure. */
typedef void (*StepFunc) (Source *src, GError *error);
void source_qmp_step (Source *src, const char *command, JsonObject *args, StepFunc next);
void source_ignore_result (Source *src, GError *error);
JsonObject *source_json_args (void);
guint64 source_member_uint (JsonObject *obj, const char *name);

/* query-migrate / query-block-jobs: at most one in flight. */
void source_query (Source *src, const char *command, GAsyncReadyCallback callback);

const char *source_host_name (Source *src);
const char *source_peer_name (Source *src);
const char *source_phase (Source *src);

/* The failure path (takes @error), and the way forward after Perform. */
void source_fail (Source *src, GError *error);
void source_set_capabilities (Source *src, GError *error);
void source_finish_on_peer (Source *src);

/* md-migration-source-storage.c */
void source_start_mirrors (Source *src, GError *error);
void source_stop_mirrors (Source *src);
void source_cancel_mirrors (Source *src);
void source_copy_offline (Source *src);
void source_set_mirror_speed (Source *src, guint64 bytes_per_second);

G_END_DECLS

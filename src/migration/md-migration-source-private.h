/* migrationd: what the outgoing migration's modules share (source engine
 * and its storage half). Not for other modules. */
#pragma once

#include "md-migration-convergence.h"
#include "md-migration-machine.h"
#include "md-migration-qemu.h"
#include "md-migration-source.h"
#include "md-tunnel.h"
#include "storage/md-offline-copy.h"
#include "storage/md-storage.h"

G_BEGIN_DECLS

/* Progress figures only: state changes come from QEMU's events. */
#define PROGRESS_INTERVAL_MS 250

/* One outgoing migration: a reference-counted box (g_rc_box). Every
 * pending QMP command, peer call and timer holds a reference; the run
 * itself holds one until source_done(). */
typedef struct
{
  MdManager *manager;
  MdGuest *guest;
  MdMigration *migration;
  MdMachine *machine;     /* phases, authority, undo list, journal */
  MdMigrateOptions *opts; /* parsed Guest1.Migrate options */
  char *destination;
  char *migration_id;
  char *tag;        /* unique prefix of this migration's names inside QEMU */
  char *peer_token; /* from Prepare: proves to the peer that we prepared it */

  MdPeerConnection *peer;
  gulong peer_closed_id;
  gulong peer_aborted_id;
  GCancellable *cancellable;
  MdDomain *dest_def;
  char *tls_object;     /* id of our tls-creds object in QEMU, or NULL */
  MdTunnelOut *tunnel;  /* transport=tunnel: QEMU's streams to the peer port */
  GError *tunnel_error; /* a stream broke; QEMU's status is being asked */
  GError *held_failure; /* QEMU or the peer failed first: waiting for the stream's name */
  guint held_failure_id;

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
  gboolean qemu_completed; /* QEMU's migration completed (all memory sent) */
  gboolean finish_pending; /* Peer1.Finish(true) is under way */
  guint progress_id;
  gboolean query_pending; /* one query-migrate/query-block-jobs at a time */
  char *uri;              /* where the peer's QEMU listens */
  MdQmp *event_qmp;       /* QEMU's events drive the phases */
  gulong event_ids[2];
  guint total_time_tries;
  gboolean final_figures_pending; /* QEMU's total-time and downtime not set yet */
  gboolean done_deferred;         /* source_done() waits for them */
  gboolean destroy_deferred;      /* so does stopping the source QEMU */
  gint64 qemu_setup_us;           /* QEMU's MIGRATION event timestamps: */
  gint64 qemu_completed_us;       /* its total time if it never says it */
  guint abort_id;
  guint64 downtime;
  guint split_asks;   /* Resolve calls made after postcopy broke */
  guint cancel_waits; /* query-migrate asked while QEMU still cancels */
  guint cont_tries;   /* cont refused while a dying peer QEMU held the image lock */

  MdConvergence *convergence; /* the convergence policy (md-migration-source-converge.c) */
  gboolean converge_pending;  /* a step is on its way to QEMU */
  guint64 converge_downtime;
  guint converge_sample_seconds; /* the early dirty-rate sample's length */
  guint converge_sample_id;      /* until it is read (holds a ref) */
  guint converge_sample_polls;

  /* Postcopy recovery (md-migration-source-recovery.c). */
  gboolean pc_paused;      /* the stream broke: recovering */
  gboolean pc_attempt;     /* an attempt is under way */
  gboolean pc_resume_sent; /* QEMU accepted migrate resume=true in this attempt */
  gboolean pc_pause_sent;  /* migrate-pause sent on a stalled stream */
  gboolean finish_lost;    /* Finish's answer was lost in postcopy: re-sent after recovery */
  guint pc_deadline_id;
  guint pc_retry_id;
  guint pc_attempts;
  guint64 pc_transferred;
  gint64 pc_progress_time;
  GCancellable *pc_cancellable;
  char *pc_last_error;
} Source;

typedef Source SourceRef;

Source *source_ref (Source *src);
void source_unref (Source *src);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SourceRef, source_unref)

/* A QMP command on the guest's QEMU whose answer only matters as success
 * or failure; @next runs only while the migration is neither over nor
 * failing (undo steps use source_undo_step()). */
typedef void (*StepFunc) (Source *src, GError *error);
void source_qmp_step (Source *src, const char *command, JsonObject *args, StepFunc next);
/* The same once the journal is on disk: for a step that makes what the
 * journal just recorded (a QEMU object or node a restarted daemon must
 * find and remove). */
void source_qmp_step_written (Source *src, const char *command, JsonObject *args, StepFunc next);
/* For undo steps: @command, then the next undo step, whatever happened. */
void source_undo_step (Source *src, const char *command, JsonObject *args);
void source_ignore_result (Source *src, GError *error);
JsonObject *source_json_args (void);
guint64 source_member_uint (JsonObject *obj, const char *name);
/* TRUE when a callback comes too late: the migration ended or failed. */
gboolean source_is_stale (Source *src);
/* A timer holding a reference. */
guint source_timeout_add (Source *src, guint ms, GSourceFunc func);

/* query-migrate / query-block-jobs: at most one in flight. */
void source_query (Source *src, const char *command, GAsyncReadyCallback callback);

const char *source_host_name (Source *src);
const char *source_peer_name (Source *src);
const char *source_phase (Source *src);

/* The failure path (takes @error), and the way forward after Perform. */
void source_fail (Source *src, GError *error);
void source_set_capabilities (Source *src, GError *error);
void source_finish_on_peer (Source *src);

/* Perform on @uri: TLS object, mirrors, capabilities, migrate. */
void source_perform (Source *src, const char *uri);

/* md-migration-source-tunnel.c: Perform through the tunnel, with the
 * tokens of Prepare's answer @prepared. */
void source_perform_tunnelled (Source *src, GVariant *prepared);
/* transport=tunnel, offline: the copier's connections become data
 * streams (md_tunnel_out_new_local()); then source_copy_offline(). */
void source_copy_offline_tunnelled (Source *src, GVariant *prepared);
void source_fail_naming_stream (Source *src, GError *error);

/* md-migration-source-end.c: Finish, Confirm, Resolving, the end. */
/* The migration is over (also after the undo list ran): publish the
 * result, let go of the run's reference. */
void source_done (Source *src);
void source_destroy_qemu (Source *src);
/* The peer runs the guest and QEMU sent everything: the source QEMU goes. */
void source_confirm_success (Source *src);
/* The peer went away at the switch-over: ask it what became of the guest. */
void source_resolve_with_peer (Source *src, const GError *why);

/* md-migration-source-storage.c */
void source_start_mirrors (Source *src, GError *error);
void source_stop_mirrors (Source *src);
void source_cancel_mirrors (Source *src);
void source_copy_offline (Source *src);
void source_set_mirror_speed (Source *src, guint64 bytes_per_second);
void source_on_block_job_event (Source *src);
char *source_mirror_job_name (Source *src, const MdDomainDisk *disk);

/* md-migration-source-begin.c: Guest1.Migrate's checks, then the
 * Source with its Migration1 object and state machine (NULL with @error
 * when nothing started). */
Source *source_begin (MdManager *manager, MdGuest *guest, const char *destination,
                      GVariant *options, guint owner_uid, GError **error);
char *source_resolve_destination (MdManager *manager, const char *destination, GError **error);
gboolean source_is_this_host (MdManager *manager, const char *destination);
MdDomain *source_build_destination_definition (MdManager *manager, MdGuest *guest,
                                               const MdMigrateOptions *opts, GError **error);

/* md-migration-source-converge.c: the convergence policy's QEMU side,
 * and query-migrate's figures on Migration1. */
void source_converge_start (Source *src);
void source_converge_capabilities (Source *src, JsonObject *args);
void source_converge_parameters (Source *src, JsonObject *args);
void source_converge (Source *src, JsonObject *info);
void source_converge_note_postcopy (Source *src, const char *reason);
void source_publish_migrate_stats (Source *src, JsonObject *info, const char *status);

/* md-migration-source-recovery.c: postcopy whose stream broke. */
void source_split_ask (Source *src);
void source_recovery_on_status (Source *src, const char *status, JsonObject *info);
gboolean source_recovery_finish_lost (Source *src);
void source_recovery_stop (Source *src);

/* Lets go of QEMU's events, timers and the peer: the migration is over. */
void source_teardown (Source *src);

/* md-migration-source-control.c: Migration1's controls. */
extern const MdMigrationControl source_control;

G_END_DECLS

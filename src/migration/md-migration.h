/* migrationd: org.migrationd.Migration1 — one migration's progress,
 * result and controls, on the source and on the destination. */
#pragma once

#include "md-dbus-generated.h"

G_BEGIN_DECLS

typedef struct _MdManager MdManager;

typedef enum
{
  MD_MIGRATION_OUTGOING,
  MD_MIGRATION_INCOMING,
  MD_MIGRATION_SAVE, /* Guest1.Save / ManagedSave: the stream goes to a file */
} MdMigrationDirection;

/* Figures from QEMU's query-migrate, as the migration module reads them. */
typedef struct
{
  guint64 memory_total;
  guint64 memory_processed;
  guint64 memory_remaining;
  guint64 rate;       /* bytes/s */
  guint64 dirty_rate; /* bytes/s */
  guint64 iteration;
  guint64 expected_downtime; /* ms */
  guint64 disk_total;
  guint64 disk_processed;
  guint64 disk_remaining;
  guint64 disk_rate;
} MdMigrationStats;

#define MD_TYPE_MIGRATION (md_migration_get_type ())
G_DECLARE_FINAL_TYPE (MdMigration, md_migration, MD, MIGRATION, MdDbusMigration1Skeleton)

/* Called once a tuning request was applied (@error NULL: QEMU took the
 * value and the property shows it) or refused (@error, taken). */
typedef void (*MdMigrationTuned) (GError *error, gpointer user_data);

/* What a direction-specific engine does for the control methods; each
 * returns FALSE with @error set when it cannot. The tuning ones return
 * TRUE when the request went to QEMU and call @done with QEMU's answer;
 * the property changes only when QEMU accepted the value. Arguments are
 * range-checked (md_migrate_check_*) before the engine sees them. */
typedef struct
{
  gboolean (*cancel) (gpointer engine, GError **error);
  gboolean (*set_bandwidth) (gpointer engine, guint64 bytes_per_second, MdMigrationTuned done,
                             gpointer user_data, GError **error);
  gboolean (*set_max_downtime) (gpointer engine, guint64 ms, MdMigrationTuned done,
                                gpointer user_data, GError **error);
  gboolean (*start_postcopy) (gpointer engine, GError **error);
} MdMigrationControl;

MdMigration *md_migration_new (MdManager *manager, guint number, MdMigrationDirection direction,
                               const char *guest_path, const char *guest_name, const char *peer,
                               guint owner_uid, GVariant *options);

const char *md_migration_get_object_path (MdMigration *self);
MdMigrationDirection md_migration_get_direction (MdMigration *self);
gboolean md_migration_is_finished (MdMigration *self);

void md_migration_set_control (MdMigration *self, const MdMigrationControl *control,
                               gpointer engine);
void md_migration_set_peer (MdMigration *self, const char *peer);
void md_migration_set_phase (MdMigration *self, const char *phase);
/* queued, running, postcopy, postcopy-paused, postcopy-recovering
 * (completed/failed/cancelled via _complete). */
void md_migration_set_running_state (MdMigration *self, const char *state);
/* The daemon cannot prove which copy of the guest is the only one: State
 * "needs-attention" with @error saying what was left and why; the object
 * stays until an admin resolves it (or a later resolution completes it). */
void md_migration_set_needs_attention (MdMigration *self, const GError *error);
void md_migration_set_bandwidth_property (MdMigration *self, guint64 bytes_per_second);
void md_migration_set_max_downtime_property (MdMigration *self, guint64 ms);

/* ms since this Migration1 was made (statistics' time base). */
guint64 md_migration_elapsed_ms (MdMigration *self);
/* Convergence and ConvergenceReason (md-migration-convergence.h). */
void md_migration_set_convergence (MdMigration *self, const char *step, const char *reason);
/* RecoveryAttempts: postcopy recovery attempts made so far. */
void md_migration_set_recovery_attempts (MdMigration *self, guint attempts);

/* New figures: published through PropertiesChanged at most twice a
 * second; Progress never goes backwards. */
void md_migration_update_stats (MdMigration *self, const MdMigrationStats *stats);
/* Extra counters for GetStatistics (QEMU's own figures). */
void md_migration_set_statistic (MdMigration *self, const char *key, GVariant *value);
/* Statistic "time-@event-ms": ms from the start of this Migration1 to now,
 * set once (the first call counts). bench/migrate-bench.py splits the
 * fixed cost of a migration into phases with them. */
void md_migration_mark_time (MdMigration *self, const char *event);

/* Records the outcome (@error NULL on success; the first error wins, later
 * ones passed here are kept as detail), flushes the properties, emits
 * Completed and keeps the object readable for migration-keep-seconds.
 * @downtime_ms and @total_ms are final figures (0 if unknown). */
void md_migration_complete (MdMigration *self, const GError *error, guint64 downtime_ms);

/* Adds a later error as detail of an already recorded first error. */
void md_migration_add_error_detail (MdMigration *self, const GError *error);

/* Cancel from inside the daemon (an evacuation being cancelled); TRUE
 * when it was asked or had already ended. */
gboolean md_migration_cancel (MdMigration *self, GError **error);

/* The first error recorded so far (NULL if none). */
const GError *md_migration_get_error (MdMigration *self);

G_END_DECLS

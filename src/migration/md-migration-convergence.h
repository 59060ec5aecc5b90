/* migrationd: the convergence policy (Guest1.Migrate option
 * convergence=auto).
 *
 * A precopy migration of a busy guest may never finish: the guest dirties
 * memory as fast as the link moves it. The policy watches QEMU's
 * query-migrate after each iteration (dirty-sync-count) and calls an
 * iteration "without progress" when the bytes left are not below the
 * bytes sent in that iteration by [convergence] stall-shrink-percent
 * (the guest dirtied as much as the link moved), or when the dirty rate
 * is at or above stall-dirty-percent of the transfer rate. After stall-iterations such
 * iterations in a row the migration is stalled and the policy takes the
 * next step of the ladder, each only when the one before did not help
 * within its window:
 *   1. raise the downtime limit in downtime-steps steps up to the option
 *      max-downtime-ceiling (none when the ceiling is max-downtime);
 *   2. throttle the guest's vCPUs (QEMU auto-converge), unless the caller
 *      said auto-converge=false; its window is throttle-iterations
 *      iterations or until QEMU throttles 99 %, shorter once 2/3 of
 *      abort-after have passed; with postcopy allowed only when
 *      throttle-before-postcopy is set (see README: postcopy finishes a
 *      busy guest in one pass, throttling takes tens of seconds) or the
 *      caller said auto-converge=true (QEMU throttles from the start;
 *      the step gives it its window before anything else);
 *   3. switch to postcopy, when the option postcopy allows it;
 *   4. give up with a message naming both rates.
 *
 * The early check: when the ladder's next useful rung is postcopy
 * (allowed, no throttling before it), the policy asks for one sample of
 * the guest's dirty rate as the migration starts (QEMU's calc-dirty-rate,
 * page sampling over [convergence] early-sample-seconds) and, at the
 * first transfer rate of the first pass, switches to postcopy at once
 * when the guest dirties at least early-dirty-percent of what the link
 * moves and more than the link moves within max-downtime-ceiling:
 * pre-copy would crawl or never end, and waiting for the end of the
 * first pass would only make postcopy send the re-dirtied working set
 * again.
 *
 * The policy only decides; md-migration-source-converge.c talks to QEMU.
 * Throttling cannot be switched on in a running migration (QEMU refuses
 * capability changes), so when the ladder may throttle, QEMU starts with
 * auto-converge and max-cpu-throttle held at 1 % (md_convergence_hold_*),
 * and step 2 lifts the cap. */
#pragma once

#include "common/md-config.h"
#include "common/md-options.h"

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum
{
  MD_CONVERGENCE_MANUAL, /* convergence=manual: the policy does nothing */
  MD_CONVERGENCE_PRECOPY,
  MD_CONVERGENCE_DOWNTIME_RAISED,
  MD_CONVERGENCE_THROTTLING,
  MD_CONVERGENCE_POSTCOPY,
  MD_CONVERGENCE_GAVE_UP,
} MdConvergenceStep;

/* The figures of one query-migrate answer the policy reads. */
typedef struct
{
  guint64 iteration;   /* ram dirty-sync-count */
  guint64 remaining;   /* ram remaining, bytes */
  guint64 transferred; /* ram transferred, bytes, all iterations */
  guint64 rate;        /* transfer rate, bytes/s */
  guint64 dirty_rate;  /* bytes/s */
  guint throttle;      /* cpu-throttle-percentage */
  guint64 elapsed_ms;  /* since the migration started */
} MdConvergenceSample;

/* What the caller must do now. */
typedef struct
{
  MdConvergenceStep step; /* the new step */
  guint64 downtime;       /* MD_CONVERGENCE_DOWNTIME_RAISED: the new limit, ms */
} MdConvergenceAction;

/* The throttle cap of a held (not yet escalated) auto-converge. */
#define MD_CONVERGENCE_HELD_THROTTLE 1
/* QEMU's own defaults, restored when throttling is the step. */
#define MD_CONVERGENCE_THROTTLE_MAX 99
#define MD_CONVERGENCE_THROTTLE_INCREMENT 10

typedef struct _MdConvergence MdConvergence;

MdConvergence *md_convergence_new (const MdMigrateOptions *opts, const MdConfig *config);
void md_convergence_free (MdConvergence *conv);

/* TRUE when QEMU must start with auto-converge held at
 * MD_CONVERGENCE_HELD_THROTTLE so that the ladder can throttle later. */
gboolean md_convergence_holds_throttle (const MdMigrateOptions *opts, const MdConfig *config);
/* Adds the held-throttle capability / parameters to QEMU's arguments
 * (migrate-set-capabilities / migrate-set-parameters) when needed. */
void md_convergence_hold_capabilities (const MdMigrateOptions *opts, const MdConfig *config,
                                       JsonObject *args);
void md_convergence_hold_parameters (const MdMigrateOptions *opts, const MdConfig *config,
                                     JsonObject *args);

/* One query-migrate answer during precopy. TRUE with @action filled when
 * the migration is stalled and the next step is due; the policy then
 * counts the step as taken. */
gboolean md_convergence_feed (MdConvergence *conv, const MdConvergenceSample *sample,
                              MdConvergenceAction *action);
/* Seconds of dirty-rate sampling the caller should start now (QEMU
 * calc-dirty-rate, mode page-sampling; at the start of the migration,
 * the guest runs already), or 0 when no early check is due; the policy
 * counts the sample as started (one per migration). */
guint md_convergence_start_sample (MdConvergence *conv);
/* The sampled dirty rate, bytes/s. md_convergence_feed() decides with it
 * at the first rate QEMU gives in the first pass: postcopy (the step's
 * record says early=true) when the guest clearly cannot converge. */
void md_convergence_set_sample (MdConvergence *conv, guint64 dirty_rate);
/* The caller switched to postcopy by hand (StartPostcopy). */
void md_convergence_note_postcopy (MdConvergence *conv, const char *reason);

MdConvergenceStep md_convergence_get_step (MdConvergence *conv);
/* Why the current step was taken ("" at the start). */
const char *md_convergence_get_reason (MdConvergence *conv);
/* Every step taken, oldest first: aa{sv} with step, reason, time-ms
 * (@elapsed_ms of each, as passed to md_convergence_record). */
GVariant *md_convergence_get_steps (MdConvergence *conv);
void md_convergence_record (MdConvergence *conv, guint64 elapsed_ms);
/* "guest dirties X MiB/s, link moves Y MiB/s; allow postcopy or raise
 * max-downtime-ceiling", from the last stalled iterations. */
char *md_convergence_failure_message (MdConvergence *conv);

const char *md_convergence_step_to_string (MdConvergenceStep step);

G_END_DECLS

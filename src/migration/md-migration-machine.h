/* migrationd: the migration state machine, one per direction.
 *
 * Start here to understand a migration. The phases of each direction are
 * an enum with one transition table; md_machine_advance() is the only way
 * from one phase to the next, and at every transition it
 *   - checks the table (a wrong transition is a bug: it is logged and
 *     refused),
 *   - publishes the Migration1 Phase string derived from the enum,
 *   - passes the fault point "<direction>-<phase>" (common/md-fault.h),
 *   - queues a journal write (md-migration-journal.h); the steps that
 *     must not happen before the record is on disk (Finish sent, "cont"
 *     on the destination, Prepare answered, a QEMU object made) wait for
 *     it with md_machine_when_written(); the others go on meanwhile.
 *
 * Each step that creates something pushes what undoes it
 * (md_machine_push_undo()). md_machine_fail() is the one failure path:
 * the first error wins, later ones become detail, and the undo list runs
 * in reverse. Which undo steps may run depends on who holds the
 * authoritative guest (md_machine_set_authority()):
 *   - SOURCE: before the destination has started the guest; every undo
 *     runs, so the guest keeps running on the source;
 *   - SPLIT: postcopy, memory on both hosts; undo steps that kill or
 *     resume a QEMU are skipped: neither side is killed or resumed alone;
 *   - DESTINATION: the destination runs the guest; only cleanup runs.
 * The rule is enforced here, not at the call sites.
 *
 * Room is left (phases, authority, the undo kinds) for a tunnel, a
 * convergence policy, postcopy recovery and save/restore. */
#pragma once

#include "md-migration-journal.h"
#include "md-migration.h"

G_BEGIN_DECLS

typedef enum
{
  MD_PHASE_BEGIN,
  MD_PHASE_PREPARE,
  MD_PHASE_MIRROR_DISKS,
  MD_PHASE_COPY_DISKS,
  MD_PHASE_PERFORM,
  MD_PHASE_POSTCOPY,
  MD_PHASE_FINISH,
  MD_PHASE_CONFIRM,
  /* Interrupted (daemon restart, peer lost at switch-over): asking the
   * peer which copy is the guest before touching either. */
  MD_PHASE_RESOLVING,
  MD_PHASE_ENDED,
  MD_PHASE_N_PHASES,
} MdPhase;

typedef enum
{
  MD_AUTHORITY_SOURCE,
  MD_AUTHORITY_SPLIT,
  MD_AUTHORITY_DESTINATION,
} MdAuthority;

const char *md_phase_to_string (MdPhase phase);
MdPhase md_phase_from_string (const char *name);
const char *md_authority_to_string (MdAuthority authority);
MdAuthority md_authority_from_string (const char *name);

/* What an undo step may do, and so when md_machine_fail() runs it. */
typedef enum
{
  /* Frees what only this host uses (a QEMU object, a node, an image no
   * guest runs from): always runs. */
  MD_UNDO_CLEANUP,
  /* Stops the migration or resumes/kills a copy of the guest: runs only
   * while the source holds the authoritative guest. */
  MD_UNDO_GUEST,
} MdUndoKind;

typedef struct _MdMachine MdMachine;

/* An undo step: does its work and calls md_machine_undo_done() once
 * (at once or from a callback). */
typedef void (*MdUndoFunc) (gpointer owner, gpointer data);

/* @owner is the Source or Incoming the machine belongs to: undo steps
 * and @on_undone get it back. @migration (ref taken) shows the phase;
 * @journal (taken) is written at each transition. */
MdMachine *md_machine_new (MdMigrationDirection direction, gpointer owner, MdMigration *migration,
                           MdJournal *journal);
/* The machine of a migration a previous daemon left open (a restart in
 * postcopy): phase and authority as @journal (taken) recorded them. */
MdMachine *md_machine_restore (MdMigrationDirection direction, gpointer owner,
                               MdMigration *migration, MdJournal *journal);
void md_machine_free (MdMachine *machine);

MdPhase md_machine_get_phase (MdMachine *machine);
const char *md_machine_get_phase_name (MdMachine *machine);
MdAuthority md_machine_get_authority (MdMachine *machine);
MdJournal *md_machine_get_journal (MdMachine *machine);
MdMigration *md_machine_get_migration (MdMachine *machine);

/* Moves to @phase (see the header comment). FALSE for a transition the
 * table does not have, or once the machine failed or ended: the caller
 * must not go on with that step. */
gboolean md_machine_advance (MdMachine *machine, MdPhase phase);

/* Records who holds the guest now and queues the journal write; the
 * step it guards (e.g. "cont" on the destination) waits for it with
 * md_machine_when_written(). */
void md_machine_set_authority (MdMachine *machine, MdAuthority authority);

/* Writes the journal after the caller changed what it records. Writes
 * are queued (md_journal_commit_async()): a step that must not happen
 * before the record is on disk waits with md_machine_when_written(). */
void md_machine_commit (MdMachine *machine);
/* The write-ahead barrier: @then (@data) runs once every journal write
 * queued so far is on disk (at once if none is pending). @data must keep
 * the owner alive (a reference, dropped by @destroy): the machine belongs
 * to it. */
void md_machine_when_written (MdMachine *machine, void (*then) (gpointer data), gpointer data,
                              GDestroyNotify destroy);

/* Pushes an undo step named @name (shown in debug logs and the journal);
 * @data is freed with @destroy after the step ran or was dropped. */
void md_machine_push_undo (MdMachine *machine, const char *name, MdUndoKind kind, MdUndoFunc func,
                           gpointer data, GDestroyNotify destroy);
/* Drops the newest undo step called @name without running it (what it
 * undoes is gone or handed over). */
void md_machine_drop_undo (MdMachine *machine, const char *name);
/* TRUE if an undo step @name is pending. */
gboolean md_machine_has_undo (MdMachine *machine, const char *name);

/* The one failure path: records @error (taken; the first error wins, a
 * later one becomes detail), then runs the undo steps newest first and
 * calls @on_undone (owner) once when all are done. Calls made while the
 * undo list runs only add detail. The phase is not changed: a failed
 * migration shows the phase it failed in. */
void md_machine_fail (MdMachine *machine, GError *error, void (*on_undone) (gpointer owner));
/* For undo steps: this one is done. */
void md_machine_undo_done (MdMachine *machine);

/* TRUE once md_machine_fail() was called. */
gboolean md_machine_is_failing (MdMachine *machine);
/* The first error, or NULL. */
const GError *md_machine_get_error (MdMachine *machine);

/* The end: MD_PHASE_ENDED internally (the Phase property keeps the last
 * phase shown), undo steps dropped, the journal removed when
 * @remove_journal, else kept with @outcome ("running", "aborted") as a
 * tombstone the peer can ask about. */
void md_machine_end (MdMachine *machine, const char *outcome, gboolean remove_journal);
gboolean md_machine_is_ended (MdMachine *machine);

G_END_DECLS

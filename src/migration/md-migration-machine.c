/* migrationd: the migration state machine (see the header). */
#include "config.h"

#include "md-migration-machine.h"
#include "common/md-error.h"
#include "common/md-fault.h"

#define BIT(p) (1u << (p))

static const char *const phase_names[MD_PHASE_N_PHASES] = {
  [MD_PHASE_BEGIN] = "begin",
  [MD_PHASE_PREPARE] = "prepare",
  [MD_PHASE_MIRROR_DISKS] = "mirror-disks",
  [MD_PHASE_COPY_DISKS] = "copy-disks",
  [MD_PHASE_PERFORM] = "perform",
  [MD_PHASE_POSTCOPY] = "postcopy",
  [MD_PHASE_FINISH] = "finish",
  [MD_PHASE_CONFIRM] = "confirm",
  [MD_PHASE_RESOLVING] = "resolving",
  [MD_PHASE_ENDED] = "ended",
};

/* Outgoing: Begin, Prepare (peer), disks, Perform (QEMU), Finish (peer),
 * Confirm. Postcopy calls Finish while QEMU still moves memory, and
 * confirms when QEMU is done. */
static const guint outgoing_table[MD_PHASE_N_PHASES] = {
  [MD_PHASE_BEGIN] = BIT (MD_PHASE_PREPARE),
  [MD_PHASE_PREPARE] = BIT (MD_PHASE_MIRROR_DISKS) | BIT (MD_PHASE_COPY_DISKS)
                       | BIT (MD_PHASE_PERFORM) | BIT (MD_PHASE_FINISH),
  [MD_PHASE_MIRROR_DISKS] = BIT (MD_PHASE_PERFORM),
  [MD_PHASE_COPY_DISKS] = BIT (MD_PHASE_FINISH),
  [MD_PHASE_PERFORM] = BIT (MD_PHASE_POSTCOPY) | BIT (MD_PHASE_FINISH),
  [MD_PHASE_POSTCOPY] = BIT (MD_PHASE_CONFIRM) | BIT (MD_PHASE_RESOLVING),
  [MD_PHASE_FINISH] = BIT (MD_PHASE_CONFIRM) | BIT (MD_PHASE_RESOLVING),
  [MD_PHASE_RESOLVING] = BIT (MD_PHASE_CONFIRM),
  [MD_PHASE_CONFIRM] = 0,
};

/* Incoming: Prepare (QEMU waits), Perform (the source sends), Postcopy
 * (seen at Finish or on QEMU's event), Finish (resume here). */
static const guint incoming_table[MD_PHASE_N_PHASES] = {
  [MD_PHASE_BEGIN] = BIT (MD_PHASE_PREPARE) | BIT (MD_PHASE_RESOLVING),
  [MD_PHASE_PREPARE] = BIT (MD_PHASE_PERFORM),
  [MD_PHASE_PERFORM] = BIT (MD_PHASE_POSTCOPY) | BIT (MD_PHASE_FINISH),
  [MD_PHASE_POSTCOPY] = BIT (MD_PHASE_FINISH),
  [MD_PHASE_FINISH] = 0,
  [MD_PHASE_RESOLVING] = BIT (MD_PHASE_FINISH),
};

static const char *const authority_names[] = { "source", "split", "destination" };

typedef struct
{
  char *name;
  MdUndoKind kind;
  MdUndoFunc func;
  gpointer data;
  GDestroyNotify destroy;
} Undo;

struct _MdMachine
{
  MdMigrationDirection direction;
  gpointer owner;
  MdMigration *migration;
  MdJournal *journal;
  MdPhase phase;
  MdAuthority authority;
  GPtrArray *undo; /* Undo*, oldest first */
  GError *error;   /* the first */
  gboolean failing;
  gboolean in_undo;
  void (*on_undone) (gpointer owner);
  guint journal_writes; /* statistics "journal-writes" and "journal-wait-ms" */
  gint64 journal_wait_us;
};

const char *
md_phase_to_string (MdPhase phase)
{
  return phase < MD_PHASE_N_PHASES ? phase_names[phase] : "?";
}

MdPhase
md_phase_from_string (const char *name)
{
  for (guint i = 0; i < MD_PHASE_N_PHASES; i++)
    if (g_strcmp0 (phase_names[i], name) == 0)
      return (MdPhase) i;
  return MD_PHASE_BEGIN;
}

const char *
md_authority_to_string (MdAuthority authority)
{
  return authority_names[authority];
}

MdAuthority
md_authority_from_string (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (authority_names); i++)
    if (g_strcmp0 (authority_names[i], name) == 0)
      return (MdAuthority) i;
  return MD_AUTHORITY_SOURCE;
}

static void
undo_free (Undo *undo)
{
  if (undo->destroy != NULL && undo->data != NULL)
    undo->destroy (undo->data);
  g_free (undo->name);
  g_free (undo);
}

static const char *
side (MdMachine *machine)
{
  return machine->direction == MD_MIGRATION_OUTGOING ? "source" : "dest";
}

static MdMachine *
machine_alloc (MdMigrationDirection direction, gpointer owner, MdMigration *migration,
               MdJournal *journal)
{
  MdMachine *machine = g_new0 (MdMachine, 1);

  machine->direction = direction;
  machine->owner = owner;
  machine->migration = g_object_ref (migration);
  machine->journal = journal;
  machine->undo = g_ptr_array_new_with_free_func ((GDestroyNotify) undo_free);
  return machine;
}

MdMachine *
md_machine_new (MdMigrationDirection direction, gpointer owner, MdMigration *migration,
                MdJournal *journal)
{
  MdMachine *machine = machine_alloc (direction, owner, migration, journal);

  machine->phase = MD_PHASE_BEGIN;
  machine->authority = MD_AUTHORITY_SOURCE;
  md_journal_set_string (journal, "phase", "begin");
  md_journal_set_string (journal, "authority", "source");
  return machine;
}

/* A restarted daemon takes up a migration where its journal left it. */
MdMachine *
md_machine_restore (MdMigrationDirection direction, gpointer owner, MdMigration *migration,
                    MdJournal *journal)
{
  MdMachine *machine = machine_alloc (direction, owner, migration, journal);

  machine->phase = md_phase_from_string (md_journal_get_string (journal, "phase"));
  machine->authority = md_authority_from_string (md_journal_get_string (journal, "authority"));
  md_migration_set_phase (migration, md_phase_to_string (machine->phase));
  return machine;
}

void
md_machine_free (MdMachine *machine)
{
  if (machine == NULL)
    return;
  g_ptr_array_unref (machine->undo);
  g_clear_object (&machine->migration);
  md_journal_free (machine->journal);
  g_clear_error (&machine->error);
  g_free (machine);
}

MdPhase
md_machine_get_phase (MdMachine *machine)
{
  return machine->phase;
}

const char *
md_machine_get_phase_name (MdMachine *machine)
{
  return md_phase_to_string (machine->phase);
}

MdAuthority
md_machine_get_authority (MdMachine *machine)
{
  return machine->authority;
}

MdJournal *
md_machine_get_journal (MdMachine *machine)
{
  return machine->journal;
}

MdMigration *
md_machine_get_migration (MdMachine *machine)
{
  return machine->migration;
}

/* Queues a journal write (the writer thread does the fsyncs): only the
 * write-ahead points wait for it (md_machine_when_written()). */
static void
journal_write (MdMachine *machine)
{
  md_journal_commit_async (machine->journal);
  machine->journal_writes++;
  md_migration_set_statistic (machine->migration, "journal-writes",
                              g_variant_new_uint32 (machine->journal_writes));
}

typedef struct
{
  MdMachine *machine;
  gint64 since;
  void (*then) (gpointer data);
  gpointer data;
  GDestroyNotify destroy;
} Written;

static void
on_written (gpointer user_data)
{
  Written *written = user_data;
  MdMachine *machine = written->machine;

  /* The time migrations spent waiting for the disk: GetStatistics
   * "journal-wait-ms" (the bench shows it). */
  machine->journal_wait_us += g_get_monotonic_time () - written->since;
  md_migration_set_statistic (machine->migration, "journal-wait-ms",
                              g_variant_new_uint64 ((guint64) machine->journal_wait_us / 1000));
  written->then (written->data);
}

static void
written_free (gpointer user_data)
{
  Written *written = user_data;

  if (written->destroy != NULL)
    written->destroy (written->data);
  g_free (written);
}

void
md_machine_when_written (MdMachine *machine, void (*then) (gpointer data), gpointer data,
                         GDestroyNotify destroy)
{
  Written *written = g_new0 (Written, 1);

  written->machine = machine;
  written->since = g_get_monotonic_time ();
  written->then = then;
  written->data = data;
  written->destroy = destroy;
  md_journal_when_written (machine->journal, on_written, written, written_free);
}

static void
write_undo_names (MdMachine *machine)
{
  JsonArray *names = json_array_new ();

  for (guint i = 0; i < machine->undo->len; i++)
    json_array_add_string_element (names, ((Undo *) g_ptr_array_index (machine->undo, i))->name);
  json_object_set_array_member (md_journal_get_object (machine->journal), "undo", names);
}

void
md_machine_commit (MdMachine *machine)
{
  if (machine->phase == MD_PHASE_ENDED)
    return;
  write_undo_names (machine);
  journal_write (machine);
}

gboolean
md_machine_advance (MdMachine *machine, MdPhase phase)
{
  const guint *table =
      machine->direction == MD_MIGRATION_OUTGOING ? outgoing_table : incoming_table;
  g_autofree char *point = NULL;

  if (machine->failing || machine->phase == MD_PHASE_ENDED)
    return FALSE;
  if (phase == machine->phase)
    return TRUE;
  if ((table[machine->phase] & BIT (phase)) == 0)
    {
      g_critical ("%s migration %s: no transition from %s to %s", side (machine),
                  md_journal_get_id (machine->journal), md_phase_to_string (machine->phase),
                  md_phase_to_string (phase));
      return FALSE;
    }
  g_debug ("%s migration %s: %s -> %s", side (machine), md_journal_get_id (machine->journal),
           md_phase_to_string (machine->phase), md_phase_to_string (phase));
  machine->phase = phase;
  md_journal_set_string (machine->journal, "phase", md_phase_to_string (phase));
  md_machine_commit (machine);
  if (phase != MD_PHASE_RESOLVING)
    md_migration_set_phase (machine->migration, md_phase_to_string (phase));
  point = g_strdup_printf ("%s-%s", side (machine), md_phase_to_string (phase));
  md_fault_point (point);
  return TRUE;
}

void
md_machine_set_authority (MdMachine *machine, MdAuthority authority)
{
  g_autofree char *point = NULL;

  if (machine->authority == authority)
    return;
  g_message ("%s migration %s: the authoritative guest is now on the %s", side (machine),
             md_journal_get_id (machine->journal),
             authority == MD_AUTHORITY_SPLIT ? "two hosts (postcopy)"
                                             : md_authority_to_string (authority));
  machine->authority = authority;
  md_journal_set_string (machine->journal, "authority", md_authority_to_string (authority));
  md_machine_commit (machine);
  point = g_strdup_printf ("%s-authority-%s", side (machine), md_authority_to_string (authority));
  md_fault_point (point);
}

void
md_machine_push_undo (MdMachine *machine, const char *name, MdUndoKind kind, MdUndoFunc func,
                      gpointer data, GDestroyNotify destroy)
{
  Undo *undo = g_new0 (Undo, 1);

  undo->name = g_strdup (name);
  undo->kind = kind;
  undo->func = func;
  undo->data = data;
  undo->destroy = destroy;
  g_ptr_array_add (machine->undo, undo);
}

static gint
find_undo (MdMachine *machine, const char *name)
{
  for (gint i = (gint) machine->undo->len - 1; i >= 0; i--)
    if (g_str_equal (((Undo *) g_ptr_array_index (machine->undo, i))->name, name))
      return i;
  return -1;
}

void
md_machine_drop_undo (MdMachine *machine, const char *name)
{
  gint i = find_undo (machine, name);

  if (i >= 0)
    g_ptr_array_remove_index (machine->undo, (guint) i);
}

gboolean
md_machine_has_undo (MdMachine *machine, const char *name)
{
  return find_undo (machine, name) >= 0;
}

static void
run_next_undo (MdMachine *machine)
{
  Undo *undo;

  while (machine->undo->len > 0)
    {
      undo = g_ptr_array_steal_index (machine->undo, machine->undo->len - 1);
      if (undo->kind == MD_UNDO_GUEST && machine->authority != MD_AUTHORITY_SOURCE)
        {
          /* The one place the rule lives: once the destination holds (part
           * of) the guest, nothing stops the migration or resumes or kills
           * a copy because of a failure. */
          g_message ("%s migration %s: not undoing '%s': the guest is on the %s", side (machine),
                     md_journal_get_id (machine->journal), undo->name,
                     md_authority_to_string (machine->authority));
          undo_free (undo);
          continue;
        }
      g_debug ("%s migration %s: undo %s", side (machine), md_journal_get_id (machine->journal),
               undo->name);
      machine->in_undo = TRUE;
      undo->func (machine->owner, undo->data);
      undo_free (undo);
      return;
    }
  machine->in_undo = FALSE;
  if (machine->on_undone != NULL)
    {
      void (*on_undone) (gpointer owner) = machine->on_undone;
      machine->on_undone = NULL;
      on_undone (machine->owner);
    }
}

void
md_machine_undo_done (MdMachine *machine)
{
  if (!machine->in_undo)
    return;
  machine->in_undo = FALSE;
  run_next_undo (machine);
}

void
md_machine_fail (MdMachine *machine, GError *error, void (*on_undone) (gpointer owner))
{
  g_autofree char *point = NULL;

  if (machine->error == NULL)
    {
      machine->error = md_error_convert (error, MD_ERROR_FAILED);
      md_migration_add_error_detail (machine->migration, machine->error);
    }
  else
    md_migration_add_error_detail (machine->migration, error);
  g_error_free (error);
  if (machine->failing || machine->phase == MD_PHASE_ENDED)
    return;
  machine->failing = TRUE;
  machine->on_undone = on_undone;
  md_journal_set_string (machine->journal, "failed", machine->error->message);
  md_machine_commit (machine);
  point = g_strdup_printf ("%s-fail", side (machine));
  md_fault_point (point);
  run_next_undo (machine);
}

gboolean
md_machine_is_failing (MdMachine *machine)
{
  return machine->failing;
}

const GError *
md_machine_get_error (MdMachine *machine)
{
  return machine->error;
}

void
md_machine_end (MdMachine *machine, const char *outcome, gboolean remove_journal)
{
  if (machine->phase == MD_PHASE_ENDED)
    return;
  g_ptr_array_set_size (machine->undo, 0);
  if (remove_journal)
    md_journal_remove (machine->journal);
  else
    {
      md_journal_set_string (machine->journal, "outcome", outcome);
      md_journal_set_string (machine->journal, "phase", "ended");
      json_object_remove_member (md_journal_get_object (machine->journal), "undo");
      journal_write (machine);
    }
  machine->phase = MD_PHASE_ENDED;
}

gboolean
md_machine_is_ended (MdMachine *machine)
{
  return machine->phase == MD_PHASE_ENDED;
}

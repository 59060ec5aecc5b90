/* migrationd: the crash-safe journal of one migration on one host.
 *
 * One JSON file per migration in <state_dir>/migrations/, rewritten
 * atomically (write, fsync, rename) at every transition that changes
 * what a restarted daemon must know: the phase, which side holds the
 * authoritative guest, and what this host created for the migration
 * (QEMU pid, images, exports, QEMU objects). A restarted daemon reads
 * every record before it accepts new migrations (md-migration-recover.c). */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _MdJournal MdJournal;

/* A new, not yet written record for migration @id ("outgoing" or
 * "incoming" @direction). */
MdJournal *md_journal_new (const char *state_dir, const char *id, const char *direction);
void md_journal_free (MdJournal *journal);
/* A copy of the record, writing the same file through the same queue. */
MdJournal *md_journal_dup (MdJournal *journal);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdJournal, md_journal_free)

const char *md_journal_get_id (MdJournal *journal);
const char *md_journal_get_direction (MdJournal *journal);
const char *md_journal_get_path (MdJournal *journal);

/* The record's fields (owned by the journal). */
JsonObject *md_journal_get_object (MdJournal *journal);
void md_journal_set_string (MdJournal *journal, const char *key, const char *value);
const char *md_journal_get_string (MdJournal *journal, const char *key);
void md_journal_set_int (MdJournal *journal, const char *key, gint64 value);
gint64 md_journal_get_int (MdJournal *journal, const char *key);
/* Lists of strings (images, exports, QEMU objects): adding twice keeps one. */
void md_journal_list_add (MdJournal *journal, const char *key, const char *value);
void md_journal_list_remove (MdJournal *journal, const char *key, const char *value);
/* NULL-terminated, owned by the caller (never NULL). */
GStrv md_journal_list_get (MdJournal *journal, const char *key);

/* Writes the record now: temporary file, fsync, rename (and fsync of the
 * directory). Blocks: for start-up recovery only. */
gboolean md_journal_commit (MdJournal *journal, GError **error);
/* The migration is resolved: the record goes (after every write queued
 * before, so a late write cannot bring it back). */
void md_journal_remove (MdJournal *journal);

/* The running daemon's writes go through one writer thread, in order:
 * the fsyncs (milliseconds each, far more on a busy disk) neither block
 * the main loop nor hold up a migration that need not wait for them. */

/* Queues a write of the record as it is now. */
void md_journal_commit_async (MdJournal *journal);
/* TRUE while writes of this record are queued and not yet on disk. */
gboolean md_journal_is_pending (MdJournal *journal);
/* The write-ahead barrier: @then (@data) runs in the caller's main
 * context once every write queued so far is on disk; at once (before
 * this returns) when nothing is pending. @destroy frees @data after. */
void md_journal_when_written (MdJournal *journal, void (*then) (gpointer data), gpointer data,
                              GDestroyNotify destroy);
/* Waits for every queued write (daemon shut-down). */
void md_journal_flush_all (void);

/* Every record in @state_dir, oldest first (GPtrArray of MdJournal*);
 * an unreadable record is skipped with a warning. */
GPtrArray *md_journal_list (const char *state_dir);

G_END_DECLS

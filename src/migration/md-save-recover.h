/* migrationd: a save the previous daemon left unfinished (killed while
 * QEMU wrote the file): the restarted daemon puts the guest back as it
 * was, or, when the file was already complete, finishes the save. */
#pragma once

#include "daemon/md-manager.h"
#include "md-migration-journal.h"

G_BEGIN_DECLS

/* The journal direction of a save record. */
#define MD_SAVE_JOURNAL_DIRECTION "save"

/* Resolves @journal (taken), holding the manager's recovery meanwhile. */
void md_save_recover (MdManager *manager, MdJournal *journal);

/* The start time of process @pid (field 22 of /proc/PID/stat), so a
 * record names that process and not a later one with the same PID;
 * 0 when it cannot be read. */
guint64 md_save_process_start_time (GPid pid);

G_END_DECLS

/* migrationd: a save the previous daemon left unfinished (killed while
 * QEMU wrote the file): the restarted daemon puts the guest back as it
 * was, or, when the file was already complete, finishes the save. */
#pragma once

#include "daemon/md-manager.h"
#include "md-migration-journal.h"
#include "md-save-file.h"

G_BEGIN_DECLS

/* Resolves @journal (taken), holding the manager's recovery meanwhile. */
void md_save_recover (MdManager *manager, MdJournal *journal);

G_END_DECLS

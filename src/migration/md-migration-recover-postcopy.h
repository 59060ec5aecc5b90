/* migrationd: a daemon restarted while its guest was leaving in postcopy
 * takes up the stream where the previous daemon left it.
 *
 * The source QEMU is re-attached. While its status is postcopy-active,
 * nothing is done but waiting for it to complete. While it is
 * postcopy-paused (the stream broke: a cut link, the destination's
 * daemon restarted too), the recovery runs as in a live migration
 * (md-migration-source-recovery.c): connect to the destination's daemon,
 * Peer1.Recover there with the token the journal kept (its QEMU listens
 * again: migrate-recover), migrate with resume=true here, again every few
 * seconds, until the journal's postcopy-recovery-timeout counted from the
 * restart. Nothing is killed or resumed here. */
#pragma once

#include "daemon/md-guest.h"
#include "daemon/md-manager.h"
#include "md-migration-journal.h"
#include "md-migration.h"

G_BEGIN_DECLS

/* Follows the QEMU of @guest (leaving in postcopy, migration @journal,
 * borrowed: only read now) until its migration completed; @migration
 * shows the state (postcopy, postcopy-paused, postcopy-recovering) and
 * the attempts. */
void md_postcopy_resume_async (MdManager *manager, MdJournal *journal, MdGuest *guest,
                               MdMigration *migration, GAsyncReadyCallback callback,
                               gpointer user_data);
/* TRUE once QEMU says completed. FALSE with MD_ERROR_FAILED when the
 * deadline passed with the stream still broken (the message says what
 * each side holds and what to do), MD_ERROR_QEMU_FAILED when QEMU failed
 * or is gone. */
gboolean md_postcopy_resume_finish (GAsyncResult *result, GError **error);

G_END_DECLS

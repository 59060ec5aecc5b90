/* migrationd: the incoming side of a migration — Peer1 Prepare, Finish,
 * Abort and CheckPaths, and autokill when the source goes away. */
#pragma once

#include "daemon/md-manager.h"
#include "md-migration-journal.h"
#include "md-migration.h"
#include "peer/md-peer.h"

G_BEGIN_DECLS

typedef struct _MdMigrationDest MdMigrationDest;

/* Answers the Peer1 calls @listener receives; both are borrowed and must
 * outlive the returned object. Makes the default image directory when
 * [storage] image-dirs is not set; MD_ERROR_CONFIG when it cannot. */
MdMigrationDest *md_migration_dest_new (MdManager *manager, MdPeerListener *listener,
                                        GError **error);
void md_migration_dest_free (MdMigrationDest *dest);

/* A daemon restarted while its guest arrived in postcopy: the incoming
 * migration @journal (taken on success) describes is open again, with
 * @migration (ref taken) and @guest (its QEMU re-attached, in postcopy),
 * so the source's Peer1.Recover finds it and QEMU's completion ends it.
 * FALSE with @error when the journal lacks what that needs (an older
 * daemon wrote it). */
gboolean md_migration_dest_reattach_postcopy (MdMigrationDest *dest, MdJournal *journal,
                                              MdGuest *guest, MdMigration *migration,
                                              GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdMigrationDest, md_migration_dest_free)

G_END_DECLS

/* migrationd: the incoming side of a migration — Peer1 Prepare, Finish,
 * Abort and CheckPaths, and autokill when the source goes away. */
#pragma once

#include "daemon/md-manager.h"
#include "peer/md-peer.h"

G_BEGIN_DECLS

typedef struct _MdMigrationDest MdMigrationDest;

/* Answers the Peer1 calls @listener receives; both are borrowed and must
 * outlive the returned object. Makes the default image directory when
 * [storage] image-dirs is not set; MD_ERROR_CONFIG when it cannot. */
MdMigrationDest *md_migration_dest_new (MdManager *manager, MdPeerListener *listener,
                                        GError **error);
void md_migration_dest_free (MdMigrationDest *dest);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdMigrationDest, md_migration_dest_free)

G_END_DECLS

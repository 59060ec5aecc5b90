/* migrationd: resolving, at start-up, every migration the previous daemon
 * left open in its journal (md-migration-journal.h), before new ones are
 * accepted (the manager refuses Migrate and Prepare meanwhile). */
#pragma once

#include "daemon/md-manager.h"
#include "md-migration-dest.h"

G_BEGIN_DECLS

/* Starts resolving; holds the manager's recovery until every record is
 * resolved, shown on a Migration1 object (completed, failed, or
 * needs-attention when this host cannot prove which copy of a guest is
 * the only one: then that QEMU is left paused). A migration caught in
 * postcopy goes on: its QEMU is re-attached and the stream recovered
 * (@dest, NULL without a peer listener, takes incoming ones). */
void md_migration_recover_start (MdManager *manager, MdMigrationDest *dest);

G_END_DECLS

/* migrationd: Migration1.Resolve, the administrator's way out of
 * "needs-attention".
 *
 * The daemon leaves a migration needing attention when it cannot prove
 * which copy of the guest is the only one (a peer lost at the switch-over
 * and not reachable since, postcopy broken with both halves alive, a
 * failure after the destination took the guest). The QEMU here stays as
 * it is. The administrator, having looked at both hosts, names the copy
 * that is the guest ("source" or "destination") on each host: the copy
 * here is then kept (migration objects removed from QEMU, resumed) or
 * stopped (QEMU gone, with what the migration created here), the journal
 * record settles, and Migration1 completes. */
#pragma once

#include "daemon/md-guest.h"
#include "daemon/md-manager.h"
#include "md-migration-journal.h"
#include "md-migration.h"

G_BEGIN_DECLS

/* Makes @migration (in needs-attention now) resolvable: @journal is
 * copied (the record of the migration on this host), @guest (may be
 * NULL: its QEMU is gone) is the copy here. */
void md_migration_resolver_attach (MdMigration *migration, MdManager *manager, MdJournal *journal,
                                   MdGuest *guest);

G_END_DECLS

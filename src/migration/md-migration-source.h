/* migrationd: the outgoing side of a migration (Begin, Perform, Confirm),
 * driving the peer's Prepare and Finish. */
#pragma once

#include "daemon/md-guest.h"
#include "md-migration.h"
#include "daemon/md-manager.h"
#include "common/md-options.h"

G_BEGIN_DECLS

/* Validates @options and @destination, creates and exports the
 * Migration1 object and starts the migration in the background. Returns
 * the new object, or NULL with MD_ERROR_INVALID_ARGUMENT / INVALID_STATE
 * when nothing was started. */
MdMigration *md_migration_source_start (MdManager *manager, MdGuest *guest, const char *destination,
                                        GVariant *options, guint owner_uid, GError **error);

G_END_DECLS

/* migrationd: setting up QEMU for a migration, the same way on both ends:
 * the capabilities, the parameters, the TLS credentials object, and
 * QMP steps whose answer only matters as success or failure. */
#pragma once

#include "common/md-options.h"
#include "qemu/md-qmp.h"

G_BEGIN_DECLS

/* QEMU 7.2 caps migration at 128 MiB/s unless told otherwise; "unlimited"
 * is this much (bytes/s), as libvirt does. */
#define MD_UNLIMITED_BANDWIDTH (G_GUINT64_CONSTANT (1) << 40)

/* migrate-set-capabilities for @opts: every capability set on or off
 * explicitly (QEMU keeps them from an earlier attempt; both ends must
 * agree). */
JsonObject *md_migration_qemu_capabilities (const MdMigrateOptions *opts);

/* migrate-set-parameters for @opts. The source sets bandwidth and
 * downtime too; @tls_object NULL clears TLS. */
JsonObject *md_migration_qemu_parameters (const MdMigrateOptions *opts, gboolean source,
                                          const char *tls_object, const char *tls_hostname);

/* object-add of a tls-creds-x509 object reading @dir (the daemons' own
 * PKI, which has QEMU's layout). */
JsonObject *md_migration_qemu_tls_object (const char *id, const char *dir, gboolean server);

/* A unique prefix for the names this migration gives objects inside
 * QEMU: unique across daemon restarts, since QEMU outlives the daemon
 * and keeps the objects of an interrupted migration. */
char *md_migration_qemu_new_tag (void);

/* One QMP command whose answer only matters as success or failure:
 * @next (@owner, error or NULL) is called once, with @owner kept alive by
 * @ref/@unref meanwhile. @args (taken, may be NULL). A NULL @qmp fails
 * at once with @gone_message. */
typedef void (*MdQemuStepFunc) (gpointer owner, GError *error);
void md_migration_qemu_step (MdQmp *qmp, const char *command, JsonObject *args, gpointer owner,
                             gpointer (*ref) (gpointer), GDestroyNotify unref, MdQemuStepFunc next,
                             const char *gone_message);

/* Same, passing @fd (>= 0) along (getfd); QEMU gets its own copy. */
void md_migration_qemu_step_fd (MdQmp *qmp, const char *command, JsonObject *args, int fd,
                                gpointer owner, gpointer (*ref) (gpointer), GDestroyNotify unref,
                                MdQemuStepFunc next, const char *gone_message);

/* The "status" of a query-migrate reply; @fallback when there is none. */
const char *md_migration_qemu_status (JsonNode *reply, const char *fallback);

G_END_DECLS

/* migrationd: one guest's QEMU start, isolated: its identity (from the
 * host's uid pool), its cgroup, its confinement, and the descriptors it
 * gets instead of paths; plus what a runtime record keeps of them so that a
 * restarted daemon keeps the uid reserved and cleans up after QEMU. */
#pragma once

#include <json-glib/json-glib.h>

#include "md-host.h"
#include "qemu/md-qemu-files.h"
#include "qemu/md-qemu.h"

G_BEGIN_DECLS

typedef struct _MdIsolation MdIsolation;

/* An identity and a cgroup for @live's QEMU (nothing to drop to when the
 * daemon is not root: QEMU then runs as the daemon, unconfined). */
MdIsolation *md_isolation_new (MdHost *host, const MdDomain *live, GError **error);
void md_isolation_free (MdIsolation *iso);

/* TRUE when QEMU will run as another user (no -pidfile then: it could not
 * write into the daemon's runtime directory). */
gboolean md_isolation_is_confined (const MdIsolation *iso);

/* Spawns @argv with @files (QMP included) and the identity's lock; the
 * identity and cgroup then belong to the process (md_isolation_release()
 * when it is gone), otherwise md_isolation_free() gives them back. */
MdQemuProcess *md_isolation_spawn (MdIsolation *iso, const char *const *argv, const char *log_path,
                                   MdQemuFiles *files, GError **error);

/* "uid", "gid", "cgroup" into a runtime record's extra object. */
void md_isolation_record (const MdIsolation *iso, JsonObject *extra);
/* A re-attached QEMU keeps its recorded uid. */
void md_isolation_reserve (MdHost *host, JsonObject *extra);
/* The QEMU of @extra is gone: its uid is free, its cgroup removed. */
void md_isolation_release (MdHost *host, JsonObject *extra);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdIsolation, md_isolation_free)

G_END_DECLS

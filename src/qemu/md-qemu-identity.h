/* migrationd: the unprivileged identity each guest's QEMU runs as.
 *
 * By default every running guest gets a uid (and the gid of the same
 * number) of its own from [qemu] uid-range, in the spirit of systemd's
 * DynamicUser; [qemu] user= gives one shared user instead. A uid is taken
 * only when
 *  - this daemon does not hold it (for a running or re-attached guest),
 *  - no process on the host runs as it (a QEMU whose daemon lost track of
 *    it, or anything else), no account in the passwd database has it, and
 *  - its lock file MD_QEMU_UID_LOCK_DIR/<uid> can be locked (flock): the
 *    lock is handed to QEMU with the other descriptors and lives exactly as
 *    long as QEMU does, through daemon restarts, so two daemons on one host
 *    (or one daemon and its restarted self) never pick the same uid.
 * Without root (a daemon run by a user) there is nothing to drop to:
 * md_qemu_identity_enabled() is FALSE and QEMU runs as the daemon. */
#pragma once

#include <glib.h>

#include "common/md-config.h"

G_BEGIN_DECLS

#define MD_QEMU_UID_LOCK_DIR "/run/migrationd-qemu-uids"

typedef struct
{
  guint32 uid;
  guint32 gid;
  gboolean shared; /* [qemu] user=: not allocated, nothing to release */
  int lock_fd;     /* the flock'ed lock file for QEMU to inherit; -1 none */
} MdQemuIdentity;

typedef struct _MdQemuUidPool MdQemuUidPool;

/* TRUE when the daemon can give QEMU another identity (it runs as root). */
gboolean md_qemu_identity_enabled (void);

MdQemuUidPool *md_qemu_uid_pool_new (const MdConfig *config);
void md_qemu_uid_pool_free (MdQemuUidPool *pool);

/* An identity for a guest about to start: the shared user, or the lowest
 * free uid of the range (see above). MD_ERROR_FAILED naming the range when
 * every uid is taken, MD_ERROR_CONFIG when the shared user does not exist. */
gboolean md_qemu_uid_pool_acquire (MdQemuUidPool *pool, MdQemuIdentity *identity, GError **error);
/* A re-attached guest keeps the uid recorded when it started. */
void md_qemu_uid_pool_reserve (MdQemuUidPool *pool, guint32 uid);
/* The guest's QEMU is gone (no-op for uids outside the range). */
void md_qemu_uid_pool_release (MdQemuUidPool *pool, guint32 uid);
gboolean md_qemu_uid_pool_is_reserved (MdQemuUidPool *pool, guint32 uid);

/* Closes the daemon's copy of the lock (QEMU holds its own after spawn). */
void md_qemu_identity_clear (MdQemuIdentity *identity);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdQemuUidPool, md_qemu_uid_pool_free)

G_END_DECLS

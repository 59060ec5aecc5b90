/* migrationd: how a guest's QEMU is confined between fork and exec.
 *
 * Everything is computed in the daemon (md_qemu_confine_new()); the child
 * then only makes system calls (async-signal-safe), in this order:
 *  1. joins the guest's cgroup (memory and tasks limits);
 *  2. a private mount namespace: / becomes a slave (nothing propagates
 *     back), /tmp an empty tmpfs of the guest's own, /dev a tmpfs with only
 *     null, zero, full, random, urandom, kvm and net/tun when the host
 *     has them, and a devpts instance of its own (pty serials);
 *  3. RLIMIT_NOFILE and RLIMIT_MEMLOCK (no locked memory unless asked);
 *  4. drops every capability from the bounding set, then setgroups(0),
 *     setresgid, setresuid to the guest's identity (which empties the
 *     permitted and effective sets), clears the inheritable and ambient
 *     sets, and sets PR_SET_NO_NEW_PRIVS.
 * A failing step writes "migrationd: cannot confine QEMU: STEP (errno N)"
 * to QEMU's log (stderr) and exits with 127, so the start fails with that
 * line instead of QEMU running unconfined. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _MdQemuConfine MdQemuConfine;

/* @uid/@gid: the identity to drop to. @cgroup_procs: the cgroup.procs
 * files the child writes itself into (NULL-terminated, may be NULL).
 * @memlock_bytes: RLIMIT_MEMLOCK (0: none). */
MdQemuConfine *md_qemu_confine_new (guint32 uid, guint32 gid, const char *const *cgroup_procs,
                                    guint64 memlock_bytes);
void md_qemu_confine_free (MdQemuConfine *confine);

/* The child setup function for GSubprocessLauncher (user data: the
 * MdQemuConfine, which must outlive the spawn call). */
void md_qemu_confine_child_setup (gpointer confine);

/* ---- cgroups ---- */

/* The guest's own cgroup @name under the daemon's, with memory.limit
 * (max) of @memory_bytes and a pids limit of @tasks, for each controller
 * hierarchy the host has (cgroup v1 memory and pids, or v2). Returns the
 * paths of their cgroup.procs files (for md_qemu_confine_new()), empty
 * when the host offers no writable cgroup hierarchy (a warning then: QEMU
 * runs without these limits). */
GStrv md_qemu_cgroup_create (const char *name, guint64 memory_bytes, guint tasks, GError **error);
/* Removes the cgroup @name again (QEMU is gone); missing is not an error. */
void md_qemu_cgroup_remove (const char *name);
/* Removes the empty cgroups whose names start with @prefix: those of
 * QEMUs killed while no daemon watched them (the caller holds the uid they
 * are named after, so no other start can be using them). */
void md_qemu_cgroup_remove_stale (const char *prefix);
/* The cgroup directories of @name (for tests and messages). */
GStrv md_qemu_cgroup_paths (const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdQemuConfine, md_qemu_confine_free)

G_END_DECLS

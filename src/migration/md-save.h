/* migrationd: saving a guest's state (RAM and devices) to a file and
 * restoring it: Guest1.Save, ManagedSave, Manager1.Restore, and Start of a
 * guest with a managed save.
 *
 * QEMU never opens a path: the daemon opens the file and hands QEMU an fd
 * (getfd, then an fd: migration address); a compressor, when asked, is
 * spawned as an argv with pipes, never through a shell. */
#pragma once

#include "common/md-options.h"
#include "daemon/md-guest.h"
#include "daemon/md-manager.h"
#include "md-migration.h"

G_BEGIN_DECLS

/* Options of Guest1.Save ("overwrite" b, "compression" s, "bypass-cache"
 * b, "running" b, "paused" b) and of ManagedSave (the same but
 * "overwrite"). */
extern const MdOptionSpec md_save_option_specs[];
extern const MdOptionSpec md_managed_save_option_specs[];
/* Options of Manager1.Restore and Guest1.Restore ("xml" s, "paused" b,
 * "running" b, "start-paused" b). */
extern const MdOptionSpec md_restore_option_specs[];

/* Where the managed save of guest @name lives (state directory). */
char *md_save_managed_path (MdManager *manager, const char *name);

/* Validates @options and the guest's state, creates the file (in a
 * thread: a missing directory or an existing file is an error here), then
 * exports the Migration1 object (Direction "save") and lets the save run
 * in the background. @managed: write the managed-save file (replacing an
 * older one). */
void md_save_start_async (MdManager *manager, MdGuest *guest, const char *path, GVariant *options,
                          guint owner_uid, gboolean managed, GAsyncReadyCallback callback,
                          gpointer user_data);
/* The Migration1 object (a new reference), or NULL when nothing started. */
MdMigration *md_save_start_finish (GAsyncResult *result, GError **error);

/* Restores the guest saved in @path. @expected: the guest the file must
 * belong to (Guest1.Restore, Start with a managed save), or NULL to find
 * or create it by the file's definition. On failure no QEMU is left and a
 * guest created for the restore is gone again. */
void md_save_restore_async (MdManager *manager, const char *path, GVariant *options,
                            MdGuest *expected, GAsyncReadyCallback callback, gpointer user_data);
/* The restored guest (a new reference). */
MdGuest *md_save_restore_finish (GAsyncResult *result, GError **error);

/* [daemon] on-stop = managed-save (md-save-all.c): managed-save every
 * running or paused persistent guest (completes when all are done, the
 * failed ones running on), and, at the next start, restore them. */
void md_save_all_async (MdManager *manager, GAsyncReadyCallback callback, gpointer user_data);
gboolean md_save_all_finish (MdManager *manager, GAsyncResult *result, GError **error);
void md_save_restore_at_start (MdManager *manager);

G_END_DECLS

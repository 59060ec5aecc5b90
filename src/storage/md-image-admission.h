/* migrationd: what an incoming migration may do with files on this host.
 *
 * A destination trusts nothing it did not create. Every disk path of an
 * incoming definition (copied, shared or a backing file) must lie under
 * one of the directories the host allows ([storage] image-dirs, by
 * default <state dir>/images); no symbolic link is followed below them
 * (each component is opened with openat + O_NOFOLLOW from the directory
 * opened before it). A copy target must not exist: it is created here,
 * exclusively, and only what was created is ever removed. An existing
 * target is used only when both the host ([storage]
 * reuse-existing-images) and the caller (option reuse-existing-images)
 * allow it, and only if it is a regular file of the right format and
 * virtual size that no other guest of this host refers to.
 *
 * Every file-system access runs in a worker thread, bounded by
 * [storage] fs-check-timeout: a hung mount fails the call with
 * MD_ERROR_TIMEOUT naming the path, and never blocks the main loop. */
#pragma once

#include "domain/md-domain.h"

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _MdImageAdmission MdImageAdmission;

/* @image_dirs: absolute paths; @create_missing makes missing ones (mode
 * 0700; for the default directory, at start-up). @host names this host
 * in errors. MD_ERROR_CONFIG when a directory cannot be used. */
MdImageAdmission *md_image_admission_new (const char *const *image_dirs, gboolean create_missing,
                                          gboolean allow_reuse, guint timeout_seconds,
                                          const char *host, GError **error);
void md_image_admission_free (MdImageAdmission *self);

/* Prepare's storage half: checks every disk of @def (and, for copied
 * disks listed in @disks_info, their backing chain) and its other
 * host-side files (kernel, initrd, serial logs: inside the image
 * directories, a log never a link or a disk of @in_use), and creates the
 * target image of each copied disk (same format and virtual size, the
 * backing reference for incremental copies). @in_use: disk paths of the
 * other guests of this host. Returns (finish) the paths it created, for
 * md_image_admission_remove_async(); on failure it has removed them.
 * Errors: MD_ERROR_NOT_AUTHORIZED (outside the allowed directories, or a
 * symbolic link), MD_ERROR_ALREADY_EXISTS (an existing target, reuse not
 * allowed), MD_ERROR_INVALID_ARGUMENT (a reused image that does not
 * match, or is in use), MD_ERROR_STORAGE_FAILED (missing shared disk,
 * creation failed; "no space left on device" says so), MD_ERROR_TIMEOUT. */
void md_image_admission_prepare_async (MdImageAdmission *self, const MdDomain *def,
                                       GVariant *disks_info, gboolean caller_allows_reuse,
                                       const char *const *in_use, GCancellable *cancellable,
                                       GAsyncReadyCallback callback, gpointer user_data);
GStrv md_image_admission_prepare_finish (GAsyncResult *result, GError **error);

/* Peer1.CheckPaths: for each path inside the allowed directories,
 * whether it exists there (as a regular file or block device, reached
 * without following links). Paths outside get no answer at all: they are
 * left out of the a{sb}. */
void md_image_admission_check_paths_async (MdImageAdmission *self, const char *const *paths,
                                           GAsyncReadyCallback callback, gpointer user_data);
GVariant *md_image_admission_check_paths_finish (GAsyncResult *result, GError **error);

/* Removes images Prepare created (logs what it cannot), in the worker. */
void md_image_admission_remove_async (MdImageAdmission *self, const char *const *paths,
                                      GAsyncReadyCallback callback, gpointer user_data);
void md_image_admission_remove_finish (GAsyncResult *result);

/* The text of a file-system error, with ENOSPC and EDQUOT spelled out so
 * a user sees "no space left on device" rather than what broke next. */
const char *md_image_admission_strerror (int errsv);

G_END_DECLS

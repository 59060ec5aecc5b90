/* migrationd: non-shared storage — which disks a migration copies and
 * what the destination needs to know about them. (The destination's side,
 * where images may live and their creation, is md-image-admission.) */
#pragma once

#include "domain/md-domain.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum
{
  MD_STORAGE_COPY_NONE,
  MD_STORAGE_COPY_ALL,
  MD_STORAGE_COPY_INCREMENTAL, /* top layer only; the backing chain exists there */
} MdStorageCopyMode;

/* "none", "all", "incremental" (NULL is none); MD_ERROR_INVALID_ARGUMENT. */
gboolean md_storage_parse_mode (const char *mode, MdStorageCopyMode *out, GError **error);

/* The disks of @def a migration copies: with @targets NULL every disk
 * with an image that is neither read-only nor shareable (cdroms and
 * shared disks stay where they are), else exactly those targets (an
 * unknown target or a disk without an image is MD_ERROR_INVALID_ARGUMENT).
 * Elements are borrowed from @def. */
GPtrArray *md_storage_plan (const MdDomain *def, MdStorageCopyMode mode, const char *const *targets,
                            GError **error);

/* What the destination needs to create a target image for each planned
 * disk, from QEMU's query-named-block-nodes reply: aa{sv} with "target"
 * (s), "node" (s, the format node mirrored from), "format" (s),
 * "virtual-size" (t) and, for incremental copies, "backing" (s) and
 * "backing-format" (s). MD_ERROR_QEMU_FAILED when a node is missing. */
GVariant *md_storage_describe (GPtrArray *plan, JsonNode *named_block_nodes, MdStorageCopyMode mode,
                               GError **error);

/* The same description for a shut-off guest, from `qemu-img info` of each
 * planned disk's image (run without blocking). */
void md_storage_describe_offline_async (GPtrArray *plan, MdStorageCopyMode mode,
                                        GCancellable *cancellable, GAsyncReadyCallback callback,
                                        gpointer user_data);
GVariant *md_storage_describe_offline_finish (GAsyncResult *result, GError **error);

/* The error of a mirror to @host that QEMU ended with @qemu_error, for
 * disk @target whose image there is @path (NULL if unknown): a full disk
 * (ENOSPC, EDQUOT) is said as such, naming host and path. */
GError *md_storage_mirror_error (const char *qemu_error, const char *target, const char *host,
                                 const char *path);

/* Removes images a failed migration created (logs what it cannot); at
 * start-up, for images a previous daemon's journal lists. While the
 * daemon runs, md_image_admission_remove_async() does this off the main
 * loop. */
void md_storage_remove (const char *const *paths);

G_END_DECLS

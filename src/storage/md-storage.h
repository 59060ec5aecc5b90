/* migrationd: non-shared storage — which disks a migration copies, the
 * target images the destination creates for them, and the checks that a
 * disk not copied is really shared. */
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

/* Destination: every disk of @def with an image that is not in
 * @disks_info must exist at the same path here (shared storage), else
 * MD_ERROR_STORAGE_FAILED naming the disk and suggesting copy-storage. */
gboolean md_storage_check_shared (const MdDomain *def, GVariant *disks_info, const char *host,
                                  GError **error);

/* Destination: creates, with qemu-img and without blocking, the target
 * image of each disk in @disks_info at the path @def gives it (same format
 * and virtual size; same backing reference for incremental copies). An
 * image that already exists is used as it is and never removed later.
 * Returns (finish) the paths this call created, for md_storage_remove. */
void md_storage_create_targets_async (const MdDomain *def, GVariant *disks_info, const char *host,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data);
GStrv md_storage_create_targets_finish (GAsyncResult *result, GError **error);

/* Removes images a failed migration created (logs what it cannot). */
void md_storage_remove (const char *const *paths);

G_END_DECLS

/* migrationd: non-shared storage for migrations — planning, target images
 * and shared-path checks. The block jobs themselves are QMP steps of the
 * migration engines. */
#include "config.h"

#include "md-storage.h"
#include "common/md-error.h"
#include "qemu/md-qemu-argv.h"

#include <errno.h>
#include <glib/gstdio.h>

gboolean
md_storage_parse_mode (const char *mode, MdStorageCopyMode *out, GError **error)
{
  if (mode == NULL || g_str_equal (mode, "none"))
    *out = MD_STORAGE_COPY_NONE;
  else if (g_str_equal (mode, "all"))
    *out = MD_STORAGE_COPY_ALL;
  else if (g_str_equal (mode, "incremental"))
    *out = MD_STORAGE_COPY_INCREMENTAL;
  else
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'copy-storage' must be none, all or incremental, not '%s'", mode);
      return FALSE;
    }
  return TRUE;
}

static gboolean
disk_has_image (const MdDomainDisk *disk)
{
  return disk->source != NULL && *disk->source != '\0';
}

GPtrArray *
md_storage_plan (const MdDomain *def, MdStorageCopyMode mode, const char *const *targets,
                 GError **error)
{
  g_autoptr (GPtrArray) plan = g_ptr_array_new ();

  if (mode == MD_STORAGE_COPY_NONE)
    {
      if (targets != NULL && targets[0] != NULL)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "option 'disks' selects disks to copy; it needs 'copy-storage' all or "
                       "incremental");
          return NULL;
        }
      return g_steal_pointer (&plan);
    }
  if (targets != NULL && targets[0] != NULL)
    {
      for (guint t = 0; targets[t] != NULL; t++)
        {
          const MdDomainDisk *found = NULL;

          for (guint i = 0; i < def->disks->len; i++)
            {
              const MdDomainDisk *disk = g_ptr_array_index (def->disks, i);
              if (g_str_equal (disk->target, targets[t]))
                found = disk;
            }
          if (found == NULL || !disk_has_image (found))
            {
              g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                           "option 'disks': guest %s has no disk image with target '%s'", def->name,
                           targets[t]);
              return NULL;
            }
          if (found->readonly || found->device == MD_DOMAIN_DISK_DEVICE_CDROM)
            {
              g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                           "option 'disks': disk %s of %s is read-only; it cannot be mirrored, "
                           "put it on shared storage or copy it beforehand",
                           targets[t], def->name);
              return NULL;
            }
          g_ptr_array_add (plan, (gpointer) found);
        }
      return g_steal_pointer (&plan);
    }
  for (guint i = 0; i < def->disks->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (def->disks, i);

      if (disk_has_image (disk) && !disk->readonly && !disk->shareable
          && disk->device != MD_DOMAIN_DISK_DEVICE_CDROM)
        g_ptr_array_add (plan, (gpointer) disk);
    }
  return g_steal_pointer (&plan);
}

static JsonObject *
find_node (JsonNode *nodes, const char *name)
{
  JsonArray *array;

  if (nodes == NULL || !JSON_NODE_HOLDS_ARRAY (nodes))
    return NULL;
  array = json_node_get_array (nodes);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonObject *node = json_array_get_object_element (array, i);
      if (g_strcmp0 (json_object_get_string_member_with_default (node, "node-name", NULL), name)
          == 0)
        return node;
    }
  return NULL;
}

GVariant *
md_storage_describe (GPtrArray *plan, JsonNode *named_block_nodes, MdStorageCopyMode mode,
                     GError **error)
{
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < plan->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (plan, i);
      g_autofree char *node_name = md_qemu_disk_node_name (disk, TRUE);
      JsonObject *node = find_node (named_block_nodes, node_name);
      JsonObject *image;
      GVariantBuilder info;

      if (node == NULL || !json_object_has_member (node, "image"))
        {
          g_variant_builder_clear (&builder);
          g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                       "QEMU has no block node %s for disk %s", node_name, disk->target);
          return NULL;
        }
      image = json_object_get_object_member (node, "image");
      g_variant_builder_init (&info, G_VARIANT_TYPE_VARDICT);
      g_variant_builder_add (&info, "{sv}", "target", g_variant_new_string (disk->target));
      g_variant_builder_add (&info, "{sv}", "node", g_variant_new_string (node_name));
      g_variant_builder_add (&info, "{sv}", "format",
                             g_variant_new_string (md_domain_disk_format_to_string (disk->format)));
      g_variant_builder_add (
          &info, "{sv}", "virtual-size",
          g_variant_new_uint64 (
              (guint64) json_object_get_int_member_with_default (image, "virtual-size", 0)));
      if (mode == MD_STORAGE_COPY_INCREMENTAL)
        {
          const char *backing =
              json_object_get_string_member_with_default (image, "backing-filename", NULL);
          const char *backing_format = NULL;

          if (backing == NULL)
            {
              g_variant_builder_clear (&info);
              g_variant_builder_clear (&builder);
              g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                           "copy-storage=incremental: disk %s (%s) has no backing file; use "
                           "copy-storage=all",
                           disk->target, disk->source);
              return NULL;
            }
          if (json_object_has_member (image, "backing-image"))
            backing_format = json_object_get_string_member_with_default (
                json_object_get_object_member (image, "backing-image"), "format", NULL);
          g_variant_builder_add (&info, "{sv}", "backing", g_variant_new_string (backing));
          g_variant_builder_add (&info, "{sv}", "backing-format",
                                 g_variant_new_string (backing_format ? backing_format : "raw"));
        }
      g_variant_builder_add_value (&builder, g_variant_builder_end (&info));
    }
  return g_variant_builder_end (&builder);
}

typedef struct
{
  GPtrArray *plan; /* borrowed elements */
  MdStorageCopyMode mode;
  guint index;
  GVariantBuilder builder;
} DescribeData;

static void
describe_data_free (DescribeData *data)
{
  g_ptr_array_unref (data->plan);
  g_variant_builder_clear (&data->builder);
  g_free (data);
}

static void describe_next (GTask *task);

static void
on_image_info (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  DescribeData *data = g_task_get_task_data (task);
  const MdDomainDisk *disk = g_ptr_array_index (data->plan, data->index);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  JsonObject *info;
  GVariantBuilder entry;
  const char *backing;

  if (!g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, &err, &error)
      || !g_subprocess_get_successful (G_SUBPROCESS (source))
      || !json_parser_load_from_data (parser, out ? out : "", -1, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                               "disk %s: cannot read the image %s: %s", disk->target, disk->source,
                               error ? error->message
                               : err ? g_strstrip (err)
                                     : "qemu-img info failed");
      return;
    }
  info = json_node_get_object (json_parser_get_root (parser));
  backing = json_object_get_string_member_with_default (info, "backing-filename", NULL);
  g_variant_builder_init (&entry, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&entry, "{sv}", "target", g_variant_new_string (disk->target));
  g_variant_builder_add (&entry, "{sv}", "path", g_variant_new_string (disk->source));
  g_variant_builder_add (&entry, "{sv}", "format",
                         g_variant_new_string (md_domain_disk_format_to_string (disk->format)));
  g_variant_builder_add (&entry, "{sv}", "virtual-size",
                         g_variant_new_uint64 ((guint64) json_object_get_int_member_with_default (
                             info, "virtual-size", 0)));
  if (data->mode == MD_STORAGE_COPY_INCREMENTAL)
    {
      if (backing == NULL)
        {
          g_variant_builder_clear (&entry);
          g_task_return_new_error (task, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                                   "copy-storage=incremental: disk %s (%s) has no backing file; "
                                   "use copy-storage=all",
                                   disk->target, disk->source);
          return;
        }
      g_variant_builder_add (&entry, "{sv}", "backing", g_variant_new_string (backing));
      g_variant_builder_add (&entry, "{sv}", "backing-format",
                             g_variant_new_string (json_object_get_string_member_with_default (
                                 info, "backing-filename-format", "raw")));
    }
  g_variant_builder_add_value (&data->builder, g_variant_builder_end (&entry));
  data->index++;
  describe_next (g_steal_pointer (&task));
}

static void
describe_next (GTask *task)
{
  DescribeData *data = g_task_get_task_data (task);
  const MdDomainDisk *disk;
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GError) error = NULL;

  if (data->index == data->plan->len)
    {
      g_task_return_pointer (task, g_variant_ref_sink (g_variant_builder_end (&data->builder)),
                             (GDestroyNotify) g_variant_unref);
      g_object_unref (task);
      return;
    }
  disk = g_ptr_array_index (data->plan, data->index);
  proc = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error,
                           "qemu-img", "info", "--output=json", "-f",
                           md_domain_disk_format_to_string (disk->format), disk->source, NULL);
  if (proc == NULL)
    {
      g_task_return_new_error (task, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot run qemu-img: %s",
                               error->message);
      g_object_unref (task);
      return;
    }
  g_subprocess_communicate_utf8_async (proc, NULL, g_task_get_cancellable (task), on_image_info,
                                       task);
}

void
md_storage_describe_offline_async (GPtrArray *plan, MdStorageCopyMode mode,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  DescribeData *data = g_new0 (DescribeData, 1);

  data->plan = g_ptr_array_ref (plan);
  data->mode = mode;
  g_variant_builder_init (&data->builder, G_VARIANT_TYPE ("aa{sv}"));
  g_task_set_task_data (task, data, (GDestroyNotify) describe_data_free);
  describe_next (task);
}

GVariant *
md_storage_describe_offline_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

GError *
md_storage_mirror_error (const char *qemu_error, const char *target, const char *host,
                         const char *path)
{
  /* QEMU passes strerror() of the NBD server's reply: the errno name is
   * all that crosses the wire. */
  if (strstr (qemu_error, g_strerror (ENOSPC)) != NULL
      || strstr (qemu_error, "No space left on device") != NULL)
    return g_error_new (MD_ERROR, MD_ERROR_STORAGE_FAILED,
                        "host %s: no space left on device for %s (disk %s); free space there "
                        "or copy the disk to another image directory (QEMU: %s)",
                        host, path != NULL ? path : "its image", target, qemu_error);
  if (strstr (qemu_error, g_strerror (EDQUOT)) != NULL
      || strstr (qemu_error, "Disk quota exceeded") != NULL)
    return g_error_new (MD_ERROR, MD_ERROR_STORAGE_FAILED,
                        "host %s: disk quota exceeded (no space left) for %s (disk %s); raise "
                        "the quota or copy the disk elsewhere (QEMU: %s)",
                        host, path != NULL ? path : "its image", target, qemu_error);
  return g_error_new (MD_ERROR, MD_ERROR_STORAGE_FAILED,
                      "disk %s: mirroring to the NBD export on host %s failed: %s", target, host,
                      qemu_error);
}

void
md_storage_remove (const char *const *paths)
{
  for (guint i = 0; paths != NULL && paths[i] != NULL; i++)
    {
      if (g_unlink (paths[i]) < 0 && errno != ENOENT)
        g_warning ("cannot remove the target image %s a failed migration created: %s", paths[i],
                   g_strerror (errno));
      else
        g_message ("removed the target image %s a failed migration created", paths[i]);
    }
}

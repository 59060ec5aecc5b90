/* migrationd: descriptors the daemon opens for QEMU (see md-qemu-files.h). */
#include "config.h"

#include "md-qemu-files.h"

#include "common/md-error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_CHAIN 32
#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau

struct _MdQemuFiles
{
  GArray *sources; /* int */
  GArray *targets; /* int */
  GArray *sets;    /* int per descriptor: its fdset id, 0 for none */
  int next_fd;
  int next_set;
  GPtrArray *disks; /* per disk index: GPtrArray of MdQemuDiskLayer, or NULL */
  GHashTable *values;
};

void
md_qemu_disk_layer_free (MdQemuDiskLayer *layer)
{
  g_free (layer->format);
  g_free (layer);
}

static void
free_layers (gpointer layers)
{
  if (layers != NULL)
    g_ptr_array_unref (layers);
}

MdQemuFiles *
md_qemu_files_new (int first_fd)
{
  MdQemuFiles *files = g_new0 (MdQemuFiles, 1);

  files->sources = g_array_new (FALSE, FALSE, sizeof (int));
  files->targets = g_array_new (FALSE, FALSE, sizeof (int));
  files->sets = g_array_new (FALSE, FALSE, sizeof (int));
  files->next_fd = first_fd;
  files->next_set = 1;
  files->disks = g_ptr_array_new_with_free_func (free_layers);
  files->values = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  return files;
}

void
md_qemu_files_free (MdQemuFiles *files)
{
  if (files == NULL)
    return;
  for (guint i = 0; i < files->sources->len; i++)
    close (g_array_index (files->sources, int, i));
  g_array_unref (files->sources);
  g_array_unref (files->targets);
  g_array_unref (files->sets);
  g_ptr_array_unref (files->disks);
  g_hash_table_unref (files->values);
  g_free (files);
}

static void
take (MdQemuFiles *files, int fd, int target, int set)
{
  g_array_append_val (files->sources, fd);
  g_array_append_val (files->targets, target);
  g_array_append_val (files->sets, set);
}

int
md_qemu_files_take (MdQemuFiles *files, int fd)
{
  int target = files->next_fd++;

  take (files, fd, target, 0);
  return target;
}

void
md_qemu_files_take_at (MdQemuFiles *files, int fd, int target)
{
  take (files, fd, target, 0);
}

int
md_qemu_files_add_set (MdQemuFiles *files, const int *fds, guint n_fds)
{
  int set = files->next_set++;

  for (guint i = 0; i < n_fds; i++)
    take (files, fds[i], files->next_fd++, set);
  return set;
}

guint
md_qemu_files_get_count (const MdQemuFiles *files)
{
  return files->sources->len;
}

const int *
md_qemu_files_get_sources (const MdQemuFiles *files)
{
  return (const int *) files->sources->data;
}

const int *
md_qemu_files_get_targets (const MdQemuFiles *files)
{
  return (const int *) files->targets->data;
}

void
md_qemu_files_handed_over (MdQemuFiles *files)
{
  g_array_set_size (files->sources, 0);
}

GPtrArray *
md_qemu_files_add_fd_args (const MdQemuFiles *files)
{
  GPtrArray *args = g_ptr_array_new_with_free_func (g_free);

  for (guint i = 0; i < files->targets->len; i++)
    if (g_array_index (files->sets, int, i) > 0)
      g_ptr_array_add (args,
                       g_strdup_printf ("fd=%d,set=%d", g_array_index (files->targets, int, i),
                                        g_array_index (files->sets, int, i)));
  return args;
}

const GPtrArray *
md_qemu_files_disk_layers (const MdQemuFiles *files, guint disk_index)
{
  if (files == NULL || disk_index >= files->disks->len)
    return NULL;
  return files->disks->pdata[disk_index];
}

void
md_qemu_files_set_disk_layers (MdQemuFiles *files, guint disk_index, GPtrArray *layers)
{
  if (files->disks->len <= disk_index)
    g_ptr_array_set_size (files->disks, disk_index + 1);
  free_layers (files->disks->pdata[disk_index]);
  files->disks->pdata[disk_index] = layers;
}

int
md_qemu_files_get (const MdQemuFiles *files, const char *key)
{
  gpointer value;

  if (files == NULL || !g_hash_table_lookup_extended (files->values, key, NULL, &value))
    return -1;
  return GPOINTER_TO_INT (value);
}

void
md_qemu_files_set (MdQemuFiles *files, const char *key, int value)
{
  g_hash_table_replace (files->values, g_strdup (key), GINT_TO_POINTER (value));
}

/* ---- opening ---- */

static int
open_or_fail (const char *path, int flags, const char *what, GError **error)
{
  int fd = open (path, flags | O_CLOEXEC | O_NOCTTY);

  if (fd < 0)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "cannot open %s %s for QEMU: %s (the daemon opens guest files and passes "
                   "them to QEMU; check that the path exists)",
                   what, path, g_strerror (errsv));
    }
  return fd;
}

static guint32
be32 (const guint8 *p)
{
  return (guint32) p[0] << 24 | (guint32) p[1] << 16 | (guint32) p[2] << 8 | p[3];
}

static guint64
be64 (const guint8 *p)
{
  return (guint64) be32 (p) << 32 | be32 (p + 4);
}

/* The backing file name and format recorded in the qcow2 image @fd, both
 * NULL when it has none (or is not qcow2). */
static gboolean
qcow2_backing (int fd, const char *path, char **backing, char **backing_format, GError **error)
{
  guint8 header[4096];
  ssize_t n = pread (fd, header, sizeof header, 0);
  guint64 offset;
  guint32 size, ext;

  *backing = *backing_format = NULL;
  if (n < 104 || be32 (header) != QCOW2_MAGIC)
    return TRUE;
  offset = be64 (header + 8);
  size = be32 (header + 16);
  if (offset == 0 || size == 0)
    return TRUE;
  if (size > 1023 || offset + size > (guint64) n)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "%s: the qcow2 header's backing file name is not where migrationd reads it "
                   "(offset %" G_GUINT64_FORMAT ", %u bytes)",
                   path, offset, size);
      return FALSE;
    }
  *backing = g_strndup ((const char *) header + offset, size);
  /* Header extensions follow the header (72 bytes in version 2). */
  ext = be32 (header + 4) >= 3 ? be32 (header + 100) : 72;
  while (ext + 8 <= (guint64) n)
    {
      guint32 type = be32 (header + ext), len = be32 (header + ext + 4);

      if (type == 0 || ext + 8 + (guint64) len > (guint64) n)
        break;
      if (type == QCOW2_EXT_BACKING_FORMAT && len > 0 && len < 32)
        *backing_format = g_strndup ((const char *) header + ext + 8, len);
      ext += 8 + ((len + 7) & ~7u);
    }
  return TRUE;
}

static char *
probe_format (int fd)
{
  guint8 magic[4];

  if (pread (fd, magic, sizeof magic, 0) == 4 && be32 (magic) == QCOW2_MAGIC)
    return g_strdup ("qcow2");
  return g_strdup ("raw");
}

static int
add_layer (MdQemuFiles *files, GPtrArray *layers, const char *path, const char *format,
           gboolean read_only, gboolean may_be_read_only, int *fd_out, GError **error)
{
  g_autoptr (GError) rw_error = NULL;
  MdQemuDiskLayer *layer;
  int fd = -1;

  if (!read_only)
    {
      fd = open_or_fail (path, O_RDWR, "disk image", may_be_read_only ? &rw_error : error);
      if (fd < 0 && !may_be_read_only)
        return -1;
      read_only = fd < 0;
    }
  if (fd < 0)
    fd = open_or_fail (path, O_RDONLY, "disk image", error);
  if (fd < 0)
    return -1;
  *fd_out = fd;
  layer = g_new0 (MdQemuDiskLayer, 1);
  layer->format = g_strdup (format);
  layer->read_only = read_only;
  layer->set = md_qemu_files_add_set (files, &fd, 1);
  g_ptr_array_add (layers, layer);
  return layer->set;
}

GPtrArray *
md_qemu_files_open_image (MdQemuFiles *files, const char *path, const char *format,
                          gboolean read_only, gboolean may_be_read_only, GError **error)
{
  g_autoptr (GPtrArray) layers =
      g_ptr_array_new_with_free_func ((GDestroyNotify) md_qemu_disk_layer_free);
  g_autofree char *current = g_strdup (path);
  g_autofree char *current_format = g_strdup (format);
  gboolean ro = read_only;

  for (guint depth = 0; current != NULL; depth++)
    {
      g_autofree char *backing = NULL;
      g_autofree char *backing_format = NULL;
      int layer_fd;

      if (depth >= MAX_CHAIN)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                       "disk image %s: its backing chain is longer than %u images", path,
                       MAX_CHAIN);
          return NULL;
        }
      if (add_layer (files, layers, current, current_format, ro, may_be_read_only, &layer_fd, error)
          < 0)
        return NULL;
      if (!g_str_equal (current_format, "qcow2"))
        break;
      if (!qcow2_backing (layer_fd, current, &backing, &backing_format, error))
        return NULL;
      if (backing == NULL)
        break;
      if (strchr (backing, ':') != NULL && !g_path_is_absolute (backing))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                       "disk image %s: backing file '%s' is not a local file; a confined QEMU "
                       "can only use local backing files the daemon opens for it",
                       current, backing);
          return NULL;
        }
      if (!g_path_is_absolute (backing))
        {
          g_autofree char *dir = g_path_get_dirname (current);
          char *joined = g_build_filename (dir, backing, NULL);

          g_free (backing);
          backing = joined;
        }
      g_free (current);
      current = g_steal_pointer (&backing);
      g_clear_pointer (&current_format, g_free);
      if (backing_format != NULL)
        current_format = g_steal_pointer (&backing_format);
      else
        {
          int fd = open_or_fail (current, O_RDONLY, "backing file", error);

          if (fd < 0)
            return NULL;
          current_format = probe_format (fd);
          close (fd);
        }
      ro = TRUE;
    }
  return g_steal_pointer (&layers);
}

int
md_qemu_files_memfd (const char *name, const char *data, gsize len, GError **error)
{
  int fd = memfd_create (name, MFD_CLOEXEC);
  gsize done = 0;

  if (fd < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "memfd_create(%s): %s", name,
                   g_strerror (errno));
      return -1;
    }
  while (done < len)
    {
      ssize_t n = write (fd, data + done, len - done);

      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "writing memfd %s: %s", name,
                       g_strerror (errno));
          close (fd);
          return -1;
        }
      done += (gsize) n;
    }
  return fd;
}

int
md_qemu_files_open_readable (const char *path, GError **error)
{
  g_autofree char *contents = NULL;
  g_autoptr (GError) local_error = NULL;
  struct stat st;
  gsize len = 0;
  int fd = open_or_fail (path, O_RDONLY, "file", error);

  if (fd < 0)
    return -1;
  if (fstat (fd, &st) == 0 && (st.st_mode & S_IROTH) != 0)
    return fd;
  close (fd);
  /* Private to root: QEMU gets a copy it may read, never the file. */
  if (!g_file_get_contents (path, &contents, &len, &local_error))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot read %s for QEMU: %s", path,
                   local_error->message);
      return -1;
    }
  return md_qemu_files_memfd (path, contents, len, error);
}

/* ---- TLS credentials for native-TLS migration ---- */

#define TLS_GRANT_PREFIX "/tmp/migrationd-tls-"

static gboolean
in_own_mount_namespace (GPid pid)
{
  g_autofree char *ns = g_strdup_printf ("/proc/%d/ns/mnt", (int) pid);
  struct stat theirs, ours;

  return stat (ns, &theirs) == 0 && stat ("/proc/self/ns/mnt", &ours) == 0
         && theirs.st_ino != ours.st_ino;
}

static gboolean
copy_private (const char *from, const char *to, uid_t uid, gid_t gid, GError **error)
{
  g_autofree char *contents = NULL;
  gsize len = 0;

  if (!g_file_get_contents (from, &contents, &len, error))
    return FALSE;
  if (!g_file_set_contents_full (to, contents, (gssize) len, G_FILE_SET_CONTENTS_NONE, 0600, error))
    return FALSE;
  if (chown (to, uid, gid) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "chown %s: %s", to, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

static char *
granted_dir (const char *tag)
{
  for (const char *p = tag; *p != '\0'; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_')
      return NULL;
  return g_strconcat (TLS_GRANT_PREFIX, tag, NULL);
}

char *
md_qemu_grant_tls_dir (GPid pid, const char *tag, const char *tls_dir, gboolean server,
                       GError **error)
{
  static const char *const server_files[] = { "ca-cert.pem",    "ca-crl.pem",    "server-cert.pem",
                                              "server-key.pem", "dh-params.pem", NULL };
  static const char *const client_files[] = { "ca-cert.pem", "ca-crl.pem", "client-cert.pem",
                                              "client-key.pem", NULL };
  const char *const *names = server ? server_files : client_files;
  g_autofree char *root_tmp = g_strdup_printf ("/proc/%d/root/tmp", (int) pid);
  g_autofree char *granted = NULL;
  g_autofree char *outside = NULL;
  struct stat st;

  if (!in_own_mount_namespace (pid))
    return g_strdup (tls_dir);
  if (stat (root_tmp, &st) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                   "cannot reach the private /tmp of QEMU %d for its TLS credentials: %s",
                   (int) pid, g_strerror (errno));
      return NULL;
    }
  granted = granted_dir (tag);
  if (granted == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "bad TLS object tag '%s'", tag);
      return NULL;
    }
  outside = g_strdup_printf ("/proc/%d/root%s", (int) pid, granted);
  if (mkdir (outside, 0700) < 0 || chown (outside, st.st_uid, st.st_gid) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED,
                   "cannot create %s in QEMU %d's private /tmp for its TLS credentials: %s",
                   granted, (int) pid, g_strerror (errno));
      md_qemu_revoke_tls_dir (pid, tag);
      return NULL;
    }
  for (guint i = 0; names[i] != NULL; i++)
    {
      g_autofree char *from = g_build_filename (tls_dir, names[i], NULL);
      g_autofree char *to = g_build_filename (outside, names[i], NULL);

      if (!g_file_test (from, G_FILE_TEST_EXISTS))
        continue;
      if (!copy_private (from, to, st.st_uid, st.st_gid, error))
        {
          g_prefix_error (error, "TLS credentials for QEMU %d: ", (int) pid);
          md_qemu_revoke_tls_dir (pid, tag);
          return NULL;
        }
    }
  return g_steal_pointer (&granted);
}

void
md_qemu_revoke_tls_dir (GPid pid, const char *tag)
{
  g_autofree char *granted = tag != NULL ? granted_dir (tag) : NULL;
  g_autofree char *outside = NULL;
  g_autoptr (GDir) dir = NULL;
  const char *name;

  if (granted == NULL || pid <= 0)
    return;
  outside = g_strdup_printf ("/proc/%d/root%s", (int) pid, granted);
  dir = g_dir_open (outside, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (outside, name, NULL);

      unlink (path);
    }
  if (rmdir (outside) < 0 && errno != ENOENT)
    g_warning ("cannot remove the TLS credentials copy %s of QEMU %d: %s", granted, (int) pid,
               g_strerror (errno));
}

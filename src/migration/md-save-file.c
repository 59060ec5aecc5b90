/* migrationd: the save file's header and the file-system work around it.
 * Everything here blocks; callers run it in GTask threads. */
#include "config.h"

#include "md-save-file.h"
#include "common/md-error.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXED_SIZE 72
#define ALIGN 4096

gboolean
md_save_compression_parse (const char *text, MdSaveCompression *out, GError **error)
{
  if (text == NULL || g_str_equal (text, "none"))
    *out = MD_SAVE_COMPRESS_NONE;
  else if (g_str_equal (text, "gzip"))
    *out = MD_SAVE_COMPRESS_GZIP;
  else if (g_str_equal (text, "zstd"))
    *out = MD_SAVE_COMPRESS_ZSTD;
  else
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "option 'compression' must be none, gzip or zstd, not '%s'", text);
      return FALSE;
    }
  return TRUE;
}

const char *
md_save_compression_to_string (MdSaveCompression compression)
{
  switch (compression)
    {
    case MD_SAVE_COMPRESS_NONE:
      return "none";
    case MD_SAVE_COMPRESS_GZIP:
      return "gzip";
    case MD_SAVE_COMPRESS_ZSTD:
      return "zstd";
    }
  return "unknown";
}

const char *const *
md_save_compressor_argv (MdSaveCompression compression, gboolean decompress)
{
  static const char *const gzip[] = { "gzip", "--stdout", "--no-name", NULL };
  static const char *const gunzip[] = { "gzip", "--decompress", "--stdout", NULL };
  static const char *const zstd[] = { "zstd", "--quiet", "--stdout", NULL };
  static const char *const unzstd[] = { "zstd", "--quiet", "--decompress", "--stdout", NULL };

  switch (compression)
    {
    case MD_SAVE_COMPRESS_NONE:
      return NULL;
    case MD_SAVE_COMPRESS_GZIP:
      return decompress ? gunzip : gzip;
    case MD_SAVE_COMPRESS_ZSTD:
      return decompress ? unzstd : zstd;
    }
  return NULL;
}

void
md_save_header_free (MdSaveHeader *header)
{
  if (header == NULL)
    return;
  g_free (header->xml);
  g_free (header);
}

static void
put_u32 (guint8 *at, guint32 value)
{
  value = GUINT32_TO_LE (value);
  memcpy (at, &value, 4);
}

static void
put_u64 (guint8 *at, guint64 value)
{
  value = GUINT64_TO_LE (value);
  memcpy (at, &value, 8);
}

static guint32
get_u32 (const guint8 *at)
{
  guint32 value;
  memcpy (&value, at, 4);
  return GUINT32_FROM_LE (value);
}

static guint64
get_u64 (const guint8 *at)
{
  guint64 value;
  memcpy (&value, at, 8);
  return GUINT64_FROM_LE (value);
}

static void
header_digest (const guint8 *fixed, const char *xml, gsize xml_len, guint8 out[32])
{
  g_autoptr (GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  gsize length = 32;

  g_checksum_update (sum, fixed, 40);
  g_checksum_update (sum, (const guchar *) xml, (gssize) xml_len);
  g_checksum_get_digest (sum, out, &length);
}

GBytes *
md_save_header_encode (MdSaveHeader *header)
{
  gsize xml_len = strlen (header->xml);
  gsize total = (FIXED_SIZE + xml_len + ALIGN - 1) / ALIGN * ALIGN;
  guint8 *data = g_malloc0 (total);

  header->data_offset = total;
  memcpy (data, MD_SAVE_MAGIC, 16);
  put_u32 (data + 16, MD_SAVE_VERSION);
  put_u32 (data + 20, header->running ? 1 : 0);
  put_u32 (data + 24, header->compression);
  put_u32 (data + 28, (guint32) xml_len);
  put_u64 (data + 32, total);
  header_digest (data, header->xml, xml_len, data + 40);
  memcpy (data + FIXED_SIZE, header->xml, xml_len);
  return g_bytes_new_take (data, total);
}

static gboolean
read_exactly (int fd, guint8 *buffer, gsize length, goffset offset, const char *path,
              GError **error)
{
  gsize done = 0;

  while (done < length)
    {
      ssize_t n = pread (fd, buffer + done, length - done, offset + (goffset) done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot read %s: %s", path,
                       g_strerror (errno));
          return FALSE;
        }
      if (n == 0)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "%s is truncated: it ends inside the migrationd header (%" G_GSIZE_FORMAT
                       " bytes)",
                       path, (gsize) offset + done);
          return FALSE;
        }
      done += (gsize) n;
    }
  return TRUE;
}

static gboolean
check_fixed (const guint8 *fixed, const char *path, GError **error)
{
  guint32 compression = get_u32 (fixed + 24);
  guint32 xml_len = get_u32 (fixed + 28);
  guint64 offset = get_u64 (fixed + 32);

  if (memcmp (fixed, MD_SAVE_MAGIC, 16) != 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s is not a migrationd save file (it does not start with the magic "
                   "'MIGRATIOND-SAVE')",
                   path);
      return FALSE;
    }
  if (get_u32 (fixed + 16) != MD_SAVE_VERSION)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s is a migrationd save file of version %u; this migrationd reads version "
                   "%d",
                   path, get_u32 (fixed + 16), MD_SAVE_VERSION);
      return FALSE;
    }
  if (compression > MD_SAVE_COMPRESS_ZSTD || xml_len == 0 || xml_len > MD_SAVE_XML_MAX
      || offset < FIXED_SIZE + (guint64) xml_len || offset % ALIGN != 0
      || offset > FIXED_SIZE + (guint64) xml_len + ALIGN)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s is corrupted: its migrationd header is inconsistent (compression %u, "
                   "definition %u bytes, stream at %" G_GUINT64_FORMAT ")",
                   path, compression, xml_len, offset);
      return FALSE;
    }
  return TRUE;
}

MdSaveHeader *
md_save_header_read (int fd, const char *path, GError **error)
{
  guint8 fixed[FIXED_SIZE];
  guint8 digest[32];
  g_autofree char *xml = NULL;
  g_autoptr (MdSaveHeader) header = NULL;
  struct stat st;
  guint32 xml_len;

  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT, "%s is not a regular file", path);
      return NULL;
    }
  if (!read_exactly (fd, fixed, FIXED_SIZE, 0, path, error) || !check_fixed (fixed, path, error))
    return NULL;
  xml_len = get_u32 (fixed + 28);
  xml = g_malloc0 (xml_len + 1);
  if (!read_exactly (fd, (guint8 *) xml, xml_len, FIXED_SIZE, path, error))
    return NULL;
  header_digest (fixed, xml, xml_len, digest);
  if (memcmp (digest, fixed + 40, 32) != 0 || strlen (xml) != xml_len)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s is corrupted: the checksum of its migrationd header does not match", path);
      return NULL;
    }
  header = g_new0 (MdSaveHeader, 1);
  header->running = (get_u32 (fixed + 20) & 1) != 0;
  header->compression = get_u32 (fixed + 24);
  header->data_offset = get_u64 (fixed + 32);
  header->xml = g_steal_pointer (&xml);
  if ((guint64) st.st_size <= header->data_offset)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "%s is truncated: it holds the migrationd header but no guest state", path);
      return NULL;
    }
  if (lseek (fd, (off_t) header->data_offset, SEEK_SET) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot seek in %s: %s", path,
                   g_strerror (errno));
      return NULL;
    }
  return g_steal_pointer (&header);
}

static int
open_parent (const char *path, char **base, GError **error)
{
  g_autofree char *dir = g_path_get_dirname (path);
  struct stat st;
  int dirfd;

  *base = g_path_get_basename (path);
  if (!g_path_is_absolute (path) || g_str_has_suffix (path, "/") || g_str_equal (*base, ".")
      || g_str_equal (*base, ".."))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "'%s' is not an absolute path to a file", path);
      return -1;
    }
  dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    {
      g_set_error (error, MD_ERROR, errno == ENOENT ? MD_ERROR_NOT_FOUND : MD_ERROR_STORAGE_FAILED,
                   "directory %s %s: %s", dir,
                   errno == ENOENT ? "does not exist; create it first" : "cannot be opened",
                   g_strerror (errno));
      return -1;
    }
  if (fstatat (dirfd, *base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG (st.st_mode))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                   "%s exists and is not a regular file; give another path", path);
      close (dirfd);
      return -1;
    }
  return dirfd;
}

int
md_save_file_create (const char *path, gboolean overwrite, char **tmp_path, GError **error)
{
  g_autofree char *base = NULL;
  g_autofree char *dir = g_path_get_dirname (path);
  int dirfd = open_parent (path, &base, error);
  int fd = -1;

  if (dirfd < 0)
    return -1;
  if (!overwrite && faccessat (dirfd, base, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                   "%s exists; give the 'overwrite' option to replace it", path);
      close (dirfd);
      return -1;
    }
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++)
    {
      g_autofree char *tmp = g_strdup_printf (".%s.partial-%08x", base, g_random_int ());
      fd = openat (dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd >= 0)
        *tmp_path = g_build_filename (dir, tmp, NULL);
      else if (errno != EEXIST)
        break;
    }
  if (fd < 0)
    g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot create a file in %s: %s", dir,
                 g_strerror (errno));
  close (dirfd);
  return fd;
}

gboolean
md_save_file_write (int fd, GBytes *bytes, const char *path, GError **error)
{
  gsize length;
  const guint8 *data = g_bytes_get_data (bytes, &length);
  gsize done = 0;

  while (done < length)
    {
      ssize_t n = write (fd, data + done, length - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot write %s: %s", path,
                       g_strerror (errno));
          return FALSE;
        }
      done += (gsize) n;
    }
  return TRUE;
}

/* What an O_DIRECT write moves at a time: large and aligned, like
 * libvirt's iohelper. */
#define DIRECT_CHUNK (1024 * 1024)

static gboolean
write_block (int fd, const guint8 *data, gsize length, const char *path, GError **error)
{
  g_autoptr (GBytes) bytes = g_bytes_new_static (data, length);

  return md_save_file_write (fd, bytes, path, error);
}

gboolean
md_save_file_copy_direct (int in_fd, int out_fd, const char *path, GCancellable *cancellable,
                          GError **error)
{
  int flags = fcntl (out_fd, F_GETFL);
  void *memory = NULL;
  guint8 *buf;
  gsize fill = 0, aligned;
  gboolean ok = FALSE;

  if (flags < 0 || fcntl (out_fd, F_SETFL, flags | O_DIRECT) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                   "the file system of %s cannot bypass the page cache (O_DIRECT): %s; save "
                   "without bypass-cache",
                   path, g_strerror (errno));
      return FALSE;
    }
  if (posix_memalign (&memory, ALIGN, DIRECT_CHUNK) != 0)
    g_error ("out of memory");
  buf = memory;
  for (;;)
    {
      struct pollfd pfd = { .fd = in_fd, .events = POLLIN };
      ssize_t n;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        goto out;
      /* A bounded wait, so a cancelled save ends this thread. */
      if (poll (&pfd, 1, 200) <= 0)
        continue;
      n = read (in_fd, buf + fill, DIRECT_CHUNK - fill);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n < 0)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "reading the stream for %s: %s",
                       path, g_strerror (errno));
          goto out;
        }
      if (n == 0)
        break;
      fill += (gsize) n;
      if (fill == DIRECT_CHUNK)
        {
          if (!write_block (out_fd, buf, fill, path, error))
            goto out;
          fill = 0;
        }
    }
  /* The aligned part still bypasses the cache; O_DIRECT cannot write the
   * unaligned tail, so that goes through it. */
  aligned = fill / ALIGN * ALIGN;
  if (aligned > 0 && !write_block (out_fd, buf, aligned, path, error))
    goto out;
  fcntl (out_fd, F_SETFL, flags);
  if (fill > aligned && !write_block (out_fd, buf + aligned, fill - aligned, path, error))
    goto out;
  ok = TRUE;
out:
  fcntl (out_fd, F_SETFL, flags);
  free (memory);
  return ok;
}

gboolean
md_save_file_commit (int fd, const char *tmp_path, const char *path, gboolean overwrite,
                     gboolean bypass_cache, GError **error)
{
  /* A short write can surface only at fsync on some file systems. */
  if (fsync (fd) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot flush %s to disk: %s", path,
                   g_strerror (errno));
      return FALSE;
    }
  if (bypass_cache)
    posix_fadvise (fd, 0, 0, POSIX_FADV_DONTNEED);
  if (overwrite)
    {
      if (rename (tmp_path, path) < 0)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot rename %s to %s: %s",
                       tmp_path, path, g_strerror (errno));
          return FALSE;
        }
      return TRUE;
    }
  /* link() never replaces: a file that appeared meanwhile is kept. */
  if (link (tmp_path, path) < 0)
    {
      g_set_error (error, MD_ERROR,
                   errno == EEXIST ? MD_ERROR_ALREADY_EXISTS : MD_ERROR_STORAGE_FAILED,
                   "cannot create %s: %s", path, g_strerror (errno));
      return FALSE;
    }
  unlink (tmp_path);
  return TRUE;
}

guint64
md_save_process_start_time (GPid pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", (int) pid);
  g_autofree char *text = NULL;
  g_auto (GStrv) fields = NULL;
  const char *rest;

  if (pid <= 0 || !g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  /* The command name may hold spaces and parentheses: count after the last ')'. */
  rest = strrchr (text, ')');
  if (rest == NULL)
    return 0;
  fields = g_strsplit (rest + 2, " ", 0);
  /* Field 22 of the whole line is the 20th after the name. */
  if (g_strv_length (fields) < 20)
    return 0;
  return g_ascii_strtoull (fields[19], NULL, 10);
}

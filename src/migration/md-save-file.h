/* migrationd: the save file — our header in front of QEMU's migration
 * stream, and the file-system work around it (always off the main loop:
 * these functions block, call them from a GTask thread).
 *
 * Layout (integers little endian):
 *   0   magic "MIGRATIOND-SAVE\n" (16 bytes)
 *   16  u32 version (1)
 *   20  u32 flags: bit 0 = the guest was running when saved
 *   24  u32 compression: 0 none, 1 gzip, 2 zstd
 *   28  u32 length of the guest definition (XML, no NUL)
 *   32  u64 offset of QEMU's stream (a multiple of 4096)
 *   40  SHA-256 of bytes 0-39 and of the definition (32 bytes)
 *   72  the definition, then zeros up to the stream offset
 * The stream after the header is QEMU's migration stream, compressed by
 * the named compressor's own file format when one is given. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define MD_SAVE_MAGIC "MIGRATIOND-SAVE\n"
#define MD_SAVE_VERSION 1
#define MD_SAVE_XML_MAX (1024 * 1024)

typedef enum
{
  MD_SAVE_COMPRESS_NONE = 0,
  MD_SAVE_COMPRESS_GZIP = 1,
  MD_SAVE_COMPRESS_ZSTD = 2,
} MdSaveCompression;

/* "none", "gzip", "zstd"; anything else is MD_ERROR_INVALID_ARGUMENT. */
gboolean md_save_compression_parse (const char *text, MdSaveCompression *out, GError **error);
const char *md_save_compression_to_string (MdSaveCompression compression);
/* The compressor's argv (NULL for none): reads stdin, writes stdout; never
 * a shell. */
const char *const *md_save_compressor_argv (MdSaveCompression compression, gboolean decompress);

typedef struct
{
  gboolean running;
  MdSaveCompression compression;
  char *xml;
  guint64 data_offset; /* set by encode, read by decode */
} MdSaveHeader;

void md_save_header_free (MdSaveHeader *header);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdSaveHeader, md_save_header_free)

/* The header bytes, padded to the stream offset (also stored in
 * @header->data_offset). */
GBytes *md_save_header_encode (MdSaveHeader *header);

/* Reads and checks the header of the open file @fd (@path for messages)
 * and leaves the file position at the stream. A file that is not ours, of
 * another version, corrupted or truncated is MD_ERROR_INVALID_ARGUMENT
 * saying which. */
MdSaveHeader *md_save_header_read (int fd, const char *path, GError **error);

/* A new file for @path: created O_CREAT|O_EXCL, mode 0600, under a
 * temporary name in @path's directory, so that a failed save leaves
 * nothing at @path. An existing @path is MD_ERROR_ALREADY_EXISTS unless
 * @overwrite; a missing directory MD_ERROR_NOT_FOUND. Returns the fd and
 * sets *@tmp_path. */
int md_save_file_create (const char *path, gboolean overwrite, char **tmp_path, GError **error);

/* Writes all of @bytes to @fd (ENOSPC and the like are
 * MD_ERROR_STORAGE_FAILED naming @path). */
gboolean md_save_file_write (int fd, GBytes *bytes, const char *path, GError **error);

/* Flushes @fd to disk (dropping it from the page cache with
 * @bypass_cache) and gives the temporary file its name: linked without
 * replacing anything, or renamed over @path with @overwrite. */
/* Copies @in_fd (a pipe, until its end) to @out_fd with O_DIRECT, so the
 * save bypasses the page cache (blocking: threads only). Ends with a
 * Cancelled error once @cancellable is cancelled. */
gboolean md_save_file_copy_direct (int in_fd, int out_fd, const char *path,
                                   GCancellable *cancellable, GError **error);
gboolean md_save_file_commit (int fd, const char *tmp_path, const char *path, gboolean overwrite,
                              gboolean bypass_cache, GError **error);

/* The journal direction of a save record (md-save-recover.c). */
#define MD_SAVE_JOURNAL_DIRECTION "save"

/* The start time of process @pid (field 22 of /proc/PID/stat), so a
 * record names that process and not a later one with the same PID;
 * 0 when it cannot be read. */
guint64 md_save_process_start_time (GPid pid);

G_END_DECLS

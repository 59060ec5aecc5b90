/* migrationd: the files and sockets the daemon opens for QEMU and hands it
 * as descriptors, so that an unprivileged, confined QEMU needs no
 * permission on any path (and no image path appears on its command line).
 *
 * An MdQemuFiles is the table "daemon descriptor -> number in QEMU" plus
 * what each device got:
 *  - disks: an fdset per image layer (-add-fd fd=N,set=S; the blockdev
 *    reads /dev/fdset/S) holding one descriptor, read-write or read-only
 *    as the node is opened for good (no auto-read-only: QEMU would switch
 *    to another descriptor of the set and leave the image locks of the
 *    first one held by the set's copy, so a migration's destination could
 *    not take them); the layers of a qcow2 backing chain, read-only,
 *    follow as explicit "backing" nodes;
 *  - serial files and pty serial logs: a descriptor each, as
 *    /dev/fdset/S too (chardev file and logfile go through qemu_open());
 *  - unix channels (the guest agent) and the inspection monitor: a
 *    listening socket the daemon bound (socket,fd=N);
 *  - graphics password secrets, kernel and initrd: descriptors QEMU opens
 *    as /proc/self/fd/N (a memfd when the file itself is private).
 * The opening functions block on the file system: call them from a worker
 * thread. */
#pragma once

#include <glib.h>

#include "domain/md-domain.h"

G_BEGIN_DECLS

typedef struct _MdQemuFiles MdQemuFiles;

typedef struct
{
  int set;            /* the fdset id */
  char *format;       /* this layer's format driver (raw, qcow2, ...) */
  gboolean read_only; /* its one descriptor is O_RDONLY (else O_RDWR) */
} MdQemuDiskLayer;

MdQemuFiles *md_qemu_files_new (int first_fd);
void md_qemu_files_free (MdQemuFiles *files);

/* Takes @fd (closed by the table unless handed over); returns the number
 * QEMU will see it as. */
int md_qemu_files_take (MdQemuFiles *files, int fd);
/* Takes @fd as number @target (below the first automatic one, e.g. QMP). */
void md_qemu_files_take_at (MdQemuFiles *files, int fd, int target);
/* An fdset of its own holding @fds (taken); returns the set id. */
int md_qemu_files_add_set (MdQemuFiles *files, const int *fds, guint n_fds);

/* For md_qemu_spawn_confined(): the descriptors and their numbers. After
 * the spawn call (which takes them, success or not) call
 * md_qemu_files_handed_over() so that the table does not close them. */
guint md_qemu_files_get_count (const MdQemuFiles *files);
const int *md_qemu_files_get_sources (const MdQemuFiles *files);
const int *md_qemu_files_get_targets (const MdQemuFiles *files);
void md_qemu_files_handed_over (MdQemuFiles *files);

/* The -add-fd arguments ("fd=N,set=S"), one per descriptor in a set. */
GPtrArray *md_qemu_files_add_fd_args (const MdQemuFiles *files);

/* What a device got (-1 / NULL: nothing passed, QEMU uses the path). */
const GPtrArray *md_qemu_files_disk_layers (const MdQemuFiles *files, guint disk_index);
void md_qemu_files_set_disk_layers (MdQemuFiles *files, guint disk_index, GPtrArray *layers);
int md_qemu_files_get (const MdQemuFiles *files, const char *key);
void md_qemu_files_set (MdQemuFiles *files, const char *key, int value);

/* Opens @path (O_RDWR unless @read_only; a cdrom (@may_be_read_only)
 * falls back to O_RDONLY) and then each
 * layer of its qcow2 backing chain read-only; returns the layers
 * (MdQemuDiskLayer*, first the image itself in @format) with their sets
 * added to @files. MD_ERROR_FAILED naming the file and what to do. */
GPtrArray *md_qemu_files_open_image (MdQemuFiles *files, const char *path, const char *format,
                                     gboolean read_only, gboolean may_be_read_only, GError **error);
/* A descriptor of @path QEMU can open as /proc/self/fd/N although the
 * file is not readable by it: the file itself when others may read it,
 * else a memfd copy. -1 with @error. */
int md_qemu_files_open_readable (const char *path, GError **error);
/* A memfd holding @data (for secrets; never on disk). */
int md_qemu_files_memfd (const char *name, const char *data, gsize len, GError **error);

/* Native-TLS migration: QEMU reads its credentials when the
 * tls-creds-x509 object is added. For a QEMU in a mount namespace of its
 * own, copies what the @server or client endpoint needs of @tls_dir into
 * /tmp/migrationd-tls-<tag> of QEMU's private /tmp, owned by its uid, mode
 * 0700, and returns that directory as QEMU sees it; for another QEMU,
 * @tls_dir. md_qemu_revoke_tls_dir() removes the copy as soon as
 * object-add is done, so QEMU's identity holds the keys only for that
 * moment. @tag: letters, digits, '-' and '_' (the object id). */
char *md_qemu_grant_tls_dir (GPid pid, const char *tag, const char *tls_dir, gboolean server,
                             GError **error);
void md_qemu_revoke_tls_dir (GPid pid, const char *tag);

void md_qemu_disk_layer_free (MdQemuDiskLayer *layer);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdQemuFiles, md_qemu_files_free)

G_END_DECLS

/* migrationd: per-guest uids for QEMU (see md-qemu-identity.h). */
#include "config.h"

#include "md-qemu-identity.h"

#include "common/md-error.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct _MdQemuUidPool
{
  char *user; /* "" or NULL: the range */
  guint32 min;
  guint32 max;
  char *range;          /* as configured, for messages */
  GHashTable *reserved; /* uid (GUINT_TO_POINTER) set */
};

gboolean
md_qemu_identity_enabled (void)
{
  return geteuid () == 0;
}

MdQemuUidPool *
md_qemu_uid_pool_new (const MdConfig *config)
{
  MdQemuUidPool *pool = g_new0 (MdQemuUidPool, 1);

  pool->user = g_strdup (config->qemu_user != NULL ? config->qemu_user : "");
  pool->min = config->qemu_uid_min;
  pool->max = config->qemu_uid_max;
  pool->range = g_strdup (config->qemu_uid_range);
  pool->reserved = g_hash_table_new (NULL, NULL);
  return pool;
}

void
md_qemu_uid_pool_free (MdQemuUidPool *pool)
{
  if (pool == NULL)
    return;
  g_free (pool->user);
  g_free (pool->range);
  g_hash_table_unref (pool->reserved);
  g_free (pool);
}

void
md_qemu_identity_clear (MdQemuIdentity *identity)
{
  if (identity->lock_fd >= 0)
    close (identity->lock_fd);
  identity->lock_fd = -1;
}

/* A zombie (an exited QEMU its parent has not reaped yet, e.g. one a
 * restarted daemon had re-attached) holds nothing any more. */
static gboolean
is_zombie (const char *pid)
{
  g_autofree char *path = g_build_filename ("/proc", pid, "stat", NULL);
  g_autofree char *contents = NULL;
  const char *rparen;

  if (!g_file_get_contents (path, &contents, NULL, NULL))
    return TRUE; /* gone */
  rparen = strrchr (contents, ')');
  return rparen != NULL && (rparen[1] == ' ' && (rparen[2] == 'Z' || rparen[2] == 'X'));
}

/* The uids in [@min, @max] of every live process on the host (owners of
 * /proc/PID), so that a uid some QEMU still runs as is never handed out
 * again, whoever lost track of it. */
static GHashTable *
uids_in_use (guint32 min, guint32 max)
{
  GHashTable *uids = g_hash_table_new (NULL, NULL);
  g_autoptr (GDir) dir = g_dir_open ("/proc", 0, NULL);
  const char *entry;

  while (dir != NULL && (entry = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = NULL;
      struct stat st;

      if (!g_ascii_isdigit (entry[0]))
        continue;
      path = g_build_filename ("/proc", entry, NULL);
      if (stat (path, &st) == 0 && st.st_uid >= min && st.st_uid <= max && !is_zombie (entry))
        g_hash_table_add (uids, GUINT_TO_POINTER ((guint) st.st_uid));
    }
  return uids;
}

/* Locks MD_QEMU_UID_LOCK_DIR/<uid>: -1 when someone (a live QEMU) holds it
 * or it cannot be made (with @error set then). */
static int
lock_uid (guint32 uid, GError **error)
{
  g_autofree char *path = g_strdup_printf ("%s/%u", MD_QEMU_UID_LOCK_DIR, uid);
  int fd;

  if (g_mkdir_with_parents (MD_QEMU_UID_LOCK_DIR, 0700) < 0)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
                   "cannot create the QEMU uid lock directory %s: %s", MD_QEMU_UID_LOCK_DIR,
                   g_strerror (errsv));
      return -1;
    }
  fd = open (path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    {
      int errsv = errno;

      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot open the QEMU uid lock %s: %s", path,
                   g_strerror (errsv));
      return -1;
    }
  if (flock (fd, LOCK_EX | LOCK_NB) < 0)
    {
      close (fd);
      return -1;
    }
  return fd;
}

static gboolean
acquire_shared (MdQemuUidPool *pool, MdQemuIdentity *identity, GError **error)
{
  struct passwd *pw = getpwnam (pool->user);

  if (pw == NULL)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "[qemu] user: there is no user '%s' for QEMU to run as (create it, e.g. with "
                   "the sysusers.d entry of migrationd-qemu, or leave the key empty for one uid "
                   "per guest)",
                   pool->user);
      return FALSE;
    }
  if (pw->pw_uid == 0 || pw->pw_gid == 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                   "[qemu] user: '%s' has uid or gid 0; QEMU never runs as root", pool->user);
      return FALSE;
    }
  identity->uid = pw->pw_uid;
  identity->gid = pw->pw_gid;
  identity->shared = TRUE;
  identity->lock_fd = -1;
  return TRUE;
}

gboolean
md_qemu_uid_pool_acquire (MdQemuUidPool *pool, MdQemuIdentity *identity, GError **error)
{
  g_autoptr (GHashTable) busy = NULL;

  identity->lock_fd = -1;
  if (*pool->user != '\0')
    return acquire_shared (pool, identity, error);

  busy = uids_in_use (pool->min, pool->max);
  for (guint64 uid = pool->min; uid <= pool->max; uid++)
    {
      int fd;

      if (g_hash_table_contains (pool->reserved, GUINT_TO_POINTER ((guint) uid))
          || g_hash_table_contains (busy, GUINT_TO_POINTER ((guint) uid)))
        continue;
      fd = lock_uid ((guint32) uid, error);
      if (fd < 0)
        {
          if (error != NULL && *error != NULL)
            return FALSE;
          continue;
        }
      /* A uid with an account belongs to someone else. */
      if (getpwuid ((uid_t) uid) != NULL)
        {
          close (fd);
          continue;
        }
      identity->uid = identity->gid = (guint32) uid;
      identity->shared = FALSE;
      identity->lock_fd = fd;
      g_hash_table_add (pool->reserved, GUINT_TO_POINTER ((guint) uid));
      return TRUE;
    }
  g_set_error (error, MD_ERROR, MD_ERROR_FAILED,
               "every uid of [qemu] uid-range %s is taken by a running guest or process; stop a "
               "guest or widen the range",
               pool->range);
  return FALSE;
}

void
md_qemu_uid_pool_reserve (MdQemuUidPool *pool, guint32 uid)
{
  if (uid >= pool->min && uid <= pool->max)
    g_hash_table_add (pool->reserved, GUINT_TO_POINTER ((guint) uid));
}

void
md_qemu_uid_pool_release (MdQemuUidPool *pool, guint32 uid)
{
  g_hash_table_remove (pool->reserved, GUINT_TO_POINTER ((guint) uid));
}

gboolean
md_qemu_uid_pool_is_reserved (MdQemuUidPool *pool, guint32 uid)
{
  return g_hash_table_contains (pool->reserved, GUINT_TO_POINTER ((guint) uid));
}

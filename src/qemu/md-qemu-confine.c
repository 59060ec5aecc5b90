/* migrationd: confining QEMU between fork and exec (see md-qemu-confine.h).
 *
 * The child half runs after fork() in a process that may have been
 * multi-threaded: it must not allocate, lock or call stdio. All strings are
 * built here beforehand; the child uses raw system calls only. */
#include "config.h"

#include "md-qemu-confine.h"

#include "common/md-error.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_DEV_NODES 16
#define STAGING "/tmp/.migrationd-dev"
#define NOFILE_LIMIT 8192

typedef struct
{
  char src[64];
  char dst[96];
  gboolean is_dir;
} DevNode;

struct _MdQemuConfine
{
  guint32 uid;
  guint32 gid;
  int last_cap;
  /* cgroup.procs files, written by path: descriptors of the daemon may be
   * overwritten by the fd mapping GLib does in the child before setup. */
  char cgroup_procs[4][256];
  guint n_cgroup_procs;
  guint64 memlock_bytes;
  char tmp_options[96];
  DevNode nodes[MAX_DEV_NODES];
  guint n_nodes;
  char staging_net[64];
};

static int
read_last_cap (void)
{
  g_autofree char *text = NULL;
  guint64 value = 0;

  if (g_file_get_contents ("/proc/sys/kernel/cap_last_cap", &text, NULL, NULL)
      && g_ascii_string_to_unsigned (g_strstrip (text), 10, 0, 63, &value, NULL))
    return (int) value;
  return CAP_LAST_CAP;
}

static void
add_node (MdQemuConfine *c, const char *name, gboolean is_dir)
{
  g_autofree char *src = g_build_filename ("/dev", name, NULL);
  DevNode *node;

  if (c->n_nodes >= MAX_DEV_NODES || !g_file_test (src, G_FILE_TEST_EXISTS))
    return;
  node = &c->nodes[c->n_nodes++];
  g_strlcpy (node->src, src, sizeof node->src);
  g_snprintf (node->dst, sizeof node->dst, "%s/%s", STAGING, name);
  node->is_dir = is_dir;
}

MdQemuConfine *
md_qemu_confine_new (guint32 uid, guint32 gid, const char *const *cgroup_procs,
                     guint64 memlock_bytes)
{
  MdQemuConfine *c = g_new0 (MdQemuConfine, 1);
  static const char *const nodes[] = { "null", "zero", "full", "random", "urandom", "kvm" };

  c->uid = uid;
  c->gid = gid;
  c->last_cap = read_last_cap ();
  for (guint i = 0; cgroup_procs != NULL && cgroup_procs[i] != NULL
                    && c->n_cgroup_procs < G_N_ELEMENTS (c->cgroup_procs);
       i++)
    g_strlcpy (c->cgroup_procs[c->n_cgroup_procs++], cgroup_procs[i], sizeof c->cgroup_procs[0]);
  c->memlock_bytes = memlock_bytes;
  g_snprintf (c->tmp_options, sizeof c->tmp_options, "mode=0700,uid=%u,gid=%u,size=64m", uid, gid);
  for (guint i = 0; i < G_N_ELEMENTS (nodes); i++)
    add_node (c, nodes[i], FALSE);
  if (g_file_test ("/dev/net/tun", G_FILE_TEST_EXISTS))
    {
      g_snprintf (c->staging_net, sizeof c->staging_net, "%s/net", STAGING);
      add_node (c, "net/tun", FALSE);
    }
  return c;
}

void
md_qemu_confine_free (MdQemuConfine *c)
{
  g_free (c);
}

/* ---- the child (async-signal-safe from here to the end of the section) ---- */

static void
child_write (const char *text)
{
  ssize_t ignored = write (STDERR_FILENO, text, strlen (text));

  (void) ignored;
}

G_GNUC_NORETURN static void
child_fail (const char *step)
{
  int err = errno;
  char digits[16];
  int n = 0;
  char out[16];
  int m = 0;

  do
    {
      digits[n++] = (char) ('0' + err % 10);
      err /= 10;
    }
  while (err > 0 && n < (int) sizeof digits);
  while (n > 0)
    out[m++] = digits[--n];
  out[m] = '\0';
  child_write ("migrationd: cannot confine QEMU: ");
  child_write (step);
  child_write (" (errno ");
  child_write (out);
  child_write ("); QEMU was not started\n");
  _exit (127);
}

static void
child_mounts (MdQemuConfine *c)
{
  if (unshare (CLONE_NEWNS) < 0)
    child_fail ("unshare(CLONE_NEWNS)");
  if (mount (NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
    child_fail ("making / a slave mount");
  if (mount ("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, c->tmp_options) < 0)
    child_fail ("a private /tmp");
  /* /dev is built in a staging directory and then moved over /dev: once
   * the tmpfs covers /dev, the host's nodes could no longer be bound. */
  if (mkdir (STAGING, 0755) < 0)
    child_fail ("mkdir " STAGING);
  if (mount ("tmpfs", STAGING, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k") < 0)
    child_fail ("a tmpfs for /dev");
  if (c->staging_net[0] != '\0' && mkdir (c->staging_net, 0755) < 0)
    child_fail ("mkdir /dev/net");
  for (guint i = 0; i < c->n_nodes; i++)
    {
      DevNode *node = &c->nodes[i];

      if (node->is_dir)
        {
          if (mkdir (node->dst, 0755) < 0)
            child_fail (node->dst);
        }
      else
        {
          int fd = open (node->dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

          if (fd < 0)
            child_fail (node->dst);
          close (fd);
        }
      if (mount (node->src, node->dst, NULL, MS_BIND, NULL) < 0)
        child_fail (node->src);
    }
  if (symlink ("/proc/self/fd", STAGING "/fd") < 0)
    child_fail ("/dev/fd");
  /* pty serials: a devpts instance of QEMU's own (the host's ptmx node
   * only finds the devpts mounted next to it, and nothing outside needs
   * QEMU's ptys: their output goes to the serial log). */
  if (mkdir (STAGING "/pts", 0755) < 0)
    child_fail ("mkdir /dev/pts");
  if (mount ("devpts", STAGING "/pts", "devpts", MS_NOSUID | MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0600")
      < 0)
    child_fail ("a devpts instance for /dev/pts");
  if (symlink ("pts/ptmx", STAGING "/ptmx") < 0)
    child_fail ("/dev/ptmx");
  if (mount (STAGING, "/dev", NULL, MS_MOVE, NULL) < 0)
    child_fail ("moving the minimal /dev into place");
  if (rmdir (STAGING) < 0)
    child_fail ("rmdir " STAGING);
}

static void
child_drop (MdQemuConfine *c)
{
  struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
  struct __user_cap_data_struct data[2];

  for (int cap = 0; cap <= c->last_cap; cap++)
    if (prctl (PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
      child_fail ("dropping the capability bounding set");
  if (syscall (SYS_setgroups, 0, NULL) < 0)
    child_fail ("setgroups");
  if (syscall (SYS_setresgid, c->gid, c->gid, c->gid) < 0)
    child_fail ("setresgid");
  if (syscall (SYS_setresuid, c->uid, c->uid, c->uid) < 0)
    child_fail ("setresuid");
  memset (data, 0, sizeof data);
  if (syscall (SYS_capset, &header, data) < 0)
    child_fail ("clearing the capability sets");
  if (prctl (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
    child_fail ("clearing the ambient capabilities");
  if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
    child_fail ("PR_SET_NO_NEW_PRIVS");
  if (getuid () != c->uid || geteuid () != c->uid || getgid () != c->gid)
    child_fail ("checking the new identity");
}

void
md_qemu_confine_child_setup (gpointer user_data)
{
  MdQemuConfine *c = user_data;
  struct rlimit nofile = { NOFILE_LIMIT, NOFILE_LIMIT };
  struct rlimit memlock = { c->memlock_bytes, c->memlock_bytes };

  for (guint i = 0; i < c->n_cgroup_procs; i++)
    {
      int fd = open (c->cgroup_procs[i], O_WRONLY | O_CLOEXEC);

      if (fd < 0 || write (fd, "0\n", 2) < 0)
        child_fail (c->cgroup_procs[i]);
      close (fd);
    }
  child_mounts (c);
  if (setrlimit (RLIMIT_NOFILE, &nofile) < 0)
    child_fail ("RLIMIT_NOFILE");
  if (setrlimit (RLIMIT_MEMLOCK, &memlock) < 0)
    child_fail ("RLIMIT_MEMLOCK");
  child_drop (c);
}

/* ---- cgroups (in the daemon) ---- */

/* The daemon's cgroup in hierarchy @controller (v1; "" for v2) from
 * /proc/self/cgroup. */
static char *
own_cgroup (const char *controller)
{
  g_autofree char *text = NULL;
  g_auto (GStrv) lines = NULL;

  if (!g_file_get_contents ("/proc/self/cgroup", &text, NULL, NULL))
    return NULL;
  lines = g_strsplit (text, "\n", 0);
  for (guint i = 0; lines[i] != NULL; i++)
    {
      g_auto (GStrv) fields = g_strsplit (lines[i], ":", 3);
      g_auto (GStrv) controllers = NULL;

      if (g_strv_length (fields) != 3)
        continue;
      controllers = g_strsplit (fields[1], ",", 0);
      if ((*controller == '\0' && g_str_equal (fields[0], "0"))
          || (*controller != '\0'
              && g_strv_contains ((const char *const *) controllers, controller)))
        return g_strdup (fields[2]);
    }
  return NULL;
}

/* The directories to make @name in: v1 memory and pids hierarchies, or the
 * unified one when it has both controllers. */
static GPtrArray *
hierarchies (const char *name)
{
  GPtrArray *dirs = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *v2_controllers = NULL;

  if (g_file_get_contents ("/sys/fs/cgroup/cgroup.controllers", &v2_controllers, NULL, NULL))
    {
      g_autofree char *own = own_cgroup ("");

      if (own != NULL)
        g_ptr_array_add (dirs, g_build_filename ("/sys/fs/cgroup", own, name, NULL));
      return dirs;
    }
  for (guint i = 0; i < 2; i++)
    {
      const char *controller = i == 0 ? "memory" : "pids";
      g_autofree char *own = own_cgroup (controller);
      g_autofree char *root = g_build_filename ("/sys/fs/cgroup", controller, NULL);

      if (own != NULL && g_file_test (root, G_FILE_TEST_IS_DIR))
        g_ptr_array_add (dirs, g_build_filename (root, own, name, NULL));
    }
  return dirs;
}

GStrv
md_qemu_cgroup_paths (const char *name)
{
  g_autoptr (GPtrArray) dirs = hierarchies (name);
  GStrvBuilder *builder = g_strv_builder_new ();
  GStrv result;

  for (guint i = 0; i < dirs->len; i++)
    g_strv_builder_add (builder, dirs->pdata[i]);
  result = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);
  return result;
}

/* Writes @value to @dir/@file if that file exists; FALSE with @error when
 * it exists and refuses the value. */
static gboolean
set_limit (const char *dir, const char *file, const char *value, GError **error)
{
  g_autofree char *path = g_build_filename (dir, file, NULL);
  g_autoptr (GError) local_error = NULL;

  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return TRUE;
  if (g_file_set_contents_full (path, value, -1, G_FILE_SET_CONTENTS_NONE, 0644, &local_error))
    return TRUE;
  g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot set %s to %s: %s", path, value,
               local_error->message);
  return FALSE;
}

GStrv
md_qemu_cgroup_create (const char *name, guint64 memory_bytes, guint tasks, GError **error)
{
  g_autoptr (GPtrArray) dirs = hierarchies (name);
  g_autoptr (GPtrArray) procs_files = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *memory = g_strdup_printf ("%" G_GUINT64_FORMAT, memory_bytes);
  g_autofree char *pids = g_strdup_printf ("%u", tasks);

  for (guint i = 0; i < dirs->len; i++)
    {
      const char *dir = dirs->pdata[i];
      g_autofree char *procs = g_build_filename (dir, "cgroup.procs", NULL);

      if (g_mkdir_with_parents (dir, 0755) < 0)
        {
          static gboolean warned;

          /* A read-only cgroup tree (systemd's ProtectControlGroups=):
           * the machined scope carries the limits there. Said once. */
          if (!warned)
            g_message ("cannot create the guest cgroup %s (%s): the guests' memory and tasks "
                       "limits rest on their systemd-machined scopes",
                       dir, g_strerror (errno));
          warned = TRUE;
          continue;
        }
      if (!set_limit (dir, "memory.limit_in_bytes", memory, error)
          || !set_limit (dir, "memory.max", memory, error)
          || !set_limit (dir, "pids.max", pids, error))
        {
          md_qemu_cgroup_remove (name);
          return NULL;
        }
      g_ptr_array_add (procs_files, g_steal_pointer (&procs));
    }
  g_ptr_array_add (procs_files, NULL);
  return (GStrv) g_ptr_array_free (g_steal_pointer (&procs_files), FALSE);
}

void
md_qemu_cgroup_remove (const char *name)
{
  g_autoptr (GPtrArray) dirs = hierarchies (name);

  for (guint i = 0; i < dirs->len; i++)
    if (rmdir (dirs->pdata[i]) < 0 && errno != ENOENT)
      g_warning ("cannot remove the guest cgroup %s: %s", (char *) dirs->pdata[i],
                 g_strerror (errno));
}

void
md_qemu_cgroup_remove_stale (const char *prefix)
{
  g_autoptr (GPtrArray) dirs = hierarchies ("");

  for (guint i = 0; i < dirs->len; i++)
    {
      g_autoptr (GDir) dir = g_dir_open (dirs->pdata[i], 0, NULL);
      const char *name;

      while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
        if (g_str_has_prefix (name, prefix))
          {
            g_autofree char *path = g_build_filename (dirs->pdata[i], name, NULL);

            /* Only empty ones go: a cgroup with tasks refuses (EBUSY). */
            if (rmdir (path) == 0)
              g_debug ("removed the stale guest cgroup %s", path);
          }
    }
}

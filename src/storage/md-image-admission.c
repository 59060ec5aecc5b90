/* migrationd: what an incoming migration may do with files on this host
 * (see the header for the rules). */
#include "config.h"

#include "md-image-admission.h"
#include "common/md-error.h"

#include <errno.h>
#include <fcntl.h>
#include <json-glib/json-glib.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BACKING_DEPTH 16
#define CHILD_FD 3 /* where qemu-img finds the image we opened */

typedef struct
{
  char *configured; /* as written in the configuration */
  char *real;       /* its real path, resolved at start-up */
} AllowedDir;

struct _MdImageAdmission
{
  GPtrArray *dirs; /* AllowedDir*, shared with running jobs (read-only) */
  gboolean allow_reuse;
  guint timeout_seconds;
  char *host;
};

static void
allowed_dir_free (AllowedDir *dir)
{
  g_free (dir->configured);
  g_free (dir->real);
  g_free (dir);
}

MdImageAdmission *
md_image_admission_new (const char *const *image_dirs, gboolean create_missing,
                        gboolean allow_reuse, guint timeout_seconds, const char *host,
                        GError **error)
{
  MdImageAdmission *self = g_new0 (MdImageAdmission, 1);

  self->dirs = g_ptr_array_new_with_free_func ((GDestroyNotify) allowed_dir_free);
  self->allow_reuse = allow_reuse;
  self->timeout_seconds = timeout_seconds > 0 ? timeout_seconds : 20;
  self->host = g_strdup (host);
  for (guint i = 0; image_dirs != NULL && image_dirs[i] != NULL; i++)
    {
      AllowedDir *dir;
      char *real;

      if (create_missing && g_mkdir_with_parents (image_dirs[i], 0700) < 0)
        {
          int errsv = errno;
          g_set_error (error, MD_ERROR, MD_ERROR_CONFIG,
                       "[storage] image-dirs: cannot create %s: %s", image_dirs[i],
                       g_strerror (errsv));
          md_image_admission_free (self);
          return NULL;
        }
      real = realpath (image_dirs[i], NULL);
      if (real == NULL)
        {
          /* An unmounted share is not fatal: paths there are refused
           * until the daemon restarts with it present. */
          g_warning ("[storage] image-dirs: %s is not usable (%s); no disk may live there",
                     image_dirs[i], g_strerror (errno));
          continue;
        }
      dir = g_new0 (AllowedDir, 1);
      dir->configured = g_strdup (image_dirs[i]);
      dir->real = real;
      g_ptr_array_add (self->dirs, dir);
    }
  return self;
}

void
md_image_admission_free (MdImageAdmission *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->dirs);
  g_free (self->host);
  g_free (self);
}

const char *
md_image_admission_strerror (int errsv)
{
  if (errsv == ENOSPC)
    return "no space left on device";
  if (errsv == EDQUOT)
    return "disk quota exceeded (no space left for this user)";
  return g_strerror (errsv);
}

/* ---- the worker: one job per call, bounded by a timeout ------------------- */

typedef enum
{
  JOB_PREPARE,
  JOB_CHECK_PATHS,
  JOB_REMOVE,
} JobKind;

typedef struct
{
  JobKind kind;
  GPtrArray *dirs; /* AllowedDir*, a reference on the admission's */
  char *host;
  guint timeout_seconds;

  /* shared between the worker and the main thread */
  GMutex lock;
  char *current;   /* the path the worker is at, for the timeout message */
  char *timed_out; /* set by the main thread: the worker was given up */
  gboolean finished;

  /* main thread only */
  GCancellable *cancellable;
  guint timeout_id;

  /* input */
  MdDomain *def;
  GVariant *disks_info;
  gboolean reuse;
  GStrv in_use;
  GStrv paths;

  /* output (read once the worker finished) */
  GPtrArray *created; /* char*: paths the worker created */
  GVariant *visible;
} Job;

static void
job_free (Job *job)
{
  g_ptr_array_unref (job->dirs);
  g_free (job->host);
  g_mutex_clear (&job->lock);
  g_free (job->current);
  g_free (job->timed_out);
  g_clear_object (&job->cancellable);
  g_clear_pointer (&job->def, md_domain_free);
  g_clear_pointer (&job->disks_info, g_variant_unref);
  g_strfreev (job->in_use);
  g_strfreev (job->paths);
  g_clear_pointer (&job->created, g_ptr_array_unref);
  g_clear_pointer (&job->visible, g_variant_unref);
}

static Job *
job_new (MdImageAdmission *self, JobKind kind)
{
  Job *job = g_atomic_rc_box_new0 (Job);

  job->kind = kind;
  job->dirs = g_ptr_array_ref (self->dirs);
  job->host = g_strdup (self->host);
  job->timeout_seconds = self->timeout_seconds;
  g_mutex_init (&job->lock);
  job->cancellable = g_cancellable_new ();
  job->created = g_ptr_array_new_with_free_func (g_free);
  return job;
}

static Job *
job_ref (Job *job)
{
  return g_atomic_rc_box_acquire (job);
}

static void
job_unref (Job *job)
{
  g_atomic_rc_box_release_full (job, (GDestroyNotify) job_free);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Job, job_unref)

/* Worker: records where it is, so a timeout can name the path. */
static void
job_at (Job *job, const char *path)
{
  g_mutex_lock (&job->lock);
  g_free (job->current);
  job->current = g_strdup (path);
  g_mutex_unlock (&job->lock);
}

static gboolean
on_job_timeout (gpointer user_data)
{
  Job *job = user_data;

  job->timeout_id = 0;
  g_mutex_lock (&job->lock);
  if (!job->finished)
    {
      job->timed_out = g_strdup (job->current != NULL ? job->current : "(starting)");
      g_cancellable_cancel (job->cancellable);
    }
  g_mutex_unlock (&job->lock);
  return G_SOURCE_REMOVE;
}

static void remove_created (Job *job);

/* Worker, at its end: TRUE when its result still counts; FALSE when the
 * main thread gave up on it (then what it created goes again). */
static gboolean
job_finish (Job *job)
{
  gboolean abandoned;

  g_mutex_lock (&job->lock);
  abandoned = job->timed_out != NULL;
  job->finished = TRUE;
  g_mutex_unlock (&job->lock);
  if (abandoned)
    {
      g_warning ("host %s: a file-system check that timed out has ended; undoing what it did",
                 job->host);
      remove_created (job);
    }
  return !abandoned;
}

static void
on_worker_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) outer = user_data;
  Job *job = g_task_get_task_data (outer);
  GError *error = NULL;

  g_clear_handle_id (&job->timeout_id, g_source_remove);
  if (job->timed_out != NULL)
    {
      g_task_return_new_error (outer, MD_ERROR, MD_ERROR_TIMEOUT,
                               "the file system of host %s did not answer within %u s at %s "
                               "(a hung mount?); fix the mount or raise [storage] "
                               "fs-check-timeout",
                               job->host, job->timeout_seconds, job->timed_out);
      return;
    }
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    g_task_return_error (outer, error);
  else
    g_task_return_boolean (outer, TRUE);
}

static void
job_run (Job *job, GTaskThreadFunc func, GCancellable *cancellable, GAsyncReadyCallback callback,
         gpointer user_data)
{
  GTask *outer = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr (GTask) worker = g_task_new (NULL, job->cancellable, on_worker_done, outer);

  g_task_set_task_data (outer, job_ref (job), (GDestroyNotify) job_unref);
  g_task_set_task_data (worker, job_ref (job), (GDestroyNotify) job_unref);
  /* A worker stuck in the kernel cannot be stopped; given up, its task
   * returns at once and the thread finishes (and undoes) on its own. */
  g_task_set_return_on_cancel (worker, TRUE);
  job->timeout_id = g_timeout_add_seconds (job->timeout_seconds, on_job_timeout, job);
  g_task_run_in_thread (worker, func);
}

/* ---- paths: inside the allowed directories, no links ---------------------- */

/* The components of @path, or NULL when it is not absolute or has "..". */
static GStrv
path_components (const char *path)
{
  g_auto (GStrv) parts = NULL;
  g_autoptr (GStrvBuilder) out = g_strv_builder_new ();

  if (path == NULL || !g_path_is_absolute (path))
    return NULL;
  parts = g_strsplit (path, "/", -1);
  for (guint i = 0; parts[i] != NULL; i++)
    {
      if (parts[i][0] == '\0' || g_str_equal (parts[i], "."))
        continue;
      if (g_str_equal (parts[i], ".."))
        return NULL;
      g_strv_builder_add (out, parts[i]);
    }
  return g_strv_builder_end (out);
}

/* The components of @path below @dir, or NULL when it is not below it. */
static char **
below (char **path, const char *dir)
{
  g_auto (GStrv) prefix = path_components (dir);
  guint n;

  if (prefix == NULL)
    return NULL;
  n = g_strv_length (prefix);
  if (g_strv_length (path) <= n)
    return NULL;
  for (guint i = 0; i < n; i++)
    if (!g_str_equal (prefix[i], path[i]))
      return NULL;
  return path + n;
}

static char *
dirs_list (Job *job)
{
  g_autoptr (GString) list = g_string_new (NULL);

  for (guint i = 0; i < job->dirs->len; i++)
    {
      const AllowedDir *dir = g_ptr_array_index (job->dirs, i);
      g_string_append_printf (list, "%s%s", i > 0 ? ", " : "", dir->configured);
    }
  return g_string_free (g_steal_pointer (&list), FALSE);
}

static void
set_outside (Job *job, const char *path, GError **error)
{
  g_autofree char *list = dirs_list (job);

  g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
               "%s is not inside the image directories of host %s ([storage] image-dirs: %s); "
               "choose a path there, or have the admin of %s add its directory",
               path, job->host, *list != '\0' ? list : "none usable", job->host);
}

static void
set_link (Job *job, const char *path, const char *component, GError **error)
{
  g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
               "%s: '%s' is a symbolic link; migrationd never follows links inside [storage] "
               "image-dirs of host %s (they could lead out of them); use the real path",
               path, component, job->host);
}

/* Opens the directory that holds @path by walking down from the allowed
 * directory it lies in, one openat(O_NOFOLLOW) per component: what is
 * checked is what is used. Returns its fd and sets @leaf, or -1 with
 * @error set, or -1 with errno ENOENT and @error unset when a directory
 * on the way does not exist. */
static int
open_parent (Job *job, const char *path, char **leaf, GError **error)
{
  g_auto (GStrv) parts = path_components (path);
  char **rest = NULL;
  const AllowedDir *found = NULL;
  int fd;

  job_at (job, path);
  for (guint i = 0; parts != NULL && i < job->dirs->len && rest == NULL; i++)
    {
      found = g_ptr_array_index (job->dirs, i);
      rest = below (parts, found->configured);
      if (rest == NULL)
        rest = below (parts, found->real);
    }
  if (rest == NULL)
    {
      set_outside (job, path, error);
      return -1;
    }
  fd = open (found->real, O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  for (guint i = 0; fd >= 0 && rest[i + 1] != NULL; i++)
    {
      int next = openat (fd, rest[i], O_DIRECTORY | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      int errsv = errno;
      struct stat st;

      if (next < 0 && (errsv == ELOOP || errsv == ENOTDIR)
          && fstatat (fd, rest[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK (st.st_mode))
        {
          close (fd);
          set_link (job, path, rest[i], error);
          return -1;
        }
      close (fd);
      fd = next;
      errno = errsv;
    }
  if (fd < 0)
    {
      int errsv = errno;
      /* A missing directory is for the caller to word (errno ENOENT). */
      if (errsv != ENOENT)
        g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                     "the directory of %s cannot be opened on host %s: %s", path, job->host,
                     md_image_admission_strerror (errsv));
      errno = errsv;
      return -1;
    }
  *leaf = g_strdup (rest[g_strv_length (rest) - 1]);
  return fd;
}

/* Opens an existing image (or block device) read-only, without following
 * a link; -1 with errno ENOENT when it does not exist (@error unset). */
static int
open_existing (Job *job, const char *path, GError **error)
{
  g_autofree char *leaf = NULL;
  int dir = open_parent (job, path, &leaf, error);
  int fd, errsv;
  struct stat st;

  if (dir < 0)
    return -1; /* errno ENOENT with @error unset: missing */
  /* O_NONBLOCK: a FIFO planted here must not hang the worker. */
  fd = openat (dir, leaf, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  errsv = errno;
  if (fd < 0 && errsv == ELOOP)
    set_link (job, path, leaf, error);
  else if (fd < 0 && errsv != ENOENT)
    g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "cannot open %s on host %s: %s", path,
                 job->host, md_image_admission_strerror (errsv));
  close (dir);
  if (fd < 0)
    {
      errno = errsv;
      return -1;
    }
  if (fstat (fd, &st) < 0 || !(S_ISREG (st.st_mode) || S_ISBLK (st.st_mode)))
    {
      close (fd);
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
                   "%s on host %s is not a regular file or block device", path, job->host);
      return -1;
    }
  return fd;
}

/* ---- qemu-img on what we opened -------------------------------------------- */

/* `qemu-img info` of the image open at @fd (probing its format). */
static JsonObject *
image_info (Job *job, int fd, const char *path, GError **error)
{
  g_autoptr (GSubprocessLauncher) launcher =
      g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_autoptr (GSubprocess) proc = NULL;
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local_error = NULL;
  g_autofree char *fd_path = g_strdup_printf ("/dev/fd/%d", CHILD_FD);

  job_at (job, path);
  g_subprocess_launcher_take_fd (launcher, dup (fd), CHILD_FD);
  proc = g_subprocess_launcher_spawn (launcher, &local_error, "qemu-img", "info", "--output=json",
                                      fd_path, NULL);
  if (proc == NULL || !g_subprocess_communicate_utf8 (proc, NULL, NULL, &out, &err, &local_error)
      || !g_subprocess_get_successful (proc)
      || !json_parser_load_from_data (parser, out != NULL ? out : "", -1, NULL)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                   "host %s: cannot read the image %s: %s", job->host, path,
                   local_error != NULL ? local_error->message
                   : err != NULL       ? g_strstrip (err)
                                       : "qemu-img info failed");
      return NULL;
    }
  return json_object_ref (json_node_get_object (json_parser_get_root (parser)));
}

/* A backing file named in @image (at @path) resolves as QEMU resolves it:
 * relative to the image's directory. */
static char *
backing_path (const char *path, const char *backing)
{
  g_autofree char *dir = NULL;

  if (g_path_is_absolute (backing))
    return g_strdup (backing);
  dir = g_path_get_dirname (path);
  return g_build_filename (dir, backing, NULL);
}

/* Every file of the backing chain that starts at @backing (named by the
 * image at @path) must be an image inside the allowed directories. */
static gboolean
check_backing_chain (Job *job, const char *path, const char *backing, GError **error)
{
  g_autofree char *current = backing != NULL ? backing_path (path, backing) : NULL;

  for (guint depth = 0; current != NULL; depth++)
    {
      g_autoptr (JsonObject) info = NULL;
      const char *next;
      int fd;

      if (depth == MAX_BACKING_DEPTH)
        {
          g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                       "the backing chain of %s is longer than %d files", path, MAX_BACKING_DEPTH);
          return FALSE;
        }
      fd = open_existing (job, current, error);
      if (fd < 0)
        {
          if (error != NULL && *error == NULL)
            g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                         "backing file %s of %s does not exist on host %s; copy-storage="
                         "incremental needs the backing chain on both hosts",
                         current, path, job->host);
          g_prefix_error (error, "backing file of %s: ", path);
          return FALSE;
        }
      info = image_info (job, fd, current, error);
      close (fd);
      if (info == NULL)
        return FALSE;
      next = json_object_get_string_member_with_default (info, "backing-filename", NULL);
      if (next != NULL)
        {
          char *resolved = backing_path (current, next);
          g_free (current);
          current = resolved;
        }
      else
        g_clear_pointer (&current, g_free);
    }
  return TRUE;
}

/* Turns the empty file we created at @fd into an image: raw by setting
 * its size, anything else with qemu-img on that very file. */
static gboolean
format_created (Job *job, int fd, const char *path, const char *format, guint64 size,
                const char *backing, const char *backing_format, GError **error)
{
  g_autoptr (GSubprocessLauncher) launcher = NULL;
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *err = NULL;
  g_autoptr (GError) local_error = NULL;

  job_at (job, path);
  if (g_str_equal (format, "raw") && backing == NULL)
    {
      if (ftruncate (fd, (off_t) size) == 0)
        return TRUE;
      g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                   "host %s: cannot size the target image %s: %s", job->host, path,
                   md_image_admission_strerror (errno));
      return FALSE;
    }
  if (g_str_equal (format, "raw"))
    format = "qcow2"; /* a top layer over a backing file */
  g_ptr_array_add (argv, g_strdup ("qemu-img"));
  g_ptr_array_add (argv, g_strdup ("create"));
  g_ptr_array_add (argv, g_strdup ("-q"));
  g_ptr_array_add (argv, g_strdup ("-f"));
  g_ptr_array_add (argv, g_strdup (format));
  if (backing != NULL)
    {
      g_ptr_array_add (argv, g_strdup ("-b"));
      g_ptr_array_add (argv, g_strdup (backing));
      g_ptr_array_add (argv, g_strdup ("-F"));
      g_ptr_array_add (argv, g_strdup (backing_format));
    }
  g_ptr_array_add (argv, g_strdup_printf ("/dev/fd/%d", CHILD_FD));
  g_ptr_array_add (argv, g_strdup_printf ("%" G_GUINT64_FORMAT, size));
  g_ptr_array_add (argv, NULL);
  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE
                                        | G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_subprocess_launcher_take_fd (launcher, dup (fd), CHILD_FD);
  proc = g_subprocess_launcher_spawnv (launcher, (const char *const *) argv->pdata, &local_error);
  if (proc != NULL && g_subprocess_communicate_utf8 (proc, NULL, NULL, NULL, &err, &local_error)
      && g_subprocess_get_successful (proc))
    return TRUE;
  g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
               "host %s: cannot create the target image %s: %s", job->host, path,
               local_error != NULL ? local_error->message
               : err != NULL       ? g_strstrip (err)
                                   : "qemu-img failed");
  return FALSE;
}

/* ---- Prepare ---------------------------------------------------------------- */

static void
remove_created (Job *job)
{
  for (guint i = 0; i < job->created->len; i++)
    {
      const char *path = g_ptr_array_index (job->created, i);
      g_autoptr (GError) error = NULL;
      g_autofree char *leaf = NULL;
      int dir = open_parent (job, path, &leaf, &error);

      if (dir < 0 && error == NULL)
        continue; /* its directory is gone, and it with it */
      if (dir < 0 || (unlinkat (dir, leaf, 0) < 0 && errno != ENOENT))
        g_warning ("host %s: cannot remove the target image %s a failed migration created: %s",
                   job->host, path, error != NULL ? error->message : g_strerror (errno));
      else
        g_message ("removed the target image %s a failed migration created", path);
      if (dir >= 0)
        close (dir);
    }
  g_ptr_array_set_size (job->created, 0);
}

static GVariant *
copied_info (GVariant *disks_info, const char *target)
{
  GVariantIter iter;
  GVariant *info;

  if (disks_info == NULL)
    return NULL;
  g_variant_iter_init (&iter, disks_info);
  while ((info = g_variant_iter_next_value (&iter)) != NULL)
    {
      const char *t = NULL;

      if (g_variant_lookup (info, "target", "&s", &t) && g_strcmp0 (t, target) == 0)
        return info;
      g_variant_unref (info);
    }
  return NULL;
}

static gboolean
used_by_another_guest (Job *job, const struct stat *st)
{
  for (guint i = 0; job->in_use != NULL && job->in_use[i] != NULL; i++)
    {
      struct stat other;

      job_at (job, job->in_use[i]);
      if (stat (job->in_use[i], &other) == 0 && other.st_dev == st->st_dev
          && other.st_ino == st->st_ino)
        return TRUE;
    }
  return FALSE;
}

/* An existing copy target: only with reuse allowed on both sides, and
 * only an unused image of the right format and size. */
static gboolean
admit_existing_target (Job *job, const char *path, const char *format, guint64 size, GError **error)
{
  g_autoptr (JsonObject) info = NULL;
  const char *found_format;
  guint64 found_size;
  struct stat st;
  int fd;

  if (!job->reuse)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS,
                   "%s already exists on host %s; a migration creates its copy targets itself "
                   "and never writes to a file it did not create. Remove it or choose another "
                   "path (reusing an image needs [storage] reuse-existing-images=true on host "
                   "%s and the option reuse-existing-images)",
                   path, job->host, job->host);
      return FALSE;
    }
  fd = open_existing (job, path, error);
  if (fd < 0)
    {
      if (*error == NULL)
        g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED, "%s vanished on host %s", path,
                     job->host);
      return FALSE;
    }
  if (fstat (fd, &st) < 0 || !S_ISREG (st.st_mode) || used_by_another_guest (job, &st))
    {
      close (fd);
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "the existing image %s on host %s is not a regular file, or another guest "
                   "of that host uses it; it cannot be reused",
                   path, job->host);
      return FALSE;
    }
  info = image_info (job, fd, path, error);
  close (fd);
  if (info == NULL)
    return FALSE;
  found_format = json_object_get_string_member_with_default (info, "format", "");
  found_size = (guint64) json_object_get_int_member_with_default (info, "virtual-size", 0);
  if (!g_str_equal (found_format, format) || found_size != size)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT,
                   "the existing image %s on host %s is %s of %" G_GUINT64_FORMAT
                   " bytes, the disk needs %s of %" G_GUINT64_FORMAT " bytes; it cannot be reused",
                   path, job->host, found_format, found_size, format, size);
      return FALSE;
    }
  g_message ("host %s: reusing the existing image %s (allowed by the host and the caller)",
             job->host, path);
  return check_backing_chain (
      job, path, json_object_get_string_member_with_default (info, "backing-filename", NULL),
      error);
}

/* A copied disk: its backing chain checked, its target created here
 * (exclusively) or an existing one admitted. */
static gboolean
prepare_copied (Job *job, const MdDomainDisk *disk, GVariant *info, GError **error)
{
  const char *format = "raw", *backing = NULL, *backing_format = "raw";
  guint64 size = 0;
  g_autofree char *leaf = NULL;
  struct stat st;
  int dir, fd, errsv;
  gboolean ok;

  g_variant_lookup (info, "format", "&s", &format);
  g_variant_lookup (info, "virtual-size", "t", &size);
  g_variant_lookup (info, "backing", "&s", &backing);
  g_variant_lookup (info, "backing-format", "&s", &backing_format);
  if (backing != NULL && !check_backing_chain (job, disk->source, backing, error))
    return FALSE;
  dir = open_parent (job, disk->source, &leaf, error);
  if (dir < 0)
    {
      if (*error == NULL)
        g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                     "the directory of %s does not exist on host %s; create it or choose "
                     "another path in [storage] image-dirs",
                     disk->source, job->host);
      return FALSE;
    }
  fd = openat (dir, leaf, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  errsv = errno;
  if (fd < 0 && errsv == EEXIST)
    {
      gboolean is_link = fstatat (dir, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK (st.st_mode);

      close (dir);
      if (is_link)
        {
          set_link (job, disk->source, leaf, error);
          return FALSE;
        }
      return admit_existing_target (
          job, disk->source, g_str_equal (format, "raw") && backing != NULL ? "qcow2" : format,
          size, error);
    }
  close (dir);
  if (fd < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                   "host %s: cannot create the target image %s: %s", job->host, disk->source,
                   md_image_admission_strerror (errsv));
      return FALSE;
    }
  g_ptr_array_add (job->created, g_strdup (disk->source));
  ok = format_created (job, fd, disk->source, format, size, backing, backing_format, error);
  close (fd);
  if (ok)
    g_message ("created target image %s", disk->source);
  return ok;
}

static gboolean
prepare_disks (Job *job, GError **error)
{
  for (guint i = 0; i < job->def->disks->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (job->def->disks, i);
      g_autoptr (GVariant) info = NULL;
      int fd;

      if (disk->source == NULL || *disk->source == '\0')
        continue;
      info = copied_info (job->disks_info, disk->target);
      if (info != NULL)
        {
          if (!prepare_copied (job, disk, info, error))
            {
              g_prefix_error (error, "disk %s of guest %s: ", disk->target, job->def->name);
              return FALSE;
            }
          continue;
        }
      /* Not copied: shared storage, which QEMU here opens as it is. */
      fd = open_existing (job, disk->source, error);
      if (fd >= 0)
        {
          close (fd);
          continue;
        }
      if (*error == NULL)
        g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                     "%s is not visible on host %s, and it is not being copied; put it on "
                     "storage both hosts share, or migrate with copy-storage=all (migrationctl "
                     "migrate --copy-storage all)",
                     disk->source, job->host);
      g_prefix_error (error, "disk %s of guest %s: ", disk->target, job->def->name);
      return FALSE;
    }
  return TRUE;
}

/* A serial log QEMU here will open for writing (and truncate): inside the
 * image directories, not a link, and not any guest's disk. */
static gboolean
check_log_file (Job *job, const char *path, GError **error)
{
  g_autofree char *leaf = NULL;
  int dir = open_parent (job, path, &leaf, error);
  struct stat st;
  gboolean ok = TRUE;

  if (dir < 0)
    {
      if (*error == NULL)
        g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                     "the directory of the serial log %s does not exist on host %s", path,
                     job->host);
      return FALSE;
    }
  if (fstatat (dir, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0)
    {
      if (S_ISLNK (st.st_mode))
        {
          set_link (job, path, leaf, error);
          ok = FALSE;
        }
      else if (!S_ISREG (st.st_mode) || used_by_another_guest (job, &st))
        {
          g_set_error (error, MD_ERROR, MD_ERROR_NOT_AUTHORIZED,
                       "the serial log %s on host %s is not a regular file, or it is a guest's "
                       "disk; choose another log path",
                       path, job->host);
          ok = FALSE;
        }
    }
  close (dir);
  return ok;
}

/* The other host-side files of the definition: kernel and initrd (read
 * by QEMU) must exist inside the image directories; serial logs must
 * lie there too. */
static gboolean
check_host_files (Job *job, GError **error)
{
  const char *boot_files[] = { job->def->os.kernel, job->def->os.initrd };

  for (guint i = 0; i < G_N_ELEMENTS (boot_files); i++)
    {
      int fd;

      if (boot_files[i] == NULL || *boot_files[i] == '\0')
        continue;
      fd = open_existing (job, boot_files[i], error);
      if (fd < 0)
        {
          if (*error == NULL)
            g_set_error (error, MD_ERROR, MD_ERROR_STORAGE_FAILED,
                         "the kernel or initrd %s does not exist on host %s", boot_files[i],
                         job->host);
          return FALSE;
        }
      close (fd);
    }
  for (guint i = 0; job->def->serials != NULL && i < job->def->serials->len; i++)
    {
      const MdDomainChardev *serial = g_ptr_array_index (job->def->serials, i);

      if (serial->type == MD_DOMAIN_CHARDEV_FILE && serial->path != NULL
          && !check_log_file (job, serial->path, error))
        {
          g_prefix_error (error, "serial port %u of guest %s: ", serial->port, job->def->name);
          return FALSE;
        }
    }
  return TRUE;
}

static void
prepare_worker (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Job *job = task_data;
  GError *error = NULL;
  gboolean ok = check_host_files (job, &error) && prepare_disks (job, &error);

  if (!ok)
    remove_created (job);
  if (!job_finish (job))
    {
      g_clear_error (&error);
      return;
    }
  if (ok)
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

void
md_image_admission_prepare_async (MdImageAdmission *self, const MdDomain *def, GVariant *disks_info,
                                  gboolean caller_allows_reuse, const char *const *in_use,
                                  GCancellable *cancellable, GAsyncReadyCallback callback,
                                  gpointer user_data)
{
  g_autoptr (Job) job = job_new (self, JOB_PREPARE);

  job->def = md_domain_copy (def);
  job->disks_info = disks_info != NULL ? g_variant_ref (disks_info) : NULL;
  job->reuse = self->allow_reuse && caller_allows_reuse;
  job->in_use = g_strdupv ((char **) in_use);
  job_run (job, prepare_worker, cancellable, callback, user_data);
}

GStrv
md_image_admission_prepare_finish (GAsyncResult *result, GError **error)
{
  Job *job = g_task_get_task_data (G_TASK (result));
  g_autoptr (GStrvBuilder) created = g_strv_builder_new ();

  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  for (guint i = 0; i < job->created->len; i++)
    g_strv_builder_add (created, g_ptr_array_index (job->created, i));
  return g_strv_builder_end (created);
}

/* ---- CheckPaths and removal ------------------------------------------------ */

static gboolean
is_inside (Job *job, const char *path)
{
  g_auto (GStrv) parts = path_components (path);

  for (guint i = 0; parts != NULL && i < job->dirs->len; i++)
    {
      const AllowedDir *dir = g_ptr_array_index (job->dirs, i);
      if (below (parts, dir->configured) != NULL || below (parts, dir->real) != NULL)
        return TRUE;
    }
  return FALSE;
}

static void
check_paths_worker (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Job *job = task_data;
  GVariantBuilder builder;

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{sb}"));
  for (guint i = 0; job->paths[i] != NULL; i++)
    {
      g_autoptr (GError) error = NULL;
      int fd;

      if (!is_inside (job, job->paths[i]))
        continue;
      fd = open_existing (job, job->paths[i], &error);
      g_variant_builder_add (&builder, "{sb}", job->paths[i], fd >= 0);
      if (fd >= 0)
        close (fd);
    }
  job->visible = g_variant_ref_sink (g_variant_builder_end (&builder));
  if (job_finish (job))
    g_task_return_boolean (task, TRUE);
}

void
md_image_admission_check_paths_async (MdImageAdmission *self, const char *const *paths,
                                      GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (Job) job = job_new (self, JOB_CHECK_PATHS);

  job->paths = g_strdupv ((char **) paths);
  job_run (job, check_paths_worker, NULL, callback, user_data);
}

GVariant *
md_image_admission_check_paths_finish (GAsyncResult *result, GError **error)
{
  Job *job = g_task_get_task_data (G_TASK (result));

  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  return g_variant_ref (job->visible);
}

static void
remove_worker (GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
  Job *job = task_data;

  for (guint i = 0; job->paths[i] != NULL; i++)
    g_ptr_array_add (job->created, g_strdup (job->paths[i]));
  remove_created (job);
  if (job_finish (job))
    g_task_return_boolean (task, TRUE);
}

void
md_image_admission_remove_async (MdImageAdmission *self, const char *const *paths,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (Job) job = job_new (self, JOB_REMOVE);

  job->paths = g_strdupv ((char **) paths);
  if (job->paths == NULL)
    job->paths = g_new0 (char *, 1);
  job_run (job, remove_worker, NULL, callback, user_data);
}

void
md_image_admission_remove_finish (GAsyncResult *result)
{
  g_autoptr (GError) error = NULL;

  if (!g_task_propagate_boolean (G_TASK (result), &error))
    g_warning ("%s", error->message);
}

/* migrationd: the crash-safe journal of one migration (see the header). */
#include "config.h"

#include "md-migration-journal.h"
#include "common/md-error.h"
#include "common/md-fault.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <unistd.h>

#define JOURNAL_SUBDIR "migrations"

struct _MdJournal
{
  char *dir;
  char *path;
  JsonObject *object;
  gint *pending; /* writes queued, not yet done: shared with the jobs */
};

/* ---- the writer thread ------------------------------------------------ */

typedef enum
{
  JOB_WRITE,
  JOB_REMOVE,
  JOB_BARRIER,
} JobKind;

/* One queued step; it owns copies of what it needs, so the journal may
 * be freed while it waits. */
typedef struct
{
  JobKind kind;
  char *dir;
  char *path;
  char *text;
  gint *pending;
  GMainContext *context;
  void (*then) (gpointer data);
  gpointer data;
  GDestroyNotify destroy;
} Job;

G_LOCK_DEFINE_STATIC (writer);
static GThreadPool *writer;

static void
pending_unref (gint *pending)
{
  g_atomic_rc_box_release (pending);
}

static void
job_free (Job *job)
{
  if (job->destroy != NULL)
    job->destroy (job->data);
  g_free (job->dir);
  g_free (job->path);
  g_free (job->text);
  g_clear_pointer (&job->pending, pending_unref);
  g_clear_pointer (&job->context, g_main_context_unref);
  g_free (job);
}

static gboolean
write_file (const char *dir, const char *path, const char *text, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  int dirfd;

  if (g_mkdir_with_parents (dir, 0700) < 0)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot create the journal directory %s: %s",
                   dir, g_strerror (errno));
      return FALSE;
    }
  /* CONSISTENT|DURABLE: temporary file, fsync, rename over the old one. */
  if (!g_file_set_contents_full (path, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0600,
                                 &local_error))
    {
      g_set_error (error, MD_ERROR, MD_ERROR_FAILED, "cannot write the migration journal %s: %s",
                   path, local_error->message);
      return FALSE;
    }
  /* The rename itself is durable only once the directory is synced. */
  dirfd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd >= 0)
    {
      fsync (dirfd);
      close (dirfd);
    }
  return TRUE;
}

static void
remove_file (const char *path)
{
  if (g_unlink (path) < 0 && errno != ENOENT)
    g_warning ("cannot remove the migration journal %s: %s", path, g_strerror (errno));
}

static gboolean
run_then (gpointer user_data)
{
  Job *job = user_data;

  job->then (job->data);
  return G_SOURCE_REMOVE;
}

static void
run_job (gpointer data, gpointer user_data)
{
  Job *job = data;
  g_autoptr (GError) error = NULL;

  if (job->kind == JOB_WRITE && !write_file (job->dir, job->path, job->text, &error))
    g_warning ("%s", error->message);
  else if (job->kind == JOB_REMOVE)
    remove_file (job->path);
  if (job->kind != JOB_BARRIER)
    g_atomic_int_dec_and_test (job->pending);
  if (job->kind == JOB_BARRIER)
    {
      /* Back in the caller's context; the job is freed there. */
      GSource *idle = g_idle_source_new ();

      g_source_set_priority (idle, G_PRIORITY_DEFAULT);
      g_source_set_callback (idle, run_then, job, (GDestroyNotify) job_free);
      g_source_attach (idle, job->context);
      g_source_unref (idle);
      return;
    }
  job_free (job);
}

static void
queue_job (MdJournal *journal, Job *job)
{
  job->pending = g_atomic_rc_box_acquire (journal->pending);
  if (job->kind != JOB_BARRIER)
    g_atomic_int_inc (journal->pending);
  G_LOCK (writer);
  if (writer == NULL)
    {
      /* One thread: jobs run in the order they were queued. */
      writer = g_thread_pool_new (run_job, NULL, 1, FALSE, NULL);
      md_fault_set_before_action (md_journal_flush_all);
    }
  g_thread_pool_push (writer, job, NULL);
  G_UNLOCK (writer);
}

static char *
journal_text (MdJournal *journal)
{
  g_autoptr (JsonNode) root = json_node_new (JSON_NODE_OBJECT);

  json_object_set_int_member (journal->object, "written", g_get_real_time () / G_USEC_PER_SEC);
  json_node_set_object (root, journal->object);
  return json_to_string (root, TRUE);
}

void
md_journal_commit_async (MdJournal *journal)
{
  Job *job = g_new0 (Job, 1);

  job->kind = JOB_WRITE;
  job->dir = g_strdup (journal->dir);
  job->path = g_strdup (journal->path);
  job->text = journal_text (journal);
  queue_job (journal, job);
}

gboolean
md_journal_is_pending (MdJournal *journal)
{
  return g_atomic_int_get (journal->pending) > 0;
}

void
md_journal_when_written (MdJournal *journal, void (*then) (gpointer data), gpointer data,
                         GDestroyNotify destroy)
{
  Job *job;

  if (!md_journal_is_pending (journal))
    {
      then (data);
      if (destroy != NULL)
        destroy (data);
      return;
    }
  job = g_new0 (Job, 1);
  job->kind = JOB_BARRIER;
  job->context = g_main_context_ref_thread_default ();
  job->then = then;
  job->data = data;
  job->destroy = destroy;
  queue_job (journal, job);
}

void
md_journal_flush_all (void)
{
  GThreadPool *pool;

  G_LOCK (writer);
  pool = g_steal_pointer (&writer);
  G_UNLOCK (writer);
  if (pool != NULL)
    g_thread_pool_free (pool, FALSE, TRUE);
}

/* ---- records -------------------------------------------------------------- */

static char *
journal_file_name (const char *id, const char *direction)
{
  g_autofree char *hash = g_compute_checksum_for_string (G_CHECKSUM_SHA256, id, -1);

  hash[24] = '\0';
  return g_strdup_printf ("%s-%s.json", g_str_equal (direction, "incoming") ? "in" : "out", hash);
}

static MdJournal *
journal_alloc (const char *state_dir, const char *file, JsonObject *object)
{
  MdJournal *journal = g_new0 (MdJournal, 1);

  journal->dir = g_build_filename (state_dir, JOURNAL_SUBDIR, NULL);
  journal->path = g_build_filename (journal->dir, file, NULL);
  journal->object = object;
  journal->pending = g_atomic_rc_box_new0 (gint);
  return journal;
}

MdJournal *
md_journal_new (const char *state_dir, const char *id, const char *direction)
{
  g_autofree char *file = journal_file_name (id, direction);
  MdJournal *journal = journal_alloc (state_dir, file, json_object_new ());

  json_object_set_string_member (journal->object, "id", id);
  json_object_set_string_member (journal->object, "direction", direction);
  json_object_set_int_member (journal->object, "created", g_get_real_time () / G_USEC_PER_SEC);
  return journal;
}

MdJournal *
md_journal_dup (MdJournal *journal)
{
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autoptr (JsonNode) copy = NULL;
  MdJournal *dup = g_new0 (MdJournal, 1);

  json_node_set_object (node, journal->object);
  copy = json_node_copy (node);
  dup->dir = g_strdup (journal->dir);
  dup->path = g_strdup (journal->path);
  dup->object = json_node_dup_object (copy);
  dup->pending = g_atomic_rc_box_acquire (journal->pending);
  return dup;
}

void
md_journal_free (MdJournal *journal)
{
  if (journal == NULL)
    return;
  json_object_unref (journal->object);
  g_free (journal->dir);
  g_free (journal->path);
  pending_unref (journal->pending);
  g_free (journal);
}

const char *
md_journal_get_id (MdJournal *journal)
{
  return md_journal_get_string (journal, "id");
}

const char *
md_journal_get_direction (MdJournal *journal)
{
  return md_journal_get_string (journal, "direction");
}

const char *
md_journal_get_path (MdJournal *journal)
{
  return journal->path;
}

JsonObject *
md_journal_get_object (MdJournal *journal)
{
  return journal->object;
}

void
md_journal_set_string (MdJournal *journal, const char *key, const char *value)
{
  if (value == NULL)
    json_object_remove_member (journal->object, key);
  else
    json_object_set_string_member (journal->object, key, value);
}

const char *
md_journal_get_string (MdJournal *journal, const char *key)
{
  JsonNode *node = json_object_get_member (journal->object, key);

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

void
md_journal_set_int (MdJournal *journal, const char *key, gint64 value)
{
  json_object_set_int_member (journal->object, key, value);
}

gint64
md_journal_get_int (MdJournal *journal, const char *key)
{
  JsonNode *node = json_object_get_member (journal->object, key);

  if (node == NULL || json_node_get_value_type (node) != G_TYPE_INT64)
    return 0;
  return json_node_get_int (node);
}

static JsonArray *
list_of (MdJournal *journal, const char *key, gboolean create)
{
  JsonNode *node = json_object_get_member (journal->object, key);

  if (node != NULL && JSON_NODE_HOLDS_ARRAY (node))
    return json_node_get_array (node);
  if (!create)
    return NULL;
  json_object_set_array_member (journal->object, key, json_array_new ());
  return json_object_get_array_member (journal->object, key);
}

void
md_journal_list_add (MdJournal *journal, const char *key, const char *value)
{
  JsonArray *list = list_of (journal, key, TRUE);

  for (guint i = 0; i < json_array_get_length (list); i++)
    if (g_strcmp0 (json_array_get_string_element (list, i), value) == 0)
      return;
  json_array_add_string_element (list, value);
}

void
md_journal_list_remove (MdJournal *journal, const char *key, const char *value)
{
  JsonArray *list = list_of (journal, key, FALSE);

  for (guint i = 0; list != NULL && i < json_array_get_length (list); i++)
    if (g_strcmp0 (json_array_get_string_element (list, i), value) == 0)
      {
        json_array_remove_element (list, i);
        return;
      }
}

GStrv
md_journal_list_get (MdJournal *journal, const char *key)
{
  JsonArray *list = list_of (journal, key, FALSE);
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();

  for (guint i = 0; list != NULL && i < json_array_get_length (list); i++)
    {
      const char *value = json_array_get_string_element (list, i);
      if (value != NULL)
        g_strv_builder_add (builder, value);
    }
  return g_strv_builder_end (builder);
}

gboolean
md_journal_commit (MdJournal *journal, GError **error)
{
  g_autofree char *text = journal_text (journal);

  return write_file (journal->dir, journal->path, text, error);
}

void
md_journal_remove (MdJournal *journal)
{
  Job *job;

  if (!md_journal_is_pending (journal))
    {
      remove_file (journal->path);
      return;
    }
  job = g_new0 (Job, 1);
  job->kind = JOB_REMOVE;
  job->path = g_strdup (journal->path);
  queue_job (journal, job);
}

static gint
compare_created (gconstpointer a, gconstpointer b)
{
  MdJournal *ja = *(MdJournal **) a;
  MdJournal *jb = *(MdJournal **) b;
  gint64 ca = md_journal_get_int (ja, "created");
  gint64 cb = md_journal_get_int (jb, "created");

  return ca < cb ? -1 : ca > cb ? 1 : g_strcmp0 (ja->path, jb->path);
}

GPtrArray *
md_journal_list (const char *state_dir)
{
  g_autofree char *dir = g_build_filename (state_dir, JOURNAL_SUBDIR, NULL);
  g_autoptr (GDir) gdir = g_dir_open (dir, 0, NULL);
  GPtrArray *records = g_ptr_array_new_with_free_func ((GDestroyNotify) md_journal_free);
  const char *file;

  while (gdir != NULL && (file = g_dir_read_name (gdir)) != NULL)
    {
      g_autofree char *path = g_build_filename (dir, file, NULL);
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_autoptr (GError) error = NULL;
      JsonNode *root;
      MdJournal *journal;

      if (!g_str_has_suffix (file, ".json"))
        continue;
      if (!json_parser_load_from_file (parser, path, &error))
        {
          g_warning ("skipping unreadable migration journal %s: %s", path, error->message);
          continue;
        }
      root = json_parser_get_root (parser);
      if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
        {
          g_warning ("skipping migration journal %s: not a JSON object", path);
          continue;
        }
      journal = journal_alloc (state_dir, file, json_object_ref (json_node_get_object (root)));
      if (md_journal_get_id (journal) == NULL || md_journal_get_direction (journal) == NULL)
        {
          g_warning ("skipping migration journal %s: no id or direction", path);
          md_journal_free (journal);
          continue;
        }
      g_ptr_array_add (records, journal);
    }
  g_ptr_array_sort (records, compare_created);
  return records;
}

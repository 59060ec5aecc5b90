/* migrationd: Peer1.Resolve from the source side (see the header). */
#include "config.h"

#include "md-migration-ask.h"
#include "common/md-error.h"

#define ASK_RETRY_S 1

typedef struct
{
  const MdPeerTlsConfig *tls;
  char *address;
  char *id;
  gint64 deadline;
  GError *last_error;
  MdPeerConnection *conn;
} Ask;

static void
ask_free (Ask *ask)
{
  g_free (ask->address);
  g_free (ask->id);
  g_clear_error (&ask->last_error);
  if (ask->conn != NULL)
    md_peer_connection_close (ask->conn);
  g_clear_object (&ask->conn);
  g_free (ask);
}

static void ask_try (GTask *task);

static gboolean
on_retry (gpointer user_data)
{
  ask_try (G_TASK (user_data));
  return G_SOURCE_REMOVE;
}

/* Not yet: try again in a second, unless the time is up. */
static void
ask_later (GTask *task, GError *error)
{
  Ask *ask = g_task_get_task_data (task);
  GSource *timer;

  if (error != NULL)
    {
      g_clear_error (&ask->last_error);
      ask->last_error = error;
    }
  if (ask->conn != NULL)
    md_peer_connection_close (ask->conn);
  g_clear_object (&ask->conn);
  if (g_get_monotonic_time () > ask->deadline || g_task_return_error_if_cancelled (task))
    {
      if (!g_task_had_error (task))
        g_task_return_new_error (task, MD_ERROR, MD_ERROR_TIMEOUT,
                                 "no answer from the migrationd at %s about migration %s: %s",
                                 ask->address, ask->id,
                                 ask->last_error ? ask->last_error->message : "no definite answer");
      return;
    }
  timer = g_timeout_source_new_seconds (ASK_RETRY_S);
  g_task_attach_source (task, timer, on_retry);
  g_source_unref (timer);
}

static void
on_resolved (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  g_autoptr (GVariant) out = NULL;
  GError *error = NULL;
  const char *outcome = NULL;

  if (!md_dbus_peer1_call_resolve_finish (MD_DBUS_PEER1 (source), &out, result, &error))
    {
      ask_later (task, error);
      return;
    }
  if (!g_variant_lookup (out, "outcome", "&s", &outcome) || g_str_equal (outcome, "pending"))
    {
      ask_later (task, g_error_new (MD_ERROR, MD_ERROR_PEER_FAILED, "the peer says: %s",
                                    outcome ? outcome : "no outcome"));
      return;
    }
  g_task_return_pointer (task, g_strdup (outcome), g_free);
}

static void
on_connected (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  Ask *ask = g_task_get_task_data (task);
  GError *error = NULL;

  ask->conn = md_peer_connect_finish (result, &error);
  if (ask->conn == NULL)
    {
      ask_later (task, error);
      return;
    }
  md_dbus_peer1_call_resolve (md_peer_connection_get_proxy (ask->conn), ask->id,
                              g_task_get_cancellable (task), on_resolved, g_object_ref (task));
}

static void
ask_try (GTask *task)
{
  Ask *ask = g_task_get_task_data (task);

  md_peer_connect_async (ask->tls, ask->address, g_task_get_cancellable (task), on_connected,
                         g_object_ref (task));
}

void
md_migration_ask_peer_async (const MdPeerTlsConfig *tls, const char *address, const char *id,
                             guint timeout_s, GCancellable *cancellable,
                             GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  Ask *ask = g_new0 (Ask, 1);

  ask->tls = tls;
  ask->address = g_strdup (address);
  ask->id = g_strdup (id);
  ask->deadline = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;
  g_task_set_task_data (task, ask, (GDestroyNotify) ask_free);
  ask_try (task);
}

char *
md_migration_ask_peer_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* migrationd: idle peer connections (see the header). */
#include "config.h"

#include "md-peer-pool.h"

struct _MdPeerPool
{
  guint idle_seconds;
  GHashTable *idle; /* address -> Idle */
};

typedef struct
{
  MdPeerPool *pool;
  char *address;
  MdPeerConnection *conn;
  gulong closed_id;
  guint timeout_id;
} Idle;

static void
idle_free (Idle *idle)
{
  g_clear_handle_id (&idle->timeout_id, g_source_remove);
  if (idle->conn != NULL)
    {
      g_clear_signal_handler (&idle->closed_id, idle->conn);
      g_clear_object (&idle->conn);
    }
  g_free (idle->address);
  g_free (idle);
}

static void
on_idle_closed (MdPeerConnection *conn, Idle *idle)
{
  g_hash_table_remove (idle->pool->idle, idle->address);
}

static gboolean
on_idle_expired (gpointer user_data)
{
  Idle *idle = user_data;
  g_autoptr (MdPeerConnection) conn = g_object_ref (idle->conn);

  idle->timeout_id = 0;
  g_hash_table_remove (idle->pool->idle, idle->address);
  md_peer_connection_close (conn);
  return G_SOURCE_REMOVE;
}

MdPeerPool *
md_peer_pool_new (guint idle_seconds)
{
  MdPeerPool *pool = g_new0 (MdPeerPool, 1);

  pool->idle_seconds = idle_seconds;
  pool->idle = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) idle_free);
  return pool;
}

void
md_peer_pool_free (MdPeerPool *pool)
{
  GHashTableIter iter;
  Idle *idle;

  if (pool == NULL)
    return;
  g_hash_table_iter_init (&iter, pool->idle);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &idle))
    {
      g_clear_signal_handler (&idle->closed_id, idle->conn);
      md_peer_connection_close (idle->conn);
    }
  g_hash_table_unref (pool->idle);
  g_free (pool);
}

MdPeerConnection *
md_peer_pool_take (MdPeerPool *pool, const char *address)
{
  Idle *idle = g_hash_table_lookup (pool->idle, address);
  MdPeerConnection *conn;

  if (idle == NULL)
    return NULL;
  conn = g_object_ref (idle->conn);
  g_hash_table_remove (pool->idle, address);
  if (md_peer_connection_is_closed (conn))
    {
      g_object_unref (conn);
      return NULL;
    }
  return conn;
}

void
md_peer_pool_give_back (MdPeerPool *pool, const char *address, MdPeerConnection *conn)
{
  Idle *idle;

  if (md_peer_connection_is_closed (conn) || pool->idle_seconds == 0)
    {
      md_peer_connection_close (conn);
      return;
    }
  if (g_hash_table_contains (pool->idle, address))
    {
      /* One idle connection per peer is enough. */
      md_peer_connection_close (conn);
      return;
    }
  idle = g_new0 (Idle, 1);
  idle->pool = pool;
  idle->address = g_strdup (address);
  idle->conn = g_object_ref (conn);
  idle->closed_id = g_signal_connect (conn, "closed", G_CALLBACK (on_idle_closed), idle);
  idle->timeout_id = g_timeout_add_seconds (pool->idle_seconds, on_idle_expired, idle);
  g_hash_table_insert (pool->idle, idle->address, idle);
}

/* md-peer: real TLS over loopback with certificates made at test time by
 * data/migrationd-tls-setup (path in $MD_TLS_SETUP). */
#include "config.h"

#include "common/md-error.h"
#include "peer/md-peer.h"
#include "peer/md-peer-check.h"

#include <glib/gstdio.h>
#include <string.h>

static char *tmpdir;

/* ---- helpers ---- */

static char *
cert_dir (const char *ca, const char *host)
{
  return g_build_filename (tmpdir, ca, host, NULL);
}

static void
run_setup (const char *out, gboolean expired, const char *ca_name, const char *const *hosts)
{
  const char *script = g_getenv ("MD_TLS_SETUP");
  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) error = NULL;
  g_autofree char *out_dir = g_build_filename (tmpdir, out, NULL);
  g_autofree char *std_out = NULL;
  g_autofree char *std_err = NULL;
  int status = 0;

  g_assert_nonnull (script);
  g_ptr_array_add (argv, g_strdup (script));
  g_ptr_array_add (argv, g_strdup ("--out"));
  g_ptr_array_add (argv, g_strdup (out_dir));
  g_ptr_array_add (argv, g_strdup ("--ca-name"));
  g_ptr_array_add (argv, g_strdup (ca_name));
  if (expired)
    g_ptr_array_add (argv, g_strdup ("--expired"));
  for (guint i = 0; hosts[i] != NULL; i++)
    g_ptr_array_add (argv, g_strdup (hosts[i]));
  g_ptr_array_add (argv, NULL);
  g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &std_out, &std_err,
                &status, &error);
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, &error))
    g_error ("migrationd-tls-setup failed: %s\n%s%s", error->message, std_out, std_err);
  /* The script tells the admin which DN to allow; it must be the one we
   * compare against. */
  g_assert_nonnull (strstr (std_out, "allowed-dns on the other hosts: CN="));
}

/* The main context always wakes up, so loops can check deadlines. */
static gboolean
tick (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

#define WAIT_UNTIL(cond)                                                                           \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gint64 deadline_ = g_get_monotonic_time () + 20 * G_USEC_PER_SEC;                              \
    while (!(cond))                                                                                \
      {                                                                                            \
        if (g_get_monotonic_time () > deadline_)                                                   \
          g_error ("timed out waiting for %s", #cond);                                             \
        g_main_context_iteration (NULL, TRUE);                                                     \
      }                                                                                            \
  }                                                                                                \
  G_STMT_END

static void
store_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

typedef struct
{
  MdPeerListener *listener;
  guint16 port;
  char *address;       /* 127.0.0.1:port */
  GPtrArray *accepted; /* MdPeerConnection */
  GPtrArray *refused;  /* char *reason */
  char *server_dir;
  MdPeerTlsConfig server_cfg;
  char *client_dir;
  MdPeerTlsConfig client_cfg;
} Fixture;

static const char *const allowed_dns[] = { "CN=hostA,O=migrationd", "CN = oldA, O=migrationd",
                                           "CN=rogue,O=migrationd", NULL };

static void
on_new_connection (MdPeerListener *listener, MdPeerConnection *conn, gpointer user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->accepted, g_object_ref (conn));
}

static void
on_refused (MdPeerListener *listener, const char *address, const char *reason, gpointer user_data)
{
  Fixture *f = user_data;

  g_assert_true (g_str_has_prefix (address, "127.0.0.1:"));
  g_ptr_array_add (f->refused, g_strdup (reason));
}

static void
fixture_start (Fixture *f, const char *server_ca, const char *server_host, guint timeout)
{
  g_autoptr (GError) error = NULL;

  f->server_dir = cert_dir (server_ca, server_host);
  f->server_cfg.tls_dir = f->server_dir;
  f->server_cfg.allowed_dns = allowed_dns;
  f->server_cfg.host_uuid = "11111111-2222-3333-4444-bbbbbbbbbbbb";
  f->server_cfg.host_name = "hostB";
  f->server_cfg.handshake_timeout = timeout;
  f->listener = md_peer_listener_new (&f->server_cfg, &error);
  g_assert_no_error (error);
  g_assert_true (md_peer_listener_listen (f->listener, "127.0.0.1", 0, &error));
  g_assert_no_error (error);
  f->port = md_peer_listener_get_port (f->listener);
  g_assert_cmpuint (f->port, >, 0);
  f->address = g_strdup_printf ("127.0.0.1:%u", f->port);
  f->accepted = g_ptr_array_new_with_free_func (g_object_unref);
  f->refused = g_ptr_array_new_with_free_func (g_free);
  g_signal_connect (f->listener, "new-connection", G_CALLBACK (on_new_connection), f);
  g_signal_connect (f->listener, "peer-refused", G_CALLBACK (on_refused), f);

  f->client_dir = cert_dir ("ca1", "hostA");
  f->client_cfg.tls_dir = f->client_dir;
  f->client_cfg.allowed_dns = allowed_dns;
  f->client_cfg.host_uuid = "11111111-2222-3333-4444-aaaaaaaaaaaa";
  f->client_cfg.host_name = "hostA";
  f->client_cfg.handshake_timeout = 10;
}

static void
fixture_set_client (Fixture *f, const char *ca, const char *host)
{
  g_free (f->client_dir);
  f->client_dir = cert_dir (ca, host);
  f->client_cfg.tls_dir = f->client_dir;
}

static void
fixture_stop (Fixture *f)
{
  g_signal_handlers_disconnect_by_data (f->listener, f);
  md_peer_listener_stop (f->listener);
  g_clear_object (&f->listener);
  g_clear_pointer (&f->accepted, g_ptr_array_unref);
  g_clear_pointer (&f->refused, g_ptr_array_unref);
  g_free (f->address);
  g_free (f->server_dir);
  g_free (f->client_dir);
  /* Let closes in flight finish before the next case. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static MdPeerConnection *
connect_to (Fixture *f, const char *address, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;

  md_peer_connect_async (&f->client_cfg, address ? address : f->address, NULL, store_result,
                         &result);
  WAIT_UNTIL (result != NULL);
  return md_peer_connect_finish (result, error);
}

static void
assert_refused (Fixture *f, const char *reason)
{
  WAIT_UNTIL (f->refused->len > 0);
  if (strstr (f->refused->pdata[0], reason) == NULL)
    g_error ("refusal '%s' does not say '%s'", (char *) f->refused->pdata[0], reason);
  g_assert_cmpuint (f->accepted->len, ==, 0);
}

static GSocketConnection *
raw_connect (Fixture *f)
{
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GError) error = NULL;
  GSocketConnection *conn;

  /* A blocking connect to loopback completes from the kernel's backlog. */
  conn = g_socket_client_connect_to_host (client, f->address, 0, NULL, &error);
  g_assert_no_error (error);
  g_socket_set_timeout (g_socket_connection_get_socket (conn), 10);
  return conn;
}

/* ---- cases ---- */

static void
test_normalize_dn (void)
{
  g_autofree char *a = md_peer_normalize_dn ("  CN = host B ,  O=migrationd ");
  g_autofree char *b = md_peer_normalize_dn ("CN=hostB,O=migrationd");

  g_assert_cmpstr (a, ==, "CN=host B,O=migrationd");
  g_assert_cmpstr (b, ==, "CN=hostB,O=migrationd");
}

static void
test_missing_files (void)
{
  g_autofree char *dir = g_build_filename (tmpdir, "nonexistent", NULL);
  MdPeerTlsConfig cfg = { .tls_dir = dir, .host_uuid = "u", .host_name = "h" };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerListener) listener = md_peer_listener_new (&cfg, &error);
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;

  g_assert_null (listener);
  g_assert_error (error, MD_ERROR, MD_ERROR_TLS_FAILED);
  g_assert_nonnull (strstr (error->message, "ca-cert.pem"));
  g_assert_nonnull (strstr (error->message, "migrationd-tls-setup"));
  g_clear_error (&error);

  md_peer_connect_async (&cfg, "127.0.0.1:1", NULL, store_result, &result);
  WAIT_UNTIL (result != NULL);
  conn = md_peer_connect_finish (result, &error);
  g_assert_null (conn);
  g_assert_error (error, MD_ERROR, MD_ERROR_TLS_FAILED);
  g_assert_nonnull (strstr (error->message, "migrationd-tls-setup"));
}

static void
test_good (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  MdPeerConnection *server_side;

  fixture_start (&f, "ca1", "hostB", 10);
  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (conn);

  /* The client knows the server ... */
  g_assert_false (md_peer_connection_is_incoming (conn));
  g_assert_cmpstr (md_peer_connection_get_dn (conn), ==, "CN=hostB,O=migrationd");
  g_assert_cmpstr (md_peer_connection_get_host_uuid (conn), ==, f.server_cfg.host_uuid);
  g_assert_cmpstr (md_peer_connection_get_host_name (conn), ==, "hostB");
  g_assert_cmpuint (md_peer_connection_get_version (conn), ==, 1);
  g_assert_cmpstr (md_peer_connection_get_address (conn), ==, f.address);
  g_assert_nonnull (md_peer_connection_get_proxy (conn));

  /* ... and the server the client, by the time Hello returned. */
  g_assert_cmpuint (f.accepted->len, ==, 1);
  server_side = f.accepted->pdata[0];
  g_assert_true (md_peer_connection_is_incoming (server_side));
  g_assert_cmpstr (md_peer_connection_get_dn (server_side), ==, "CN=hostA,O=migrationd");
  g_assert_cmpstr (md_peer_connection_get_host_uuid (server_side), ==, f.client_cfg.host_uuid);
  g_assert_cmpstr (md_peer_connection_get_host_name (server_side), ==, "hostA");
  g_assert_true (g_str_has_prefix (md_peer_connection_get_address (server_side), "127.0.0.1:"));
  g_assert_cmpuint (g_list_length (md_peer_listener_get_connections (f.listener)), ==, 1);
  g_assert_cmpuint (f.refused->len, ==, 0);

  md_peer_connection_close (conn);
  fixture_stop (&f);
}

static void
test_same_uuid (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;

  fixture_start (&f, "ca1", "hostB", 10);
  f.client_cfg.host_uuid = f.server_cfg.host_uuid;
  conn = connect_to (&f, NULL, &error);
  g_assert_null (conn);
  g_test_message ("client error: %s", error->message);
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_true (g_str_has_prefix (error->message, "peer 127.0.0.1:"));
  g_assert_nonnull (strstr (error->message, ": refusing to migrate to itself: host hostA has this "
                                            "host's UUID 11111111-2222-3333-4444-bbbbbbbbbbbb"));
  g_assert_null (strstr (error->message, "GDBus.Error"));
  assert_refused (&f, "refusing to migrate to itself");
  fixture_stop (&f);
}

static void
test_unknown_ca (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;

  /* Trusts the right CA, but presents a certificate from another one. */
  fixture_start (&f, "ca1", "hostB", 10);
  fixture_set_client (&f, "mixed", "rogue");
  conn = connect_to (&f, NULL, &error);
  g_assert_null (conn);
  g_test_message ("client error: %s", error->message);
  g_assert_error (error, MD_ERROR, MD_ERROR_TLS_FAILED);
  g_assert_nonnull (strstr (error->message, "CN=rogue,O=migrationd"));
  assert_refused (&f, "certificate signed by an unknown CA");
  fixture_stop (&f);
}

static void
test_dn_not_allowed (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;

  fixture_start (&f, "ca1", "hostB", 10);
  fixture_set_client (&f, "ca1", "hostC");
  conn = connect_to (&f, NULL, &error);
  g_assert_null (conn);
  g_test_message ("client error: %s", error->message);
  g_assert_error (error, MD_ERROR, MD_ERROR_TLS_FAILED);
  g_assert_nonnull (strstr (error->message, "'CN=hostC,O=migrationd' is in [tls] allowed-dns"));
  assert_refused (&f, "certificate DN 'CN=hostC,O=migrationd' not in [tls] allowed-dns");
  fixture_stop (&f);
}

static void
test_expired_client (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;

  fixture_start (&f, "ca1", "hostB", 10);
  fixture_set_client (&f, "ca1", "oldA"); /* DN allowed, certificate expired */
  conn = connect_to (&f, NULL, &error);
  g_assert_null (conn);
  g_test_message ("client error: %s", error->message);
  g_assert_error (error, MD_ERROR, MD_ERROR_TLS_FAILED);
  g_assert_nonnull (strstr (error->message, "this host's certificate"));
  g_assert_nonnull (strstr (error->message, "expired on 2002-01-01"));
  assert_refused (&f, "certificate expired");
  fixture_stop (&f);
}

static void
test_expired_server (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;

  fixture_start (&f, "ca1", "oldB", 10);
  conn = connect_to (&f, NULL, &error);
  g_assert_null (conn);
  g_test_message ("client error: %s", error->message);
  g_assert_error (error, MD_ERROR, MD_ERROR_TLS_FAILED);
  g_assert_nonnull (strstr (error->message, "certificate expired"));
  g_assert_nonnull (strstr (error->message, "CN=oldB,O=migrationd"));
  assert_refused (&f, "the client aborted the TLS handshake");
  fixture_stop (&f);
}

static void
test_wrong_host_name (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  g_autofree char *by_name = NULL;

  /* hostB's certificate names hostB and 127.0.0.1, not localhost. */
  fixture_start (&f, "ca1", "hostB", 10);
  by_name = g_strdup_printf ("localhost:%u", f.port);
  conn = connect_to (&f, by_name, &error);
  g_assert_null (conn);
  g_test_message ("client error: %s", error->message);
  g_assert_error (error, MD_ERROR, MD_ERROR_TLS_FAILED);
  g_assert_nonnull (strstr (error->message, "does not match the host name"));
  g_assert_cmpuint (f.accepted->len, ==, 0);
  fixture_stop (&f);
}

static void
test_plaintext (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GSocketConnection) raw = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  static const char auth[] = "\0AUTH EXTERNAL 30\r\n";
  char buf[64];
  gssize n;

  fixture_start (&f, "ca1", "hostB", 10);
  raw = raw_connect (&f);
  g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (raw)), auth,
                             sizeof auth - 1, NULL, NULL, &error);
  g_assert_no_error (error);
  assert_refused (&f, "plaintext/not TLS (first byte 0x00)");
  /* Dropped: whatever the TLS layer said, then EOF or a reset. */
  do
    n = g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (raw)), buf, sizeof buf,
                             NULL, NULL);
  while (n > 0);

  /* The listener keeps serving. */
  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (f.accepted->len, ==, 1);
  md_peer_connection_close (conn);
  fixture_stop (&f);
}

static void
test_handshake_timeout (void)
{
  Fixture f = { 0 };
  g_autoptr (GSocketConnection) raw = NULL;
  g_autoptr (GError) error = NULL;
  char buf[16];
  gint64 start;

  fixture_start (&f, "ca1", "hostB", 1);
  start = g_get_monotonic_time ();
  raw = raw_connect (&f);
  assert_refused (&f, "TLS handshake not finished within 1 s");
  g_assert_cmpint (g_get_monotonic_time () - start, >=, G_USEC_PER_SEC / 2);
  /* The server closed the socket: EOF, not the 10 s socket timeout. */
  g_assert_cmpint (g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (raw)), buf,
                                        sizeof buf, NULL, &error),
                   ==, 0);
  g_assert_no_error (error);
  fixture_stop (&f);
}

static void
test_client_timeout (void)
{
  Fixture f = { 0 };
  g_autoptr (GSocketListener) silent = g_socket_listener_new ();
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  g_autofree char *address = NULL;
  guint16 port;

  /* A port that accepts TCP (kernel backlog) but never speaks TLS. */
  fixture_start (&f, "ca1", "hostB", 10);
  port = g_socket_listener_add_any_inet_port (silent, NULL, &error);
  g_assert_no_error (error);
  address = g_strdup_printf ("127.0.0.1:%u", port);
  f.client_cfg.handshake_timeout = 1;
  conn = connect_to (&f, address, &error);
  g_assert_null (conn);
  g_assert_error (error, MD_ERROR, MD_ERROR_TIMEOUT);
  g_assert_nonnull (strstr (error->message, "TLS handshake"));
  fixture_stop (&f);
}

static void
on_server_closed (MdPeerConnection *conn, gpointer user_data)
{
  (*(guint *) user_data)++;
}

static void
test_closed_signal (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  MdPeerConnection *server_side;
  guint closed = 0;

  fixture_start (&f, "ca1", "hostB", 10);
  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (f.accepted->len, ==, 1);
  server_side = f.accepted->pdata[0];
  g_signal_connect (server_side, "closed", G_CALLBACK (on_server_closed), &closed);
  g_assert_false (md_peer_connection_is_closed (server_side));

  /* The source going away must reach the destination (autokill). */
  md_peer_connection_close (conn);
  WAIT_UNTIL (closed > 0);
  g_assert_cmpuint (closed, ==, 1);
  g_assert_true (md_peer_connection_is_closed (server_side));
  g_assert_null (md_peer_listener_get_connections (f.listener));
  fixture_stop (&f);
}

static void
test_closed_on_drop (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  MdPeerConnection *conn = NULL;
  MdPeerConnection *server_side;
  guint closed = 0;

  /* Dropping the last reference (a crashed source, in effect) closes too. */
  fixture_start (&f, "ca1", "hostB", 10);
  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  server_side = f.accepted->pdata[0];
  g_signal_connect (server_side, "closed", G_CALLBACK (on_server_closed), &closed);
  g_object_unref (conn);
  WAIT_UNTIL (closed > 0);
  fixture_stop (&f);
}

static GDBusConnection *
control_without_hello (Fixture *f)
{
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GAsyncResult) result2 = NULL;
  g_autoptr (GIOStream) stream = NULL;
  g_autoptr (GError) error = NULL;
  GDBusConnection *dbus;

  md_peer_open_data_stream_async (&f->client_cfg, f->address, MD_PEER_ALPN_CONTROL, NULL,
                                  store_result, &result);
  WAIT_UNTIL (result != NULL);
  stream = md_peer_open_data_stream_finish (result, &error);
  g_assert_no_error (error);
  g_dbus_connection_new (stream, NULL, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, NULL, NULL,
                         store_result, &result2);
  WAIT_UNTIL (result2 != NULL);
  dbus = g_dbus_connection_new_finish (result2, &error);
  g_assert_no_error (error);
  return dbus;
}

static GVariant *
call_prepare_xml (GDBusConnection *dbus, const char *xml, GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;

  g_dbus_connection_call (dbus, NULL, MD_PEER_OBJECT_PATH, "org.migrationd.Peer1", "Prepare",
                          g_variant_new ("(ss@a{sv})", "/m/1", xml,
                                         g_variant_new_array (G_VARIANT_TYPE ("{sv}"), NULL, 0)),
                          G_VARIANT_TYPE ("(a{sv})"), G_DBUS_CALL_FLAGS_NONE, 5000, NULL,
                          store_result, &result);
  WAIT_UNTIL (result != NULL);
  return g_dbus_connection_call_finish (dbus, result, error);
}

static GVariant *
call_prepare (GDBusConnection *dbus, GError **error)
{
  return call_prepare_xml (dbus, "<domain/>", error);
}

static void
test_message_too_large (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autofree char *huge = g_strnfill (64 * 1024, 'x');
  MdPeerConnection *server_side;
  guint closed = 0;

  fixture_start (&f, "ca1", "hostB", 10);
  f.server_cfg.max_message_size = 16 * 1024;
  g_clear_object (&f.listener);
  f.listener = md_peer_listener_new (&f.server_cfg, &error);
  g_assert_no_error (error);
  g_assert_true (md_peer_listener_listen (f.listener, "127.0.0.1", f.port, &error));
  g_signal_connect (f.listener, "new-connection", G_CALLBACK (on_new_connection), &f);
  g_signal_connect (f.listener, "peer-refused", G_CALLBACK (on_refused), &f);

  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  server_side = f.accepted->pdata[0];
  g_signal_connect (server_side, "closed", G_CALLBACK (on_server_closed), &closed);

  /* Small calls pass the cap ... */
  reply = call_prepare (md_peer_connection_get_dbus (conn), &error);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);
  /* ... a huge one is dropped and the connection closed. */
  reply = call_prepare_xml (md_peer_connection_get_dbus (conn), huge, &error);
  g_assert_null (reply);
  g_assert_nonnull (error);
  WAIT_UNTIL (closed > 0);
  WAIT_UNTIL (md_peer_connection_is_closed (conn));
  fixture_stop (&f);
}

static void
test_prepare_before_hello (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GDBusConnection) dbus = NULL;
  g_autoptr (GVariant) reply = NULL;

  fixture_start (&f, "ca1", "hostB", 10);
  dbus = control_without_hello (&f);
  reply = call_prepare (dbus, &error);
  g_assert_null (reply);
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_STATE);
  g_assert_nonnull (strstr (error->message, "before Hello"));
  g_assert_cmpuint (f.accepted->len, ==, 0);
  g_dbus_connection_close_sync (dbus, NULL, NULL);
  fixture_stop (&f);
}

static gboolean
on_handle_prepare (MdPeerListener *listener, MdPeerConnection *conn,
                   GDBusMethodInvocation *invocation, const char *migration_id, const char *xml,
                   GVariant *options, gpointer user_data)
{
  g_auto (GVariantDict) result = G_VARIANT_DICT_INIT (NULL);

  g_assert_cmpstr (md_peer_connection_get_host_name (conn), ==, "hostA");
  g_variant_dict_insert (&result, "migration-uri", "s", migration_id);
  md_dbus_peer1_complete_prepare (NULL, invocation, g_variant_dict_end (&result));
  return TRUE;
}

static void
test_prepare_forwarded (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  g_autoptr (GVariant) reply = NULL;
  g_autoptr (GVariant) result = NULL;
  const char *uri = NULL;

  fixture_start (&f, "ca1", "hostB", 10);
  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);

  /* Without an owner: NotSupported, by name across the wire. */
  reply = call_prepare (md_peer_connection_get_dbus (conn), &error);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED);
  g_clear_error (&error);

  g_signal_connect (f.listener, "handle-prepare", G_CALLBACK (on_handle_prepare), NULL);
  reply = call_prepare (md_peer_connection_get_dbus (conn), &error);
  g_assert_no_error (error);
  g_variant_get (reply, "(@a{sv})", &result);
  g_assert_true (g_variant_lookup (result, "migration-uri", "&s", &uri));
  g_assert_cmpstr (uri, ==, "/m/1");
  md_peer_connection_close (conn);
  fixture_stop (&f);
}

static guint
count_refusals (Fixture *f, const char *what)
{
  guint n = 0;

  for (guint i = 0; i < f->refused->len; i++)
    if (strstr (f->refused->pdata[i], what) != NULL)
      n++;
  return n;
}

static GSocketConnection *
raw_connect_nowait (Fixture *f)
{
  GSocketConnection *conn = raw_connect (f);

  /* Let the listener accept it, as a daemon under load would. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  return conn;
}

/* 200 silent connections from our address: the per-address cap keeps
 * them to MAX_PENDING_PER_ADDRESS by dropping the oldest, each dropped one
 * reads why in plain text, and a real peer from the same address still
 * gets in. */
static void
test_flood_admits_peer (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) flood = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (MdPeerConnection) conn = NULL;
  char buf[256] = { 0 };
  gssize n;

  /* The kernel holds silent connections for the handshake timeout
   * (TCP_DEFER_ACCEPT), then hands them over: 2 s. */
  fixture_start (&f, "ca1", "hostB", 2);
  for (guint i = 0; i < 200; i++)
    g_ptr_array_add (flood, raw_connect_nowait (&f));
  WAIT_UNTIL (count_refusals (&f, "peer busy") >= 200 - 16);
  /* The first was the oldest silent one: it was dropped with a reason. */
  n = g_input_stream_read (g_io_stream_get_input_stream (G_IO_STREAM (flood->pdata[0])), buf,
                           sizeof buf - 1, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (n, >, 0);
  g_assert_true (g_str_has_prefix (buf, "MIGRATIOND-BUSY host hostB: peer busy"));

  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (f.accepted->len, ==, 1);
  md_peer_connection_close (conn);
  fixture_stop (&f);
}

/* A fake peer port that sends @text and closes. */
static gboolean
on_fake_incoming (GSocketService *service, GSocketConnection *socket, GObject *source,
                  gpointer user_data)
{
  const char *text = user_data;

  g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (socket)), text,
                             strlen (text), NULL, NULL, NULL);
  g_io_stream_close (G_IO_STREAM (socket), NULL, NULL);
  return TRUE;
}

/* The client says what the other side did, not a guess. */
static void
test_refusals_are_named (void)
{
  const struct
  {
    const char *sends;
    gint code;
    const char *says;
  } cases[] = {
    { "MIGRATIOND-BUSY host hostB: peer busy: too many pending connections\n", MD_ERROR_PEER_FAILED,
      "is busy and refused the connection (host hostB: peer busy" },
    { "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", MD_ERROR_TLS_FAILED,
      "is not TLS on this port: it sent 'SSH-2.0-OpenSSH_9.2p1 Debian-2.'" },
    { "", MD_ERROR_PEER_FAILED, "closed the connection before answering the TLS handshake" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Fixture f = { 0 };
      g_autoptr (GSocketService) fake = g_socket_service_new ();
      g_autoptr (GError) error = NULL;
      g_autoptr (MdPeerConnection) conn = NULL;
      g_autofree char *address = NULL;
      guint16 port;

      fixture_start (&f, "ca1", "hostB", 10);
      port = g_socket_listener_add_any_inet_port (G_SOCKET_LISTENER (fake), NULL, &error);
      g_assert_no_error (error);
      g_signal_connect (fake, "incoming", G_CALLBACK (on_fake_incoming), (gpointer) cases[i].sends);
      address = g_strdup_printf ("127.0.0.1:%u", port);
      conn = connect_to (&f, address, &error);
      g_test_message ("%s", error ? error->message : "(no error)");
      g_assert_null (conn);
      g_assert_error (error, MD_ERROR, cases[i].code);
      g_assert_nonnull (strstr (error->message, cases[i].says));
      g_socket_service_stop (fake);
      g_socket_listener_close (G_SOCKET_LISTENER (fake));
      fixture_stop (&f);
    }
}

/* Established connections per certificate DN are limited; the one over
 * the limit is told "peer busy" in Hello's answer. */
static void
test_connections_per_dn_limited (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) conns = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (MdPeerConnection) over = NULL;

  fixture_start (&f, "ca1", "hostB", 10);
  for (guint i = 0; i < 32; i++)
    {
      MdPeerConnection *conn = connect_to (&f, NULL, &error);
      g_assert_no_error (error);
      g_ptr_array_add (conns, conn);
    }
  over = connect_to (&f, NULL, &error);
  g_assert_null (over);
  g_assert_error (error, MD_ERROR, MD_ERROR_PEER_FAILED);
  g_assert_nonnull (strstr (error->message, "peer busy"));
  g_assert_nonnull (strstr (error->message, "32 connections from DN 'CN=hostA,O=migrationd'"));
  g_clear_error (&error);
  /* One closes: the next one gets in. */
  md_peer_connection_close (conns->pdata[0]);
  WAIT_UNTIL (md_peer_connection_is_closed (conns->pdata[0]));
  WAIT_UNTIL (md_peer_connection_is_closed (f.accepted->pdata[0]));
  over = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  for (guint i = 0; i < conns->len; i++)
    md_peer_connection_close (conns->pdata[i]);
  md_peer_connection_close (over);
  fixture_stop (&f);
}

static gboolean
count_prepare (MdPeerListener *listener, MdPeerConnection *conn, GDBusMethodInvocation *invocation,
               const char *migration_id, const char *xml, GVariant *options, gpointer user_data)
{
  (*(guint *) user_data)++;
  return on_handle_prepare (listener, conn, invocation, migration_id, xml, options, NULL);
}

static GVariant *
call_peer (GDBusConnection *dbus, const char *method, GVariant *args, const char *reply_type,
           GError **error)
{
  g_autoptr (GAsyncResult) result = NULL;

  g_dbus_connection_call (dbus, NULL, MD_PEER_OBJECT_PATH, "org.migrationd.Peer1", method, args,
                          G_VARIANT_TYPE (reply_type), G_DBUS_CALL_FLAGS_NONE, 5000, NULL,
                          store_result, &result);
  WAIT_UNTIL (result != NULL);
  return g_dbus_connection_call_finish (dbus, result, error);
}

/* A peer with a valid certificate sending wrong-typed, oversized or
 * out-of-range arguments is refused by name before any handler runs. */
static void
test_bad_arguments_refused (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (MdPeerConnection) conn = NULL;
  g_autofree char *long_reason = g_strnfill (MD_PEER_REASON_MAX + 1, 'r');
  g_autofree char *long_id = g_strnfill (MD_PEER_ID_MAX + 1, 'i');
  const char *relative[] = { "etc/shadow", NULL };
  guint prepared = 0;
  GDBusConnection *dbus;
  const struct
  {
    const char *method;
    GVariant *args;
    const char *reply;
    const char *named;
  } bad[] = {
    { "Prepare", g_variant_new_parsed ("('/m/1', '<domain/>', {'tls': <'yes'>})"), "(a{sv})",
      "'tls'" },
    { "Prepare",
      g_variant_new_parsed ("('/m/1', '<domain/>', {'parallel-connections': <uint32 100000>})"),
      "(a{sv})", "'parallel-connections'" },
    { "Prepare", g_variant_new_parsed ("('/m/1', '<domain/>', {'source-persistent': <uint32 1>})"),
      "(a{sv})", "'source-persistent'" },
    { "Prepare",
      g_variant_new_parsed (
          "('/m/1', '<domain/>', {'disks-info': <[{'target': <'vdb'>, 'path': <7>}]>})"),
      "(a{sv})", "'disks-info'" },
    { "Prepare",
      g_variant_new ("(ss@a{sv})", long_id, "<domain/>", g_variant_new_parsed ("@a{sv} {}")),
      "(a{sv})", "'migration_id'" },
    { "Prepare", g_variant_new_parsed ("('/m/1', '', @a{sv} {})"), "(a{sv})", "'xml'" },
    { "Finish", g_variant_new_parsed ("('/m/1', true, {'error-name': <5>})"), "(a{sv})",
      "'error-name'" },
    { "Finish", g_variant_new_parsed ("('/m/1', true, {'rm': <'-rf'>})"), "(a{sv})", "'rm'" },
    { "Abort", g_variant_new ("(ss)", "/m/1", long_reason), "()", "'reason'" },
    { "CheckPaths", g_variant_new ("(^as)", relative), "(a{sb})", "absolute" },
    { "Recover", g_variant_new_parsed ("('/m/1', {'token': <5>})"), "(a{sv})", "'token'" },
    { "Recover", g_variant_new_parsed ("('/m/1', {'uri': <'exec:sh'>})"), "(a{sv})", "'uri'" },
    { "Recover", g_variant_new ("(s@a{sv})", long_id, g_variant_new_parsed ("@a{sv} {}")),
      "(a{sv})", "'migration_id'" },
  };

  fixture_start (&f, "ca1", "hostB", 10);
  g_signal_connect (f.listener, "handle-prepare", G_CALLBACK (count_prepare), &prepared);
  conn = connect_to (&f, NULL, &error);
  g_assert_no_error (error);
  dbus = md_peer_connection_get_dbus (conn);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GVariant) reply =
          call_peer (dbus, bad[i].method, bad[i].args, bad[i].reply, &error);

      g_test_message ("%s: %s", bad[i].method, error ? error->message : "(no error)");
      g_assert_null (reply);
      g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, bad[i].named));
      g_clear_error (&error);
    }
  g_assert_cmpuint (prepared, ==, 0);
  /* The connection is still good, and a good Prepare reaches the handler. */
  g_clear_pointer (&error, g_error_free);
  {
    g_autoptr (GVariant) reply = call_prepare (dbus, &error);
    g_assert_no_error (error);
  }
  g_assert_cmpuint (prepared, ==, 1);
  md_peer_connection_close (conn);
  fixture_stop (&f);
}

static gboolean
on_data_stream (MdPeerListener *listener, GIOStream *stream, const char *alpn, const char *dn,
                gpointer user_data)
{
  GIOStream **out = user_data;

  g_assert_cmpstr (alpn, ==, MD_PEER_ALPN_DATA);
  g_assert_cmpstr (dn, ==, "CN=hostA,O=migrationd");
  *out = g_object_ref (stream);
  return TRUE;
}

static void
test_data_stream (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GAsyncResult) read_result = NULL;
  g_autoptr (GIOStream) client = NULL;
  g_autoptr (GIOStream) server = NULL;
  char buf[16] = { 0 };

  fixture_start (&f, "ca1", "hostB", 10);
  g_signal_connect (f.listener, "data-stream", G_CALLBACK (on_data_stream), &server);
  md_peer_open_data_stream_async (&f.client_cfg, f.address, MD_PEER_ALPN_DATA, NULL, store_result,
                                  &result);
  WAIT_UNTIL (result != NULL);
  client = md_peer_open_data_stream_finish (result, &error);
  g_assert_no_error (error);
  WAIT_UNTIL (server != NULL);

  g_output_stream_write_all (g_io_stream_get_output_stream (client), "ping", 4, NULL, NULL, &error);
  g_assert_no_error (error);
  g_input_stream_read_all_async (g_io_stream_get_input_stream (server), buf, 4, G_PRIORITY_DEFAULT,
                                 NULL, store_result, &read_result);
  WAIT_UNTIL (read_result != NULL);
  g_input_stream_read_all_finish (g_io_stream_get_input_stream (server), read_result, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (buf, ==, "ping");
  g_assert_cmpuint (f.accepted->len, ==, 0);
  fixture_stop (&f);
}

static void
test_tls12_refused (void)
{
  Fixture f = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) cli = NULL;
  g_autofree char *gnutls_cli = g_find_program_in_path ("gnutls-cli");
  g_autofree char *port = NULL;
  g_autofree char *ca = g_build_filename (tmpdir, "ca1", "ca-cert.pem", NULL);
  g_autofree char *cert = g_build_filename (tmpdir, "ca1", "hostA", "client-cert.pem", NULL);
  g_autofree char *key = g_build_filename (tmpdir, "ca1", "hostA", "client-key.pem", NULL);

  /* test.sh installs gnutls-bin; a missing tool is a failure, not a skip. */
  g_assert_nonnull (gnutls_cli);
  /* A client with a good, allowed certificate that only speaks TLS 1.2. */
  fixture_start (&f, "ca1", "hostB", 10);
  port = g_strdup_printf ("%u", f.port);
  cli = g_subprocess_new (G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_SILENCE
                              | G_SUBPROCESS_FLAGS_STDERR_SILENCE,
                          &error, gnutls_cli, "--priority", "NORMAL:-VERS-TLS1.3", "--x509cafile",
                          ca, "--x509certfile", cert, "--x509keyfile", key, "--alpn",
                          MD_PEER_ALPN_CONTROL, "-p", port, "127.0.0.1", NULL);
  g_assert_no_error (error);
  assert_refused (&f, "TLS version below 1.3");
  g_subprocess_force_exit (cli);
  fixture_stop (&f);
}

static void
test_hello_timeout (void)
{
  Fixture f = { 0 };
  g_autoptr (GDBusConnection) dbus = NULL;

  /* Through TLS and D-Bus authentication, then silence. (3 s: the
   * handshake must fit, under sanitizers and load too.) */
  fixture_start (&f, "ca1", "hostB", 3);
  dbus = control_without_hello (&f);
  assert_refused (&f, "no Hello within 3 s");
  WAIT_UNTIL (g_dbus_connection_is_closed (dbus));
  fixture_stop (&f);
}

static void
make_mixed_dir (void)
{
  /* ca1's CA (so the client accepts hostB) with rogue's client certificate
   * from another CA. */
  g_autofree char *dir = g_build_filename (tmpdir, "mixed", "rogue", NULL);
  const char *files[] = { "client-cert.pem", "client-key.pem", NULL };

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  for (guint i = 0; files[i] != NULL; i++)
    {
      g_autofree char *from = g_build_filename (tmpdir, "ca2", "rogue", files[i], NULL);
      g_autofree char *to = g_build_filename (dir, files[i], NULL);
      g_autofree char *data = NULL;
      gsize len;

      g_assert_true (g_file_get_contents (from, &data, &len, NULL));
      g_assert_true (g_file_set_contents (to, data, len, NULL));
    }
  {
    g_autofree char *from = g_build_filename (tmpdir, "ca1", "ca-cert.pem", NULL);
    g_autofree char *to = g_build_filename (dir, "ca-cert.pem", NULL);
    g_autofree char *data = NULL;
    gsize len;

    g_assert_true (g_file_get_contents (from, &data, &len, NULL));
    g_assert_true (g_file_set_contents (to, data, len, NULL));
  }
}

static gboolean
remove_tree (const char *path)
{
  g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir != NULL)
    while ((name = g_dir_read_name (dir)) != NULL)
      {
        g_autofree char *child = g_build_filename (path, name, NULL);
        remove_tree (child);
      }
  return g_remove (path) == 0;
}

int
main (int argc, char **argv)
{
  const char *good[] = { "hostA=127.0.0.1", "hostB=127.0.0.1", "hostC=127.0.0.1", NULL };
  const char *old[] = { "oldA=127.0.0.1", "oldB=127.0.0.1", NULL };
  const char *rogue[] = { "rogue=127.0.0.1", NULL };
  g_autoptr (GError) error = NULL;
  int ret;

  g_test_init (&argc, &argv, NULL);

  tmpdir = g_dir_make_tmp ("test-peer-XXXXXX", &error);
  g_assert_no_error (error);
  run_setup ("ca1", FALSE, "migrationd test CA", good);
  run_setup ("ca1", TRUE, "migrationd test CA", old); /* reuses ca1's CA */
  run_setup ("ca2", FALSE, "some other CA", rogue);
  make_mixed_dir ();
  g_timeout_add (100, tick, NULL);

  g_test_add_func ("/peer/normalize-dn", test_normalize_dn);
  g_test_add_func ("/peer/missing-files", test_missing_files);
  g_test_add_func ("/peer/good", test_good);
  g_test_add_func ("/peer/same-uuid", test_same_uuid);
  g_test_add_func ("/peer/unknown-ca", test_unknown_ca);
  g_test_add_func ("/peer/dn-not-allowed", test_dn_not_allowed);
  g_test_add_func ("/peer/expired-client", test_expired_client);
  g_test_add_func ("/peer/expired-server", test_expired_server);
  g_test_add_func ("/peer/wrong-host-name", test_wrong_host_name);
  g_test_add_func ("/peer/plaintext", test_plaintext);
  g_test_add_func ("/peer/handshake-timeout", test_handshake_timeout);
  g_test_add_func ("/peer/client-timeout", test_client_timeout);
  g_test_add_func ("/peer/closed-signal", test_closed_signal);
  g_test_add_func ("/peer/closed-on-drop", test_closed_on_drop);
  g_test_add_func ("/peer/prepare-before-hello", test_prepare_before_hello);
  g_test_add_func ("/peer/message-too-large", test_message_too_large);
  g_test_add_func ("/peer/hello-timeout", test_hello_timeout);
  g_test_add_func ("/peer/tls12-refused", test_tls12_refused);
  g_test_add_func ("/peer/prepare-forwarded", test_prepare_forwarded);
  g_test_add_func ("/peer/bad-arguments-refused", test_bad_arguments_refused);
  g_test_add_func ("/peer/flood-admits-peer", test_flood_admits_peer);
  g_test_add_func ("/peer/refusals-are-named", test_refusals_are_named);
  g_test_add_func ("/peer/connections-per-dn-limited", test_connections_per_dn_limited);
  g_test_add_func ("/peer/data-stream", test_data_stream);

  ret = g_test_run ();
  remove_tree (tmpdir);
  g_free (tmpdir);
  return ret;
}

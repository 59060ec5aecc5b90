/* Unit tests of the migration address structure (md-address) and the save
 * file header (md-save-file): what is accepted, what is refused with
 * which error, and that QEMU's URI comes out right. */
#include "config.h"

#include "common/md-error.h"
#include "migration/md-address.h"
#include "migration/md-save-file.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_host_accepted (void)
{
  const char *good[][2] = {
    { "192.0.2.1", "192.0.2.1" },       { "::1", "::1" },
    { "[2001:db8::1]", "2001:db8::1" }, { "dest-host.example.com", "dest-host.example.com" },
    { "localhost", "localhost" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *host = md_address_parse_host (good[i][0], "option 'x'", &error);
      g_assert_no_error (error);
      g_assert_cmpstr (host, ==, good[i][1]);
    }
}

static void
test_host_refused (void)
{
  g_autofree char *long_name = g_strnfill (4096, 'a');
  g_autofree char *long_label = g_strnfill (64, 'b');
  const char *bad[] = { "host;reboot", "$(reboot)", "`id`",    "a b",     "a|b",  "a&b",
                        "a>b",         "-oProxy",   "host-",   "",        "[::1", "[192.0.2.1]",
                        "a..b",        "a\nb",      long_name, long_label };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autofree char *host = md_address_parse_host (bad[i], "option 'migration-address'", &error);
      if (host != NULL)
        g_error ("accepted host '%s'", bad[i]);
      g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "option 'migration-address'"));
    }
}

static char *
uri_of (MdAddress *address)
{
  g_autoptr (GError) error = NULL;
  char *uri;

  g_assert_nonnull (address);
  uri = md_address_to_uri (address, &error);
  g_assert_no_error (error);
  md_address_free (address);
  return uri;
}

static void
test_uri_rendering (void)
{
  const char *const argv[] = { "/usr/bin/nc", "-U", "/run/a b;c", NULL };
  g_autofree char *v4 = uri_of (md_address_new_inet ("192.0.2.1", 49152, NULL));
  g_autofree char *v6 = uri_of (md_address_new_inet ("[2001:db8::1]", 1, NULL));
  g_autofree char *name = uri_of (md_address_new_inet ("dst.example.com", 65535, NULL));
  g_autofree char *unix_uri = uri_of (md_address_new_unix ("/run/migrationd/x.sock", NULL));
  g_autofree char *fd = uri_of (md_address_new_fd ("md-save", NULL));
  g_autofree char *file = uri_of (md_address_new_file ("md-save", 4096, NULL));
  g_autofree char *exec = uri_of (md_address_new_exec (argv, NULL));

  g_assert_cmpstr (v4, ==, "tcp:192.0.2.1:49152");
  g_assert_cmpstr (v6, ==, "tcp:[2001:db8::1]:1");
  g_assert_cmpstr (name, ==, "tcp:dst.example.com:65535");
  g_assert_cmpstr (unix_uri, ==, "unix:/run/migrationd/x.sock");
  g_assert_cmpstr (fd, ==, "fd:md-save");
  g_assert_cmpstr (file, ==, "fd:md-save");
  /* Every word quoted: the shell QEMU 7.2 uses for exec: sees one word
   * each, metacharacters and all. */
  g_assert_cmpstr (exec, ==, "exec:'/usr/bin/nc' '-U' '/run/a b;c'");
}

static void
test_constructors_refuse (void)
{
  const char *const relative[] = { "nc", NULL };
  const char *const empty[] = { NULL };
  g_autofree char *long_path = g_strdup_printf ("/%s", g_strnfill (200, 'p'));
  GError *error = NULL;

  g_assert_null (md_address_new_inet ("192.0.2.1", 0, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (md_address_new_unix ("relative.sock", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (md_address_new_unix (long_path, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  /* QEMU reads an all-digit fd name as a number. */
  g_assert_null (md_address_new_fd ("3", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (md_address_new_fd ("a:b", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (md_address_new_exec (relative, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (md_address_new_exec (empty, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

static void
test_peer_uri (void)
{
  const char *good[][2] = {
    { "tcp:192.0.2.1:49152", "tcp:192.0.2.1:49152" },
    { "tcp:[2001:db8::1]:1", "tcp:[2001:db8::1]:1" },
    { "tcp:dst.example.com:65535", "tcp:dst.example.com:65535" },
  };
  const char *bad[] = { "exec:rm -rf /",  "unix:/tmp/x",       "fd:3",        "tcp:host:0",
                        "tcp:host:65536", "tcp:host",          "tcp::1:80",   "tcp:a;b:80",
                        "tcp:$(id):80",   "tcp:host:80 extra", "TCP:host:80", "" };

  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MdAddress) address = md_address_parse_tcp_uri (good[i][0], &error);
      g_autofree char *uri = NULL;
      g_assert_no_error (error);
      uri = md_address_to_uri (address, &error);
      g_assert_cmpstr (uri, ==, good[i][1]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (MdAddress) address = md_address_parse_tcp_uri (bad[i], &error);
      if (address != NULL)
        g_error ("accepted peer URI '%s'", bad[i]);
      g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
    }
}

static char *
qapi_of (MdAddress *address)
{
  g_autoptr (JsonObject) obj = md_address_to_qapi (address);
  g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);

  json_node_set_object (node, obj);
  md_address_free (address);
  return json_to_string (node, FALSE);
}

static void
test_qapi_channels (void)
{
  const char *const argv[] = { "/usr/bin/nc", "-U", "/run/x", NULL };
  g_autofree char *inet = qapi_of (md_address_new_inet ("::1", 4444, NULL));
  g_autofree char *fd = qapi_of (md_address_new_fd ("mig", NULL));
  g_autofree char *exec = qapi_of (md_address_new_exec (argv, NULL));
  g_autofree char *file = qapi_of (md_address_new_file ("fdset1", 4096, NULL));

  g_assert_cmpstr (
      inet, ==, "{\"transport\":\"socket\",\"type\":\"inet\",\"host\":\"::1\",\"port\":\"4444\"}");
  g_assert_cmpstr (fd, ==, "{\"transport\":\"socket\",\"type\":\"fd\",\"str\":\"mig\"}");
  g_assert_cmpstr (exec, ==,
                   "{\"transport\":\"exec\",\"args\":[\"/usr/bin/nc\",\"-U\",\"/run/x\"]}");
  g_assert_cmpstr (file, ==,
                   "{\"transport\":\"file\",\"filename\":\"/dev/fdset/fdset1\",\"offset\":4096}");
}

/* ---- save file header ------------------------------------------------- */

static char *
write_file (const char *dir, const char *name, const void *data, gsize length)
{
  char *path = g_build_filename (dir, name, NULL);

  g_assert_true (g_file_set_contents (path, data, (gssize) length, NULL));
  return path;
}

static MdSaveHeader *
read_header (const char *path, GError **error)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  MdSaveHeader *header;

  g_assert_cmpint (fd, >=, 0);
  header = md_save_header_read (fd, path, error);
  if (header != NULL)
    g_assert_cmpint (lseek (fd, 0, SEEK_CUR), ==, (off_t) header->data_offset);
  close (fd);
  return header;
}

static void
test_header_round_trip_and_damage (void)
{
  g_autofree char *dir = g_dir_make_tmp ("md-save-units-XXXXXX", NULL);
  MdSaveHeader in = { TRUE, MD_SAVE_COMPRESS_ZSTD, (char *) "<domain><name>g</name></domain>", 0 };
  g_autoptr (GBytes) bytes = md_save_header_encode (&in);
  gsize length;
  const guint8 *data = g_bytes_get_data (bytes, &length);
  g_autofree guint8 *with_stream = g_malloc0 (length + 10);
  g_autofree char *good = NULL, *only_header = NULL, *bad_magic = NULL, *flipped = NULL;
  g_autofree char *short_file = NULL;
  g_autoptr (MdSaveHeader) out = NULL;
  GError *error = NULL;

  g_assert_cmpuint (length, ==, 4096);
  g_assert_cmpuint (in.data_offset, ==, 4096);
  memcpy (with_stream, data, length);
  good = write_file (dir, "good", with_stream, length + 10);
  out = read_header (good, &error);
  g_assert_no_error (error);
  g_assert_true (out->running);
  g_assert_cmpint (out->compression, ==, MD_SAVE_COMPRESS_ZSTD);
  g_assert_cmpstr (out->xml, ==, in.xml);

  only_header = write_file (dir, "only-header", data, length);
  g_assert_null (read_header (only_header, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "truncated"));
  g_clear_error (&error);

  short_file = write_file (dir, "short", data, 50);
  g_assert_null (read_header (short_file, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "truncated"));
  g_clear_error (&error);

  with_stream[0] = 'Q';
  bad_magic = write_file (dir, "bad-magic", with_stream, length + 10);
  g_assert_null (read_header (bad_magic, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "not a migrationd save file"));
  g_clear_error (&error);

  with_stream[0] = 'M';
  with_stream[80] ^= 1;
  flipped = write_file (dir, "flipped", with_stream, length + 10);
  g_assert_null (read_header (flipped, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "checksum"));
  g_clear_error (&error);

  for (const char *const *p =
           (const char *const[]){ good, only_header, short_file, bad_magic, flipped, NULL };
       *p != NULL; p++)
    g_unlink (*p);
  g_rmdir (dir);
}

static void
test_file_create_and_commit (void)
{
  g_autofree char *dir = g_dir_make_tmp ("md-save-units-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "guest.save", NULL);
  g_autofree char *missing = g_build_filename (dir, "nope", "guest.save", NULL);
  g_autofree char *tmp = NULL;
  g_autofree char *tmp2 = NULL;
  g_autoptr (GBytes) bytes = g_bytes_new_static ("state", 5);
  GError *error = NULL;
  struct stat st;
  int fd;

  g_assert_cmpint (md_save_file_create (missing, FALSE, &tmp, &error), <, 0);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_FOUND);
  g_clear_error (&error);
  g_assert_cmpint (md_save_file_create ("relative", FALSE, &tmp, &error), <, 0);
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  fd = md_save_file_create (path, FALSE, &tmp, &error);
  g_assert_no_error (error);
  g_assert_cmpint (fd, >=, 0);
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
  g_assert_true (md_save_file_write (fd, bytes, path, &error));
  g_assert_true (md_save_file_commit (fd, tmp, path, FALSE, TRUE, &error));
  g_assert_no_error (error);
  close (fd);
  g_assert_cmpint (stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 07777, ==, 0600);
  g_assert_false (g_file_test (tmp, G_FILE_TEST_EXISTS));

  g_assert_cmpint (md_save_file_create (path, FALSE, &tmp2, &error), <, 0);
  g_assert_error (error, MD_ERROR, MD_ERROR_ALREADY_EXISTS);
  g_clear_error (&error);
  fd = md_save_file_create (path, TRUE, &tmp2, &error);
  g_assert_no_error (error);
  g_assert_true (md_save_file_commit (fd, tmp2, path, TRUE, FALSE, &error));
  close (fd);
  g_assert_cmpint (stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_size, ==, 0);
  g_unlink (path);
  g_rmdir (dir);
}

static void
test_compression_names (void)
{
  MdSaveCompression c;
  GError *error = NULL;

  g_assert_true (md_save_compression_parse ("zstd", &c, NULL));
  g_assert_cmpint (c, ==, MD_SAVE_COMPRESS_ZSTD);
  g_assert_true (md_save_compression_parse (NULL, &c, NULL));
  g_assert_cmpint (c, ==, MD_SAVE_COMPRESS_NONE);
  g_assert_false (md_save_compression_parse ("xz; rm -rf /", &c, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (md_save_compressor_argv (MD_SAVE_COMPRESS_NONE, FALSE));
  g_assert_cmpstr (md_save_compressor_argv (MD_SAVE_COMPRESS_GZIP, TRUE)[0], ==, "gzip");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/address/host-accepted", test_host_accepted);
  g_test_add_func ("/address/host-refused", test_host_refused);
  g_test_add_func ("/address/uri", test_uri_rendering);
  g_test_add_func ("/address/constructors-refuse", test_constructors_refuse);
  g_test_add_func ("/address/qapi", test_qapi_channels);
  g_test_add_func ("/address/peer-uri", test_peer_uri);
  g_test_add_func ("/save-file/header", test_header_round_trip_and_damage);
  g_test_add_func ("/save-file/create-commit", test_file_create_and_commit);
  g_test_add_func ("/save-file/compression", test_compression_names);
  return g_test_run ();
}

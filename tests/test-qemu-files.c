/* Unit tests: the descriptors the daemon opens for QEMU and how the argv
 * names them (qemu/md-qemu-files, qemu/md-qemu-argv-files), the qcow2
 * backing chain the daemon opens layer by layer, and the [qemu] keys. */
#include "config.h"

#include "common/md-config.h"
#include "common/md-error.h"
#include "qemu/md-qemu-argv.h"
#include "qemu/md-qemu-files.h"

#include <glib/gstdio.h>
#include <string.h>

static void
put32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

/* A qcow2 v3 header (enough for the daemon's reader) naming @backing
 * (relative or absolute) in @format, or none. */
static void
write_qcow2 (const char *path, const char *backing, const char *format)
{
  guint8 header[512] = { 0 };
  guint32 ext = 104;

  put32 (header, 0x514649fb);
  put32 (header + 4, 3);
  put32 (header + 100, 104); /* header_length */
  if (format != NULL)
    {
      put32 (header + ext, 0xe2792aca);
      put32 (header + ext + 4, strlen (format));
      memcpy (header + ext + 8, format, strlen (format));
      ext += 8 + ((strlen (format) + 7) & ~7u);
    }
  put32 (header + ext, 0); /* end of extensions */
  if (backing != NULL)
    {
      put32 (header + 12, 256); /* backing_file_offset (low half) */
      put32 (header + 16, strlen (backing));
      memcpy (header + 256, backing, strlen (backing));
    }
  g_assert_true (g_file_set_contents (path, (const char *) header, sizeof header, NULL));
}

static char *
argv_line (GStrv argv)
{
  return g_strjoinv (" ", argv);
}

static void
test_guest_files (void)
{
  g_autofree char *dir = g_dir_make_tmp ("md-files-XXXXXX", NULL);
  g_autofree char *base = g_build_filename (dir, "base.raw", NULL);
  g_autofree char *top = g_build_filename (dir, "top.qcow2", NULL);
  g_autofree char *serial = g_build_filename (dir, "serial.log", NULL);
  g_autofree char *xml = g_strdup_printf (
      "<domain type='qemu'><name>f</name><memory unit='MiB'>64</memory>"
      "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
      "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
      "<source file='%s'/><target dev='vda' bus='virtio'/></disk>"
      "<serial type='file'><source path='%s'/><target port='0'/></serial>"
      "<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>"
      "<graphics type='vnc' port='5901' passwd='sesame'/>"
      "</devices></domain>",
      top, serial);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdDomain) dom = md_domain_parse (xml, &error);
  g_autoptr (MdQemuFiles) files = NULL;
  MdQemuArgvOptions opts = { .accel = "tcg", .qmp_socket = "/run/x.qmp", .qmp_listen_fd = 3 };
  g_auto (GStrv) argv = NULL;
  g_autofree char *line = NULL;
  const GPtrArray *layers;

  g_assert_no_error (error);
  g_assert_true (g_file_set_contents (base, "raw data", -1, NULL));
  write_qcow2 (top, "base.raw", "raw");
  opts.runtime_files_dir = dir;

  files = md_qemu_open_guest_files (dom, &opts, "hostA", 4, &error);
  g_assert_no_error (error);
  layers = md_qemu_files_disk_layers (files, 0);
  g_assert_cmpuint (layers->len, ==, 2);
  g_assert_cmpstr (((MdQemuDiskLayer *) layers->pdata[0])->format, ==, "qcow2");
  g_assert_false (((MdQemuDiskLayer *) layers->pdata[0])->read_only);
  g_assert_cmpstr (((MdQemuDiskLayer *) layers->pdata[1])->format, ==, "raw");
  g_assert_true (((MdQemuDiskLayer *) layers->pdata[1])->read_only);
  g_assert_true (g_file_test (serial, G_FILE_TEST_EXISTS));

  opts.files = files;
  argv = md_qemu_build_argv (dom, &opts, &error);
  g_assert_no_error (error);
  line = argv_line (argv);
  /* No path of the guest's files: descriptors only. */
  g_assert_null (strstr (line, dir));
  g_assert_nonnull (strstr (line, "-add-fd fd=4,set=1"));
  g_assert_nonnull (strstr (line, "\"filename\":\"/dev/fdset/1\""));
  g_assert_nonnull (
      strstr (line, "\"backing\":{\"driver\":\"raw\",\"read-only\":true,\"file\":{\"driver\":"
                    "\"file\",\"filename\":\"/dev/fdset/2\",\"read-only\":true}}"));
  g_assert_null (strstr (line, "auto-read-only"));
  g_assert_nonnull (strstr (line, "file,id=charserial0,path=/dev/fdset/3,append=on"));
  g_assert_nonnull (strstr (line, "socket,id=charchannel0,fd="));
  g_assert_nonnull (strstr (line, "secret,id=graphics0-secret,file=/proc/self/fd/"));
  g_assert_null (strstr (line, "sesame"));
  /* The descriptors QEMU gets: QMP's 3 is the caller's, these from 4 up. */
  g_assert_cmpuint (md_qemu_files_get_count (files), ==, 5);
  g_assert_cmpint (md_qemu_files_get_targets (files)[0], ==, 4);

  md_qemu_remove_runtime_files (dom, dir);
  g_unlink (base);
  g_unlink (top);
  g_unlink (serial);
  g_rmdir (dir);
}

static void
test_missing_backing_file (void)
{
  g_autofree char *dir = g_dir_make_tmp ("md-files-XXXXXX", NULL);
  g_autofree char *top = g_build_filename (dir, "top.qcow2", NULL);
  g_autoptr (MdQemuFiles) files = md_qemu_files_new (4);
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) layers = NULL;

  write_qcow2 (top, "/nonexistent/base.img", NULL);
  layers = md_qemu_files_open_image (files, top, "qcow2", FALSE, FALSE, &error);
  g_assert_null (layers);
  g_assert_error (error, MD_ERROR, MD_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "/nonexistent/base.img"));
  g_clear_error (&error);

  write_qcow2 (top, "nbd://host/export", NULL);
  layers = md_qemu_files_open_image (files, top, "qcow2", FALSE, FALSE, &error);
  g_assert_null (layers);
  g_assert_nonnull (strstr (error->message, "not a local file"));
  g_unlink (top);
  g_rmdir (dir);
}

static void
test_qemu_config (void)
{
  static const struct
  {
    const char *text;
    const char *error;
  } bad[] = {
    { "[qemu]\nuid-range=10-5\n", "[qemu] uid-range: '10-5' is not FIRST-LAST" },
    { "[qemu]\nuid-range=0-5\n", "[qemu] uid-range: '0-5'" },
    { "[qemu]\nuid-range=60000-70000\n", "not containing 65534" },
    { "[qemu]\nuid-range=abc\n", "[qemu] uid-range: 'abc'" },
    { "[qemu]\nuser=root\n", "QEMU never runs as root" },
    { "[qemu]\ntasks-max=1\n", "[qemu] tasks-max: '1' is not a number between 16" },
    { "[qemu]\nuid=5\n", "[qemu]: unknown key 'uid'" },
  };
  g_autofree char *path = NULL;
  int fd = g_file_open_tmp ("md-config-XXXXXX", &path, NULL);
  g_autoptr (MdConfig) good = NULL;
  g_autoptr (GError) error = NULL;

  close (fd);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (MdConfig) config = NULL;

      g_assert_true (g_file_set_contents (path, bad[i].text, -1, NULL));
      config = md_config_load (path, &error);
      g_assert_null (config);
      g_assert_error (error, MD_ERROR, MD_ERROR_CONFIG);
      if (strstr (error->message, bad[i].error) == NULL)
        g_error ("%s: %s", bad[i].text, error->message);
      g_clear_error (&error);
    }
  g_assert_true (
      g_file_set_contents (path, "[qemu]\nuid-range=100000-100009\nuser=qemu\n", -1, NULL));
  good = md_config_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (good->qemu_uid_min, ==, 100000);
  g_assert_cmpuint (good->qemu_uid_max, ==, 100009);
  g_assert_cmpstr (good->qemu_user, ==, "qemu");
  g_unlink (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/qemu-files/guest-files", test_guest_files);
  g_test_add_func ("/qemu-files/missing-backing-file", test_missing_backing_file);
  g_test_add_func ("/qemu-files/config", test_qemu_config);
  return g_test_run ();
}

/* Unit tests of md-image-admission: which files an incoming migration may
 * create, reuse, open or ask about, on a real file system with real links
 * (qemu-img only for what it formats). */
#include "config.h"

#include "common/md-error.h"
#include "storage/md-image-admission.h"

#include <glib/gstdio.h>
#include <unistd.h>

#define GUEST_XML                                                                                  \
  "<domain type='qemu'><name>adm</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"               \
  "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"                                  \
  "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s'/>"            \
  "<target dev='vdb' bus='virtio'/></disk></devices></domain>"

typedef struct
{
  char *root;
  char *images; /* allowed */
  char *outside;
  char *victim; /* outside, must never change */
  MdImageAdmission *admission;
} Fixture;

static void
write_file (const char *path, const char *text)
{
  g_autoptr (GError) error = NULL;

  g_assert_true (g_file_set_contents (path, text, -1, &error));
  g_assert_no_error (error);
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *link = NULL, *sub = NULL, *exists = NULL;
  const char *dirs[2] = { NULL, NULL };

  f->root = g_dir_make_tmp ("md-admission-XXXXXX", &error);
  g_assert_no_error (error);
  f->images = g_build_filename (f->root, "images", NULL);
  f->outside = g_build_filename (f->root, "outside", NULL);
  f->victim = g_build_filename (f->outside, "victim", NULL);
  g_assert_cmpint (g_mkdir (f->outside, 0700), ==, 0);
  write_file (f->victim, "secret\n");
  dirs[0] = f->images;
  /* create_missing: the default directory is made at start-up. */
  f->admission = md_image_admission_new (dirs, TRUE, FALSE, 5, "hostB", &error);
  g_assert_no_error (error);
  g_assert_true (g_file_test (f->images, G_FILE_TEST_IS_DIR));
  link = g_build_filename (f->images, "link.raw", NULL);
  g_assert_cmpint (symlink (f->victim, link), ==, 0);
  sub = g_build_filename (f->images, "sub", NULL);
  g_assert_cmpint (symlink (f->outside, sub), ==, 0);
  exists = g_build_filename (f->images, "exists.raw", NULL);
  write_file (exists, "precious\n");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", f->root);

  md_image_admission_free (f->admission);
  g_assert_cmpint (system (cmd), ==, 0);
  g_free (f->root);
  g_free (f->images);
  g_free (f->outside);
  g_free (f->victim);
}

static void
on_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static GAsyncResult *
wait_result (GAsyncResult **slot)
{
  while (*slot == NULL)
    g_main_context_iteration (NULL, TRUE);
  return *slot;
}

/* Prepare for a guest whose vdb is at @path, copied (@size bytes) or,
 * with @size 0, shared. Returns the created paths or sets @error. */
static GStrv
prepare (Fixture *f, const char *path, guint64 size, GError **error)
{
  g_autofree char *xml = g_strdup_printf (GUEST_XML, path);
  g_autoptr (GError) parse_error = NULL;
  g_autoptr (MdDomain) def = md_domain_parse (xml, &parse_error);
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GVariant) disks_info = NULL;

  g_assert_no_error (parse_error);
  if (size > 0)
    disks_info = g_variant_ref_sink (g_variant_new_parsed (
        "[{'target': <'vdb'>, 'format': <'raw'>, 'virtual-size': <%t>}]", size));
  md_image_admission_prepare_async (f->admission, def, disks_info, FALSE, NULL, NULL, on_done,
                                    &result);
  return md_image_admission_prepare_finish (wait_result (&result), error);
}

static void
assert_victim_intact (Fixture *f)
{
  g_autofree char *text = NULL;
  g_autoptr (GDir) dir = NULL;
  guint n = 0;

  g_assert_true (g_file_get_contents (f->victim, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, "secret\n");
  dir = g_dir_open (f->outside, 0, NULL);
  while (g_dir_read_name (dir) != NULL)
    n++;
  g_assert_cmpuint (n, ==, 1); /* nothing was created out there */
}

static void
test_refused_paths (Fixture *f, gconstpointer data)
{
  g_autofree char *link = g_build_filename (f->images, "link.raw", NULL);
  g_autofree char *through = g_build_filename (f->images, "sub", "new.raw", NULL);
  g_autofree char *dotdot = g_build_filename (f->images, "..", "outside", "victim", NULL);
  g_autofree char *exists = g_build_filename (f->images, "exists.raw", NULL);
  g_autofree char *text = NULL;
  struct
  {
    const char *path;
    guint64 size;
    int code;
    const char *fragment;
  } cases[] = {
    { f->victim, 1048576, MD_ERROR_NOT_AUTHORIZED, "[storage] image-dirs" },
    { dotdot, 1048576, MD_ERROR_NOT_AUTHORIZED, "[storage] image-dirs" },
    { link, 1048576, MD_ERROR_NOT_AUTHORIZED, "'link.raw' is a symbolic link" },
    { through, 1048576, MD_ERROR_NOT_AUTHORIZED, "'sub' is a symbolic link" },
    { exists, 1048576, MD_ERROR_ALREADY_EXISTS, "reuse-existing-images" },
    { "/etc/passwd", 0, MD_ERROR_NOT_AUTHORIZED, "/etc/passwd" },
    { link, 0, MD_ERROR_NOT_AUTHORIZED, "symbolic link" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autoptr (GError) error = NULL;
      g_auto (GStrv) created = prepare (f, cases[i].path, cases[i].size, &error);

      g_assert_null (created);
      g_assert_error (error, MD_ERROR, cases[i].code);
      if (strstr (error->message, cases[i].fragment) == NULL)
        g_error ("case %u: '%s' does not mention '%s'", i, error->message, cases[i].fragment);
      g_assert_nonnull (strstr (error->message, "hostB"));
      assert_victim_intact (f);
    }
  g_assert_true (g_file_get_contents (exists, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, "precious\n");
}

static void
test_create_and_remove (Fixture *f, gconstpointer data)
{
  g_autofree char *path = g_build_filename (f->images, "new.raw", NULL);
  g_autoptr (GError) error = NULL;
  g_auto (GStrv) created = prepare (f, path, 3 * 1048576, &error);
  g_autoptr (GAsyncResult) result = NULL;
  GStatBuf st;

  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length (created), ==, 1);
  g_assert_cmpstr (created[0], ==, path);
  g_assert_cmpint (g_stat (path, &st), ==, 0);
  g_assert_cmpint (st.st_size, ==, 3 * 1048576);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  /* A second migration to the same path finds it taken. */
  {
    g_autoptr (GError) again_error = NULL;
    g_auto (GStrv) again = prepare (f, path, 3 * 1048576, &again_error);
    g_assert_error (again_error, MD_ERROR, MD_ERROR_ALREADY_EXISTS);
  }
  md_image_admission_remove_async (f->admission, (const char *const *) created, on_done, &result);
  md_image_admission_remove_finish (wait_result (&result));
  g_assert_false (g_file_test (path, G_FILE_TEST_EXISTS));
}

static void
test_check_paths (Fixture *f, gconstpointer data)
{
  g_autofree char *exists = g_build_filename (f->images, "exists.raw", NULL);
  g_autofree char *missing = g_build_filename (f->images, "missing.raw", NULL);
  g_autofree char *link = g_build_filename (f->images, "link.raw", NULL);
  const char *paths[] = {
    "/etc/shadow", "/etc/nonexistent", f->victim, exists, missing, link, NULL
  };
  g_autoptr (GAsyncResult) result = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) visible = NULL;
  gboolean value;

  md_image_admission_check_paths_async (f->admission, paths, on_done, &result);
  visible = md_image_admission_check_paths_finish (wait_result (&result), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_variant_n_children (visible), ==, 3);
  g_assert_true (g_variant_lookup (visible, exists, "b", &value) && value);
  g_assert_true (g_variant_lookup (visible, missing, "b", &value) && !value);
  g_assert_true (g_variant_lookup (visible, link, "b", &value) && !value);
  g_assert_false (g_variant_lookup (visible, "/etc/shadow", "b", &value));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add ("/image-admission/refused", Fixture, NULL, fixture_setup, test_refused_paths,
              fixture_teardown);
  g_test_add ("/image-admission/create-remove", Fixture, NULL, fixture_setup,
              test_create_and_remove, fixture_teardown);
  g_test_add ("/image-admission/check-paths", Fixture, NULL, fixture_setup, test_check_paths,
              fixture_teardown);
  return g_test_run ();
}

/* migrationd: guest definitions (parse, format, ABI check) and the QEMU argv
 * built from them, driven by the corpus in tests/domain/:
 *   good/NAME.xml  must parse, round-trip through md_domain_format(), and
 *                  give the argv in good/NAME.argv (one argument per line;
 *                  MD_REGENERATE_GOLDEN=1 rewrites the golden files);
 *   bad/NAME.xml   must fail with the D-Bus error name on line 1 of
 *                  bad/NAME.err and a message containing each further line
 *                  (a file with several problems names them all at once).
 * The argv of each good guest is also run in the real qemu-system-x86_64
 * (TCG) and checked over QMP. */
#include "config.h"

#include "domain/md-domain.h"
#include "common/md-error.h"
#include "qemu/md-qemu-argv.h"

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <json-glib/json-glib.h>
#include <string.h>

static const char *data_dir;

static char *
data_path (const char *first, ...)
{
  va_list ap;
  g_autoptr (GPtrArray) parts = g_ptr_array_new ();
  const char *p;

  g_ptr_array_add (parts, (gpointer) data_dir);
  g_ptr_array_add (parts, (gpointer) "domain");
  va_start (ap, first);
  for (p = first; p; p = va_arg (ap, const char *))
    g_ptr_array_add (parts, (gpointer) p);
  va_end (ap);
  g_ptr_array_add (parts, NULL);
  return g_build_filenamev ((char **) parts->pdata);
}

static char *
read_data (const char *dir, const char *file)
{
  g_autofree char *path = data_path (dir, file, NULL);
  g_autoptr (GError) error = NULL;
  char *contents = NULL;

  g_file_get_contents (path, &contents, NULL, &error);
  g_assert_no_error (error);
  return contents;
}

static GPtrArray *
machines (void)
{
  g_autofree char *help = read_data (".", "machine-help-qemu-7.2.txt");
  g_autoptr (GError) error = NULL;
  GPtrArray *list = md_qemu_parse_machine_help (help, &error);

  g_assert_no_error (error);
  return list;
}

/* Random parts (uuid, MACs not in the XML) replaced by fixed values so the
 * golden argv is stable; the random values are checked first. */
static void
make_deterministic (MdDomain *dom, const char *xml)
{
  g_autofree char *lower = g_ascii_strdown (xml, -1);

  if (!strstr (xml, "<uuid>"))
    {
      g_assert_true (g_uuid_string_is_valid (dom->uuid));
      g_free (dom->uuid);
      dom->uuid = g_strdup ("00000000-0000-4000-8000-000000000000");
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      MdDomainInterface *n = dom->interfaces->pdata[i];

      if (!strstr (lower, n->mac))
        {
          g_assert_true (g_str_has_prefix (n->mac, "52:54:00:"));
          g_free (n->mac);
          n->mac = g_strdup_printf ("52:54:00:00:ff:%02x", i);
        }
    }
}

static GStrv
golden_argv (const MdDomain *dom, GError **error)
{
  g_autoptr (GPtrArray) list = machines ();
  g_autofree char *machine = md_domain_resolve_machine (dom->os.machine, list, error);
  g_autofree char *qmp = NULL;
  g_autoptr (GHashTable) networks = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr (GArray) ports = g_array_new (FALSE, TRUE, sizeof (int));
  MdQemuArgvOptions opts = { 0 };

  if (!machine)
    return NULL;
  qmp = g_strdup_printf ("/run/migrationd/%s.qmp", dom->name);
  opts.qemu_binary = "qemu-system-x86_64";
  opts.accel = "kvm";
  opts.machine = machine;
  opts.qmp_socket = qmp;
  opts.runtime_dir = "/run/migrationd";
  opts.serial_log_dir = "/var/log/migrationd";
  opts.sandbox = TRUE;
  opts.networks = networks;
  g_hash_table_insert (networks, g_strdup ("default"), g_strdup ("virbr0"));
  for (guint i = 0; i < dom->graphics->len; i++)
    {
      int port = ((MdDomainGraphics *) dom->graphics->pdata[i])->type == MD_DOMAIN_GRAPHICS_SPICE
                     ? 5930 + (int) i
                     : 0;

      g_array_append_val (ports, port);
    }
  opts.graphics_ports = (const int *) ports->data;
  opts.n_graphics_ports = ports->len;
  return md_qemu_build_argv (dom, &opts, error);
}

static void
test_good (gconstpointer data)
{
  const char *name = data;
  g_autofree char *file = g_strconcat (name, ".xml", NULL);
  g_autofree char *argv_file = g_strconcat (name, ".argv", NULL);
  g_autofree char *argv_path = data_path ("good", argv_file, NULL);
  g_autofree char *xml = read_data ("good", file);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdDomain) dom = md_domain_parse (xml, &error);
  g_autoptr (MdDomain) again = NULL;
  g_autoptr (MdDomain) copy = NULL;
  g_autofree char *formatted = NULL;
  g_autofree char *formatted2 = NULL;
  g_auto (GStrv) argv = NULL;
  g_autofree char *joined = NULL;
  g_autofree char *expected = NULL;

  g_assert_no_error (error);
  g_assert_nonnull (dom);

  /* Round trip: format parses back to an equal domain, and is a fixpoint. */
  formatted = md_domain_format (dom);
  again = md_domain_parse (formatted, &error);
  g_assert_no_error (error);
  if (!md_domain_equal (dom, again))
    {
      g_autoptr (GError) diff = NULL;

      md_domain_check_abi_compatible (dom, again, &diff);
      g_error ("%s: round trip changed the domain (%s)\n%s", name,
               diff ? diff->message : "host-side field", formatted);
    }
  formatted2 = md_domain_format (again);
  g_assert_cmpstr (formatted, ==, formatted2);
  copy = md_domain_copy (dom);
  g_assert_true (md_domain_equal (dom, copy));
  g_assert_true (md_domain_check_abi_compatible (dom, copy, &error));
  g_assert_no_error (error);
  /* Assigning again changes nothing. */
  g_assert_true (md_domain_assign_addresses (copy, &error));
  g_assert_no_error (error);
  g_assert_true (md_domain_equal (dom, copy));

  /* Every PCI device has an address and every device an alias. */
  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];

      g_assert_nonnull (d->alias);
      g_assert_cmpint (d->address.type, ==,
                       d->bus == MD_DOMAIN_DISK_BUS_VIRTIO ? MD_DOMAIN_ADDRESS_PCI
                                                           : MD_DOMAIN_ADDRESS_DRIVE);
    }
  for (guint i = 0; i < dom->interfaces->len; i++)
    g_assert_cmpint (((MdDomainInterface *) dom->interfaces->pdata[i])->address.type, ==,
                     MD_DOMAIN_ADDRESS_PCI);
  g_assert_nonnull (dom->memballoon);

  make_deterministic (dom, xml);
  argv = golden_argv (dom, &error);
  g_assert_no_error (error);
  {
    g_autofree char *lines = g_strjoinv ("\n", argv);

    joined = g_strconcat (lines, "\n", NULL);
  }
  if (g_strcmp0 (g_getenv ("MD_REGENERATE_GOLDEN"), "1") == 0)
    {
      g_file_set_contents (argv_path, joined, -1, &error);
      g_assert_no_error (error);
      g_test_message ("regenerated %s", argv_path);
      return;
    }
  g_file_get_contents (argv_path, &expected, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (joined, ==, expected);
}

static void
test_bad (gconstpointer data)
{
  const char *name = data;
  g_autofree char *file = g_strconcat (name, ".xml", NULL);
  g_autofree char *err_file = g_strconcat (name, ".err", NULL);
  g_autofree char *xml = read_data ("bad", file);
  g_autofree char *expect = read_data ("bad", err_file);
  g_auto (GStrv) lines = g_strsplit (expect, "\n", -1);
  g_autoptr (GError) error = NULL;
  g_autoptr (MdDomain) dom = md_domain_parse (xml, &error);

  g_assert_null (dom);
  g_assert_nonnull (error);
  g_assert_true (error->domain == MD_ERROR);
  g_test_message ("%s: %s", name, error->message);
  g_assert_cmpstr (md_error_code_to_dbus_name (error->code), ==, lines[0]);
  g_assert_nonnull (lines[1]);
  /* Every further line of the .err file is one problem the message names. */
  for (guint i = 1; lines[i]; i++)
    if (*lines[i] && !strstr (error->message, lines[i]))
      g_error ("%s: message '%s' lacks '%s'", name, error->message, lines[i]);
}

static void
test_oversize (void)
{
  g_autoptr (GString) xml = g_string_new ("<domain type='kvm'><name>big</name>"
                                          "<memory unit='MiB'>128</memory><description>");
  g_autoptr (GError) error = NULL;
  g_autoptr (MdDomain) dom = NULL;

  while (xml->len <= MD_DOMAIN_XML_MAX_SIZE)
    g_string_append (xml, "0123456789abcdef");
  g_string_append (xml, "</description></domain>");
  dom = md_domain_parse (xml->str, &error);
  g_assert_null (dom);
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "1048576-byte"));

  /* Just under the limit is fine. */
  g_clear_error (&error);
  g_string_truncate (xml, MD_DOMAIN_XML_MAX_SIZE - 64);
  g_string_append (xml, "</description></domain>");
  dom = md_domain_parse (xml->str, &error);
  g_assert_no_error (error);
  g_assert_nonnull (dom);
  g_assert_cmpuint (strlen (dom->description), >, 1000000);
}

static MdDomain *
parse_good (const char *name)
{
  g_autofree char *file = g_strconcat (name, ".xml", NULL);
  g_autofree char *xml = read_data ("good", file);
  g_autoptr (GError) error = NULL;
  MdDomain *dom = md_domain_parse (xml, &error);

  g_assert_no_error (error);
  return dom;
}

static void
assert_abi_error (const MdDomain *src, const MdDomain *dst, const char *message)
{
  g_autoptr (GError) error = NULL;

  g_assert_false (md_domain_check_abi_compatible (src, dst, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  if (!strstr (error->message, message))
    g_error ("ABI message '%s' lacks '%s'", error->message, message);
}

static void
test_abi (void)
{
  g_autoptr (MdDomain) src = parse_good ("dumpxml");
  g_autoptr (MdDomain) dst = md_domain_copy (src);
  g_autoptr (GError) error = NULL;
  MdDomainDisk *vda = dst->disks->pdata[0];
  MdDomainGraphics *vnc = dst->graphics->pdata[0];
  MdDomainChardev *serial = dst->serials->pdata[0];

  /* Host-side changes are fine. */
  g_free (vda->source);
  vda->source = g_strdup ("/srv/images/web01.qcow2");
  vda->cache = MD_DOMAIN_DISK_CACHE_WRITEBACK;
  g_free (vnc->listen);
  vnc->listen = g_strdup ("0.0.0.0");
  vnc->autoport = FALSE;
  vnc->port = 5999;
  serial->type = MD_DOMAIN_CHARDEV_FILE;
  serial->path = g_strdup ("/var/log/web01.log");
  g_free (dst->emulator);
  dst->emulator = g_strdup ("/opt/qemu/bin/qemu-system-x86_64");
  g_assert_true (md_domain_check_abi_compatible (src, dst, &error));
  g_assert_no_error (error);
  g_assert_false (md_domain_equal (src, dst));

  /* Guest-visible changes are not, and the first one is named. */
  vda->bus = MD_DOMAIN_DISK_BUS_SATA;
  assert_abi_error (src, dst, "disk vda: bus virtio != sata");
  vda->bus = MD_DOMAIN_DISK_BUS_VIRTIO;
  vda->address.slot = 9;
  assert_abi_error (src, dst, "disk vda: address pci 0000:00:04.0 != pci 0000:00:09.0");
  vda->address.slot = 4;

  g_free (((MdDomainInterface *) dst->interfaces->pdata[0])->mac);
  ((MdDomainInterface *) dst->interfaces->pdata[0])->mac = g_strdup ("52:54:00:00:00:99");
  assert_abi_error (src, dst, "interface net0: mac 52:54:00:6b:3c:58 != 52:54:00:00:00:99");

  g_clear_pointer (&dst, md_domain_free);
  dst = md_domain_copy (src);
  dst->memory *= 2;
  assert_abi_error (src, dst, "domain: memory 2147483648 != 4294967296");

  g_clear_pointer (&dst, md_domain_free);
  dst = md_domain_copy (src);
  g_free (dst->os.machine);
  dst->os.machine = g_strdup ("pc-i440fx-6.2");
  assert_abi_error (src, dst, "domain: machine pc-i440fx-7.2 != pc-i440fx-6.2");

  g_clear_pointer (&dst, md_domain_free);
  dst = md_domain_copy (src);
  g_ptr_array_remove_index (dst->disks, 1);
  assert_abi_error (src, dst, "number of disks: 3 != 2");

  g_clear_pointer (&dst, md_domain_free);
  dst = md_domain_copy (src);
  g_free (((MdDomainDisk *) dst->disks->pdata[2])->alias);
  ((MdDomainDisk *) dst->disks->pdata[2])->alias = g_strdup ("ua-cd");
  assert_abi_error (src, dst, "disk hdc: alias ide0-1-0 != ua-cd");
}

static void
test_defaults (void)
{
  g_autoptr (MdDomain) a = parse_good ("minimal");
  g_autoptr (MdDomain) b = parse_good ("minimal");
  g_autoptr (MdDomain) dump = parse_good ("dumpxml");
  MdDomainController *c;

  /* A missing uuid is generated, and differs between definitions. */
  g_assert_true (g_uuid_string_is_valid (a->uuid));
  g_assert_cmpstr (a->uuid, !=, b->uuid);
  g_assert_cmpuint (a->memory, ==, 128 * 1024 * 1024);
  g_assert_cmpuint (a->current_memory, ==, a->memory);
  g_assert_cmpuint (a->vcpus, ==, 1);
  /* libvirt's implicit devices: pci root, ide on pc, a virtio balloon in
   * slot 3 (slot 1 is the PIIX3, slot 2 is kept for video). */
  g_assert_cmpuint (a->controllers->len, ==, 2);
  c = a->controllers->pdata[0];
  g_assert_cmpstr (c->model, ==, "pci-root");
  g_assert_cmpstr (c->alias, ==, "pci.0");
  c = a->controllers->pdata[1];
  g_assert_cmpint (c->type, ==, MD_DOMAIN_CONTROLLER_IDE);
  g_assert_cmpuint (c->address.slot, ==, 1);
  g_assert_cmpuint (c->address.function, ==, 1);
  g_assert_cmpstr (a->memballoon->alias, ==, "balloon0");
  g_assert_cmpuint (a->memballoon->address.slot, ==, 3);

  /* Given addresses, uuid case, MAC case, units. */
  g_assert_cmpstr (dump->uuid, ==, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
  g_assert_cmpstr (((MdDomainInterface *) dump->interfaces->pdata[0])->mac, ==,
                   "52:54:00:6b:3c:58");
  g_assert_cmpuint (dump->current_memory, ==, 1024 * 1024 * 1024);
  g_assert_cmpuint (dump->vcpus, ==, 4);
  g_assert_cmpuint (dump->vcpus_current, ==, 2);
  g_assert_cmpuint (((MdDomainRng *) dump->rngs->pdata[0])->address.slot, ==, 8);
  g_assert_nonnull (strstr (dump->metadata, "<app:owner>ops</app:owner>"));
  /* The console mirrors serial0 and adds no serial of its own. */
  g_assert_cmpuint (dump->serials->len, ==, 1);
  g_assert_cmpuint (dump->consoles->len, ==, 1);
}

static void
test_validate (void)
{
  g_autoptr (MdDomain) dom = parse_good ("dumpxml");
  g_autoptr (MdDomain) edit = NULL;
  g_autoptr (GError) error = NULL;
  MdDomainDisk *disk;

  g_assert_true (md_domain_validate (dom, &error));
  g_assert_no_error (error);

  edit = md_domain_copy (dom);
  disk = edit->disks->pdata[1];
  g_free (disk->alias);
  disk->alias = g_strdup ("net0");
  g_assert_false (md_domain_validate (edit, &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_XML);
  g_assert_nonnull (strstr (error->message, "duplicate device alias 'net0'"));
  g_clear_error (&error);

  g_clear_pointer (&edit, md_domain_free);
  edit = md_domain_copy (dom);
  disk = edit->disks->pdata[1];
  disk->address.slot = 3; /* where net0 is */
  g_assert_false (md_domain_validate (edit, &error));
  g_assert_nonnull (strstr (error->message, "PCI address 00:03.0 is used twice"));
  g_clear_error (&error);

  g_clear_pointer (&edit, md_domain_free);
  edit = md_domain_copy (dom);
  disk = edit->disks->pdata[1];
  g_free (disk->target);
  disk->target = g_strdup ("vda");
  g_assert_false (md_domain_validate (edit, &error));
  g_assert_nonnull (strstr (error->message, "duplicate disk target 'vda'"));
  g_clear_error (&error);

  g_clear_pointer (&edit, md_domain_free);
  edit = md_domain_copy (dom);
  g_assert_false (md_domain_validate_name ("", &error));
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_true (md_domain_validate_name ("a.b+c_d-1", &error));
  g_free (((MdDomainInterface *) edit->interfaces->pdata[0])->mac);
  ((MdDomainInterface *) edit->interfaces->pdata[0])->mac = g_strdup ("52:54:00:6b:3c");
  g_assert_false (md_domain_validate (edit, &error));
  g_assert_nonnull (strstr (error->message, "invalid MAC address '52:54:00:6b:3c'"));
}

static void
test_memory_units (void)
{
  static const struct
  {
    const char *unit;
    guint64 bytes;
  } cases[] = {
    { "b", 1 },
    { "bytes", 1 },
    { "KB", 1000 },
    { "k", 1024 },
    { "KiB", 1024 },
    { "MB", 1000000 },
    { "M", 1048576 },
    { "MiB", 1048576 },
    { "GB", 1000000000 },
    { "G", 1073741824 },
    { "GiB", 1073741824 },
    { "TB", 1000000000000 },
    { "T", 1099511627776 },
    { "TiB", 1099511627776 },
    { NULL, 1024 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_autofree char *unit =
          cases[i].unit ? g_strdup_printf (" unit='%s'", cases[i].unit) : g_strdup ("");
      g_autofree char *xml = g_strdup_printf ("<domain type='kvm'><name>u</name>"
                                              "<memory%s>3000</memory></domain>",
                                              unit);
      g_autoptr (GError) error = NULL;
      g_autoptr (MdDomain) dom = md_domain_parse (xml, &error);

      g_assert_no_error (error);
      g_assert_cmpuint (dom->memory, ==, 3000 * cases[i].bytes);
    }
}

static void
test_machine_help (void)
{
  g_autoptr (GPtrArray) list = machines ();
  g_autoptr (GError) error = NULL;
  g_autofree char *pc = md_domain_resolve_machine ("pc", list, &error);
  g_autofree char *q35 = md_domain_resolve_machine ("q35", list, &error);
  g_autofree char *def = md_domain_resolve_machine (NULL, list, &error);
  g_autofree char *old = md_domain_resolve_machine ("pc-i440fx-6.2", list, &error);
  g_autofree char *bad = NULL;
  g_autoptr (GPtrArray) none = NULL;
  gboolean found_q35 = FALSE;

  g_assert_no_error (error);
  g_assert_cmpstr (pc, ==, "pc-i440fx-7.2");
  g_assert_cmpstr (q35, ==, "pc-q35-7.2");
  g_assert_cmpstr (def, ==, "pc-i440fx-7.2");
  g_assert_cmpstr (old, ==, "pc-i440fx-6.2");
  for (guint i = 0; i < list->len; i++)
    {
      MdDomainMachineType *t = list->pdata[i];

      g_assert_cmpstr (t->name, !=, "pc"); /* aliases are folded in */
      if (g_strcmp0 (t->name, "pc-q35-7.2") == 0)
        {
          found_q35 = TRUE;
          g_assert_cmpstr (t->alias, ==, "q35");
          g_assert_false (t->is_default);
          g_assert_cmpstr (t->description, ==, "Standard PC (Q35 + ICH9, 2009)");
        }
    }
  g_assert_true (found_q35);

  bad = md_domain_resolve_machine ("pc-i440fx-99.0", list, &error);
  g_assert_null (bad);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED);
  g_assert_nonnull (strstr (error->message, "pc-i440fx-99.0"));
  g_assert_nonnull (strstr (error->message, "q35"));
  g_clear_error (&error);

  none = md_qemu_parse_machine_help ("qemu-system-x86_64: -machine: unknown option\n", &error);
  g_assert_null (none);
  g_assert_error (error, MD_ERROR, MD_ERROR_QEMU_FAILED);
}

static void
test_argv_errors (void)
{
  g_autoptr (MdDomain) dom = parse_good ("minimal");
  g_autoptr (MdDomain) net = parse_good ("minimal");
  g_autoptr (GError) error = NULL;
  MdQemuArgvOptions opts = { .accel = "tcg", .qmp_socket = "/run/x.qmp" };
  MdDomainInterface *n = g_new0 (MdDomainInterface, 1);
  GStrv argv;

  dom->cpu.mode = MD_DOMAIN_CPU_MODE_HOST_PASSTHROUGH;
  argv = md_qemu_build_argv (dom, &opts, &error);
  g_assert_null (argv);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED);
  g_assert_nonnull (strstr (error->message, "'host-passthrough' needs KVM"));
  g_clear_error (&error);

  opts.qmp_socket = "relative.qmp";
  argv = md_qemu_build_argv (net, &opts, &error);
  g_assert_null (argv);
  g_assert_error (error, MD_ERROR, MD_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  opts.qmp_socket = "/run/x.qmp";
  n->type = MD_DOMAIN_INTERFACE_NETWORK;
  n->source = g_strdup ("default");
  g_ptr_array_add (net->interfaces, n);
  g_assert_true (md_domain_assign_addresses (net, &error));
  argv = md_qemu_build_argv (net, &opts, &error);
  g_assert_null (argv);
  g_assert_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED);
  g_assert_nonnull (strstr (error->message, "[networks]"));
}

/* ---- real QEMU ---- */

typedef struct
{
  GSocketConnection *conn;
  GDataInputStream *in;
} Qmp;

static JsonObject *
qmp_read (Qmp *q, GError **error)
{
  for (;;)
    {
      g_autofree char *line = g_data_input_stream_read_line_utf8 (q->in, NULL, NULL, error);
      g_autoptr (JsonParser) parser = json_parser_new ();
      JsonNode *root;

      if (!line)
        {
          if (error && !*error)
            g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CLOSED, "QMP closed");
          return NULL;
        }
      if (!json_parser_load_from_data (parser, line, -1, error))
        return NULL;
      root = json_parser_get_root (parser);
      g_assert_true (JSON_NODE_HOLDS_OBJECT (root));
      if (!json_object_has_member (json_node_get_object (root), "event"))
        return json_object_ref (json_node_get_object (root));
    }
}

static JsonObject *
qmp_execute (Qmp *q, const char *command)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *msg = g_strdup_printf ("{\"execute\":\"%s\"}\n", command);
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (q->conn));
  JsonObject *reply;

  g_output_stream_write_all (out, msg, strlen (msg), NULL, NULL, &error);
  g_assert_no_error (error);
  reply = qmp_read (q, &error);
  g_assert_no_error (error);
  if (json_object_has_member (reply, "error"))
    g_error (
        "QMP %s failed: %s", command,
        json_object_get_string_member (json_object_get_object_member (reply, "error"), "desc"));
  return reply;
}

static void
make_image (const char *path, MdDomainDiskFormat format)
{
  g_autoptr (GError) error = NULL;

  if (format == MD_DOMAIN_DISK_FORMAT_QCOW2)
    {
      /* A qcow2 overlay on a raw backing file, as virt-install's
       * --disk backing_store= makes: QEMU must open the chain. */
      g_autofree char *base = g_strconcat (path, ".base", NULL);
      const char *argv[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-F",
                             "raw",      "-b",     base, path, "16M",   NULL };
      int status = 0;

      make_image (base, MD_DOMAIN_DISK_FORMAT_RAW);

      g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                    &status, &error);
      g_assert_no_error (error);
      g_assert_true (g_spawn_check_wait_status (status, NULL));
    }
  else
    {
      g_autoptr (GFile) file = g_file_new_for_path (path);
      g_autoptr (GFileOutputStream) out =
          g_file_replace (file, NULL, FALSE, G_FILE_CREATE_NONE, NULL, &error);

      g_assert_no_error (error);
      g_seekable_truncate (G_SEEKABLE (out), 16 * 1024 * 1024, NULL, &error);
      g_assert_no_error (error);
    }
}

static int
free_tcp_port (void)
{
  g_autoptr (GSocket) sock =
      g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL);
  g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr (GSocketAddress) addr = g_inet_socket_address_new (lo, 0);
  g_autoptr (GSocketAddress) bound = NULL;

  g_assert_true (g_socket_bind (sock, addr, TRUE, NULL));
  bound = g_socket_get_local_address (sock, NULL);
  return g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
}

static char *
real_machine (const MdDomain *dom)
{
  const char *argv[] = { "qemu-system-x86_64", "-machine", "help", NULL };
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) list = NULL;
  int status = 0;
  char *machine;

  g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, NULL, &status,
                &error);
  g_assert_no_error (error);
  list = md_qemu_parse_machine_help (out, &error);
  g_assert_no_error (error);
  machine = md_domain_resolve_machine (dom->os.machine, list, &error);
  g_assert_no_error (error);
  return machine;
}

/* The PCI address QEMU reports for qdev id @alias on bus 0, or FALSE. */
static gboolean
qemu_pci_slot (JsonObject *query_pci, const char *alias, guint *slot, guint *function)
{
  JsonArray *buses = json_object_get_array_member (query_pci, "return");

  for (guint i = 0; i < json_array_get_length (buses); i++)
    {
      JsonObject *bus = json_array_get_object_element (buses, i);
      JsonArray *devs = json_object_get_array_member (bus, "devices");

      if (json_object_get_int_member (bus, "bus") != 0)
        continue;
      for (guint j = 0; j < json_array_get_length (devs); j++)
        {
          JsonObject *d = json_array_get_object_element (devs, j);

          if (g_strcmp0 (json_object_get_string_member_with_default (d, "qdev_id", ""), alias) == 0)
            {
              *slot = json_object_get_int_member (d, "slot");
              *function = json_object_get_int_member (d, "function");
              return TRUE;
            }
        }
    }
  return FALSE;
}

/* Every device we placed on PCI bus 0 is where the definition says. */
static void
check_pci_addresses (const MdDomain *dom, JsonObject *query_pci)
{
  g_autoptr (GPtrArray) devs = g_ptr_array_new ();
  guint checked = 0;

#define COLLECT(arr, T)                                                                            \
  for (guint i = 0; i < (arr)->len; i++)                                                           \
    {                                                                                              \
      T *d_ = (arr)->pdata[i];                                                                     \
      g_ptr_array_add (devs, d_->alias);                                                           \
      g_ptr_array_add (devs, &d_->address);                                                        \
    }
  COLLECT (dom->disks, MdDomainDisk);
  COLLECT (dom->interfaces, MdDomainInterface);
  COLLECT (dom->videos, MdDomainVideo);
  COLLECT (dom->inputs, MdDomainInput);
  COLLECT (dom->rngs, MdDomainRng);
  COLLECT (dom->sounds, MdDomainSound);
  COLLECT (dom->watchdogs, MdDomainWatchdog);
  COLLECT (dom->panics, MdDomainPanic);
#undef COLLECT
  for (guint i = 0; i < dom->controllers->len; i++)
    {
      MdDomainController *c = dom->controllers->pdata[i];

      /* Built-in functions (PIIX3 IDE, ich9 AHCI) have no qdev id. */
      if (c->type == MD_DOMAIN_CONTROLLER_IDE || c->type == MD_DOMAIN_CONTROLLER_PCI
          || g_str_has_prefix (c->model ? c->model : "", "ich9-uhci")
          || (c->type == MD_DOMAIN_CONTROLLER_SATA && md_domain_machine_is_q35 (dom->os.machine)
              && c->index == 0))
        continue;
      g_ptr_array_add (devs, c->alias);
      g_ptr_array_add (devs, &c->address);
    }
  g_ptr_array_add (devs, dom->memballoon->alias);
  g_ptr_array_add (devs, &dom->memballoon->address);

  for (guint i = 0; i < devs->len; i += 2)
    {
      const char *alias = devs->pdata[i];
      const MdDomainAddress *a = devs->pdata[i + 1];
      guint slot = 0, function = 0;

      if (a->type != MD_DOMAIN_ADDRESS_PCI || a->bus != 0)
        continue;
      if (!qemu_pci_slot (query_pci, alias, &slot, &function))
        g_error ("device %s is not on PCI bus 0 in QEMU", alias);
      g_assert_cmpuint (slot, ==, a->slot);
      g_assert_cmpuint (function, ==, a->function);
      checked++;
    }
  g_test_message ("%u PCI addresses match", checked);
}

/* Every guest agent channel is a socket the daemon side can connect to, and
 * QEMU has the virtio-serial port for it. */
static void
check_channels (const MdDomain *dom, const MdQemuArgvOptions *opts)
{
  for (guint i = 0; i < dom->channels->len; i++)
    {
      const MdDomainChannel *ch = dom->channels->pdata[i];
      g_autofree char *path = NULL;
      g_autoptr (GSocketClient) client = g_socket_client_new ();
      g_autoptr (GSocketAddress) addr = NULL;
      g_autoptr (GSocketConnection) conn = NULL;
      g_autoptr (GError) error = NULL;

      if (ch->type != MD_DOMAIN_CHANNEL_UNIX)
        continue;
      path = md_qemu_channel_socket_path (dom, opts, ch);
      addr = g_unix_socket_address_new (path);
      conn = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr), NULL, &error);
      g_assert_no_error (error);
      g_test_message ("channel %s (%s) listens at %s", ch->alias, ch->target_name, path);
    }
}

static void
run_in_qemu (const char *name, gboolean incoming)
{
  g_autoptr (MdDomain) dom = parse_good (name);
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp = g_dir_make_tmp ("md-domain-XXXXXX", &error);
  g_autofree char *qmp_path = NULL;
  g_autofree char *machine = real_machine (dom);
  g_autoptr (GPtrArray) serial_paths = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GArray) ports = g_array_new (FALSE, TRUE, sizeof (int));
  g_autoptr (GSubprocess) proc = NULL;
  g_autoptr (GSocketClient) client = g_socket_client_new ();
  g_autoptr (GSocketAddress) addr = NULL;
  g_auto (GStrv) argv = NULL;
  g_autoptr (JsonObject) reply = NULL;
  g_autoptr (GBytes) err_bytes = NULL;
  MdQemuArgvOptions opts = { 0 };
  Qmp q = { 0 };
  JsonArray *blocks;
  guint with_media = 0;

  g_assert_no_error (error);
  /* Bridge networking needs a host bridge and qemu-bridge-helper set up,
   * which a test cannot assume; its argv is checked against the golden
   * file, and here the rest of the guest runs with user networking. */
  for (guint i = 0; i < dom->interfaces->len; i++)
    {
      MdDomainInterface *iface = dom->interfaces->pdata[i];
      if (iface->type != MD_DOMAIN_INTERFACE_USER)
        {
          iface->type = MD_DOMAIN_INTERFACE_USER;
          g_clear_pointer (&iface->source, g_free);
        }
    }
  if (dom->os.kernel)
    {
      /* A multiboot image (header with load addresses, then "cli; hlt")
       * is the smallest kernel QEMU's -kernel loads; the initrd becomes a
       * multiboot module. */
      const guint32 magic = 0x1BADB002, flags = 1u << 16;
      const guint32 header[8] = { GUINT32_TO_LE (magic),
                                  GUINT32_TO_LE (flags),
                                  GUINT32_TO_LE ((guint32) - (magic + flags)),
                                  GUINT32_TO_LE (0x100000),
                                  GUINT32_TO_LE (0x100000),
                                  0,
                                  0,
                                  GUINT32_TO_LE (0x100020) };
      guint8 image[64] = { 0 };

      memcpy (image, header, sizeof header);
      image[32] = 0xfa; /* cli */
      image[33] = 0xf4; /* hlt */
      g_free (dom->os.kernel);
      dom->os.kernel = g_build_filename (tmp, "kernel", NULL);
      g_file_set_contents (dom->os.kernel, (const char *) image, sizeof image, &error);
      g_assert_no_error (error);
      if (dom->os.initrd)
        {
          g_free (dom->os.initrd);
          dom->os.initrd = g_build_filename (tmp, "initrd", NULL);
          g_file_set_contents (dom->os.initrd, "initrd", -1, &error);
          g_assert_no_error (error);
        }
    }
  /* Host-side paths point into the temporary directory. */
  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];

      if (!d->source)
        continue;
      g_free (d->source);
      d->source = g_strdup_printf ("%s/%s.img", tmp, d->alias);
      d->type = MD_DOMAIN_DISK_TYPE_FILE; /* host_device needs a real block device */
      make_image (d->source, d->format);
      with_media++;
    }
  for (guint i = 0; i < dom->serials->len; i++)
    g_ptr_array_add (serial_paths, g_strdup_printf ("%s/serial%u.log", tmp, i));
  g_ptr_array_add (serial_paths, NULL);
  for (guint i = 0; i < dom->graphics->len; i++)
    {
      int port = free_tcp_port ();

      if (((MdDomainGraphics *) dom->graphics->pdata[i])->type == MD_DOMAIN_GRAPHICS_VNC)
        port = port % 1000 + 5900 + 1000; /* VNC wants >= 5900 */
      g_array_append_val (ports, port);
    }

  qmp_path = g_build_filename (tmp, "qmp.sock", NULL);
  opts.qemu_binary = "qemu-system-x86_64";
  opts.accel = "tcg";
  opts.machine = machine;
  opts.qmp_socket = qmp_path;
  opts.runtime_dir = tmp;
  opts.serial_log_dir = tmp;
  opts.serial_paths = (const char *const *) serial_paths->pdata;
  opts.graphics_ports = (const int *) ports->data;
  opts.n_graphics_ports = ports->len;
  opts.incoming_defer = incoming;
  opts.sandbox = TRUE;
  opts.runtime_files_dir = tmp;
  argv = md_qemu_build_argv (dom, &opts, &error);
  g_assert_no_error (error);
  /* Graphics passwords go through secret files, never argv. */
  for (guint i = 0; argv[i]; i++)
    for (guint j = 0; j < dom->graphics->len; j++)
      {
        const char *pw = ((MdDomainGraphics *) dom->graphics->pdata[j])->passwd;

        g_assert_true (pw == NULL || strstr (argv[i], pw) == NULL);
      }
  g_assert_true (md_qemu_write_secrets (dom, &opts, &error));
  g_assert_no_error (error);

  proc = g_subprocess_newv ((const char *const *) argv,
                            G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE,
                            &error);
  g_assert_no_error (error);

  /* Wait for the QMP socket (QEMU creates it before the machine starts). */
  addr = g_unix_socket_address_new (qmp_path);
  for (int i = 0; i < 400 && !q.conn; i++)
    {
      g_clear_error (&error);
      if (g_file_test (qmp_path, G_FILE_TEST_EXISTS))
        q.conn = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (addr), NULL, &error);
      if (!q.conn)
        {
          if (g_subprocess_get_identifier (proc) == NULL)
            break;
          g_usleep (25 * 1000);
        }
    }
  if (!q.conn)
    {
      g_autofree char *joined = g_strjoinv (" ", argv);

      g_subprocess_communicate (proc, NULL, NULL, NULL, &err_bytes, NULL);
      g_error ("QEMU did not open its QMP socket: %.*s\nargv: %s",
               err_bytes ? (int) g_bytes_get_size (err_bytes) : 0,
               err_bytes ? (const char *) g_bytes_get_data (err_bytes, NULL) : "", joined);
    }
  g_clear_error (&error);
  q.in = g_data_input_stream_new (g_io_stream_get_input_stream (G_IO_STREAM (q.conn)));
  g_data_input_stream_set_newline_type (q.in, G_DATA_STREAM_NEWLINE_TYPE_ANY);
  reply = qmp_read (&q, &error); /* greeting */
  g_assert_no_error (error);
  g_assert_true (json_object_has_member (reply, "QMP"));
  g_clear_pointer (&reply, json_object_unref);
  reply = qmp_execute (&q, "qmp_capabilities");
  g_clear_pointer (&reply, json_object_unref);

  reply = qmp_execute (&q, "query-status");
  g_assert_cmpstr (
      json_object_get_string_member (json_object_get_object_member (reply, "return"), "status"), ==,
      incoming ? "inmigrate" : "prelaunch");
  g_clear_pointer (&reply, json_object_unref);

  reply = qmp_execute (&q, "query-pci");
  check_pci_addresses (dom, reply);
  g_clear_pointer (&reply, json_object_unref);
  check_channels (dom, &opts);

  /* Every disk with media is there under the node name we chose. */
  reply = qmp_execute (&q, "query-block");
  blocks = json_object_get_array_member (reply, "return");
  for (guint i = 0; i < dom->disks->len; i++)
    {
      MdDomainDisk *d = dom->disks->pdata[i];
      g_autofree char *node = md_qemu_disk_node_name (d, TRUE);
      gboolean found = FALSE;

      for (guint j = 0; j < json_array_get_length (blocks); j++)
        {
          JsonObject *b = json_array_get_object_element (blocks, j);
          const char *qdev = json_object_get_string_member_with_default (b, "qdev", "");

          if (!strstr (qdev, d->alias))
            continue;
          found = TRUE;
          if (d->source)
            g_assert_cmpstr (json_object_get_string_member (
                                 json_object_get_object_member (b, "inserted"), "node-name"),
                             ==, node);
          else
            g_assert_false (json_object_has_member (b, "inserted"));
        }
      if (!found)
        g_error ("disk %s (%s) missing from query-block", d->target, d->alias);
    }
  g_clear_pointer (&reply, json_object_unref);

  reply = qmp_execute (&q, "quit");
  g_clear_pointer (&reply, json_object_unref);
  g_subprocess_communicate (proc, NULL, NULL, NULL, &err_bytes, &error);
  g_assert_no_error (error);
  g_subprocess_wait (proc, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (proc));
  g_assert_cmpint (g_subprocess_get_exit_status (proc), ==, 0);
  g_test_message ("%s: QEMU stderr: %.*s", name, (int) g_bytes_get_size (err_bytes),
                  (const char *) g_bytes_get_data (err_bytes, NULL));

  g_clear_object (&q.in);
  g_clear_object (&q.conn);
  {
    g_autoptr (GFile) dir = g_file_new_for_path (tmp);
    g_autoptr (GFileEnumerator) en =
        g_file_enumerate_children (dir, G_FILE_ATTRIBUTE_STANDARD_NAME, 0, NULL, NULL);
    GFileInfo *info;

    while (en && (info = g_file_enumerator_next_file (en, NULL, NULL)))
      {
        g_autoptr (GFile) child = g_file_get_child (dir, g_file_info_get_name (info));

        g_file_delete (child, NULL, NULL);
        g_object_unref (info);
      }
    g_file_delete (dir, NULL, NULL);
  }
}

static void
test_qemu (gconstpointer data)
{
  run_in_qemu (data, FALSE);
}

static void
test_qemu_incoming (void)
{
  run_in_qemu ("minimal", TRUE);
}

static GPtrArray *
list_corpus (const char *sub)
{
  g_autofree char *dir_path = data_path (sub, NULL);
  g_autoptr (GDir) dir = g_dir_open (dir_path, 0, NULL);
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *entry;

  g_assert_nonnull (dir);
  while ((entry = g_dir_read_name (dir)))
    if (g_str_has_suffix (entry, ".xml"))
      g_ptr_array_add (names, g_strndup (entry, strlen (entry) - 4));
  return names;
}

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(char **) a, *(char **) b);
}

int
main (int argc, char **argv)
{
  g_autoptr (GPtrArray) good = NULL;
  g_autoptr (GPtrArray) bad = NULL;

  g_test_init (&argc, &argv, NULL);
  data_dir = g_getenv ("MD_TEST_DATA");
  if (!data_dir)
    data_dir = g_test_get_dir (G_TEST_DIST);

  good = list_corpus ("good");
  bad = list_corpus ("bad");
  g_ptr_array_sort (good, compare_names);
  g_ptr_array_sort (bad, compare_names);
  for (guint i = 0; i < good->len; i++)
    {
      g_autofree char *path = g_strdup_printf ("/domain/good/%s", (char *) good->pdata[i]);
      g_autofree char *qpath = g_strdup_printf ("/domain/qemu/%s", (char *) good->pdata[i]);

      g_test_add_data_func (path, good->pdata[i], test_good);
      g_test_add_data_func (qpath, good->pdata[i], test_qemu);
    }
  for (guint i = 0; i < bad->len; i++)
    {
      g_autofree char *path = g_strdup_printf ("/domain/bad/%s", (char *) bad->pdata[i]);

      g_test_add_data_func (path, bad->pdata[i], test_bad);
    }
  g_test_add_func ("/domain/oversize", test_oversize);
  g_test_add_func ("/domain/abi", test_abi);
  g_test_add_func ("/domain/defaults", test_defaults);
  g_test_add_func ("/domain/validate", test_validate);
  g_test_add_func ("/domain/memory-units", test_memory_units);
  g_test_add_func ("/domain/machine-help", test_machine_help);
  g_test_add_func ("/domain/argv-errors", test_argv_errors);
  g_test_add_func ("/domain/qemu-incoming", test_qemu_incoming);
  return g_test_run ();
}

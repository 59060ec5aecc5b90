/* migrationd: registering guests' QEMUs with systemd-machined. */
#include "config.h"

#include "md-machined.h"

#include <string.h>

#define MACHINED_NAME "org.freedesktop.machine1"
#define MACHINED_PATH "/org/freedesktop/machine1"
#define MACHINED_IFACE "org.freedesktop.machine1.Manager"
#define MACHINE_NAME_MAX 64

char *
md_machined_machine_name (const char *guest_name)
{
  GString *name = g_string_new ("md-");

  /* machined takes host-name-like names: letters, digits, '-', no '-' at
   * the end (guest names may also have '_', '.' and '+'). */
  for (const char *p = guest_name; *p != '\0' && name->len < MACHINE_NAME_MAX; p++)
    g_string_append_c (name, g_ascii_isalnum (*p) ? *p : '-');
  while (name->str[name->len - 1] == '-')
    g_string_truncate (name, name->len - 1);
  return g_string_free (name, FALSE);
}

/* 16 bytes from "8-4-4-4-12" hex; an empty array when @uuid is not one
 * (machined then makes up none and leaves the ID unset). */
static GVariant *
uuid_bytes (const char *uuid)
{
  guint8 bytes[16];
  gsize n = 0;

  if (uuid == NULL || !g_uuid_string_is_valid (uuid))
    return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, NULL, 0, 1);
  for (const char *p = uuid; *p != '\0' && n < 16; p++)
    {
      if (*p == '-')
        continue;
      bytes[n++] = (guint8) (g_ascii_xdigit_value (p[0]) << 4 | g_ascii_xdigit_value (p[1]));
      p++;
    }
  return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, bytes, n, 1);
}

static void
on_created (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autofree char *name = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) reply =
      g_dbus_connection_call_finish (G_DBUS_CONNECTION (source), result, &error);

  if (reply != NULL)
    {
      g_debug ("guest QEMU registered with systemd-machined as %s", name);
      return;
    }
  /* No machined (not installed, a container, the tests' private bus): the
   * QEMU keeps running in the daemon's cgroup, as without systemd. */
  if (g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_SERVICE_UNKNOWN)
      || g_error_matches (error, G_DBUS_ERROR, G_DBUS_ERROR_NAME_HAS_NO_OWNER))
    g_debug ("systemd-machined is not available; %s is not registered", name);
  else
    g_message ("cannot register %s with systemd-machined: %s (the guest runs unaffected)", name,
               error->message);
}

void
md_machined_register (GDBusConnection *bus, const char *guest_name, const char *uuid, GPid leader,
                      guint64 memory_max, guint64 tasks_max)
{
  g_autofree char *name = md_machined_machine_name (guest_name);
  g_autofree char *description = g_strdup_printf ("migrationd guest %s", guest_name);
  GVariantBuilder scope;

  if (bus == NULL || leader <= 0)
    return;
  g_variant_builder_init (&scope, G_VARIANT_TYPE ("a(sv)"));
  g_variant_builder_add (&scope, "(sv)", "Description", g_variant_new_string (description));
  /* The QEMU must outlive a daemon restart; the scope is not the
   * daemon's to stop. */
  g_variant_builder_add (&scope, "(sv)", "CollectMode",
                         g_variant_new_string ("inactive-or-failed"));
  /* The guest's limits ([qemu] memory-overhead, tasks-max), enforced by
   * systemd on the scope QEMU moves into. */
  if (memory_max > 0)
    g_variant_builder_add (&scope, "(sv)", "MemoryMax", g_variant_new_uint64 (memory_max));
  if (tasks_max > 0)
    g_variant_builder_add (&scope, "(sv)", "TasksMax", g_variant_new_uint64 (tasks_max));
  g_dbus_connection_call (bus, MACHINED_NAME, MACHINED_PATH, MACHINED_IFACE, "CreateMachine",
                          g_variant_new ("(s@ayssusa(sv))", name, uuid_bytes (uuid), "migrationd",
                                         "vm", (guint32) leader, "", &scope),
                          G_VARIANT_TYPE ("(o)"), G_DBUS_CALL_FLAGS_NO_AUTO_START, 30000, NULL,
                          on_created, g_strdup (name));
}

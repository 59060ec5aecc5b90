/* migrationd: org.migrationd.Guest1 — one guest: the object, its
 * definitions, its state and the properties that publish them, and the
 * bookkeeping the engine does on it (migration, save). Starting QEMU,
 * following it, its runtime record and the D-Bus methods are jobs of their
 * own (md-guest-start.c, md-guest-process.c, md-guest-runtime.c,
 * md-guest-methods.c). State follows QMP events and process exit, never a
 * guess. */
#include "config.h"

#include "md-guest-private.h"

enum
{
  SIGNAL_STOPPED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE_WITH_CODE (MdGuest, md_guest, MD_DBUS_TYPE_GUEST1_SKELETON,
                               G_IMPLEMENT_INTERFACE (MD_DBUS_TYPE_GUEST1,
                                                      guest_methods_iface_init))

const char *
md_guest_state_to_string (MdGuestState state)
{
  switch (state)
    {
    case MD_GUEST_STATE_SHUT_OFF:
      return "shut-off";
    case MD_GUEST_STATE_RUNNING:
      return "running";
    case MD_GUEST_STATE_PAUSED:
      return "paused";
    case MD_GUEST_STATE_MIGRATING_OUT:
      return "migrating-out";
    case MD_GUEST_STATE_MIGRATING_IN:
      return "migrating-in";
    case MD_GUEST_STATE_CRASHED:
      return "crashed";
    case MD_GUEST_STATE_SAVED:
      return "saved";
    }
  g_assert_not_reached ();
}

const char *
guest_host_name (MdGuest *self)
{
  return self->host->config->host_name;
}

/* Publishes what the definition and process say as D-Bus properties. */
static void
sync_properties (MdGuest *self)
{
  MdDbusGuest1 *iface = MD_DBUS_GUEST1 (self);
  const MdDomain *dom = self->live != NULL ? self->live : self->def;
  GVariantBuilder disks;

  g_variant_builder_init (&disks, G_VARIANT_TYPE ("a(ssss)"));
  for (guint i = 0; i < dom->disks->len; i++)
    {
      const MdDomainDisk *disk = g_ptr_array_index (dom->disks, i);
      g_variant_builder_add (&disks, "(ssss)", disk->target, disk->source ? disk->source : "",
                             md_domain_disk_format_to_string (disk->format),
                             md_domain_disk_bus_to_string (disk->bus));
    }

  g_dbus_interface_skeleton_flush (G_DBUS_INTERFACE_SKELETON (self));
  md_dbus_guest1_set_name (iface, dom->name);
  md_dbus_guest1_set_uuid (iface, dom->uuid);
  md_dbus_guest1_set_title (iface, dom->title ? dom->title : "");
  md_dbus_guest1_set_state (iface, md_guest_state_to_string (self->state));
  md_dbus_guest1_set_persistent (iface, self->persistent);
  md_dbus_guest1_set_pid (iface, self->proc ? (guint) md_qemu_process_get_pid (self->proc) : 0);
  md_dbus_guest1_set_memory (iface, dom->memory);
  md_dbus_guest1_set_vcpus (iface, dom->vcpus);
  md_dbus_guest1_set_machine (iface, dom->os.machine ? dom->os.machine : "");
  md_dbus_guest1_set_disks (iface, g_variant_builder_end (&disks));
}

void
guest_set_state (MdGuest *self, MdGuestState state)
{
  if (self->state == state)
    return;
  g_debug ("guest %s: %s -> %s", self->def->name, md_guest_state_to_string (self->state),
           md_guest_state_to_string (state));
  self->state = state;
  sync_properties (self);
}

/* ---- object ---------------------------------------------------------------- */

static void
md_guest_dispose (GObject *object)
{
  MdGuest *self = MD_GUEST (object);

  /* The daemon stopping must never stop QEMU: only drop our handles. */
  g_clear_handle_id (&self->shutdown_timeout_id, g_source_remove);
  if (self->qmp != NULL)
    g_signal_handlers_disconnect_by_data (self->qmp, self);
  if (self->proc != NULL)
    g_signal_handlers_disconnect_by_data (self->proc, self);
  g_clear_object (&self->qmp);
  g_clear_object (&self->proc);
  G_OBJECT_CLASS (md_guest_parent_class)->dispose (object);
}

static void
md_guest_finalize (GObject *object)
{
  MdGuest *self = MD_GUEST (object);

  md_domain_free (self->def);
  g_clear_pointer (&self->live, md_domain_free);
  g_free (self->object_path);
  g_clear_object (&self->start_wait);
  g_free (self->qmp_path);
  g_free (self->log_path);
  g_clear_pointer (&self->isolation, json_object_unref);
  G_OBJECT_CLASS (md_guest_parent_class)->finalize (object);
}

static void
md_guest_class_init (MdGuestClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = md_guest_dispose;
  object_class->finalize = md_guest_finalize;

  signals[SIGNAL_STOPPED] = g_signal_new ("stopped", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                          0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

void
guest_emit_stopped (MdGuest *self)
{
  g_signal_emit (self, signals[SIGNAL_STOPPED], 0);
}

static void
md_guest_init (MdGuest *self)
{
}

MdGuest *
md_guest_new (MdHost *host, MdDomain *def, gboolean persistent)
{
  MdGuest *self = g_object_new (MD_TYPE_GUEST, NULL);
  g_autofree char *escaped = g_dbus_escape_object_path (def->name);

  self->host = host;
  self->def = def;
  self->persistent = persistent;
  self->state = MD_GUEST_STATE_SHUT_OFF;
  self->object_path = g_strdup_printf ("%s/guest/%s", MD_MANAGER_PATH, escaped);
  md_dbus_guest1_set_migration (MD_DBUS_GUEST1 (self), "/");
  sync_properties (self);
  md_auth_attach (host->auth, G_DBUS_INTERFACE_SKELETON (self));
  return self;
}

const char *
md_guest_get_name (MdGuest *self)
{
  return self->def->name;
}

const char *
md_guest_get_uuid (MdGuest *self)
{
  return self->def->uuid;
}

const char *
md_guest_get_object_path (MdGuest *self)
{
  return self->object_path;
}

MdGuestState
md_guest_get_state (MdGuest *self)
{
  return self->state;
}

gboolean
md_guest_is_active (MdGuest *self)
{
  return self->proc != NULL;
}

gboolean
md_guest_is_persistent (MdGuest *self)
{
  return self->persistent;
}

void
md_guest_set_persistent (MdGuest *self, gboolean persistent)
{
  self->persistent = persistent;
  if (self->proc != NULL && self->live != NULL)
    guest_write_runtime_record (self);
  sync_properties (self);
}

const MdDomain *
md_guest_get_definition (MdGuest *self)
{
  return self->def;
}

const MdDomain *
md_guest_get_live_definition (MdGuest *self)
{
  return self->live;
}

void
md_guest_set_definition (MdGuest *self, MdDomain *def)
{
  md_domain_free (self->def);
  self->def = def;
  sync_properties (self);
}

void
md_guest_begin_migration (MdGuest *self, const char *migration_path, gboolean incoming)
{
  md_dbus_guest1_set_migration (MD_DBUS_GUEST1 (self), migration_path);
  guest_set_state (self, incoming ? MD_GUEST_STATE_MIGRATING_IN : MD_GUEST_STATE_MIGRATING_OUT);
}

void
md_guest_end_migration (MdGuest *self, gboolean running)
{
  md_dbus_guest1_set_migration (MD_DBUS_GUEST1 (self), "/");
  if (self->incoming)
    {
      self->incoming = FALSE;
      if (self->proc != NULL)
        guest_write_runtime_record (self);
    }
  if (self->proc != NULL)
    guest_set_state (self, running ? MD_GUEST_STATE_RUNNING : MD_GUEST_STATE_PAUSED);
  else if (self->state == MD_GUEST_STATE_MIGRATING_OUT
           || self->state == MD_GUEST_STATE_MIGRATING_IN)
    guest_set_state (self, MD_GUEST_STATE_SHUT_OFF); /* an offline migration: no QEMU ran */
  else
    sync_properties (self);
}

gboolean
md_guest_is_busy (MdGuest *self)
{
  return self->busy != NULL;
}

void
md_guest_mark_saved (MdGuest *self, gboolean managed)
{
  if (managed)
    md_dbus_guest1_set_has_managed_save (MD_DBUS_GUEST1 (self), TRUE);
  if (self->proc == NULL)
    guest_set_state (self, MD_GUEST_STATE_SAVED);
}

char *
md_guest_managed_save_path (const MdConfig *config, const char *name)
{
  g_autofree char *file = g_strdup_printf ("%s.save", name);

  return g_build_filename (config->state_dir, "save", file, NULL);
}

void
md_guest_settle_stopped (MdGuest *self)
{
  if (self->proc != NULL)
    return;
  guest_set_state (self, md_dbus_guest1_get_has_managed_save (MD_DBUS_GUEST1 (self))
                             ? MD_GUEST_STATE_SAVED
                             : MD_GUEST_STATE_SHUT_OFF);
}

void
md_guest_set_has_managed_save (MdGuest *self, gboolean has)
{
  md_dbus_guest1_set_has_managed_save (MD_DBUS_GUEST1 (self), has);
  if (!has && self->state == MD_GUEST_STATE_SAVED)
    guest_set_state (self, MD_GUEST_STATE_SHUT_OFF);
  else if (has && self->proc == NULL)
    guest_set_state (self, MD_GUEST_STATE_SAVED);
}

MdQmp *
md_guest_get_qmp (MdGuest *self)
{
  return self->qmp;
}

MdQemuProcess *
md_guest_get_process (MdGuest *self)
{
  return self->proc;
}

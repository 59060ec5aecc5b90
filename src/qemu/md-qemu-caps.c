/* migrationd: probing the QEMU binary (machine types, seccomp, KVM). */
#include "config.h"

#include "md-qemu-caps.h"
#include "common/md-error.h"
#include "md-qemu-argv.h"

#include <string.h>
#include <unistd.h>

void
md_qemu_caps_free (MdQemuCaps *caps)
{
  if (caps == NULL)
    return;
  g_free (caps->binary);
  g_clear_pointer (&caps->machines, g_ptr_array_unref);
  g_strfreev (caps->audio_drivers);
  md_qemu_cpu_info_free (caps->cpu);
  g_free (caps);
}

typedef struct
{
  MdQemuCaps *caps;
  guint pending;
  GError *error;
} ProbeData;

static void
probe_data_free (ProbeData *data)
{
  md_qemu_caps_free (data->caps);
  g_clear_error (&data->error);
  g_free (data);
}

static void
probe_step_done (GTask *task)
{
  ProbeData *data = g_task_get_task_data (task);

  if (--data->pending > 0)
    return;
  if (data->error != NULL)
    g_task_return_error (task, g_steal_pointer (&data->error));
  else
    g_task_return_pointer (task, g_steal_pointer (&data->caps), (GDestroyNotify) md_qemu_caps_free);
}

static void
on_machine_help (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ProbeData *data = g_task_get_task_data (task);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr (GError) error = NULL;

  if (!g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, &err, &error))
    ;
  else if (!g_subprocess_get_successful (G_SUBPROCESS (source)))
    g_set_error (&error, MD_ERROR, MD_ERROR_QEMU_FAILED, "%s -machine help failed: %s",
                 data->caps->binary, err != NULL ? g_strstrip (err) : "");
  else
    data->caps->machines = md_qemu_parse_machine_help (out, &error);
  if (error != NULL && data->error == NULL)
    data->error = g_steal_pointer (&error);
  probe_step_done (task);
}

static void
on_help (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ProbeData *data = g_task_get_task_data (task);
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;

  /* -sandbox and -spice are only listed when QEMU was built with them. */
  if (g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, NULL, &error))
    {
      data->caps->sandbox = out != NULL && strstr (out, "\n-sandbox ") != NULL;
      data->caps->spice = out != NULL && strstr (out, "\n-spice ") != NULL;
    }
  probe_step_done (task);
}

static void
on_audiodev_help (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ProbeData *data = g_task_get_task_data (task);
  g_autofree char *out = NULL;
  g_auto (GStrv) lines = NULL;
  g_autoptr (GPtrArray) drivers = g_ptr_array_new_with_free_func (g_free);

  /* "Available audio drivers:" then one per line. Debian builds some as
   * modules (pa in qemu-system-gui) and lists only those installed. */
  if (g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, NULL, NULL) && out)
    {
      lines = g_strsplit (out, "\n", -1);
      for (guint i = 0; lines[i]; i++)
        if (*g_strstrip (lines[i]) && !strchr (lines[i], ' ') && !strchr (lines[i], ':'))
          g_ptr_array_add (drivers, g_strdup (lines[i]));
    }
  g_ptr_array_add (drivers, NULL);
  data->caps->audio_drivers = (GStrv) g_ptr_array_free (g_steal_pointer (&drivers), FALSE);
  probe_step_done (task);
}

static void
on_cpu_probed (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_autoptr (GTask) task = user_data;
  ProbeData *data = g_task_get_task_data (task);
  g_autoptr (GError) error = NULL;

  data->caps->cpu = md_qemu_cpu_probe_finish (result, &error);
  /* Without it guests still run; host-model cannot be expanded and CPU
   * checks are skipped, which define and Prepare then say. */
  if (data->caps->cpu == NULL)
    g_warning ("%s", error->message);
  probe_step_done (task);
}

static gboolean
spawn_and_communicate (GTask *task, const char *binary, const char *arg1, const char *arg2,
                       GAsyncReadyCallback callback)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) proc =
      g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error,
                        binary, arg1, arg2, NULL);
  ProbeData *data = g_task_get_task_data (task);

  if (proc == NULL)
    {
      if (data->error == NULL)
        data->error = g_error_new (MD_ERROR, MD_ERROR_QEMU_FAILED,
                                   "cannot run QEMU '%s': %s; install qemu-system-x86 or set "
                                   "[daemon] qemu-binary",
                                   binary, error->message);
      return FALSE;
    }
  data->pending++;
  g_subprocess_communicate_utf8_async (proc, NULL, g_task_get_cancellable (task), callback,
                                       g_object_ref (task));
  return TRUE;
}

void
md_qemu_caps_probe_async (const char *binary, const char *accelerator, GCancellable *cancellable,
                          GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (NULL, cancellable, callback, user_data);
  ProbeData *data = g_new0 (ProbeData, 1);

  data->caps = g_new0 (MdQemuCaps, 1);
  data->caps->binary = g_strdup (binary);
  data->caps->kvm = access ("/dev/kvm", R_OK | W_OK) == 0;
  g_task_set_source_tag (task, md_qemu_caps_probe_async);
  g_task_set_task_data (task, data, (GDestroyNotify) probe_data_free);

  /* Hold one count ourselves so a quick first answer cannot finish the
   * task before the second command is started. */
  data->pending = 1;
  spawn_and_communicate (task, binary, "-machine", "help", on_machine_help);
  spawn_and_communicate (task, binary, "-h", NULL, on_help);
  spawn_and_communicate (task, binary, "-audiodev", "help", on_audiodev_help);
  data->pending++;
  /* What a TCG guest can run says nothing of KVM's features, and back. */
  md_qemu_cpu_probe_async (binary,
                           data->caps->kvm && g_strcmp0 (accelerator, "tcg") != 0 ? "kvm" : "tcg",
                           cancellable, on_cpu_probed, g_object_ref (task));
  probe_step_done (task);
}

MdQemuCaps *
md_qemu_caps_probe_finish (GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

const char *
md_qemu_caps_pick_accel (const MdQemuCaps *caps, const char *configured, GError **error)
{
  if (g_strcmp0 (configured, "tcg") == 0)
    return "tcg";
  if (g_strcmp0 (configured, "kvm") == 0 && !caps->kvm)
    {
      g_set_error (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED,
                   "accelerator kvm is configured but /dev/kvm is not usable on this host; "
                   "set [daemon] accelerator=auto or tcg");
      return NULL;
    }
  return caps->kvm ? "kvm" : "tcg";
}

/* ---- can this host take a definition? ---- */

static gboolean
bridge_exists (const char *name)
{
  g_autofree char *path = g_build_filename ("/sys/class/net", name, "bridge", NULL);

  return name[0] != '.' && strchr (name, '/') == NULL && g_file_test (path, G_FILE_TEST_IS_DIR);
}

static void
check_networks (const MdDomain *def, GHashTable *networks, GPtrArray *problems)
{
  for (guint i = 0; i < def->interfaces->len; i++)
    {
      const MdDomainInterface *n = def->interfaces->pdata[i];
      const char *bridge = NULL;

      if (n->type == MD_DOMAIN_INTERFACE_BRIDGE)
        bridge = n->source;
      else if (n->type == MD_DOMAIN_INTERFACE_NETWORK)
        {
          bridge = networks ? g_hash_table_lookup (networks, n->source) : NULL;
          if (!bridge)
            {
              g_ptr_array_add (problems,
                               g_strdup_printf ("interface %s: network '%s' is not mapped to a "
                                                "bridge here; add \"%s = BRIDGE\" to the "
                                                "[networks] section of migrationd.conf",
                                                n->alias, n->source, n->source));
              continue;
            }
        }
      if (bridge && !bridge_exists (bridge))
        g_ptr_array_add (
            problems, g_strdup_printf ("interface %s: bridge '%s'%s%s%s does not exist on this "
                                       "host; create it or map the network to another bridge",
                                       n->alias, bridge,
                                       n->type == MD_DOMAIN_INTERFACE_NETWORK ? " (network '" : "",
                                       n->type == MD_DOMAIN_INTERFACE_NETWORK ? n->source : "",
                                       n->type == MD_DOMAIN_INTERFACE_NETWORK ? "')" : ""));
    }
}

static void
check_spice_audio (const MdQemuCaps *caps, const MdDomain *def, GPtrArray *problems)
{
  gboolean spice = FALSE;

  for (guint i = 0; i < def->graphics->len; i++)
    spice |= ((MdDomainGraphics *) def->graphics->pdata[i])->type == MD_DOMAIN_GRAPHICS_SPICE;
  if (spice && !caps->spice)
    g_ptr_array_add (problems, g_strdup_printf ("<graphics type='spice'>: QEMU %s lacks SPICE; use "
                                                "<graphics type='vnc'> or a QEMU built with SPICE",
                                                caps->binary));
  for (guint i = 0; i < def->audios->len; i++)
    {
      const MdDomainAudio *a = def->audios->pdata[i];

      if (caps->audio_drivers
          && !g_strv_contains ((const char *const *) caps->audio_drivers, a->type))
        g_ptr_array_add (problems,
                         g_strdup_printf ("<audio id='%u' type='%s'>: QEMU %s lacks this audio "
                                          "backend%s; use type='none'%s",
                                          a->id, a->type, caps->binary,
                                          g_str_equal (a->type, "pa")
                                              ? " (Debian ships it in qemu-system-gui)"
                                              : "",
                                          caps->spice ? " or 'spice'" : ""));
    }
}

gboolean
md_qemu_caps_check_definition (const MdQemuCaps *caps, MdDomain *def, GHashTable *networks,
                               const char *const *cpu_allow, gboolean incoming, GError **error)
{
  g_autoptr (GPtrArray) problems = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GError) local = NULL;
  g_autofree char *machine = md_domain_resolve_machine (def->os.machine, caps->machines, &local);
  g_autoptr (GString) all = NULL;

  if (machine)
    {
      g_free (def->os.machine);
      def->os.machine = g_steal_pointer (&machine);
    }
  else
    g_ptr_array_add (problems, g_strdup (local->message));
  g_clear_error (&local);
  if (!incoming && !md_qemu_cpu_expand_host_model (caps->cpu, def, &local))
    g_ptr_array_add (problems, g_strdup (local->message));
  md_qemu_cpu_check (caps->cpu, def, cpu_allow, incoming, problems);
  check_spice_audio (caps, def, problems);
  check_networks (def, networks, problems);
  if (problems->len == 0)
    return TRUE;
  all = g_string_new (problems->len == 1 ? "" : "this host cannot run the guest:");
  for (guint i = 0; i < problems->len; i++)
    g_string_append_printf (all, "%s%s", problems->len == 1 ? "" : "\n  ",
                            (char *) problems->pdata[i]);
  g_set_error_literal (error, MD_ERROR, MD_ERROR_NOT_SUPPORTED, all->str);
  return FALSE;
}

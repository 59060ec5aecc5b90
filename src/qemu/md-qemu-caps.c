/* migrationd: probing the QEMU binary (machine types, seccomp, KVM). */
#include "config.h"

#include "md-qemu-caps.h"
#include "common/md-error.h"
#include "md-qemu-argv.h"

#include <unistd.h>

void
md_qemu_caps_free (MdQemuCaps *caps)
{
  if (caps == NULL)
    return;
  g_free (caps->binary);
  g_clear_pointer (&caps->machines, g_ptr_array_unref);
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

  /* -sandbox is only listed when QEMU was built with seccomp. */
  if (g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, NULL, &error))
    data->caps->sandbox = out != NULL && strstr (out, "\n-sandbox ") != NULL;
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
md_qemu_caps_probe_async (const char *binary, GCancellable *cancellable,
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

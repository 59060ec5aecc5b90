/* migrationd: isolating one guest's QEMU (see md-isolation.h). */
#include "config.h"

#include "md-isolation.h"

#include "common/md-error.h"
#include "qemu/md-qemu-confine.h"

#include <string.h>
#include <unistd.h>

/* No guest needs locked memory (no -overcommit mem-lock, no VFIO): QEMU
 * keeps the kernel's default. */
#define MEMLOCK_BYTES (64 * 1024)

struct _MdIsolation
{
  MdHost *host;
  gboolean confined;
  MdQemuIdentity identity;
  char *cgroup;
  MdQemuConfine *confine;
  gboolean spawned; /* the process owns identity and cgroup now */
};

MdIsolation *
md_isolation_new (MdHost *host, const MdDomain *live, GError **error)
{
  g_autoptr (MdIsolation) iso = g_new0 (MdIsolation, 1);
  g_auto (GStrv) procs = NULL;
  const MdConfig *config = host->config;
  guint64 memory;

  iso->host = host;
  iso->identity.lock_fd = -1;
  if (!md_qemu_identity_enabled ())
    return g_steal_pointer (&iso);
  if (!md_qemu_uid_pool_acquire (host->uids, &iso->identity, error))
    return NULL;
  iso->confined = TRUE;
  if (!iso->identity.shared)
    {
      /* This start holds the uid: what is left under its name is stale. */
      g_autofree char *prefix = g_strdup_printf ("migrationd-%u-", iso->identity.uid);

      md_qemu_cgroup_remove_stale (prefix);
    }
  iso->cgroup = g_strdup_printf ("migrationd-%u-%08x", iso->identity.uid, g_random_int ());
  memory = live->memory + (guint64) config->qemu_memory_overhead * 1024 * 1024;
  procs = md_qemu_cgroup_create (iso->cgroup, memory, config->qemu_tasks_max, error);
  if (procs == NULL)
    return NULL;
  iso->confine = md_qemu_confine_new (iso->identity.uid, iso->identity.gid,
                                      (const char *const *) procs, MEMLOCK_BYTES);
  return g_steal_pointer (&iso);
}

void
md_isolation_free (MdIsolation *iso)
{
  if (iso == NULL)
    return;
  md_qemu_identity_clear (&iso->identity);
  md_qemu_confine_free (iso->confine);
  if (iso->confined && !iso->spawned)
    {
      if (!iso->identity.shared)
        md_qemu_uid_pool_release (iso->host->uids, iso->identity.uid);
      md_qemu_cgroup_remove (iso->cgroup);
    }
  g_free (iso->cgroup);
  g_free (iso);
}

gboolean
md_isolation_is_confined (const MdIsolation *iso)
{
  return iso->confined;
}

MdQemuProcess *
md_isolation_spawn (MdIsolation *iso, const char *const *argv, const char *log_path,
                    MdQemuFiles *files, GError **error)
{
  MdQemuProcess *proc;

  /* QEMU holds the uid's lock for as long as it lives, daemon restarts
   * included; the daemon's copy closes below. */
  if (iso->identity.lock_fd >= 0)
    {
      md_qemu_files_take (files, dup (iso->identity.lock_fd));
      md_qemu_identity_clear (&iso->identity);
    }
  proc = md_qemu_spawn_confined (argv, log_path, md_qemu_files_get_sources (files),
                                 md_qemu_files_get_targets (files), md_qemu_files_get_count (files),
                                 iso->confine, error);
  md_qemu_files_handed_over (files);
  if (proc != NULL)
    iso->spawned = TRUE;
  return proc;
}

void
md_isolation_record (const MdIsolation *iso, JsonObject *extra)
{
  if (!iso->confined)
    return;
  json_object_set_int_member (extra, "uid", iso->identity.uid);
  json_object_set_int_member (extra, "gid", iso->identity.gid);
  json_object_set_boolean_member (extra, "shared-user", iso->identity.shared);
  json_object_set_string_member (extra, "cgroup", iso->cgroup);
}

void
md_isolation_reserve (MdHost *host, JsonObject *extra)
{
  if (extra != NULL && json_object_has_member (extra, "uid")
      && !json_object_get_boolean_member_with_default (extra, "shared-user", FALSE))
    md_qemu_uid_pool_reserve (host->uids, (guint32) json_object_get_int_member (extra, "uid"));
}

void
md_isolation_release (MdHost *host, JsonObject *extra)
{
  const char *cgroup;

  if (extra == NULL)
    return;
  if (json_object_has_member (extra, "uid")
      && !json_object_get_boolean_member_with_default (extra, "shared-user", FALSE))
    md_qemu_uid_pool_release (host->uids, (guint32) json_object_get_int_member (extra, "uid"));
  cgroup = json_object_get_string_member_with_default (extra, "cgroup", NULL);
  if (cgroup != NULL && g_str_has_prefix (cgroup, "migrationd-") && strchr (cgroup, '/') == NULL)
    md_qemu_cgroup_remove (cgroup);
}

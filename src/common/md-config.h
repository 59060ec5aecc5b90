/* migrationd: configuration (migrationd.conf) and the paths the daemon uses. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The uids (and gids) guests' QEMUs run as unless [qemu] says otherwise;
 * data/sysusers.d/migrationd.conf documents the same range. */
#define MD_DEFAULT_QEMU_UID_MIN 2000000
#define MD_DEFAULT_QEMU_UID_MAX 2065535
#define MD_DEFAULT_QEMU_UID_RANGE "2000000-2065535"

typedef struct
{
  char *name;
  char *address; /* host[:port] */
  char *dn;      /* certificate subject DN */
} MdConfigPeer;

typedef struct
{
  char *config_path; /* the file read, or NULL when none existed */
  char *state_dir;
  char *runtime_dir;

  /* [daemon] */
  char *host_name;
  char *listen_address; /* "" disables the peer listener */
  guint16 peer_port;
  guint16 migration_port_min;
  guint16 migration_port_max;
  guint migration_keep_seconds;
  guint shutdown_timeout;
  guint peer_timeout; /* s without a sign of life from a peer daemon */
  char *accelerator;  /* auto, kvm, tcg */
  /* keep: guests run on when the daemon stops; managed-save: the daemon
   * managed-saves its running persistent guests when it stops and
   * restores them when it starts again (host shutdown and boot). */
  char *on_stop;
  char *qemu_binary;
  /* When set, the only CPU models and features this host accepts (stands
   * for an older QEMU in tests); NULL = whatever QEMU can run. */
  GStrv cpu_model_allow;

  /* [tls] */
  char *tls_dir;
  GStrv allowed_dns;
  guint handshake_timeout;

  /* [storage] */
  GStrv image_dirs; /* empty: <state_dir>/images (md_config_get_image_dirs) */
  gboolean reuse_existing_images;
  guint fs_check_timeout; /* seconds a file-system check may take */

  /* [migration] */
  char *transport; /* "tunnel" (default) or "native": the default of option 'transport' */
  /* [qemu]: whom QEMU runs as (see README, "Security"). @qemu_user set:
   * every guest's QEMU runs as that one user; otherwise each running guest
   * gets its own uid (and a gid of the same number) from
   * [qemu_uid_min, qemu_uid_max]. */
  char *qemu_user;
  char *qemu_uid_range; /* as written, for messages */
  guint32 qemu_uid_min;
  guint32 qemu_uid_max;
  guint qemu_tasks_max;       /* the pids limit of each guest's cgroup */
  guint qemu_memory_overhead; /* MiB above guest RAM in its cgroup */
  /* [convergence]: when convergence=auto calls a migration stalled and
   * how it escalates (md-migration-convergence.h). */
  guint stall_iterations;     /* consecutive iterations without progress */
  guint stall_dirty_percent;  /* dirty rate >= this % of the transfer rate: no progress */
  guint stall_shrink_percent; /* remaining must shrink by this % per iteration */
  guint downtime_steps;       /* raises from max-downtime to the ceiling */
  guint throttle_iterations;  /* iterations throttling gets before the next step */
  gboolean throttle_before_postcopy;
  /* The early check during the first pass (postcopy allowed): QEMU's
   * calc-dirty-rate over this many seconds (0: no check), and the dirty
   * rate, in % of the link's, at which the policy switches at once. */
  guint early_sample_seconds;
  guint early_dirty_percent;

  /* [networks]: libvirt network name -> host bridge, so guests written
   * with <interface type='network'> run here through that bridge. */
  GHashTable *networks;

  /* [peer NAME] groups */
  GPtrArray *peers; /* MdConfigPeer */
} MdConfig;

/* Loads @path (or the default file when @path is NULL; a missing default
 * file means built-in defaults, a missing explicit one is an error).
 * Unknown groups or keys and out-of-range values are MD_ERROR_CONFIG
 * errors naming the file, group and key. */
MdConfig *md_config_load (const char *path, GError **error);
MdConfig *md_config_new_default (void);
void md_config_free (MdConfig *config);
/* The directories incoming disk images may live in: [storage] image-dirs,
 * or <state_dir>/images when none are configured (transfer full). */
GStrv md_config_get_image_dirs (const MdConfig *config);
const MdConfigPeer *md_config_find_peer (const MdConfig *config, const char *name);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdConfig, md_config_free)

G_END_DECLS

/* migrationd: strict parsing of the a{sv} options every method takes. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  const char *key;
  const char *type; /* GVariant type string, e.g. "b", "t", "s", "as" */
} MdOptionSpec;

/* Checks that every key of @options is in @specs (NULL-key terminated)
 * with exactly its type. Errors: MD_ERROR_INVALID_ARGUMENT naming the
 * key ("unknown option 'foo' for Start; known: start-paused" or
 * "option 'timeout' must be of type u, not s"). */
gboolean md_options_check (GVariant *options, const MdOptionSpec *specs, const char *method,
                           GError **error);

gboolean md_options_get_boolean (GVariant *options, const char *key, gboolean fallback);
guint32 md_options_get_uint32 (GVariant *options, const char *key, guint32 fallback);
guint64 md_options_get_uint64 (GVariant *options, const char *key, guint64 fallback);
guint16 md_options_get_uint16 (GVariant *options, const char *key, guint16 fallback);
/* NULL when absent. */
const char *md_options_get_string (GVariant *options, const char *key);

/* ---- Guest1.Migrate options, typed -------------------------------------------
 *
 * Guest1.Migrate's a{sv} is parsed once, on the source when the call
 * arrives and again on the destination when Prepare arrives from the peer,
 * into an MdMigrateOptions. Every type, range, enum value and string size
 * is checked here and nowhere else; the engine reads fields. An error is
 * MD_ERROR_INVALID_ARGUMENT and names the option and what is allowed
 * ("option 'max-downtime' must be 1-2000000 ms, not 0").
 */

/* Ranges (inclusive). */
#define MD_MIGRATE_MAX_DOWNTIME_MIN 1ULL
#define MD_MIGRATE_MAX_DOWNTIME_MAX 2000000ULL /* ms: QEMU's downtime-limit bound (2000 s) */
#define MD_MIGRATE_MAX_DOWNTIME_DEFAULT 300ULL
/* bytes/s; 0 means unlimited. 1 TiB/s is above any link and inside QMP's int64. */
#define MD_MIGRATE_BANDWIDTH_MAX (G_GUINT64_CONSTANT (1) << 40)
#define MD_MIGRATE_PARALLEL_MAX 16                 /* multifd channels; 0 = one plain stream */
#define MD_MIGRATE_ABORT_AFTER_MAX (7 * 24 * 3600) /* seconds; 0 = never */
#define MD_MIGRATE_ADDRESS_MAX 255                 /* bytes, a host name or address */
#define MD_MIGRATE_XML_MAX (1024 * 1024)           /* bytes of destination-xml */
#define MD_MIGRATE_DISKS_MAX 64                    /* entries of disks / disks-info */
#define MD_MIGRATE_TARGET_MAX 32                   /* bytes of a disk target name */
#define MD_MIGRATE_PATH_MAX 4096                   /* bytes of a path in disks-info */
#define MD_MIGRATE_GUEST_NAME_MAX 64               /* bytes of destination-name */
/* Ports for migration-port / nbd-port when the caller gives no range: a
 * well-known port (22, 80...) is never a migration port. */
#define MD_MIGRATE_PORT_MIN_DEFAULT 1024

typedef enum
{
  MD_MIGRATE_COPY_STORAGE_NONE,
  MD_MIGRATE_COPY_STORAGE_ALL,
  MD_MIGRATE_COPY_STORAGE_INCREMENTAL,
} MdMigrateCopyStorage;

/* Seconds a postcopy migration whose stream broke keeps trying to recover
 * (both daemons) before it is reported and left for the admin. */
#define MD_MIGRATE_RECOVERY_TIMEOUT_MIN 5
#define MD_MIGRATE_RECOVERY_TIMEOUT_MAX (24 * 3600)
#define MD_MIGRATE_RECOVERY_TIMEOUT_DEFAULT 300

/* convergence: auto = the policy of md-migration-convergence.h escalates
 * a migration that does not converge; manual = only what the caller set
 * (and StartPostcopy). */
typedef enum
{
  MD_MIGRATE_CONVERGENCE_AUTO,
  MD_MIGRATE_CONVERGENCE_MANUAL,
} MdMigrateConvergence;

typedef enum
{
  MD_MIGRATE_COMPRESSION_NONE,
  MD_MIGRATE_COMPRESSION_ZLIB,
  MD_MIGRATE_COMPRESSION_ZSTD,
} MdMigrateCompression;

/* Where the a{sv} came from: a D-Bus caller (Guest1.Migrate), or the
 * source daemon's Peer1.Prepare, which adds the keys only a peer sends
 * (source-host, source-migration, source-persistent, disks-info). */
typedef enum
{
  MD_MIGRATE_OPTIONS_FROM_CALLER,
  MD_MIGRATE_OPTIONS_FROM_PEER,
} MdMigrateOptionsOrigin;

typedef struct
{
  MdMigrateOptionsOrigin origin;
  /* migration-port and nbd-port must lie in [port_min, port_max]; on the
   * destination that is its [daemon] migration-port-min..max. 0/0 means
   * MD_MIGRATE_PORT_MIN_DEFAULT..65535 (the source cannot know the
   * destination's range; the destination checks again). */
  guint16 port_min;
  guint16 port_max;
} MdMigrateOptionsLimits;

typedef struct
{
  MdMigrateOptionsOrigin origin;

  /* Booleans, with their defaults. */
  gboolean live;                  /* TRUE */
  gboolean offline;               /* FALSE */
  gboolean tls;                   /* TRUE */
  gboolean auto_converge;         /* FALSE */
  gboolean auto_converge_given;   /* the caller said auto-converge=true/false */
  gboolean postcopy;              /* FALSE */
  gboolean persist_destination;   /* FALSE */
  gboolean undefine_source;       /* FALSE */
  gboolean paused_on_destination; /* FALSE */
  gboolean verify;                /* FALSE */

  guint64 bandwidth;                /* bytes/s, 0 = unlimited */
  guint64 max_downtime;             /* ms, MD_MIGRATE_MAX_DOWNTIME_DEFAULT */
  guint32 parallel_connections;     /* 0 = single stream, else 1..16 multifd channels */
  MdMigrateCompression compression; /* needs parallel_connections > 0 unless NONE */
  guint32 abort_after;              /* seconds, 0 = never */
  MdMigrateCopyStorage copy_storage;
  MdMigrateConvergence convergence;  /* AUTO */
  guint64 max_downtime_ceiling;      /* ms the policy may raise max-downtime to; = max_downtime */
  guint32 postcopy_recovery_timeout; /* s, MD_MIGRATE_RECOVERY_TIMEOUT_DEFAULT */

  /* NULL when not given. */
  char *destination_xml;
  char *destination_name;
  char *migration_address;
  char *nbd_address;
  guint16 migration_port; /* 0 = the destination picks */
  guint16 nbd_port;       /* 0 = the destination picks */
  GStrv disks;            /* targets to copy; NULL = every disk with an image */

  /* Only from a peer (MD_MIGRATE_OPTIONS_FROM_PEER); NULL/FALSE otherwise. */
  gboolean source_persistent;
  char *source_host;
  char *source_migration;
  GVariant *disks_info; /* aa{sv}: target, path, format, virtual-size, backing... */

  /* The migration options as given (a{sv}), without auth.* and without
   * the peer-only keys: what Migration1.Options shows and what the
   * source forwards in Prepare. */
  GVariant *given;
} MdMigrateOptions;

/* Parses and checks @options (a{sv}) completely. Unknown keys, wrong
 * types, values out of range, unknown enum values, oversized strings and
 * contradictions (compression without parallel-connections) are errors;
 * nothing is half-parsed. @limits may be NULL (caller origin, default
 * port range). */
MdMigrateOptions *md_migrate_options_parse (GVariant *options, const MdMigrateOptionsLimits *limits,
                                            GError **error);
void md_migrate_options_free (MdMigrateOptions *opts);

/* Range checks shared with Migration1.SetBandwidth / SetMaxDowntime;
 * @what names the argument in the error ("option 'bandwidth'",
 * "SetBandwidth's bps"). */
gboolean md_migrate_check_bandwidth (guint64 bps, const char *what, GError **error);
gboolean md_migrate_check_max_downtime (guint64 ms, const char *what, GError **error);

/* QEMU's multifd-compression value ("none", "zlib", "zstd"). */
const char *md_migrate_compression_to_string (MdMigrateCompression compression);
const char *md_migrate_copy_storage_to_string (MdMigrateCopyStorage mode);
const char *md_migrate_convergence_to_string (MdMigrateConvergence mode);

/* The Guest1.Migrate option names and types (NULL-key terminated), for
 * Capabilities and error messages. */
extern const MdOptionSpec md_migrate_option_specs[];

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MdMigrateOptions, md_migrate_options_free)

G_END_DECLS

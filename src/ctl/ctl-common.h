/* migrationctl: shared state and helpers of the command-line client. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "md-dbus-generated.h"

G_BEGIN_DECLS

/* Exit codes, documented in `migrationctl help`. */
enum
{
  CTL_EXIT_OK = 0,
  CTL_EXIT_FAILED = 1,
  CTL_EXIT_USAGE = 2,
  CTL_EXIT_UNREACHABLE = 3,
};

/* polkit actions named in "not allowed" hints. */
#define CTL_ACTION_GUEST_MANAGE "org.migrationd.guest.manage"
#define CTL_ACTION_MIGRATE "org.migrationd.migrate"
#define CTL_ACTION_MIGRATION_CONTROL "org.migrationd.migration.control-own"
#define CTL_ACTION_PEER_MANAGE "org.migrationd.peer.manage"

typedef struct
{
  /* Global options. */
  gboolean system;
  char *address;
  gboolean json;
  gboolean quiet;
  gboolean no_ask_password;
  gboolean version;

  /* pkttyagent, started for the first call that may ask for a password
   * when standard input is a terminal. */
  GSubprocess *tty_agent;
  gboolean tty_agent_tried;

  /* The command being run, for messages. */
  const char *command;

  GDBusConnection *bus;
  MdDbusManager1 *manager;
} CtlContext;

/* The global options, added to every command's GOptionContext so that they
 * may come before or after the command. */
GOptionEntry *ctl_global_entries (CtlContext *ctx);

/* Parse a command's options: prints usage errors and returns FALSE (exit
 * code 2). @argc/@argv start with the command name. */
gboolean ctl_parse_options (CtlContext *ctx, int *argc, char ***argv, const char *parameter_string,
                            const char *summary, const GOptionEntry *entries);

/* Connect to the bus of --address or --system, nothing more (the silent
 * completion helpers use it directly). */
gboolean ctl_open_bus (CtlContext *ctx, GError **error);

/* Connect to the bus and make the Manager1 proxy; on failure prints why
 * and returns the exit code (3 when the daemon is not reachable). */
int ctl_connect (CtlContext *ctx);

/* Call @method on @proxy with the interactive-authorization flag unless
 * --no-ask-password; @changing calls get no timeout, as a polkit agent may
 * be waiting for a password. */
GVariant *ctl_call (CtlContext *ctx, gpointer proxy, const char *method, GVariant *parameters,
                    const GVariantType *reply_type, gboolean changing, GError **error);

/* Print "migrationctl: <what>: <message>" (remote error name stripped,
 * mapped to a hint) and return the exit code for @error. @action is the
 * polkit action the call needed, or NULL; @subject names the guest,
 * migration or peer for a NotFound hint, or NULL. */
int ctl_report_error (CtlContext *ctx, const GError *error, const char *action,
                      const char *subject_kind, const char *subject, const char *what_format, ...)
    G_GNUC_PRINTF (6, 7);

/* Print "migrationctl: <message>" and "Try ..." and return 2. */
int ctl_usage_error (CtlContext *ctx, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* Report a failure and return @exit_code. Text: "migrationctl: <message>"
 * and the hint on its own line. --json: one line on stderr,
 * {"error":{"name":...,"message":...,"hint":...|null,"exit-status":N}},
 * @error_name being the D-Bus error name (org.migrationd.Error.* or
 * org.freedesktop.DBus.Error.*). */
int ctl_fail (CtlContext *ctx, int exit_code, const char *error_name, const char *hint,
              const char *format, ...) G_GNUC_PRINTF (5, 6);

/* An informational line on stderr (progress notes): text mode only, and
 * not with --quiet; JSON output keeps stderr for error objects. */
void ctl_note (CtlContext *ctx, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* --json result of a command that changes something and has nothing else
 * to report: {"command":"start","ok":true,"guest":"vm1"} (@kind: "guest",
 * "migration" or "peer"). */
void ctl_print_ok (CtlContext *ctx, const char *kind, const char *subject);

/* Stop pkttyagent if ctl_call started one. */
void ctl_stop_tty_agent (CtlContext *ctx);

/* Look up a guest by name or UUID and return its proxy; on failure reports
 * and sets *exit_code. */
MdDbusGuest1 *ctl_lookup_guest (CtlContext *ctx, const char *name, int *exit_code);

/* "3" or "/org/migrationd/migration/3" -> object path; NULL if neither. */
char *ctl_migration_path (const char *arg);
/* The number at the end of a migration path, or the path itself. */
const char *ctl_migration_id (const char *path);
MdDbusMigration1 *ctl_migration_proxy (CtlContext *ctx, const char *path, int *exit_code);

/* Number parsing for options: FALSE on anything but a plain number in
 * [min, max]. */
gboolean ctl_parse_uint (const char *text, guint64 min, guint64 max, guint64 *out);
/* "100M", "1G", "1.5GiB", "1000000", "10MB/s": bytes (per second). K/M/G/T
 * and KiB.. are powers of 1024, KB/MB/GB/TB powers of 1000. */
gboolean ctl_parse_size (const char *text, guint64 *out);

/* Human-readable helpers; the returned strings are newly allocated. */
char *ctl_format_bytes (guint64 bytes);
char *ctl_format_rate (guint64 bytes_per_second);
char *ctl_format_duration (gint64 seconds);
const char *ctl_nonnull (const char *s);

/* Print @node as one JSON document on one line of stdout (JSON Lines, the
 * shape of every --json output; @compact is kept for callers). */
void ctl_print_json (JsonNode *node, gboolean compact);

/* A GVariant as JSON, with object paths as strings. */
JsonNode *ctl_variant_to_json (GVariant *value);

/* Print rows (NULL-terminated arrays of columns) aligned in columns. */
void ctl_print_table (GPtrArray *rows);

/* migrate, migrations and monitor: ctl-migrate.c. */
int ctl_cmd_migrate (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_migrations (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_cancel (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_set_bandwidth (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_set_downtime (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_postcopy (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_monitor (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_complete_migrations (CtlContext *ctx, int argc, char **argv);
/* Calls @method (Migrate, Save, ManagedSave: it answers a Migration1
 * path) on @guest and follows that migration until it ends, as migrate
 * does; Ctrl-C cancels it. @destination names the peer or the file. */
int ctl_follow_guest_call (CtlContext *ctx, MdDbusGuest1 *guest, const char *name,
                           const char *method, GVariant *parameters, const char *destination);

/* evacuate: ctl-evacuate.c. */
int ctl_cmd_evacuate (CtlContext *ctx, int argc, char **argv);

/* save, restore, managedsave: ctl-save.c. */
int ctl_cmd_save (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_restore (CtlContext *ctx, int argc, char **argv);
int ctl_cmd_managedsave (CtlContext *ctx, int argc, char **argv);

G_END_DECLS

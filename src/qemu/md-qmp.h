/* migrationd: asynchronous QMP client (one connection to one QEMU monitor). */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* A single QMP message (one line of JSON) larger than this closes the
 * connection with an error instead of growing the read buffer forever. */
#define MD_QMP_DEFAULT_MAX_MESSAGE_SIZE (16 * 1024 * 1024)

/* How long md_qmp_connect_async() keeps retrying: the caller usually spawns
 * QEMU just before connecting and QEMU creates its socket a little later. */
#define MD_QMP_DEFAULT_CONNECT_TIMEOUT_MS 30000

#define MD_TYPE_QMP (md_qmp_get_type ())
G_DECLARE_FINAL_TYPE (MdQmp, md_qmp, MD, QMP, GObject)

/* Signals:
 *
 * "event" (detailed by the event name, e.g. "event::STOP"):
 *   void handler (MdQmp *qmp, const char *name, JsonObject *data,
 *                 gint64 timestamp_us, gpointer user_data);
 *   @data is never NULL (an empty object when QEMU sent none) and is only
 *   valid during the emission; @timestamp_us is QEMU's timestamp.
 *
 * "closed":
 *   void handler (MdQmp *qmp, const GError *error, gpointer user_data);
 *   Emitted once when the connection ends: QEMU closed the socket (exited or
 *   crashed; MD_ERROR_QEMU_FAILED, with the tail of the log file set with
 *   md_qmp_set_log_path()), a protocol violation or oversized message
 *   (MD_ERROR_QEMU_FAILED), or md_qmp_close() (MD_ERROR_CANCELLED). Every
 *   command still pending has failed with the same error before this fires.
 */

/* Connect to QEMU's QMP unix socket at @socket_path, read the greeting and
 * negotiate capabilities. Retries while the socket does not exist yet or
 * refuses connections, for up to MD_QMP_DEFAULT_CONNECT_TIMEOUT_MS. */
void md_qmp_connect_async (const char *socket_path, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data);

/* Same, with an explicit overall deadline (retries + greeting +
 * negotiation) and QEMU's log file, whose last lines are quoted in every
 * error about a QEMU that went away (@log_path may be NULL). */
void md_qmp_connect_full_async (const char *socket_path, const char *log_path, guint timeout_ms,
                                GCancellable *cancellable, GAsyncReadyCallback callback,
                                gpointer user_data);

/* Errors: MD_ERROR_TIMEOUT (deadline passed), MD_ERROR_CANCELLED,
 * MD_ERROR_QEMU_FAILED (anything else), each naming the socket. */
MdQmp *md_qmp_connect_finish (GAsyncResult *result, GError **error);

/* Run @command with @arguments (may be NULL; not modified, only read).
 * Several commands may be in flight; replies are matched by id. The result
 * is QEMU's "return" value (owned, unref with json_node_unref()). A QMP error
 * reply gives MD_ERROR_QEMU_FAILED "QEMU: <desc> (<class>, command '<cmd>')".
 * Cancelling @cancellable completes the call with MD_ERROR_CANCELLED, but
 * a command already sent cannot be recalled: QEMU may still run it. */
void md_qmp_execute_async (MdQmp *qmp, const char *command, JsonObject *arguments,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data);

/* Like md_qmp_execute_async(), passing @fd along with the command through
 * SCM_RIGHTS (for getfd, add-fd). @fd is duplicated: the caller keeps its
 * own descriptor and may close it as soon as this returns. */
void md_qmp_execute_with_fd_async (MdQmp *qmp, const char *command, JsonObject *arguments, int fd,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data);

/* Finishes both md_qmp_execute_async() and md_qmp_execute_with_fd_async(). */
JsonNode *md_qmp_execute_finish (MdQmp *qmp, GAsyncResult *result, GError **error);

/* QEMU's stderr log, quoted (last lines) in errors when QEMU goes away. */
void md_qmp_set_log_path (MdQmp *qmp, const char *log_path);
const char *md_qmp_get_log_path (MdQmp *qmp);

const char *md_qmp_get_socket_path (MdQmp *qmp);

/* The "QMP" member of QEMU's greeting (version, capabilities); owned by
 * @qmp. */
JsonObject *md_qmp_get_greeting (MdQmp *qmp);

/* QEMU's version from the greeting, e.g. 7, 2, 22. */
void md_qmp_get_qemu_version (MdQmp *qmp, guint *major, guint *minor, guint *micro);

/* Lower the per-message cap (bytes); mostly for tests and paranoid callers. */
void md_qmp_set_max_message_size (MdQmp *qmp, gsize max_size);

gboolean md_qmp_is_closed (MdQmp *qmp);

/* Why the connection closed, or NULL while it is open. */
const GError *md_qmp_get_close_error (MdQmp *qmp);

/* Close the connection now: pending commands fail with MD_ERROR_CANCELLED
 * and "closed" is emitted. Does nothing if already closed. Dropping the last
 * reference also closes the connection (without emitting "closed"). */
void md_qmp_close (MdQmp *qmp);

G_END_DECLS

/* migrationd: tunnel data streams on the peer port.
 *
 * A data stream is one more TLS connection to the peer port, told apart
 * from the Peer1 control connection by ALPN (MD_PEER_ALPN_DATA). Its first
 * bytes are a header carrying a one-time token that the destination's
 * Prepare handed out over the authenticated control connection:
 *
 *   "MDSTREAM1 " <64 lower-case hex digits> "\n"      (client -> server)
 *   "OK\n" | "NO " <reason> "\n"                       (server -> client)
 *
 * The gate (destination) refuses and logs an unknown, reused, malformed
 * or missing token, a token presented under another certificate DN than
 * the control connection that got it, and a stream that sends no header
 * within MD_DATA_STREAM_HEADER_TIMEOUT seconds. At most
 * MD_DATA_STREAM_MAX_PENDING streams may wait for their header at once; a
 * newer one drops the oldest waiting, so a flood of stalled streams costs
 * a bounded amount, never keeps out a real stream (which sends its token
 * at once) and never touches the streams of a running migration. */
#pragma once

#include "md-peer.h"

G_BEGIN_DECLS

#define MD_DATA_STREAM_TOKEN_LEN 64
#define MD_DATA_STREAM_HEADER_TIMEOUT 5 /* seconds */
#define MD_DATA_STREAM_MAX_PENDING 32

typedef struct _MdDataStreamGate MdDataStreamGate;

/* A stream presented the token: @stream is the caller's (the header is
 * consumed and OK was sent). */
typedef void (*MdDataStreamAccepted) (GIOStream *stream, const char *token, gpointer user_data);

/* Takes the "data-stream" signal of @listener. @host_name goes into the
 * refusals. */
MdDataStreamGate *md_data_stream_gate_new (MdPeerListener *listener, const char *host_name);
void md_data_stream_gate_free (MdDataStreamGate *gate);

/* A fresh one-time token, good for one stream from a peer with
 * certificate DN @dn; @accepted runs when it arrives. @label names the
 * stream in the log. */
char *md_data_stream_gate_add (MdDataStreamGate *gate, const char *dn, const char *label,
                               MdDataStreamAccepted accepted, gpointer user_data);
/* Forgets @token, used or not: later streams with it are refused as
 * unknown. */
void md_data_stream_gate_revoke (MdDataStreamGate *gate, const char *token);
/* Refusals so far (tests and logs). */
guint md_data_stream_gate_get_refused (MdDataStreamGate *gate);

/* The client: a data stream to @host_and_port presenting @token;
 * finishes when the server said OK. @label names it in errors. */
void md_data_stream_open_async (const MdPeerTlsConfig *cfg, const char *host_and_port,
                                const char *token, const char *label, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
GIOStream *md_data_stream_open_finish (GAsyncResult *result, GError **error);

G_END_DECLS

/* serve_resp.h - the JSON and text the server sends: OpenAI error objects,
 * chat.completion / text_completion bodies, their streamed chunks (SSE
 * events), /v1/models, and the Prometheus /metrics page.
 *
 * Bodies are built from a scheduler request's outputs (read under the
 * scheduler lock). A streamed answer is cut into events by a cursor over the
 * same outputs, so the chunks of a stream concatenate to exactly the fields of
 * the non-streamed body. */
#ifndef MS_SERVE_RESP_H
#define MS_SERVE_RESP_H

#include <stdbool.h>
#include <stdint.h>

#include "serve_req.h"
#include "serve_sched.h"
#include "strbuf.h"
#include "tokenizer.h"

/* What every body of one answer shares. */
typedef struct ms_srv_answer {
    ms_srv_kind kind;
    char id[48];          /* "chatcmpl-..." / "cmpl-..." */
    long long created;    /* unix time */
    const char *model;
    const ms_tokenizer *tok; /* token texts of log-probs */
    bool include_usage;   /* stream: a last chunk with usage */
} ms_srv_answer;

/* {"error": {...}} */
void ms_srv_error_body(ms_strbuf *out, const ms_srv_error *e);

/* The non-streamed body of a finished request. */
void ms_srv_body(ms_strbuf *out, const ms_srv_answer *a, const ms_sched_req *r);

/* Streaming: where the client is. */
typedef struct ms_srv_cursor {
    size_t content, reasoning;
    int calls, lps;
    bool started, finished;
} ms_srv_cursor;

/* Append the SSE events for what is new in r since cur (nothing if nothing is
 * new); when r has finished: the finish chunk, the usage chunk (if asked) and
 * "data: [DONE]". Returns true once the stream is complete. */
bool ms_srv_stream_events(ms_strbuf *out, const ms_srv_answer *a, const ms_sched_req *r, ms_srv_cursor *cur);

/* An error inside a stream (after the 200 was sent): an error event + [DONE]. */
void ms_srv_stream_error(ms_strbuf *out, const ms_srv_error *e);

/* GET /v1/models (model = NULL) or /v1/models/<id>. */
void ms_srv_models_body(ms_strbuf *out, const char *name, long long created, bool one);

/* HTTP responses by status, counted by the server. */
typedef struct ms_srv_http_counts {
    uint64_t status[6]; /* 2xx .. 5xx by first digit (index 2..5) */
    uint64_t s400, s401, s404, s413, s429;
    uint64_t disconnects; /* clients that went away before the answer ended */
} ms_srv_http_counts;

/* The Prometheus text exposition of the server's figures. */
void ms_srv_metrics_text(ms_strbuf *out, const ms_sched_metrics *m, const ms_srv_http_counts *h);

#endif

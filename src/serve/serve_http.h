/* serve_http.h - the HTTP side of `moestream serve` (libmicrohttpd, one thread
 * per connection): routes, API key, body limit, request -> prompt tokens
 * (chat template + tokenizer, in the connection's thread), submission to the
 * scheduler, and the answer as one JSON body or as server-sent events.
 *
 *   GET  /health                 {"status": "ok"} (no API key needed)
 *   GET  /v1/models[/<id>]       the served model
 *   POST /v1/chat/completions    chat (messages, tools, stream, ...)
 *   POST /v1/completions         text or token-id prompt
 *   GET  /metrics                Prometheus text
 *
 * Errors are OpenAI error objects: malformed JSON / bad or unknown fields /
 * prompt over the context 400, bad API key 401, unknown model or path 404,
 * wrong method 405, body over --max-body 413, queue full 429, engine failure
 * 500. A client that disconnects (noticed within 100 ms, also while it waits
 * for a non-streamed answer) cancels its request. */
#ifndef MS_SERVE_HTTP_H
#define MS_SERVE_HTTP_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "engine.h"
#include "serve_chat.h"
#include "serve_req.h"
#include "serve_sched.h"
#include "tokenizer.h"

typedef struct ms_srv_opts {
    const char *host;         /* "127.0.0.1" */
    int port;                 /* 0 = any free port (see ms_srv_port) */
    const char *api_key;      /* NULL: no key */
    size_t max_body;          /* bytes of a request body */
    int max_connections;
    const char *name;         /* the model id clients send */
    ms_srv_defaults defaults;
    json_object *script;      /* test hook (serve --script): {"<last user message or prompt>": "<answer text>"}:
                                 the answer's tokens replace the sampled ones */
    bool quiet;               /* no log line per request */
} ms_srv_opts;

typedef struct ms_srv ms_srv;

int ms_srv_start(ms_engine *e, const ms_tokenizer *tok, const ms_srv_chat *chat, ms_sched *sched,
                 const ms_srv_opts *o, ms_srv **out, ms_err *err);
int ms_srv_port(const ms_srv *s);
/* Stop the daemon and join the connection threads. Call after ms_sched_stop
 * (which finishes every request, so no connection waits) and before
 * ms_sched_free. */
void ms_srv_stop(ms_srv *s);

#endif

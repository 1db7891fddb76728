/* serve_http.c - routes, limits and answers of `moestream serve` (see
 * serve_http.h).
 *
 * libmicrohttpd runs one thread per connection, so a handler may block: a
 * non-streamed answer waits for its request in the access handler; a streamed
 * one is a callback response whose reader blocks until the scheduler publishes
 * more (chunked transfer encoding, text/event-stream). Both wait in steps of
 * 100 ms and poll the client's socket for a hang-up between steps, which
 * cancels the request. */
#include "serve_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "json.h"
#include "serve_resp.h"
#include "util.h"

struct ms_srv {
    ms_engine *e;
    const ms_tokenizer *tok;
    const ms_srv_chat *chat;
    ms_sched *sched;
    ms_srv_opts o;
    struct MHD_Daemon *d;
    int port;
    long long created;
    pthread_mutex_t mu;       /* counters below */
    uint64_t n_ids, seed_base;
    ms_srv_http_counts counts;
};

/* Per connection: the body being received. */
typedef struct conn {
    ms_strbuf body;
    bool too_large;
    bool answered; /* a response went out with the headers (401, 413, /health): ignore the rest */
} conn;

/* A streamed answer (owned by its MHD response). */
typedef struct stream {
    ms_srv *s;
    ms_sched_req *r;
    ms_srv_answer a;
    ms_srv_cursor cur;
    int fd;
    ms_strbuf out;
    size_t out_pos;
    bool done;
    char path[48]; /* for the request's log line, written when the stream ends */
} stream;

/* ---- helpers ---- */

static void count(ms_srv *s, int status)
{
    pthread_mutex_lock(&s->mu);
    if (status / 100 >= 2 && status / 100 <= 5) s->counts.status[status / 100]++;
    s->counts.s400 += status == 400;
    s->counts.s401 += status == 401;
    s->counts.s404 += status == 404;
    s->counts.s413 += status == 413;
    s->counts.s429 += status == 429;
    pthread_mutex_unlock(&s->mu);
}

static enum MHD_Result respond(ms_srv *s, struct MHD_Connection *mc, int status, const char *type, const char *body,
                               size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(mc, (unsigned)status, resp);
    MHD_destroy_response(resp);
    count(s, status);
    return rc;
}

static enum MHD_Result respond_json(ms_srv *s, struct MHD_Connection *mc, int status, ms_strbuf *b)
{
    enum MHD_Result rc = b->oom ? MHD_NO : respond(s, mc, status, "application/json", ms_sb_str(b), b->len);
    ms_sb_free(b);
    return rc;
}

static enum MHD_Result respond_error(ms_srv *s, struct MHD_Connection *mc, const ms_srv_error *e)
{
    ms_strbuf b = {0};
    ms_srv_error_body(&b, e);
    return respond_json(s, mc, e->status, &b);
}

static enum MHD_Result fail(ms_srv *s, struct MHD_Connection *mc, int status, const char *param, const char *code,
                            const char *msg)
{
    ms_srv_error e;
    ms_srv_errorf(&e, status, param, code, "%s", msg);
    return respond_error(s, mc, &e);
}

/* Has the client closed its side? */
static bool hung_up(int fd)
{
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static int conn_fd(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? (int)ci->connect_fd : -1;
}

static bool authorized(const ms_srv *s, struct MHD_Connection *mc)
{
    if (!s->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    size_t a = strlen(h), b = strlen(s->o.api_key);
    unsigned diff = a != b;
    for (size_t i = 0; i < a; i++) diff |= (unsigned char)h[i] ^ (unsigned char)s->o.api_key[i % (b ? b : 1)];
    return diff == 0;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- request -> scheduler request ---- */

static const char *last_user_text(json_object *msgs)
{
    for (size_t i = json_object_array_length(msgs); i-- > 0;) {
        json_object *m = json_object_array_get_idx(msgs, i);
        if (!strcmp(json_object_get_string(ms_json_get(m, "role")), "user"))
            return json_object_get_string(ms_json_get(m, "content"));
    }
    return NULL;
}

static int encode(const ms_srv *s, const char *text, unsigned flags, int32_t **ids, int *n, ms_srv_error *e)
{
    size_t nn = 0;
    ms_err err = {0};
    if (ms_tokenizer_encode(s->tok, text, strlen(text), flags, ids, &nn, &err) < 0)
        return ms_srv_errorf(e, 400, NULL, NULL, "%s", err.msg);
    *n = (int)nn;
    return 0;
}

/* Everything the scheduler needs, from a parsed request (the connection's thread). */
static int prepare(ms_srv *s, ms_srv_request *q, ms_sched_req *r, ms_srv_error *e)
{
    ms_err err = {0};
    if (q->model && strcmp(q->model, s->o.name))
        return ms_srv_errorf(e, 404, "model", "model_not_found", "The model '%.200s' does not exist (this server runs '%.200s')",
                             q->model, s->o.name);
    const char *script_key = NULL;
    bool parse_tools = false;
    if (q->kind == MS_SRV_CHAT) {
        char *prompt = NULL;
        size_t pl = 0;
        const char *forced = NULL;
        if (ms_srv_chat_render(s->chat, q, &prompt, &pl, &forced, &err) < 0)
            return ms_srv_errorf(e, 400, "messages", NULL, "%s", err.msg);
        int rc = encode(s, prompt, 0, &r->prompt, &r->n_prompt, e);
        parse_tools = q->tools && q->tool_choice != MS_TOOLS_NONE;
        if (rc == 0 && ms_srv_parser_new(s->chat, parse_tools ? q->tools : NULL, prompt, pl, forced, &r->parser, &err) < 0)
            rc = ms_srv_errorf(e, 500, NULL, NULL, "%s", err.msg);
        free(prompt);
        if (rc < 0) return rc;
        r->n_stop_ids = (int)ms_srv_chat_stop_ids(s->chat, parse_tools, r->stop_ids, MS_ARRAY_LEN(r->stop_ids));
        r->detok_flags = parse_tools ? 0 : MS_TOK_SKIP_SPECIAL;
        script_key = last_user_text(q->messages);
    } else {
        if (q->prompt) {
            if (encode(s, q->prompt, MS_TOK_ADD_BOS, &r->prompt, &r->n_prompt, e) < 0) return -1;
        } else {
            r->prompt = q->prompt_ids; /* taken over */
            r->n_prompt = q->n_prompt_ids;
            q->prompt_ids = NULL;
        }
        size_t ns = 0;
        const int32_t *st = ms_tokenizer_stop_ids(s->tok, &ns);
        for (size_t i = 0; i < ns && r->n_stop_ids < (int)MS_ARRAY_LEN(r->stop_ids); i++) r->stop_ids[r->n_stop_ids++] = st[i];
        r->detok_flags = MS_TOK_SKIP_SPECIAL;
        script_key = q->prompt;
    }
    if (r->n_stop_ids == 0)
        for (int i = 0; i < s->e->model.cfg.n_eos && i < (int)MS_ARRAY_LEN(r->stop_ids); i++)
            r->stop_ids[r->n_stop_ids++] = s->e->model.cfg.eos_token_ids[i];
    if (r->n_prompt >= s->e->ctx)
        return ms_srv_errorf(e, 400, q->kind == MS_SRV_CHAT ? "messages" : "prompt", "context_length_exceeded",
                             "This model's maximum context length is %d tokens (--ctx); the prompt has %d tokens, "
                             "leaving no room for an answer",
                             s->e->ctx, r->n_prompt);
    r->sampling = q->sampling;
    if (!q->seed_given) {
        pthread_mutex_lock(&s->mu);
        r->sampling.seed = mix(s->seed_base + ++s->n_ids);
        pthread_mutex_unlock(&s->mu);
    }
    r->bias_ids = q->bias_ids; /* taken over */
    r->bias = q->bias;
    q->bias_ids = NULL;
    q->bias = NULL;
    r->max_tokens = q->max_tokens;
    r->ignore_eos = q->ignore_eos;
    for (int i = 0; i < q->n_stop; i++)
        if (!(r->stop[r->n_stop++] = strdup(q->stop[i]))) return ms_srv_errorf(e, 500, NULL, NULL, "out of memory");
    r->logprobs = q->logprobs;
    r->top_logprobs = q->top_logprobs;
    json_object *sc = script_key && s->o.script ? ms_json_get(s->o.script, script_key) : NULL;
    if (json_object_is_type(sc, json_type_string) && encode(s, json_object_get_string(sc), 0, &r->script, &r->n_script, e) < 0)
        return -1;
    return 0;
}

static void log_line(ms_srv *s, const char *path, int status, const ms_sched_req *r)
{
    if (s->o.quiet) return;
    if (!r) {
        fprintf(stderr, "serve: POST %s %d\n", path, status);
        return;
    }
    double t = r->t_done - r->t_submit, ttft = r->t_first > 0 ? r->t_first - r->t_submit : 0;
    char mtp[64] = "";
    if (r->mtp_drafted)
        snprintf(mtp, sizeof mtp, ", mtp %d of %d drafts accepted", r->mtp_accepted, r->mtp_drafted);
    fprintf(stderr, "serve: POST %s %d prompt %d (cached %d) generated %d, %s, first token %.2f s, %.2f s%s\n", path,
            status, r->n_prompt, r->n_cached, r->n_gen, r->finish ? r->finish : "-", ttft, t > 0 ? t : 0, mtp);
}

/* ---- streaming ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream *st = cls;
    while (st->out_pos == st->out.len) {
        if (st->done) return MHD_CONTENT_READER_END_OF_STREAM;
        ms_sb_truncate(&st->out, 0);
        st->out_pos = 0;
        ms_sched_lock(st->s->sched);
        for (;;) {
            st->done = ms_srv_stream_events(&st->out, &st->a, st->r, &st->cur);
            if (st->out.len || st->done) break;
            if (hung_up(st->fd)) {
                ms_sched_unlock(st->s->sched);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            ms_sched_wait(st->s->sched, st->r, 100);
        }
        ms_sched_unlock(st->s->sched);
        if (st->out.oom) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = MS_MIN(max, st->out.len - st->out_pos);
    memcpy(buf, st->out.s + st->out_pos, n);
    st->out_pos += n;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    stream *st = cls;
    ms_sched_lock(st->s->sched);
    bool unfinished = !st->r->finish;
    ms_sched_unlock(st->s->sched);
    bool cut = unfinished || !st->done;
    if (cut) {
        ms_sched_cancel(st->s->sched, st->r);
        pthread_mutex_lock(&st->s->mu);
        st->s->counts.disconnects++;
        pthread_mutex_unlock(&st->s->mu);
    }
    ms_sched_lock(st->s->sched);
    log_line(st->s, st->path, cut ? 499 : 200, st->r); /* streamed answers log when they end */
    ms_sched_unlock(st->s->sched);
    ms_sched_release(st->s->sched, st->r);
    ms_sb_free(&st->out);
    free(st);
}

/* ---- completions ---- */

static enum MHD_Result completion(ms_srv *s, struct MHD_Connection *mc, conn *c, ms_srv_kind kind, const char *path)
{
    ms_srv_request q;
    ms_srv_error e;
    if (ms_srv_request_parse(kind, ms_sb_str(&c->body), c->body.len, &s->o.defaults, &q, &e) < 0) {
        ms_srv_request_free(&q);
        log_line(s, path, e.status, NULL);
        return respond_error(s, mc, &e);
    }
    ms_sched_req *r = ms_sched_req_new();
    if (!r) {
        ms_srv_request_free(&q);
        return fail(s, mc, 500, NULL, NULL, "out of memory");
    }
    int rc = prepare(s, &q, r, &e);
    ms_srv_answer a = {.kind = kind, .created = (long long)time(NULL), .model = s->o.name, .tok = s->tok,
                       .include_usage = q.include_usage};
    bool streamed = q.stream;
    ms_srv_request_free(&q);
    ms_err err = {0};
    if (rc == 0 && (rc = ms_sched_submit(s->sched, r, &err)) < 0) {
        if (rc == -EBUSY) ms_srv_errorf(&e, 429, NULL, "queue_full", "%s", err.msg);
        else if (rc == -ESHUTDOWN) ms_srv_errorf(&e, 503, NULL, NULL, "%s", err.msg);
        else ms_srv_errorf(&e, 400, NULL, NULL, "%s", err.msg);
    }
    if (rc < 0) {
        ms_sched_release(s->sched, r);
        log_line(s, path, e.status, NULL);
        return respond_error(s, mc, &e);
    }
    pthread_mutex_lock(&s->mu);
    snprintf(a.id, sizeof a.id, "%s-%016llx", kind == MS_SRV_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)mix(s->seed_base ^ (++s->n_ids << 1)));
    pthread_mutex_unlock(&s->mu);
    int fd = conn_fd(mc);
    if (streamed) {
        stream *st = calloc(1, sizeof *st);
        struct MHD_Response *resp = st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, st, stream_free)
                                       : NULL;
        if (!resp) {
            ms_sched_cancel(s->sched, r);
            ms_sched_release(s->sched, r);
            free(st);
            return MHD_NO;
        }
        *st = (stream){.s = s, .r = r, .a = a, .fd = fd};
        snprintf(st->path, sizeof st->path, "%s", path);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result q2 = MHD_queue_response(mc, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp); /* stream_free runs when the connection is done with it */
        count(s, 200);
        return q2;
    }
    ms_strbuf b = {0};
    int status = 200;
    ms_sched_lock(s->sched);
    while (!r->finish) {
        if (hung_up(fd)) {
            ms_sched_unlock(s->sched);
            ms_sched_cancel(s->sched, r);
            ms_sched_lock(s->sched);
            while (!r->finish) ms_sched_wait(s->sched, r, 100);
            log_line(s, path, 499, r);
            ms_sched_unlock(s->sched);
            ms_sched_release(s->sched, r);
            pthread_mutex_lock(&s->mu);
            s->counts.disconnects++;
            pthread_mutex_unlock(&s->mu);
            return MHD_NO;
        }
        ms_sched_wait(s->sched, r, 100);
    }
    if (!strcmp(r->finish, "error") || !strcmp(r->finish, "cancelled")) {
        status = !strcmp(r->finish, "error") ? 500 : 503;
        ms_srv_errorf(&e, status, NULL, NULL, "%s", !strcmp(r->finish, "error") ? r->error : "the server is shutting down");
        ms_srv_error_body(&b, &e);
    } else {
        ms_srv_body(&b, &a, r);
    }
    log_line(s, path, status, r);
    ms_sched_unlock(s->sched);
    ms_sched_release(s->sched, r);
    return respond_json(s, mc, status, &b);
}

/* ---- routing ---- */

static enum MHD_Result route(ms_srv *s, struct MHD_Connection *mc, conn *c, const char *url, const char *method)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    ms_strbuf b = {0};
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions")) {
        if (!post) return fail(s, mc, 405, NULL, NULL, "use POST");
        return completion(s, mc, c, url[4] == 'c' && url[5] == 'h' ? MS_SRV_CHAT : MS_SRV_COMPLETION, url);
    }
    if (!strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11)) {
        if (!get) return fail(s, mc, 405, NULL, NULL, "use GET");
        bool one = url[10] == '/';
        if (one && strcmp(url + 11, s->o.name))
            return fail(s, mc, 404, "model", "model_not_found", "no such model (this server runs one model)");
        ms_srv_models_body(&b, s->o.name, s->created, one);
        return respond_json(s, mc, 200, &b);
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) return fail(s, mc, 405, NULL, NULL, "use GET");
        ms_sched_metrics m;
        ms_sched_get_metrics(s->sched, &m);
        pthread_mutex_lock(&s->mu);
        ms_srv_http_counts h = s->counts;
        pthread_mutex_unlock(&s->mu);
        ms_srv_metrics_text(&b, &m, &h);
        enum MHD_Result rc = b.oom ? MHD_NO : respond(s, mc, 200, "text/plain; version=0.0.4", ms_sb_str(&b), b.len);
        ms_sb_free(&b);
        return rc;
    }
    return fail(s, mc, 404, NULL, NULL, "no such endpoint (POST /v1/chat/completions, POST /v1/completions, "
                                        "GET /v1/models, GET /health, GET /metrics)");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)version;
    ms_srv *s = cls;
    conn *c = *con_cls;
    if (!c) { /* headers are in: answer early what needs no body */
        if (!(c = calloc(1, sizeof *c))) return MHD_NO;
        *con_cls = c;
        c->answered = true;
        if (!strcmp(url, "/health")) {
            if (strcmp(method, "GET")) return fail(s, mc, 405, NULL, NULL, "use GET");
            static const char ok[] = "{\"status\":\"ok\"}";
            return respond(s, mc, 200, "application/json", ok, sizeof ok - 1);
        }
        if (!authorized(s, mc))
            return fail(s, mc, 401, NULL, "invalid_api_key", "Incorrect API key provided (Authorization: Bearer KEY)");
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (--max-body)", s->o.max_body);
            return fail(s, mc, 413, NULL, "body_too_large", msg);
        }
        c->answered = false;
        return MHD_YES;
    }
    if (c->answered) { /* never run a request that was already refused */
        *data_size = 0;
        return MHD_YES;
    }
    if (*data_size) {
        if (!c->too_large && c->body.len + *data_size > s->o.max_body) {
            c->too_large = true;
            ms_sb_free(&c->body);
        }
        if (!c->too_large) ms_sb_putn(&c->body, data, *data_size);
        *data_size = 0;
        return MHD_YES;
    }
    if (c->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes (--max-body)", s->o.max_body);
        return fail(s, mc, 413, NULL, "body_too_large", msg);
    }
    if (c->body.oom) return fail(s, mc, 500, NULL, NULL, "out of memory");
    return route(s, mc, c, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)mc;
    (void)toe;
    conn *c = *con_cls;
    if (!c) return;
    ms_sb_free(&c->body);
    free(c);
    *con_cls = NULL;
}

/* ---- lifetime ---- */

int ms_srv_start(ms_engine *e, const ms_tokenizer *tok, const ms_srv_chat *chat, ms_sched *sched,
                 const ms_srv_opts *o, ms_srv **out, ms_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int g = getaddrinfo(o->host, port, &hints, &ai);
    if (g != 0) return ms_errf(err, EINVAL, "--host %s: %s", o->host, gai_strerror(g));
    ms_srv *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    *s = (ms_srv){.e = e, .tok = tok, .chat = chat, .sched = sched, .o = *o, .created = (long long)time(NULL)};
    pthread_mutex_init(&s->mu, NULL);
    if (getrandom(&s->seed_base, sizeof s->seed_base, 0) != (ssize_t)sizeof s->seed_base)
        s->seed_base = ms_now_ns() ^ (uint64_t)getpid();
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_CONNECTION_LIMIT,
                            (unsigned)o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
                            MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1u << 20), MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        pthread_mutex_destroy(&s->mu);
        free(s);
        return ms_errf(err, EADDRINUSE, "cannot listen on %s:%d (address in use or not available)", o->host, o->port);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    *out = s;
    return 0;
}

int ms_srv_port(const ms_srv *s) { return s->port; }

void ms_srv_stop(ms_srv *s)
{
    if (!s) return;
    MHD_stop_daemon(s->d);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

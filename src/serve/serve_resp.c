/* serve_resp.c - response bodies, stream events and metrics (see serve_resp.h).
 * Objects are built with json-c and printed plain (no spaces, "/" unescaped). */
#include "serve_resp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define J_STR(s) json_object_new_string(s)
#define J_INT(x) json_object_new_int64((int64_t)(x))

static void put_json(ms_strbuf *out, json_object *o)
{
    ms_sb_puts(out, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
}

static json_object *str_n(const char *s, size_t n) { return json_object_new_string_len(s, (int)n); }

void ms_srv_error_body(ms_strbuf *out, const ms_srv_error *e)
{
    json_object *o = json_object_new_object(), *er = json_object_new_object();
    json_object_object_add(er, "message", J_STR(e->message));
    json_object_object_add(er, "type", J_STR(e->type ? e->type : "server_error"));
    json_object_object_add(er, "param", e->param[0] ? J_STR(e->param) : NULL);
    json_object_object_add(er, "code", e->code[0] ? J_STR(e->code) : NULL);
    json_object_object_add(o, "error", er);
    put_json(out, o);
}

/* ---- pieces ---- */

static json_object *usage(const ms_sched_req *r)
{
    json_object *u = json_object_new_object(), *d = json_object_new_object();
    json_object_object_add(u, "prompt_tokens", J_INT(r->n_prompt));
    json_object_object_add(u, "completion_tokens", J_INT(r->n_gen));
    json_object_object_add(u, "total_tokens", J_INT(r->n_prompt + r->n_gen));
    json_object_object_add(d, "cached_tokens", J_INT(r->n_cached));
    json_object_object_add(u, "prompt_tokens_details", d);
    return u;
}

/* The token's text (invalid UTF-8 as U+FFFD) and, optionally, its bytes. */
static json_object *token_text(const ms_tokenizer *tok, int32_t id, json_object **bytes)
{
    char *t = NULL;
    size_t l = 0;
    ms_err err = {0};
    json_object *s = ms_tokenizer_decode(tok, &id, 1, 0, &t, &l, &err) == 0 ? str_n(t, l) : J_STR("");
    free(t);
    if (bytes) {
        size_t bl = 0;
        const char *b = ms_tokenizer_token_bytes(tok, id, &bl);
        *bytes = json_object_new_array();
        for (size_t i = 0; b && i < bl; i++) json_object_array_add(*bytes, J_INT((unsigned char)b[i]));
    }
    return s;
}

static json_object *lp_entry(const ms_tokenizer *tok, int32_t id, float lp)
{
    json_object *e = json_object_new_object(), *bytes;
    json_object_object_add(e, "token", token_text(tok, id, &bytes));
    json_object_object_add(e, "logprob", json_object_new_double(isfinite(lp) ? lp : -9999.0));
    json_object_object_add(e, "bytes", bytes);
    return e;
}

/* chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}]} for lps[from..to) */
static json_object *chat_logprobs(const ms_srv_answer *a, const ms_sched_req *r, int from, int to)
{
    json_object *o = json_object_new_object(), *arr = json_object_new_array();
    for (int i = from; i < to; i++) {
        const ms_sched_lp *p = &r->lps[i];
        json_object *e = lp_entry(a->tok, p->token, p->lp), *top = json_object_new_array();
        for (int k = 0; k < p->n_top; k++) json_object_array_add(top, lp_entry(a->tok, p->top_ids[k], p->top_lp[k]));
        json_object_object_add(e, "top_logprobs", top);
        json_object_array_add(arr, e);
    }
    json_object_object_add(o, "content", arr);
    return o;
}

/* completions: {"tokens", "token_logprobs", "top_logprobs", "text_offset"} for lps[from..to) */
static json_object *text_logprobs(const ms_srv_answer *a, const ms_sched_req *r, int from, int to)
{
    json_object *o = json_object_new_object(), *toks = json_object_new_array(), *lps = json_object_new_array(),
                *tops = json_object_new_array(), *offs = json_object_new_array();
    size_t off = 0;
    for (int i = 0; i < to; i++) {
        const ms_sched_lp *p = &r->lps[i];
        json_object *t = token_text(a->tok, p->token, NULL);
        size_t tl = (size_t)json_object_get_string_len(t);
        if (i < from) {
            off += tl;
            json_object_put(t);
            continue;
        }
        json_object_array_add(offs, J_INT(off));
        off += tl;
        json_object_array_add(toks, t);
        json_object_array_add(lps, json_object_new_double(p->lp));
        json_object *top = json_object_new_object();
        for (int k = 0; k < p->n_top; k++) {
            json_object *tt = token_text(a->tok, p->top_ids[k], NULL);
            json_object_object_add(top, json_object_get_string(tt), json_object_new_double(p->top_lp[k]));
            json_object_put(tt);
        }
        json_object_array_add(tops, top);
    }
    json_object_object_add(o, "tokens", toks);
    json_object_object_add(o, "token_logprobs", lps);
    json_object_object_add(o, "top_logprobs", tops);
    json_object_object_add(o, "text_offset", offs);
    return o;
}

static json_object *tool_call(const ms_srv_call *c, int index)
{
    json_object *o = json_object_new_object(), *f = json_object_new_object();
    if (index >= 0) json_object_object_add(o, "index", J_INT(index));
    json_object_object_add(o, "id", J_STR(c->id));
    json_object_object_add(o, "type", J_STR("function"));
    json_object_object_add(f, "name", J_STR(c->name));
    json_object_object_add(f, "arguments", J_STR(c->arguments));
    json_object_object_add(o, "function", f);
    return o;
}

static json_object *envelope(const ms_srv_answer *a, bool chunk)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", J_STR(a->id));
    json_object_object_add(o, "object", J_STR(a->kind == MS_SRV_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                                      : "text_completion"));
    json_object_object_add(o, "created", J_INT(a->created));
    json_object_object_add(o, "model", J_STR(a->model));
    return o;
}

static const char *finish_reason(const ms_sched_req *r)
{
    return !strcmp(r->finish, "cancelled") || !strcmp(r->finish, "error") ? "stop" : r->finish;
}

void ms_srv_body(ms_strbuf *out, const ms_srv_answer *a, const ms_sched_req *r)
{
    json_object *o = envelope(a, false), *choices = json_object_new_array(), *ch = json_object_new_object();
    json_object_object_add(ch, "index", J_INT(0));
    if (a->kind == MS_SRV_CHAT) {
        json_object *msg = json_object_new_object();
        json_object_object_add(msg, "role", J_STR("assistant"));
        bool calls = r->n_calls > 0;
        json_object_object_add(msg, "content", calls && r->content.len == 0 ? NULL : str_n(ms_sb_str(&r->content), r->content.len));
        if (r->reasoning.len)
            json_object_object_add(msg, "reasoning_content", str_n(ms_sb_str(&r->reasoning), r->reasoning.len));
        if (calls) {
            json_object *tc = json_object_new_array();
            for (int i = 0; i < r->n_calls; i++) json_object_array_add(tc, tool_call(&r->calls[i], -1));
            json_object_object_add(msg, "tool_calls", tc);
        }
        json_object_object_add(ch, "message", msg);
        json_object_object_add(ch, "logprobs", r->logprobs ? chat_logprobs(a, r, 0, r->n_lps) : NULL);
    } else {
        json_object_object_add(ch, "text", str_n(ms_sb_str(&r->content), r->content.len));
        json_object_object_add(ch, "logprobs", r->logprobs ? text_logprobs(a, r, 0, r->n_lps) : NULL);
    }
    json_object_object_add(ch, "finish_reason", J_STR(finish_reason(r)));
    json_object_array_add(choices, ch);
    json_object_object_add(o, "choices", choices);
    json_object_object_add(o, "usage", usage(r));
    put_json(out, o);
}

/* ---- streaming ---- */

static void event(ms_strbuf *out, json_object *o)
{
    ms_sb_puts(out, "data: ");
    put_json(out, o);
    ms_sb_puts(out, "\n\n");
}

/* One chunk with one choice: delta (chat) or text (completions). */
static void chunk(ms_strbuf *out, const ms_srv_answer *a, json_object *delta, json_object *logprobs, const char *finish)
{
    json_object *o = envelope(a, true), *choices = json_object_new_array(), *ch = json_object_new_object();
    json_object_object_add(ch, "index", J_INT(0));
    if (a->kind == MS_SRV_CHAT) {
        json_object_object_add(ch, "delta", delta);
    } else {
        json_object *t = ms_json_get(delta, "content");
        json_object_object_add(ch, "text", t ? json_object_get(t) : J_STR(""));
        json_object_put(delta);
    }
    json_object_object_add(ch, "logprobs", logprobs);
    json_object_object_add(ch, "finish_reason", finish ? J_STR(finish) : NULL);
    json_object_array_add(choices, ch);
    json_object_object_add(o, "choices", choices);
    if (a->include_usage) json_object_object_add(o, "usage", NULL);
    event(out, o);
}

bool ms_srv_stream_events(ms_strbuf *out, const ms_srv_answer *a, const ms_sched_req *r, ms_srv_cursor *cur)
{
    if (cur->finished) return true;
    bool chat = a->kind == MS_SRV_CHAT;
    if (r->finish && !strcmp(r->finish, "error")) {
        ms_srv_error e;
        ms_srv_errorf(&e, 500, NULL, NULL, "%s", r->error);
        ms_srv_stream_error(out, &e);
        cur->finished = true;
        return true;
    }
    if (chat && !cur->started) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "role", J_STR("assistant"));
        json_object_object_add(d, "content", J_STR(""));
        chunk(out, a, d, NULL, NULL);
    }
    cur->started = true;
    if (r->reasoning.len > cur->reasoning) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "reasoning_content",
                               str_n(ms_sb_str(&r->reasoning) + cur->reasoning, r->reasoning.len - cur->reasoning));
        chunk(out, a, d, NULL, NULL);
        cur->reasoning = r->reasoning.len;
    }
    bool new_lps = r->logprobs && r->n_lps > cur->lps;
    if (r->content.len > cur->content || new_lps) {
        json_object *d = json_object_new_object(), *lp = NULL;
        json_object_object_add(d, "content", str_n(ms_sb_str(&r->content) + cur->content, r->content.len - cur->content));
        if (new_lps) lp = chat ? chat_logprobs(a, r, cur->lps, r->n_lps) : text_logprobs(a, r, cur->lps, r->n_lps);
        chunk(out, a, d, lp, NULL);
        cur->content = r->content.len;
        cur->lps = r->n_lps;
    }
    if (chat && r->n_calls > cur->calls) {
        json_object *d = json_object_new_object(), *tc = json_object_new_array();
        for (int i = cur->calls; i < r->n_calls; i++) json_object_array_add(tc, tool_call(&r->calls[i], i));
        json_object_object_add(d, "tool_calls", tc);
        chunk(out, a, d, NULL, NULL);
        cur->calls = r->n_calls;
    }
    if (!r->finish) return false;
    chunk(out, a, json_object_new_object(), NULL, finish_reason(r));
    if (a->include_usage) {
        json_object *o = envelope(a, true);
        json_object_object_add(o, "choices", json_object_new_array());
        json_object_object_add(o, "usage", usage(r));
        event(out, o);
    }
    ms_sb_puts(out, "data: [DONE]\n\n");
    cur->finished = true;
    return true;
}

void ms_srv_stream_error(ms_strbuf *out, const ms_srv_error *e)
{
    ms_sb_puts(out, "data: ");
    ms_srv_error_body(out, e);
    ms_sb_puts(out, "\n\ndata: [DONE]\n\n");
}

void ms_srv_models_body(ms_strbuf *out, const char *name, long long created, bool one)
{
    json_object *m = json_object_new_object();
    json_object_object_add(m, "id", J_STR(name));
    json_object_object_add(m, "object", J_STR("model"));
    json_object_object_add(m, "created", J_INT(created));
    json_object_object_add(m, "owned_by", J_STR("moestream"));
    if (one) return put_json(out, m);
    json_object *o = json_object_new_object(), *d = json_object_new_array();
    json_object_array_add(d, m);
    json_object_object_add(o, "object", J_STR("list"));
    json_object_object_add(o, "data", d);
    put_json(out, o);
}

/* ---- metrics ---- */

static void metric(ms_strbuf *out, const char *name, const char *type, const char *help, double v)
{
    ms_sb_printf(out, "# HELP moestream_%s %s\n# TYPE moestream_%s %s\nmoestream_%s %.17g\n", name, help, name, type,
                 name, v);
}

void ms_srv_metrics_text(ms_strbuf *out, const ms_sched_metrics *m, const ms_srv_http_counts *h)
{
#define C(n, help, v) metric(out, n, "counter", help, (double)(v))
#define G(n, help, v) metric(out, n, "gauge", help, (double)(v))
    C("requests_total", "completion requests accepted by the scheduler", m->requests);
    C("requests_completed_total", "requests that ended by a stop or a length limit", m->completed);
    C("requests_cancelled_total", "requests whose client went away", m->cancelled);
    C("requests_failed_total", "requests that ended in an error", m->failed);
    ms_sb_puts(out, "# HELP moestream_http_responses_total HTTP responses by status class\n"
                    "# TYPE moestream_http_responses_total counter\n");
    for (int i = 2; i <= 5; i++)
        ms_sb_printf(out, "moestream_http_responses_total{status=\"%dxx\"} %llu\n", i, (unsigned long long)h->status[i]);
    ms_sb_puts(out, "# HELP moestream_http_errors_total HTTP error responses by status\n"
                    "# TYPE moestream_http_errors_total counter\n");
    const struct {
        int code;
        uint64_t n;
    } errs[] = {{400, h->s400}, {401, h->s401}, {404, h->s404}, {413, h->s413}, {429, h->s429}};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        ms_sb_printf(out, "moestream_http_errors_total{status=\"%d\"} %llu\n", errs[i].code, (unsigned long long)errs[i].n);
    C("client_disconnects_total", "answers stopped because the client disconnected", h->disconnects);
    C("prompt_tokens_total", "prompt tokens of admitted requests", m->prompt_tokens);
    C("prompt_tokens_cached_total", "prompt tokens reused from a slot's KV cache", m->cached_tokens);
    C("generated_tokens_total", "tokens generated", m->generated_tokens);
    C("prefill_steps_total", "prefill forward steps (one chunk of one request each)", m->prefill_steps);
    C("prefill_seconds_total", "time in prefill steps", m->prefill_s);
    C("decode_steps_total", "decode forward steps (all decoding sequences together)", m->decode_steps);
    C("decode_rows_total", "tokens of the decode steps (one per sequence per step; --mtp: those a verify step settled)",
      m->decode_rows);
    C("decode_seconds_total", "time in decode steps", m->decode_s);
    G("prefill_tokens_per_second", "prefill tokens / prefill time", m->prefill_s > 0 ? m->prefill_rows / m->prefill_s : 0);
    G("decode_tokens_per_second", "aggregate decode tokens / decode time", m->decode_s > 0 ? m->decode_rows / m->decode_s : 0);
    G("decode_sequences_per_step", "mean sequences per decode step", m->decode_steps ? (double)m->decode_rows / m->decode_steps : 0);
    G("mtp_draft_tokens_per_step", "--mtp N: draft tokens per sequence per decode step (0 = off)", m->mtp);
    C("mtp_drafted_tokens_total", "draft tokens the MTP head proposed", m->mtp_drafted);
    C("mtp_accepted_tokens_total", "draft tokens the verify steps accepted", m->mtp_accepted);
    G("mtp_acceptance_rate", "accepted / drafted", m->mtp_drafted ? (double)m->mtp_accepted / m->mtp_drafted : 0);
    C("mtp_draft_rows_total", "rows of the draft head's decode calls (drafts and deferred refills)", m->mtp_draft_rows);
    C("mtp_verify_rows_total", "rows of the verify steps (pending tokens and drafts)", m->mtp_verify_rows);
    C("expert_accesses_total", "routed-expert acquisitions", m->accesses);
    C("expert_hits_total", "acquisitions served from the expert cache", m->hits);
    G("expert_hit_rate", "hits / accesses", m->accesses ? (double)m->hits / m->accesses : 0);
    C("expert_reads_total", "experts read from disk", m->expert_reads);
    C("expert_bytes_read_total", "bytes read from disk into the expert cache", m->bytes_read);
    C("decode_expert_bytes_read_total", "expert bytes read during decode steps", m->decode_bytes_read);
    G("decode_expert_bytes_per_token", "expert bytes read per generated token in decode steps",
      m->decode_rows ? (double)m->decode_bytes_read / m->decode_rows : 0);
    G("read_gbps", "expert read throughput while reads were in flight (GB/s)",
      m->read_busy_s > 0 ? m->bytes_read / m->read_busy_s / 1e9 : 0);
    C("io_wait_seconds_total", "time compute waited for expert reads", m->io_wait_s);
    G("queue_length", "requests waiting for a slot", m->queued);
    G("active_slots", "slots running a request", m->active);
    G("parallel_slots", "slots (--parallel)", m->parallel);
    G("cache_slots", "expert-cache slots", m->cache_slots);
    G("cache_bytes", "expert-cache arena bytes", m->cache_bytes);
    G("peak_rss_bytes", "peak resident set size", m->peak_rss);
    G("ram_budget_bytes", "the --ram budget", m->budget);
#undef C
#undef G
}

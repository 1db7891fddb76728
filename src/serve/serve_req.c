/* serve_req.c - OpenAI request bodies -> ms_srv_request (see serve_req.h).
 * One table of fields per endpoint: each known key has a handler; a key not in
 * the table is a 400 naming it. Handlers check type and range and write the
 * struct; checks that span fields (tool_choice vs tools, top_logprobs vs
 * logprobs, stream_options vs stream) run after the walk. */
#include "serve_req.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "strbuf.h"

int ms_srv_errorf(ms_srv_error *e, int status, const char *param, const char *code, const char *fmt, ...)
{
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "not_found_error"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

typedef struct pctx {
    ms_srv_request *r;
    ms_srv_error *e;
    bool have_stream_options, logprobs_given, max_completion;
} pctx;

static int bad(pctx *c, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(pctx *c, const char *field, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ms_srv_errorf(c->e, 400, field, NULL, "'%s': %s", field, msg);
}

static const char *type_name(json_object *v)
{
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int: return "a number";
    case json_type_string: return "a string";
    case json_type_array: return "an array";
    case json_type_object: return "an object";
    }
    return "?";
}

/* ---- typed values (the field is present and not null) ---- */

static int get_bool(pctx *c, const char *k, json_object *v, bool *out)
{
    *out = false;
    if (!json_object_is_type(v, json_type_boolean)) return bad(c, k, "expected a boolean, got %s", type_name(v));
    *out = json_object_get_boolean(v);
    return 0;
}

static int get_num(pctx *c, const char *k, json_object *v, double lo, double hi, double *out)
{
    *out = 0;
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return bad(c, k, "expected a number, got %s", type_name(v));
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < lo || d > hi) return bad(c, k, "%g is out of range [%g, %g]", d, lo, hi);
    *out = d;
    return 0;
}

static int get_int(pctx *c, const char *k, json_object *v, int64_t lo, int64_t hi, int64_t *out)
{
    int64_t x = 0;
    *out = 0;
    if (!ms_json_i64(v, &x)) return bad(c, k, "expected an integer, got %s", type_name(v));
    if (x < lo || x > hi) return bad(c, k, "%lld is out of range [%lld, %lld]", (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static int get_str(pctx *c, const char *k, json_object *v, const char **out)
{
    *out = "";
    if (!json_object_is_type(v, json_type_string)) return bad(c, k, "expected a string, got %s", type_name(v));
    *out = json_object_get_string(v);
    return 0;
}

/* ---- fields shared by both endpoints ---- */

static int f_model(pctx *c, const char *k, json_object *v) { return get_str(c, k, v, &c->r->model); }

static int f_stream(pctx *c, const char *k, json_object *v) { return get_bool(c, k, v, &c->r->stream); }

static int f_stream_options(pctx *c, const char *k, json_object *v)
{
    if (!json_object_is_type(v, json_type_object)) return bad(c, k, "expected an object, got %s", type_name(v));
    c->have_stream_options = true;
    json_object_object_foreach(v, sk, sv)
    {
        if (!strcmp(sk, "include_usage")) {
            if (!ms_json_null(sv) && get_bool(c, "stream_options.include_usage", sv, &c->r->include_usage) < 0)
                return -1;
        } else {
            char f[80];
            snprintf(f, sizeof f, "stream_options.%.50s", sk);
            return bad(c, f, "unknown field");
        }
    }
    return 0;
}

static int f_max_tokens(pctx *c, const char *k, json_object *v)
{
    int64_t x;
    if (get_int(c, k, v, 1, 1 << 24, &x) < 0) return -1;
    bool mc = !strcmp(k, "max_completion_tokens");
    if (mc || !c->max_completion) c->r->max_tokens = (int)x; /* max_completion_tokens wins */
    c->max_completion |= mc;
    return 0;
}

static int f_temperature(pctx *c, const char *k, json_object *v)
{
    double d;
    if (get_num(c, k, v, 0, 2, &d) < 0) return -1;
    c->r->sampling.temperature = (float)d;
    return 0;
}

static int f_top_p(pctx *c, const char *k, json_object *v)
{
    double d;
    if (get_num(c, k, v, 0, 1, &d) < 0) return -1;
    if (d <= 0) return bad(c, k, "must be > 0");
    c->r->sampling.top_p = (float)d;
    return 0;
}

static int f_top_k(pctx *c, const char *k, json_object *v)
{
    int64_t x;
    if (get_int(c, k, v, -1, 1 << 24, &x) < 0) return -1;
    c->r->sampling.top_k = x < 0 ? 0 : (int)x; /* -1 = off, as vLLM */
    return 0;
}

static int f_min_p(pctx *c, const char *k, json_object *v)
{
    double d;
    if (get_num(c, k, v, 0, 1, &d) < 0) return -1;
    if (d >= 1) return bad(c, k, "must be < 1");
    c->r->sampling.min_p = (float)d;
    return 0;
}

static int f_repeat_penalty(pctx *c, const char *k, json_object *v)
{
    double d;
    if (get_num(c, k, v, 0, 100, &d) < 0) return -1;
    if (d <= 0) return bad(c, k, "must be > 0");
    c->r->sampling.repetition_penalty = (float)d;
    return 0;
}

static int f_penalty(pctx *c, const char *k, json_object *v)
{
    double d;
    if (get_num(c, k, v, -2, 2, &d) < 0) return -1;
    if (!strcmp(k, "presence_penalty")) c->r->sampling.presence_penalty = (float)d;
    else c->r->sampling.frequency_penalty = (float)d;
    return 0;
}

static int f_seed(pctx *c, const char *k, json_object *v)
{
    int64_t x;
    if (get_int(c, k, v, INT64_MIN, INT64_MAX, &x) < 0) return -1;
    c->r->sampling.seed = (uint64_t)x;
    c->r->seed_given = true;
    return 0;
}

static int f_stop(pctx *c, const char *k, json_object *v)
{
    ms_srv_request *r = c->r;
    json_object *one[1] = {v};
    size_t n = 1;
    json_object **items = one;
    if (json_object_is_type(v, json_type_array)) {
        n = json_object_array_length(v);
        if (n > MS_SRV_MAX_STOP) return bad(c, k, "at most %d stop strings", MS_SRV_MAX_STOP);
        items = NULL;
    } else if (!json_object_is_type(v, json_type_string)) {
        return bad(c, k, "expected a string or an array of strings, got %s", type_name(v));
    }
    for (size_t i = 0; i < n; i++) {
        json_object *s = items ? items[i] : json_object_array_get_idx(v, i);
        if (!json_object_is_type(s, json_type_string)) return bad(c, k, "stop strings must be strings");
        if (json_object_get_string_len(s) == 0) return bad(c, k, "stop strings must not be empty");
        if (json_object_get_string_len(s) > 1024) return bad(c, k, "a stop string is longer than 1024 bytes");
        r->stop[r->n_stop++] = json_object_get_string(s);
    }
    return 0;
}

static int f_logit_bias(pctx *c, const char *k, json_object *v)
{
    ms_srv_request *r = c->r;
    if (!json_object_is_type(v, json_type_object)) return bad(c, k, "expected an object, got %s", type_name(v));
    int n = json_object_object_length(v);
    if (n > MS_SRV_MAX_BIAS) return bad(c, k, "at most %d entries", MS_SRV_MAX_BIAS);
    if (n == 0) return 0;
    r->bias_ids = malloc((size_t)n * sizeof *r->bias_ids);
    r->bias = malloc((size_t)n * sizeof *r->bias);
    if (!r->bias_ids || !r->bias) return ms_srv_errorf(c->e, 500, NULL, NULL, "out of memory");
    int i = 0;
    json_object_object_foreach(v, bk, bv)
    {
        char *end;
        long long id = strtoll(bk, &end, 10);
        if (!*bk || *end || id < 0 || id > INT32_MAX) return bad(c, k, "key '%.40s' is not a token id", bk);
        double d;
        if (get_num(c, k, bv, -100, 100, &d) < 0) return -1;
        r->bias_ids[i] = (int32_t)id;
        r->bias[i++] = (float)d;
    }
    r->sampling.bias_ids = r->bias_ids;
    r->sampling.bias = r->bias;
    r->sampling.n_bias = i;
    return 0;
}

static int f_n(pctx *c, const char *k, json_object *v)
{
    int64_t x;
    if (get_int(c, k, v, 1, 1 << 20, &x) < 0) return -1;
    if (x != 1) return bad(c, k, "only n = 1 is supported (send separate requests)");
    return 0;
}

static int f_ignore_eos(pctx *c, const char *k, json_object *v) { return get_bool(c, k, v, &c->r->ignore_eos); }

static int f_ignored(pctx *c, const char *k, json_object *v) { return 0; }

static int f_top_logprobs(pctx *c, const char *k, json_object *v)
{
    int64_t x;
    if (get_int(c, k, v, 0, MS_SRV_MAX_TOP_LOGPROBS, &x) < 0) return -1;
    c->r->top_logprobs = (int)x;
    return 0;
}

/* ---- chat ---- */

static int f_chat_logprobs(pctx *c, const char *k, json_object *v)
{
    c->logprobs_given = true;
    return get_bool(c, k, v, &c->r->logprobs);
}

/* "a", or [{"type": "text", "text": "a"}, ...] joined with "\n". */
static int content_text(pctx *c, const char *field, json_object *v, ms_strbuf *out)
{
    if (json_object_is_type(v, json_type_string)) {
        ms_sb_putn(out, json_object_get_string(v), (size_t)json_object_get_string_len(v));
        return 0;
    }
    if (!json_object_is_type(v, json_type_array))
        return bad(c, field, "expected a string or an array of content parts, got %s", type_name(v));
    size_t n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(v, i), *t = ms_json_get(p, "type"), *tx = ms_json_get(p, "text");
        if (!json_object_is_type(p, json_type_object)) return bad(c, field, "content part %zu is not an object", i);
        const char *ty = json_object_is_type(t, json_type_string) ? json_object_get_string(t) : "";
        if (strcmp(ty, "text"))
            return bad(c, field, "content part %zu: type '%.40s' is not supported (text only)", i, ty);
        if (!json_object_is_type(tx, json_type_string)) return bad(c, field, "content part %zu has no text", i);
        if (i) ms_sb_putc(out, '\n');
        ms_sb_putn(out, json_object_get_string(tx), (size_t)json_object_get_string_len(tx));
    }
    return 0;
}

static json_object *str_new(const char *s, size_t n) { return json_object_new_string_len(s, (int)n); }

/* [{id, type: "function", function: {name, arguments: string}}] of an assistant message. */
static int msg_tool_calls(pctx *c, const char *field, json_object *v, json_object *m)
{
    if (!json_object_is_type(v, json_type_array)) return bad(c, field, "expected an array, got %s", type_name(v));
    json_object *calls = json_object_new_array();
    json_object_object_add(m, "tool_calls", calls);
    size_t n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
        json_object *tc = json_object_array_get_idx(v, i), *fn = ms_json_get(tc, "function");
        json_object *id = ms_json_get(tc, "id"), *ty = ms_json_get(tc, "type");
        json_object *name = ms_json_get(fn, "name"), *args = ms_json_get(fn, "arguments");
        if (!json_object_is_type(tc, json_type_object) || !json_object_is_type(fn, json_type_object))
            return bad(c, field, "tool call %zu needs a function object", i);
        if (!ms_json_null(ty) && (!json_object_is_type(ty, json_type_string) || strcmp(json_object_get_string(ty), "function")))
            return bad(c, field, "tool call %zu: type must be \"function\"", i);
        if (!json_object_is_type(name, json_type_string)) return bad(c, field, "tool call %zu has no function.name", i);
        const char *a = "{}";
        if (!ms_json_null(args)) {
            if (json_object_is_type(args, json_type_string)) a = json_object_get_string(args);
            else if (json_object_is_type(args, json_type_object)) a = json_object_to_json_string_ext(args, JSON_C_TO_STRING_PLAIN);
            else return bad(c, field, "tool call %zu: function.arguments must be a JSON string", i);
        }
        json_object *o = json_object_new_object(), *f = json_object_new_object();
        if (json_object_is_type(id, json_type_string)) json_object_object_add(o, "id", json_object_get(id));
        json_object_object_add(o, "type", json_object_new_string("function"));
        json_object_object_add(f, "name", json_object_get(name));
        json_object_object_add(f, "arguments", json_object_new_string(a));
        json_object_object_add(o, "function", f);
        json_object_array_add(calls, o);
    }
    return 0;
}

static int f_messages(pctx *c, const char *k, json_object *v)
{
    if (!json_object_is_type(v, json_type_array)) return bad(c, k, "expected an array, got %s", type_name(v));
    size_t n = json_object_array_length(v);
    if (n == 0) return bad(c, k, "must not be empty");
    json_object *out = json_object_new_array();
    c->r->messages = out;
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(v, i);
        char field[48];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!json_object_is_type(m, json_type_object)) return bad(c, field, "expected an object, got %s", type_name(m));
        json_object *role = ms_json_get(m, "role");
        if (!json_object_is_type(role, json_type_string)) return bad(c, field, "'role' is required (a string)");
        const char *r = json_object_get_string(role);
        bool asst = !strcmp(r, "assistant");
        if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && !asst && strcmp(r, "tool"))
            return bad(c, field, "unknown role '%.40s' (system, developer, user, assistant, tool)", r);
        json_object *nm = json_object_new_object();
        json_object_array_add(out, nm);
        json_object_object_add(nm, "role", json_object_new_string(!strcmp(r, "developer") ? "system" : r));
        bool has_content = false, has_calls = false;
        json_object_object_foreach(m, mk, mv)
        {
            char f[112];
            snprintf(f, sizeof f, "%s.%.50s", field, mk);
            if (!strcmp(mk, "role")) continue;
            if (!strcmp(mk, "content")) {
                if (ms_json_null(mv)) continue;
                ms_strbuf sb = {0};
                int rc = content_text(c, f, mv, &sb);
                if (rc == 0) json_object_object_add(nm, "content", str_new(ms_sb_str(&sb), sb.len));
                ms_sb_free(&sb);
                if (rc < 0) return -1;
                has_content = true;
            } else if (!strcmp(mk, "name") || !strcmp(mk, "tool_call_id") ||
                       (asst && (!strcmp(mk, "reasoning_content") || !strcmp(mk, "reasoning")))) {
                if (ms_json_null(mv)) continue;
                const char *s;
                if (get_str(c, f, mv, &s) < 0) return -1;
                json_object_object_add(nm, !strcmp(mk, "reasoning") ? "reasoning_content" : mk, json_object_get(mv));
            } else if (asst && !strcmp(mk, "tool_calls")) {
                if (ms_json_null(mv)) continue;
                if (msg_tool_calls(c, f, mv, nm) < 0) return -1;
                has_calls = json_object_array_length(mv) > 0;
            } else if (asst && (!strcmp(mk, "refusal") || !strcmp(mk, "annotations") || !strcmp(mk, "audio"))) {
                if (!ms_json_null(mv) && strcmp(mk, "annotations")) return bad(c, f, "is not supported");
            } else {
                return bad(c, f, "unknown field");
            }
        }
        if (!has_content && !(asst && has_calls)) {
            if (!asst) return bad(c, field, "'content' is required");
            return bad(c, field, "an assistant message needs content or tool_calls");
        }
        if (!has_content) json_object_object_add(nm, "content", NULL);
    }
    return 0;
}

static bool tool_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

static int f_tools(pctx *c, const char *k, json_object *v)
{
    if (!json_object_is_type(v, json_type_array)) return bad(c, k, "expected an array, got %s", type_name(v));
    size_t n = json_object_array_length(v);
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(v, i), *ty = ms_json_get(t, "type"), *fn = ms_json_get(t, "function");
        char field[48];
        snprintf(field, sizeof field, "tools[%zu]", i);
        if (!json_object_is_type(t, json_type_object)) return bad(c, field, "expected an object");
        if (!json_object_is_type(ty, json_type_string) || strcmp(json_object_get_string(ty), "function"))
            return bad(c, field, "type must be \"function\"");
        if (!json_object_is_type(fn, json_type_object)) return bad(c, field, "'function' must be an object");
        json_object *name = ms_json_get(fn, "name"), *params = ms_json_get(fn, "parameters"),
                    *desc = ms_json_get(fn, "description");
        if (!json_object_is_type(name, json_type_string) || !tool_name_ok(json_object_get_string(name)))
            return bad(c, field, "function.name must be 1-64 characters of a-z, A-Z, 0-9, _, -, .");
        if (!ms_json_null(params) && !json_object_is_type(params, json_type_object))
            return bad(c, field, "function.parameters must be an object (a JSON schema)");
        if (!ms_json_null(desc) && !json_object_is_type(desc, json_type_string))
            return bad(c, field, "function.description must be a string");
        for (size_t j = 0; j < i; j++) {
            json_object *o = ms_json_get(ms_json_get(json_object_array_get_idx(v, j), "function"), "name");
            if (!strcmp(json_object_get_string(o), json_object_get_string(name)))
                return bad(c, field, "duplicate function name '%s'", json_object_get_string(name));
        }
    }
    c->r->tools = n ? v : NULL;
    return 0;
}

static int f_tool_choice(pctx *c, const char *k, json_object *v)
{
    ms_srv_request *r = c->r;
    if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        if (!strcmp(s, "auto")) r->tool_choice = MS_TOOLS_AUTO;
        else if (!strcmp(s, "none")) r->tool_choice = MS_TOOLS_NONE;
        else if (!strcmp(s, "required")) r->tool_choice = MS_TOOLS_REQUIRED;
        else return bad(c, k, "'%.40s' is not one of auto, none, required", s);
        return 0;
    }
    json_object *ty = ms_json_get(v, "type"), *name = ms_json_get(ms_json_get(v, "function"), "name");
    if (!json_object_is_type(v, json_type_object) || !json_object_is_type(ty, json_type_string) ||
        strcmp(json_object_get_string(ty), "function") || !json_object_is_type(name, json_type_string))
        return bad(c, k, "expected \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
    r->tool_choice = MS_TOOLS_NAMED;
    r->tool_name = json_object_get_string(name);
    return 0;
}

static int f_response_format(pctx *c, const char *k, json_object *v)
{
    json_object *ty = ms_json_get(v, "type");
    if (!json_object_is_type(v, json_type_object) || !json_object_is_type(ty, json_type_string))
        return bad(c, k, "expected {\"type\": ...}");
    if (strcmp(json_object_get_string(ty), "text"))
        return bad(c, k, "type '%.40s' is not supported (text only: no constrained decoding)", json_object_get_string(ty));
    return 0;
}

static int f_kwargs(pctx *c, const char *k, json_object *v)
{
    if (!json_object_is_type(v, json_type_object)) return bad(c, k, "expected an object, got %s", type_name(v));
    c->r->template_kwargs = v;
    return 0;
}

/* ---- completions ---- */

static int ids_from(pctx *c, const char *k, json_object *a)
{
    ms_srv_request *r = c->r;
    size_t n = json_object_array_length(a);
    if (n == 0) return bad(c, k, "must not be empty");
    if (n > (1u << 24)) return bad(c, k, "too many tokens");
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return ms_srv_errorf(c->e, 500, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int64_t x;
        if (get_int(c, k, json_object_array_get_idx(a, i), 0, INT32_MAX, &x) < 0) return -1;
        r->prompt_ids[i] = (int32_t)x;
    }
    r->n_prompt_ids = (int)n;
    return 0;
}

static int f_prompt(pctx *c, const char *k, json_object *v)
{
    if (json_object_is_type(v, json_type_string)) {
        if (json_object_get_string_len(v) == 0) return bad(c, k, "must not be empty");
        c->r->prompt = json_object_get_string(v);
        return 0;
    }
    if (!json_object_is_type(v, json_type_array))
        return bad(c, k, "expected a string, an array of token ids, or one of them in an array");
    size_t n = json_object_array_length(v);
    json_object *first = n ? json_object_array_get_idx(v, 0) : NULL;
    if (n >= 1 && (json_object_is_type(first, json_type_string) || json_object_is_type(first, json_type_array))) {
        if (n > 1) return bad(c, k, "several prompts in one request are not supported (send one per request)");
        return f_prompt(c, k, first);
    }
    return ids_from(c, k, v);
}

static int f_completion_logprobs(pctx *c, const char *k, json_object *v)
{
    int64_t x;
    if (get_int(c, k, v, 0, 5, &x) < 0) return -1;
    c->r->logprobs = true;
    c->r->top_logprobs = (int)x;
    return 0;
}

static int f_echo(pctx *c, const char *k, json_object *v)
{
    bool b;
    if (get_bool(c, k, v, &b) < 0) return -1;
    return b ? bad(c, k, "echo is not supported") : 0;
}

static int f_suffix(pctx *c, const char *k, json_object *v)
{
    const char *s;
    if (get_str(c, k, v, &s) < 0) return -1;
    return *s ? bad(c, k, "suffix (insertion) is not supported") : 0;
}

static int f_best_of(pctx *c, const char *k, json_object *v)
{
    int64_t x;
    if (get_int(c, k, v, 1, 1 << 20, &x) < 0) return -1;
    return x != 1 ? bad(c, k, "only best_of = 1 is supported") : 0;
}

/* ---- the walk ---- */

typedef struct field {
    const char *name;
    int (*fn)(pctx *c, const char *k, json_object *v);
} field;

static const field common_fields[] = {
    {"model", f_model},
    {"stream", f_stream},
    {"stream_options", f_stream_options},
    {"max_tokens", f_max_tokens},
    {"temperature", f_temperature},
    {"top_p", f_top_p},
    {"top_k", f_top_k},
    {"min_p", f_min_p},
    {"repeat_penalty", f_repeat_penalty},
    {"repetition_penalty", f_repeat_penalty},
    {"presence_penalty", f_penalty},
    {"frequency_penalty", f_penalty},
    {"seed", f_seed},
    {"stop", f_stop},
    {"logit_bias", f_logit_bias},
    {"n", f_n},
    {"ignore_eos", f_ignore_eos},
    {"user", f_ignored},
    {"metadata", f_ignored},
    {"store", f_ignored},
    {"service_tier", f_ignored},
    {NULL, NULL},
};

static const field chat_fields[] = {
    {"messages", f_messages},
    {"max_completion_tokens", f_max_tokens},
    {"tools", f_tools},
    {"tool_choice", f_tool_choice},
    {"parallel_tool_calls", f_ignored},
    {"logprobs", f_chat_logprobs},
    {"top_logprobs", f_top_logprobs},
    {"response_format", f_response_format},
    {"chat_template_kwargs", f_kwargs},
    {NULL, NULL},
};

static const field completion_fields[] = {
    {"prompt", f_prompt},
    {"logprobs", f_completion_logprobs},
    {"echo", f_echo},
    {"suffix", f_suffix},
    {"best_of", f_best_of},
    {NULL, NULL},
};

static const field *find(const field *t, const char *k)
{
    for (; t->name; t++)
        if (!strcmp(t->name, k)) return t;
    return NULL;
}

int ms_srv_request_parse(ms_srv_kind kind, const char *body, size_t len, const ms_srv_defaults *def,
                         ms_srv_request *out, ms_srv_error *e)
{
    memset(out, 0, sizeof *out);
    ms_srv_request *r = out;
    r->kind = kind;
    r->sampling = def->sampling;
    r->sampling.presence_penalty = r->sampling.frequency_penalty = 0;
    r->sampling.bias_ids = NULL;
    r->sampling.bias = NULL;
    r->sampling.n_bias = 0;
    r->max_tokens = kind == MS_SRV_CHAT ? def->max_tokens : def->completion_max_tokens;
    ms_err err = {0};
    if (ms_json_parse(body, len, "request body", &r->root, &err) < 0)
        return ms_srv_errorf(e, 400, NULL, NULL, "invalid JSON: %s", err.msg);
    if (!json_object_is_type(r->root, json_type_object))
        return ms_srv_errorf(e, 400, NULL, NULL, "the request body must be a JSON object");
    pctx c = {.r = r, .e = e};
    const field *own = kind == MS_SRV_CHAT ? chat_fields : completion_fields;
    json_object_object_foreach(r->root, k, v)
    {
        const field *f = find(common_fields, k);
        if (!f) f = find(own, k);
        if (!f) return ms_srv_errorf(e, 400, k, "unknown_field", "unknown field '%.60s'", k);
        if (ms_json_null(v)) continue; /* null = not given */
        if (f->fn(&c, k, v) < 0) return -1;
    }
    if (kind == MS_SRV_CHAT) {
        if (!r->messages) return ms_srv_errorf(e, 400, "messages", NULL, "'messages' is required");
        if ((r->tool_choice == MS_TOOLS_REQUIRED || r->tool_choice == MS_TOOLS_NAMED) && !r->tools)
            return ms_srv_errorf(e, 400, "tool_choice", NULL, "'tool_choice' %s needs 'tools'",
                                 r->tool_choice == MS_TOOLS_REQUIRED ? "required" : "with a function");
        if (r->tool_choice == MS_TOOLS_NAMED) {
            bool found = false;
            size_t n = json_object_array_length(r->tools);
            for (size_t i = 0; i < n && !found; i++) {
                json_object *nm = ms_json_get(ms_json_get(json_object_array_get_idx(r->tools, i), "function"), "name");
                found = !strcmp(json_object_get_string(nm), r->tool_name);
            }
            if (!found)
                return ms_srv_errorf(e, 400, "tool_choice", NULL, "'tool_choice' names '%.64s', which is not in 'tools'",
                                     r->tool_name);
        }
        if (r->top_logprobs > 0 && !r->logprobs)
            return ms_srv_errorf(e, 400, "top_logprobs", NULL, "'top_logprobs' needs 'logprobs': true");
    } else if (!r->prompt && !r->prompt_ids) {
        return ms_srv_errorf(e, 400, "prompt", NULL, "'prompt' is required");
    }
    if (c.have_stream_options && !r->stream)
        return ms_srv_errorf(e, 400, "stream_options", NULL, "'stream_options' is only allowed with 'stream': true");
    return 0;
}

void ms_srv_request_free(ms_srv_request *r)
{
    if (r->messages) json_object_put(r->messages);
    if (r->root) json_object_put(r->root);
    free(r->prompt_ids);
    free(r->bias_ids);
    free(r->bias);
    memset(r, 0, sizeof *r);
}

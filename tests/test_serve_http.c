/* test_serve_http.c - `moestream serve` end to end over loopback HTTP, on a
 * generated model, the server started as a child process (--port 0):
 *   - routes: /health (no key), /v1/models, /metrics, unknown path 404, wrong
 *     method 405; API key 401;
 *   - a greedy chat answer equals `moestream run --temp 0` on the same prompt
 *     (text and token counts in usage); a streamed answer's chunks reassemble
 *     to the non-streamed text, end with finish_reason, the usage chunk and
 *     [DONE] (curl -N, and our own client);
 *   - stop strings, seed reproducibility, /v1/completions with token ids and
 *     log-probs;
 *   - errors as OpenAI error objects: malformed JSON 400, unknown field 400
 *     naming it, prompt over --ctx 400 context_length_exceeded, unknown model
 *     404, body over --max-body 413 (curl), queue full 429;
 *   - clients that disconnect (streamed and not) cancel their requests;
 *   - a scripted tool call (serve --script tests/data/serve/script.json) streams as tool_calls deltas with
 *     finish_reason "tool_calls";
 *   - --chat-template / --chat-template-kwargs: a Hermes-style template renders the
 *     prompt as `moestream template` does and its format parses the answer
 *     (reasoning, <tool_call> JSON); serve refuses --mtp without an MTP layer, --tools, --seed and bad
 *     sampling defaults;
 *   - load: 200 requests from 8 concurrent clients with bad requests mixed in:
 *     every good one completes, every bad one gets its status, peak RSS stays
 *     within --ram, the server still answers, and SIGTERM stops it (exit 0). */
#include <arpa/inet.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ms_test.h"
#include "mst_serve.h"

#define KEY "sk-test"
#define RAM "160M"

static char *g_model, *g_dir;
static pid_t g_pid;
static int g_port;

/* ---- a minimal HTTP/1.1 client (Connection: close) ---- */

typedef struct resp {
    int status;
    char *body;
    size_t len;
} resp;

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {.tv_sec = 120};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) fail_msg("connect to port %d failed", g_port);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the server may answer early (413) and close */
        p += w;
        n -= (size_t)w;
    }
}

static void send_request(int fd, const char *method, const char *path, const char *key, const char *body)
{
    size_t bl = body ? strlen(body) : 0;
    char *h = mst_fmt("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "%s%s%sContent-Length: %zu\r\n\r\n",
                      method, path, key ? "Authorization: Bearer " : "", key ? key : "", key ? "\r\n" : "", bl);
    send_all(fd, h, strlen(h));
    if (bl) send_all(fd, body, bl);
    free(h);
}

/* Chunked transfer decoding in place. */
static size_t dechunk(char *b, size_t n)
{
    size_t o = 0, i = 0;
    while (i < n) {
        char *end;
        unsigned long sz = strtoul(b + i, &end, 16);
        char *nl = strstr(end, "\r\n");
        if (!nl || sz == 0) break;
        i = (size_t)(nl + 2 - b);
        if (i + sz > n) sz = n - i;
        memmove(b + o, b + i, sz);
        o += sz;
        i += sz + 2;
    }
    b[o] = 0;
    return o;
}

static resp http(const char *method, const char *path, const char *key, const char *body)
{
    int fd = dial();
    send_request(fd, method, path, key, body);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = recv(fd, buf + n, cap - n - 1, 0)) > 0) {
        n += (size_t)r;
        if (cap - n < 4096) buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[n] = 0;
    resp out = {0};
    sscanf(buf, "HTTP/1.%*d %d", &out.status);
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep) fail_msg("%s %s: no HTTP response (%zu bytes)", method, path, n);
    *sep = 0;
    bool chunked = strcasestr(buf, "transfer-encoding: chunked") != NULL;
    out.len = n - (size_t)(sep + 4 - buf);
    out.body = malloc(out.len + 1);
    memcpy(out.body, sep + 4, out.len + 1);
    if (chunked) out.len = dechunk(out.body, out.len);
    free(buf);
    return out;
}

static json_object *post_json(const char *path, const char *body, int expect)
{
    resp r = http("POST", path, KEY, body);
    if (r.status != expect) fail_msg("POST %s %s: status %d, expected %d: %s", path, body, r.status, expect, r.body);
    json_object *o = json_tokener_parse(r.body);
    if (!o) fail_msg("POST %s: not JSON: %s", path, r.body);
    free(r.body);
    return o;
}

static json_object *get(json_object *o, const char *path) /* "a.b.0.c" */
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *tok = strtok(buf, "."); tok && o; tok = strtok(NULL, "."))
        o = json_object_is_type(o, json_type_array) ? json_object_array_get_idx(o, (size_t)atoi(tok))
                                                    : json_object_object_get(o, tok);
    return o;
}

static const char *gs(json_object *o, const char *path)
{
    json_object *v = get(o, path);
    return v ? json_object_get_string(v) : NULL;
}

static int64_t gi(json_object *o, const char *path) { return json_object_get_int64(get(o, path)); }

/* The error object of a refused request: status, param, code. */
static void expect_error(const char *path, const char *key, const char *body, int status, const char *param,
                         const char *code)
{
    resp r = http("POST", path, key, body);
    if (r.status != status) fail_msg("%s: status %d, expected %d: %s", body, r.status, status, r.body);
    json_object *o = json_tokener_parse(r.body);
    if (!o || !gs(o, "error.message") || !gs(o, "error.type")) fail_msg("not an OpenAI error object: %s", r.body);
    if (param) assert_string_equal(gs(o, "error.param"), param);
    if (code) assert_string_equal(gs(o, "error.code"), code);
    json_object_put(o);
    free(r.body);
}

/* ---- server lifetime ---- */

static int setup(void **state)
{
    (void)state;
    g_dir = mst_tmpdir("serve_http");
    g_model = mst_serve_model("serve_http_model");
    if (!g_dir || !g_model) return -1;
    const char *args[] = {"--model", g_model, "--parallel", "4", "--queue", "4", "--ctx", "512", "--batch", "8",
                          "--threads", "2", "--ram", RAM, "--api-key", KEY, "--max-body", "64K", "--script", MS_TEST_DATA "/serve/script.json",
                          "--name", "tiny", NULL};
    g_port = mst_serve_start(g_dir, args, &g_pid);
    return g_port ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (g_pid > 0) mst_serve_stop(g_pid, 5);
    free(g_model);
    free(g_dir);
    return 0;
}

/* ---- tests ---- */

static void test_routes_and_auth(void **state)
{
    (void)state;
    resp r = http("GET", "/health", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    free(r.body);
    r = http("GET", "/v1/models", KEY, NULL);
    assert_int_equal(r.status, 200);
    json_object *o = json_tokener_parse(r.body);
    assert_string_equal(gs(o, "object"), "list");
    assert_string_equal(gs(o, "data.0.id"), "tiny");
    json_object_put(o);
    free(r.body);
    static const struct {
        const char *path, *needle;
        int status;
    } gets[] = {{"/v1/models/tiny", "\"id\":\"tiny\"", 200},       {"/v1/models/other", "model_not_found", 404},
                {"/metrics", "moestream_expert_hit_rate", 200},        {"/metrics", "moestream_peak_rss_bytes", 200},
                {"/nope", "no such endpoint", 404},                     {"/v1/chat/completions", "use POST", 405}};
    for (size_t i = 0; i < sizeof gets / sizeof gets[0]; i++) {
        r = http("GET", gets[i].path, KEY, NULL);
        if (r.status != gets[i].status || !strstr(r.body, gets[i].needle))
            fail_msg("GET %s: %d %s", gets[i].path, r.status, r.body);
        free(r.body);
    }
    expect_error("/v1/models", NULL, NULL, 401, NULL, "invalid_api_key");
    expect_error("/v1/chat/completions", "wrong", "{}", 401, NULL, "invalid_api_key");
}

#define CHAT_HI "{\"model\":\"tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello there\"}],\"temperature\":0," \
                "\"max_tokens\":12,\"ignore_eos\":true"

static void test_chat_equals_run(void **state)
{
    (void)state;
    json_object *o = post_json("/v1/chat/completions", CHAT_HI "}", 200);
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL,
                             "%s run --model %s --prompt 'Hello there' -n 12 --temp 0 --ignore-eos --batch 8 "
                             "--ctx 512 --threads 2 --quiet --stats-json %s/run.json",
                             MS_BIN, g_model, g_dir),
                     0);
    out[strlen(out) - 1] = 0; /* run ends with a newline */
    assert_string_equal(gs(o, "object"), "chat.completion");
    assert_string_equal(gs(o, "choices.0.message.role"), "assistant");
    assert_string_equal(gs(o, "choices.0.message.content"), out);
    assert_string_equal(gs(o, "choices.0.finish_reason"), "length");
    char *stats = mst_fmt("%s/run.json", g_dir);
    json_object *st = json_object_from_file(stats);
    assert_int_equal(gi(o, "usage.prompt_tokens"), gi(st, "prompt_tokens"));
    assert_int_equal(gi(o, "usage.completion_tokens"), 12);
    assert_int_equal(gi(o, "usage.total_tokens"), gi(st, "prompt_tokens") + 12);
    json_object_put(st);
    free(stats);
    free(out);
    json_object_put(o);
}

/* Concatenate the deltas of one field ("content", "reasoning_content") of an SSE
 * body (completions: the text); check its framing. */
static char *reassemble_field(const char *sse, const char *field, json_object **usage, const char **finish,
                              int *n_chunks)
{
    size_t cap = strlen(sse) + 1, n = 0;
    char *text = calloc(1, cap);
    const char *p = sse;
    bool done = false;
    *n_chunks = 0;
    while ((p = strstr(p, "data: "))) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        if (!strncmp(p, "[DONE]", 6)) {
            done = true;
            assert_int_equal(e[2], 0); /* nothing after [DONE] */
            break;
        }
        char *line = strndup(p, (size_t)(e - p));
        json_object *c = json_tokener_parse(line);
        if (!c) fail_msg("bad chunk: %s", line);
        (*n_chunks)++;
        json_object *ch = get(c, "choices.0");
        if (ch) {
            json_object *d = get(json_object_object_get(ch, "delta"), field), *t = get(ch, "text");
            const char *s = d ? json_object_get_string(d) : t ? json_object_get_string(t) : NULL;
            if (s) {
                memcpy(text + n, s, strlen(s));
                n += strlen(s);
            }
            json_object *fr = get(ch, "finish_reason");
            if (fr && !json_object_is_type(fr, json_type_null)) *finish = strdup(json_object_get_string(fr));
        } else if (get(c, "usage")) {
            *usage = json_object_get(get(c, "usage"));
        }
        json_object_put(c);
        free(line);
        p = e + 2;
    }
    assert_true(done);
    return text;
}

static char *reassemble(const char *sse, json_object **usage, const char **finish, int *n_chunks)
{
    return reassemble_field(sse, "content", usage, finish, n_chunks);
}

/* Lines of the server's stderr log containing needle. */
static int log_count(const char *needle)
{
    char *path = mst_fmt("%s/serve.err", g_dir), *text = mst_slurp(path, NULL);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle)) n++;
    free(text);
    free(path);
    return n;
}

static void test_streaming(void **state)
{
    (void)state;
    json_object *whole = post_json("/v1/chat/completions", CHAT_HI "}", 200);
    int logged = log_count("POST /v1/chat/completions 200 prompt");
    /* with curl -N (a real client) */
    char *sse = NULL;
    int rc = mst_run(&sse, NULL,
                     "curl -sN -H 'Authorization: Bearer " KEY "' http://127.0.0.1:%d/v1/chat/completions -d '%s'",
                     g_port, CHAT_HI ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    assert_int_equal(rc, 0);
    json_object *usage = NULL;
    const char *finish = NULL;
    int chunks;
    char *text = reassemble(sse, &usage, &finish, &chunks);
    assert_string_equal(text, gs(whole, "choices.0.message.content"));
    assert_string_equal(finish, "length");
    assert_true(chunks >= 4); /* role, deltas, finish, usage */
    assert_non_null(usage);
    assert_int_equal(gi(usage, "completion_tokens"), 12);
    assert_int_equal(gi(usage, "prompt_tokens"), gi(whole, "usage.prompt_tokens"));
    assert_non_null(strstr(sse, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}"));
    /* a streamed answer logs its line when the stream ends, like a whole one */
    for (int i = 0; i < 100 && log_count("POST /v1/chat/completions 200 prompt") == logged; i++) usleep(20000);
    assert_int_equal(log_count("POST /v1/chat/completions 200 prompt"), logged + 1);
    json_object_put(usage);
    free(text);
    free((void *)finish);
    free(sse);
    /* completions, streamed through our client */
    resp r = http("POST", "/v1/completions", KEY, "{\"prompt\":[0,5,9,77],\"max_tokens\":9,\"temperature\":0,"
                                                  "\"ignore_eos\":true,\"stream\":true}");
    assert_int_equal(r.status, 200);
    finish = NULL;
    usage = NULL;
    text = reassemble(r.body, &usage, &finish, &chunks);
    json_object *o = post_json("/v1/completions", "{\"prompt\":[0,5,9,77],\"max_tokens\":9,\"temperature\":0,"
                                                  "\"ignore_eos\":true,\"logprobs\":2}", 200);
    assert_string_equal(gs(o, "object"), "text_completion");
    assert_string_equal(text, gs(o, "choices.0.text"));
    assert_null(usage); /* not asked for */
    assert_int_equal(json_object_array_length(get(o, "choices.0.logprobs.tokens")), 9);
    assert_int_equal(json_object_object_length(get(o, "choices.0.logprobs.top_logprobs.0")) >= 1, 1);
    assert_true(json_object_get_double(get(o, "choices.0.logprobs.token_logprobs.0")) <= 0);
    json_object_put(o);
    free(text);
    free((void *)finish);
    free(r.body);
    json_object_put(whole);
}

static void test_stop_and_seed(void **state)
{
    (void)state;
    json_object *a = post_json("/v1/chat/completions", CHAT_HI ",\"max_tokens\":20}", 200);
    const char *full = gs(a, "choices.0.message.content");
    size_t fl = strlen(full);
    assert_true(fl > 6);
    char stop[4] = "";
    for (size_t i = fl / 3; i + 3 <= fl && !stop[0]; i++) { /* 3 plain characters from the middle of the answer */
        bool plain = true;
        for (int k = 0; k < 3; k++)
            plain &= (full[i + k] >= 'a' && full[i + k] <= 'z') || (full[i + k] >= 'A' && full[i + k] <= 'Z');
        if (plain) memcpy(stop, full + i, 3);
    }
    if (!stop[0]) fail_msg("no plain 3 letters in the answer '%s'", full);
    char *body = mst_fmt(CHAT_HI ",\"max_tokens\":20,\"stop\":[\"%s\"]}", stop);
    json_object *b = post_json("/v1/chat/completions", body, 200);
    assert_string_equal(gs(b, "choices.0.finish_reason"), "stop");
    size_t cut = (size_t)(strstr(full, stop) - full), got = strlen(gs(b, "choices.0.message.content"));
    while (cut && full[cut - 1] == ' ') cut--; /* a chat parser may trim the content's trailing spaces */
    while (got && gs(b, "choices.0.message.content")[got - 1] == ' ') got--;
    assert_int_equal(got, cut);
    assert_memory_equal(gs(b, "choices.0.message.content"), full, cut);
    free(body);
    json_object_put(a);
    json_object_put(b);
    /* seeds */
    const char *s1 = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me\"}],\"temperature\":1.5,\"top_k\":0,"
                     "\"max_tokens\":16,\"ignore_eos\":true,\"seed\":7}";
    json_object *x = post_json("/v1/chat/completions", s1, 200), *y = post_json("/v1/chat/completions", s1, 200);
    assert_string_equal(gs(x, "choices.0.message.content"), gs(y, "choices.0.message.content"));
    json_object *z = post_json("/v1/chat/completions",
                               "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me\"}],\"temperature\":1.5,"
                               "\"top_k\":0,\"max_tokens\":16,\"ignore_eos\":true,\"seed\":8}",
                               200);
    assert_string_not_equal(gs(x, "choices.0.message.content"), gs(z, "choices.0.message.content"));
    json_object_put(x);
    json_object_put(y);
    json_object_put(z);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("/v1/chat/completions", KEY, "{\"messages\": [", 400, NULL, NULL);
    expect_error("/v1/chat/completions", KEY, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"best\":1}", 400,
                 "best", "unknown_field");
    expect_error("/v1/chat/completions", KEY, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"n\":3}", 400, "n",
                 NULL);
    expect_error("/v1/chat/completions", KEY, "{\"model\":\"gpt-4\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}",
                 404, "model", "model_not_found");
    /* 600 words > --ctx 512 tokens */
    char *big = calloc(1, 8000);
    strcpy(big, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 600; i++) strcat(big, "word ");
    strcat(big, "\"}]}");
    expect_error("/v1/chat/completions", KEY, big, 400, "messages", "context_length_exceeded");
    expect_error("/v1/completions", KEY, "{\"prompt\":[1,2,99999]}", 400, NULL, NULL); /* outside the vocabulary */
    free(big);
    /* 413: a 100 KB body (curl, which sends Expect: 100-continue for large bodies) */
    char *path = mst_fmt("%s/big.json", g_dir);
    FILE *f = fopen(path, "w");
    fputs("{\"prompt\":\"", f);
    for (int i = 0; i < 100000; i++) fputc('a', f);
    fputs("\"}", f);
    fclose(f);
    char *code = NULL;
    assert_int_equal(mst_run(&code, NULL,
                             "curl -s -o /dev/null -w '%%{http_code}' -H 'Authorization: Bearer " KEY
                             "' http://127.0.0.1:%d/v1/completions --data-binary @%s",
                             g_port, path),
                     0);
    assert_string_equal(code, "413");
    free(code);
    free(path);
    resp r = http("GET", "/health", NULL, NULL); /* still serving */
    assert_int_equal(r.status, 200);
    free(r.body);
}

/* Open n long requests and keep their connections (fds). */
static void open_long(int *fds, int n, bool stream)
{
    for (int i = 0; i < n; i++) {
        fds[i] = dial();
        char *b = mst_fmt("{\"messages\":[{\"role\":\"user\",\"content\":\"long %d\"}],\"max_tokens\":100000,"
                          "\"ignore_eos\":true,\"stream\":%s}",
                          i, stream && i % 2 ? "true" : "false");
        send_request(fds[i], "POST", "/v1/chat/completions", KEY, b);
        free(b);
    }
}

static double metric(const char *name)
{
    resp r = http("GET", "/metrics", KEY, NULL);
    char *key = mst_fmt("\nmoestream_%s ", name);
    const char *at = strstr(r.body, key);
    double v = at ? atof(at + strlen(key)) : -1;
    free(key);
    free(r.body);
    return v;
}

static void test_queue_full_and_disconnect(void **state)
{
    (void)state;
    double cancelled0 = metric("requests_cancelled_total");
    int fds[8];
    open_long(fds, 8, true); /* 4 slots + 4 queued */
    for (int i = 0; i < 200 && (metric("queue_length") != 4 || metric("active_slots") != 4); i++) usleep(50000);
    assert_int_equal((int)metric("active_slots"), 4);
    assert_int_equal((int)metric("queue_length"), 4);
    expect_error("/v1/chat/completions", KEY, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}", 429, NULL,
                 "queue_full");
    for (int i = 0; i < 8; i++) close(fds[i]);
    for (int i = 0; i < 100 && metric("active_slots") > 0; i++) usleep(50000);
    assert_int_equal((int)metric("active_slots"), 0);
    assert_int_equal((int)metric("queue_length"), 0);
    assert_int_equal((int)(metric("requests_cancelled_total") - cancelled0), 8);
    json_object *o = post_json("/v1/chat/completions", CHAT_HI "}", 200); /* serving again */
    json_object_put(o);
}

/* A non-streamed answer that is one tool call after some content. */
static void assert_call(json_object *o, const char *content, const char *name, const char *arguments)
{
    assert_string_equal(gs(o, "choices.0.finish_reason"), "tool_calls");
    assert_string_equal(gs(o, "choices.0.message.content"), content);
    assert_string_equal(gs(o, "choices.0.message.tool_calls.0.type"), "function");
    assert_string_equal(gs(o, "choices.0.message.tool_calls.0.function.name"), name);
    assert_string_equal(gs(o, "choices.0.message.tool_calls.0.function.arguments"), arguments);
    assert_non_null(gs(o, "choices.0.message.tool_calls.0.id"));
}

static void test_scripted_tool_call(void **state)
{
    (void)state;
    const char *req = "{\"messages\":[{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"}],"
                      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
                      "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    char *b = mst_fmt("%s}", req);
    json_object *o = post_json("/v1/chat/completions", b, 200);
    assert_call(o, "Checking.", "get_weather", "{\"city\": \"Paris\"}");
    free(b);
    json_object_put(o);
    b = mst_fmt("%s,\"stream\":true}", req);
    resp r = http("POST", "/v1/chat/completions", KEY, b);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"tool_calls\":[{\"index\":0,\"id\":"));
    assert_non_null(strstr(r.body, "\"finish_reason\":\"tool_calls\""));
    free(r.body);
    free(b);
    /* a forced call: the prompt ends inside the call, the answer is its arguments */
    json_object *f = post_json("/v1/chat/completions",
                               "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Rome, with the call forced\"}],"
                               "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}],"
                               "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}}",
                               200);
    assert_string_equal(gs(f, "choices.0.finish_reason"), "tool_calls");
    assert_string_equal(gs(f, "choices.0.message.tool_calls.0.function.name"), "get_weather");
    assert_string_equal(gs(f, "choices.0.message.tool_calls.0.function.arguments"), "{\"city\": \"Rome\"}");
    assert_true(json_object_is_type(get(f, "choices.0.message.content"), json_type_null));
    json_object_put(f);
}

/* The checkpoint's template can be replaced (--chat-template) and its format
 * follows: a Hermes-style template renders the prompt (tools, earlier calls with
 * their arguments as a mapping, --chat-template-kwargs under the request's own
 * chat_template_kwargs) and its <tool_call> JSON and <think> reasoning are parsed.
 * The rendered prompt is checked against `moestream template` on the same input
 * (through /v1/completions: same prompt tokens, same greedy text). Also: serve
 * refuses --mtp on a model without an MTP layer, --tools, --seed and a bad
 * sampling default with one line. */
static void test_template_override(void **state)
{
    (void)state;
    char *err = NULL;
    assert_int_equal(mst_run(NULL, &err, "%s serve --model %s --mtp 1 --port 0", MS_BIN, g_model), 1);
    assert_non_null(strstr(err, "--mtp needs an MTP layer")); /* this model has none (test_serve_mtp has one) */
    free(err);
    assert_int_equal(mst_run(NULL, NULL, "%s serve --model %s --tools x.json", MS_BIN, g_model), 2);
    assert_int_equal(mst_run(NULL, NULL, "%s serve --model %s --seed 3", MS_BIN, g_model), 2);
    assert_int_equal(mst_run(NULL, NULL, "%s serve --model %s --top-p 2", MS_BIN, g_model), 2);
    char *dir = mst_tmpdir("serve_http_hermes");
    const char *args[] = {"--model", g_model, "--parallel", "2", "--ctx", "512", "--batch", "8", "--threads", "2",
                          "--ram", RAM, "--api-key", KEY, "--script", MS_TEST_DATA "/serve/script.json",
                          "--chat-template", MS_TEST_DATA "/serve/hermes.jinja",
                          "--chat-template-kwargs", "{\"enable_thinking\": true}", NULL};
    pid_t pid;
    int port = mst_serve_start(dir, args, &pid), main_port = g_port;
    assert_true(port > 0);
    g_port = port;
    char *outf = mst_fmt("%s/serve.out", dir), *out = mst_slurp(outf, NULL);
    assert_non_null(strstr(out, "chat format hermes"));
    free(out);
    free(outf);
    const char *tools = "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]";
    char *b = mst_fmt("{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Oslo, Hermes style\"}],%s}", tools);
    json_object *o = post_json("/v1/chat/completions", b, 200);
    assert_call(o, "Checking.", "get_weather", "{\"city\": \"Oslo\"}");
    assert_string_equal(gs(o, "choices.0.message.reasoning_content"), "The user wants Oslo.");
    json_object_put(o);
    free(b);
    b = mst_fmt("{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Oslo, Hermes style\"}],%s,\"stream\":true}",
                tools);
    resp r = http("POST", "/v1/chat/completions", KEY, b);
    assert_int_equal(r.status, 200);
    json_object *usage = NULL;
    const char *finish = NULL;
    int chunks;
    char *reasoning = reassemble_field(r.body, "reasoning_content", &usage, &finish, &chunks);
    assert_string_equal(reasoning, "The user wants Oslo.");
    free(reasoning);
    free((char *)finish);
    assert_non_null(strstr(r.body, "\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Oslo\\\"}\""));
    assert_non_null(strstr(r.body, "\"finish_reason\":\"tool_calls\""));
    free(r.body);
    free(b);
    /* a conversation with an answered call (not scripted: the model's own greedy text);
     * enable_thinking off by the request */
    static const char conv[] =
        "[{\"role\":\"user\",\"content\":\"Weather in Oslo?\"},{\"role\":\"assistant\",\"content\":\"\","
        "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":%s}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}]";
    char *msgs = mst_fmt(conv, "\"{\\\"city\\\": \\\"Oslo\\\"}\""), *msgs_obj = mst_fmt(conv, "{\"city\": \"Oslo\"}");
    b = mst_fmt("{\"messages\":%s,%s,\"chat_template_kwargs\":{\"enable_thinking\":false},\"temperature\":0,"
                "\"max_tokens\":8,\"ignore_eos\":true}", msgs, tools);
    o = post_json("/v1/chat/completions", b, 200);
    free(b);
    char *in = mst_fmt("%s/in.json", dir);
    FILE *f = fopen(in, "w");
    fprintf(f, "{\"messages\":%s,%s,\"add_generation_prompt\":true,\"kwargs\":{\"enable_thinking\":false}}", msgs_obj,
            tools);
    fclose(f);
    char *prompt = NULL;
    assert_int_equal(mst_run(&prompt, NULL, "%s template --model %s --chat-template %s/serve/hermes.jinja --input %s",
                             MS_BIN, g_model, MS_TEST_DATA, in), 0);
    assert_null(strstr(prompt, "<think>"));
    assert_non_null(strstr(prompt, "\"arguments\": {\"city\": \"Oslo\"}}")); /* a mapping, not a string */
    json_object *req = json_object_new_object();
    json_object_object_add(req, "prompt", json_object_new_string(prompt));
    json_object_object_add(req, "temperature", json_object_new_int(0));
    json_object_object_add(req, "max_tokens", json_object_new_int(8));
    json_object_object_add(req, "ignore_eos", json_object_new_boolean(1));
    json_object *c = post_json("/v1/completions", json_object_to_json_string(req), 200);
    assert_int_equal(gi(o, "usage.prompt_tokens"), gi(c, "usage.prompt_tokens"));
    assert_int_equal(gi(o, "usage.completion_tokens"), 8);
    const char *ct = gs(c, "choices.0.text"), *cc = gs(o, "choices.0.message.content");
    while (*ct == ' ' || *ct == '\n') ct++; /* the chat parser trims the edges */
    assert_non_null(cc);
    assert_memory_equal(ct, cc, strlen(cc));
    json_object_put(req);
    json_object_put(c);
    json_object_put(o);
    free(prompt);
    free(in);
    free(msgs);
    free(msgs_obj);
    g_port = main_port;
    assert_int_equal(mst_serve_stop(pid, 10), 0);
    free(dir);
}

/* ---- load ---- */

typedef struct load_ctx {
    int id, good_ok, bad_ok, errors;
    char msg[256];
} load_ctx;

static void *load_client(void *arg)
{
    load_ctx *c = arg;
    for (int i = 0; i < 25; i++) {
        int kind = (c->id * 25 + i) % 5; /* 0, 1, 2: good; 3, 4: bad */
        int variant = (c->id * 25 + i) / 5 % 4;
        const char *key = KEY, *path = "/v1/chat/completions";
        char *body;
        int expect = 200;
        if (kind < 3) {
            body = kind == 2 ? mst_fmt("{\"prompt\":[0,%d,%d],\"max_tokens\":6,\"ignore_eos\":true}", 3 + i, 7 + c->id)
                             : mst_fmt("{\"messages\":[{\"role\":\"user\",\"content\":\"client %d request %d\"}],"
                                       "\"max_tokens\":6,\"ignore_eos\":true,\"stream\":%s}",
                                       c->id, i, kind ? "true" : "false");
            if (kind == 2) path = "/v1/completions";
        } else {
            static const char *bad[4] = {"{\"messages\": [}", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"x\":1}",
                                         "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
                                         "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"};
            static const int status[4] = {400, 400, 401, 404};
            body = strdup(bad[variant]);
            expect = status[variant];
            if (variant == 2) key = "bad-key";
        }
        resp r = http("POST", path, key, body);
        bool ok = r.status == expect;
        if (ok && expect == 200) ok = strstr(r.body, kind == 1 ? "[DONE]" : "\"finish_reason\":\"length\"") != NULL;
        if (ok) *(expect == 200 ? &c->good_ok : &c->bad_ok) += 1;
        else if (!c->errors++) snprintf(c->msg, sizeof c->msg, "%d for %s: %.150s", r.status, body, r.body);
        free(r.body);
        free(body);
    }
    return NULL;
}

static void test_load(void **state)
{
    (void)state;
    pthread_t th[8];
    load_ctx c[8];
    for (int i = 0; i < 8; i++) {
        c[i] = (load_ctx){.id = i};
        pthread_create(&th[i], NULL, load_client, &c[i]);
    }
    int good = 0, bad = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (c[i].errors) fail_msg("client %d: %d wrong answers, first: %s", i, c[i].errors, c[i].msg);
        good += c[i].good_ok;
        bad += c[i].bad_ok;
    }
    assert_int_equal(good, 120);
    assert_int_equal(bad, 80);
    double rss = metric("peak_rss_bytes"), budget = metric("ram_budget_bytes");
    print_message("load: 120 good + 80 bad requests from 8 clients; peak RSS %.1f MiB of --ram %.1f MiB\n",
                  rss / 1048576, budget / 1048576);
    assert_true(rss > 0 && rss <= budget);
    /* clean shutdown */
    assert_int_equal(mst_serve_stop(g_pid, 10), 0);
    g_pid = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_and_auth),
        cmocka_unit_test(test_chat_equals_run),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_stop_and_seed),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_queue_full_and_disconnect),
        cmocka_unit_test(test_scripted_tool_call),
        cmocka_unit_test(test_template_override),
        cmocka_unit_test(test_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

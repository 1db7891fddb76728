/* cli_chat.c - `moestream chat`: interactive multi-turn chat that keeps the KV
 * cache between turns. Each turn renders the whole conversation with the model's
 * chat template, encodes it, and feeds only the tokens after the longest prefix
 * already in the KV cache (the cache position is rolled back if the rendering
 * diverges, e.g. after a stop token that was not fed). The answer is parsed by the
 * template's format: content streams to stdout, reasoning to stderr, tool calls are
 * shown as "[tool call] ID NAME ARGS" lines and answered with /tool RESULT (one per
 * call, in order), after which the model continues. Lines starting with '/' are
 * commands: /tool, /reset, /stats, /quit. One user message per input line. */
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_engine.h"
#include "cli_prompt.h"
#include "cli_sampling.h"
#include "generate.h"
#include "tokenizer.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream chat --model DIR [--system TEXT] [options]\n"
            "\n"
            "Interactive chat: one user message per line on stdin, the answer streams to stdout.\n"
            "The KV cache is kept between turns, so earlier turns are not recomputed.\n"
            "Commands: /tool RESULT (answer the next pending tool call), /reset (new conversation),\n"
            "/stats (figures so far), /quit (or Ctrl-D). Ctrl-C interrupts the current answer.\n"
            "\n"
            "  --model DIR          model directory (tokenizer.json and a chat template)\n"
            "  --system TEXT        system message\n"
            "  -n, --max-tokens N   tokens per answer (default 512)\n"
            "\n");
    ms_cli_sampling_help(f);
    fputc('\n', f);
    ms_cli_prompt_help(f);
    ms_cli_engine_help(f);
}

static int add_message(json_object *conv, const char *role, const char *content)
{
    json_object *m = json_object_new_object();
    if (!m) return -ENOMEM;
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_new_string(content));
    json_object_array_add(conv, m);
    return 0;
}

static void conv_clear(json_object *conv, size_t keep)
{
    size_t n = json_object_array_length(conv);
    if (n > keep) json_object_array_del_idx(conv, keep, n - keep);
}

/* the state of a chat session */
typedef struct session {
    ms_engine *e;
    ms_gen *g;
    const ms_tokenizer *tok;
    ms_detok *dt;
    ms_cli_prompt *pr;
    json_object *conv;
    int32_t *stop;
    int n_stop, max_new;
    int32_t *hist; /* tokens in the KV cache */
    size_t n_hist, cap_hist;
    int32_t *ans;  /* this turn's answer */
    size_t n_ans, cap_ans;
    json_object *pending; /* tool calls of the last answer not answered yet (array) */
} session;

static int grow(int32_t **v, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    int32_t *nv = realloc(*v, need * 2 * sizeof *nv);
    if (!nv) return -ENOMEM;
    *v = nv;
    *cap = need * 2;
    return 0;
}

/* render the conversation, feed what the KV cache lacks, stream the answer and add it
 * to the conversation */
static int answer(session *s, ms_err *err)
{
    char *rendered = NULL;
    size_t rl;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ms_chat_parser *cp = NULL;
    int rc = ms_cli_prompt_render(s->pr, s->conv, true, &rendered, &rl, err);
    if (rc == 0) rc = ms_tokenizer_encode(s->tok, rendered, rl, 0, &ids, &n_ids, err);
    if (rc == 0 && n_ids == 0) rc = ms_errf(err, EINVAL, "the conversation renders to no tokens");
    if (rc == 0)
        rc = ms_chat_parser_new(s->pr->format, s->pr->tools,
                                ms_toolcall_prompt_in_reasoning(s->pr->format, rendered, rl), &cp, err);
    free(rendered);
    if (rc < 0) {
        free(ids);
        return rc;
    }
    size_t common = 0;
    while (common < s->n_hist && common < n_ids && s->hist[common] == ids[common]) common++;
    if (common == n_ids) common = n_ids - 1; /* re-feed the last token to get logits */
    s->e->pos = (int)common;                 /* roll back whatever diverged */
    if (grow(&s->hist, &s->cap_hist, n_ids) < 0) {
        free(ids);
        ms_chat_parser_free(cp);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    memcpy(s->hist + common, ids + common, (n_ids - common) * sizeof *ids);
    s->n_hist = n_ids;
    *ms_cli_sigint_flag() = 0;
    rc = ms_gen_prompt(s->g, ids + common, (int)(n_ids - common), err);
    free(ids);
    if (rc < 0) {
        ms_chat_parser_free(cp);
        return rc;
    }
    /* the answer */
    ms_gen_new_turn(s->g, s->max_new);
    ms_detok_reset(s->dt);
    s->n_ans = 0;
    bool line_open = false;
    int32_t t;
    int k;
    while ((k = ms_gen_next(s->g, &t, err)) > 0) {
        bool is_stop = false;
        for (int i = 0; i < s->n_stop; i++) is_stop |= s->stop[i] == t;
        if (!is_stop) {
            const char *txt;
            size_t tl;
            if (ms_detok_feed(s->dt, t, &txt, &tl, err) < 0 || ms_chat_parser_feed(cp, txt, tl, err) < 0) {
                k = -1;
                break;
            }
            ms_cli_prompt_print(cp, stdout, stderr, &line_open);
        }
        if (grow(&s->ans, &s->cap_ans, s->n_ans + 1) < 0) {
            k = ms_errf(err, ENOMEM, "out of memory");
            break;
        }
        s->ans[s->n_ans++] = t;
    }
    const char *txt;
    size_t tl;
    ms_detok_flush(s->dt, &txt, &tl);
    if (k >= 0 && (ms_chat_parser_feed(cp, txt, tl, err) < 0 || ms_chat_parser_finish(cp, err) < 0)) k = -1;
    if (k < 0) {
        ms_chat_parser_free(cp);
        return -1;
    }
    ms_cli_prompt_print(cp, stdout, stderr, &line_open);
    if (ms_chat_parser_reasoning(cp, NULL)) fputc('\n', stderr);
    size_t n_calls = ms_chat_parser_n_calls(cp);
    if (line_open || n_calls == 0) printf("\n");
    fflush(stdout);
    /* the token returned together with a stop/length/context end was not fed */
    size_t fed = s->n_ans;
    if (s->n_ans && s->g->stop_reason && strcmp(s->g->stop_reason, "interrupt") != 0) fed = s->n_ans - 1;
    if (grow(&s->hist, &s->cap_hist, s->n_hist + fed) < 0) {
        ms_chat_parser_free(cp);
        return ms_errf(err, ENOMEM, "out of memory");
    }
    memcpy(s->hist + s->n_hist, s->ans, fed * sizeof *s->ans);
    s->n_hist += fed;
    /* the answer joins the conversation as the template's format reads it back */
    if (ms_cli_prompt_add_answer(s->conv, cp, &s->pending) && isatty(0))
        fprintf(stderr, "(%zu tool call%s: answer with /tool RESULT)\n", n_calls, n_calls > 1 ? "s" : "");
    ms_chat_parser_free(cp);
    if (s->g->stop_reason && !strcmp(s->g->stop_reason, "context")) fprintf(stderr, "(context full: /reset to start over)\n");
    return 0;
}

enum { O_SYSTEM = 2000 };

/* What the command line asks for (chat_parse -> chat_exec). */
typedef struct chat_args {
    const char *model, *system;
    ms_cli_prompt pr;
    ms_engine_opts eo;
    ms_gen_params gp;
} chat_args;

/* Parse and validate the options. Returns -1 to go on, else the exit status
 * (0 after --help, 2 on usage errors). */
static int chat_parse(int argc, char **argv, chat_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"system", required_argument, 0, O_SYSTEM},
        {"max-tokens", required_argument, 0, 'n'}, MS_CLI_SAMPLING_LONGOPTS,
        {"help", no_argument, 0, 'h'},          MS_CLI_ENGINE_LONGOPTS,
        MS_CLI_PROMPT_LONGOPTS,                 {0}};
    ms_cli_prompt pr = {0};
    const char *model = NULL, *system = NULL;
    ms_engine_opts eo = {0};
    ms_gen_params gp = {.sampling = ms_sampler_defaults(), .max_new = 512};
    ms_err err = {0};
    long long v;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:n:h", opts, NULL)) != -1) {
        int h = ms_cli_engine_opt(o, optarg, &eo, &err);
        if (h == 0) h = ms_cli_prompt_opt(o, optarg, &pr, &err);
        if (h == 0) h = ms_cli_sampling_opt(o, optarg, &gp.sampling, &err);
        if (h < 0) return ms_cli_usage_error("chat", "%s", err.msg);
        if (h > 0) continue;
        switch (o) {
        case 'm': model = optarg; break;
        case O_SYSTEM: system = optarg; break;
        case 'n':
            if (ms_parse_int(optarg, 1, 1 << 24, &v, "--max-tokens", &err) < 0) return ms_cli_usage_error("chat", "%s", err.msg);
            gp.max_new = (int)v;
            break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("chat", o, argv);
        }
    }
    if (optind != argc) return ms_cli_usage_error("chat", "unexpected argument '%s'", argv[optind]);
    if (!model) return ms_cli_usage_error("chat", "--model is required");
    if (ms_cli_sampling_check(&gp.sampling, &err) < 0) return ms_cli_usage_error("chat", "%s", err.msg);
    *a = (chat_args){.model = model, .system = system, .pr = pr, .eo = eo, .gp = gp};
    return -1;
}

/* Open the model, then one answer per input line until EOF or /quit. */
static int chat_exec(chat_args *a)
{
    const char *model = a->model, *system = a->system;
    ms_cli_prompt pr = a->pr;
    ms_engine_opts eo = a->eo;
    ms_gen_params gp = a->gp;
    ms_err err = {0};

    int rc = 1;
    ms_tokenizer *tok = NULL;
    bool gen_ok = false;
    ms_engine *e = NULL;
    ms_gen g = {0};
    char *line = NULL;
    size_t line_cap = 0;
    int32_t stop[64];
    bool tty = isatty(0);
    session ss = {.g = &g, .pr = &pr, .stop = stop, .conv = json_object_new_array()};

    if (ms_tokenizer_load(model, &tok, &err) < 0) goto out;
    ss.tok = tok;
    if (ms_cli_prompt_setup(&pr, model, tok, false, &err) < 0) goto out;
    eo.progress = ms_cli_progress;
    if (ms_engine_open(model, &eo, &e, &err) < 0) goto out;
    ss.e = e;
    gp.n_stop = ms_cli_prompt_stops(&pr, tok, stop, (int)MS_ARRAY_LEN(stop));
    gp.stop = stop;
    gp.interrupted = ms_cli_sigint_flag();
    ss.n_stop = gp.n_stop;
    ss.max_new = gp.max_new;
    if (ms_gen_init(&g, e, &gp, &err) < 0) goto out;
    gen_ok = true;
    /* special tokens carry the format's markers: the parser strips them */
    if (ms_detok_new(tok, 0, &ss.dt, &err) < 0) goto out;
    ms_cli_sigint_install();
    if (system && add_message(ss.conv, "system", system) < 0) goto oom;
    size_t base = json_object_array_length(ss.conv);
    if (tty)
        fprintf(stderr, "moestream chat: %s (template: %s, format %s). /tool, /reset, /stats, /quit\n", model,
                pr.ct->origin, ms_toolcall_name(pr.format));
    for (;;) {
        if (tty) fprintf(stderr, "> ");
        ssize_t l = getline(&line, &line_cap, stdin);
        if (l < 0) break;
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        if (l == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            conv_clear(ss.conv, base);
            json_object_put(ss.pending);
            ss.pending = NULL;
            ss.n_hist = 0;
            ms_engine_reset(e);
            ms_gen_trace_new_seq(&g);
            fprintf(stderr, "(new conversation)\n");
            continue;
        }
        if (!strcmp(line, "/stats")) {
            ms_gen_stats st;
            char buf[1024];
            ms_gen_get_stats(&g, &st);
            fprintf(stderr, "%s\n", ms_gen_stats_line(&st, buf, sizeof buf));
            continue;
        }
        if (!strncmp(line, "/tool", 5) && (line[5] == ' ' || !line[5])) {
            int k = ms_cli_prompt_tool_result(ss.conv, &ss.pending, line[5] ? line + 6 : "");
            if (k < 0) fprintf(stderr, "(no tool call to answer)\n");
            if (k <= 0) continue; /* nothing pending, or more calls to answer first */
        } else {
            if (ss.pending) { /* the user moved on: the calls stay unanswered */
                json_object_put(ss.pending);
                ss.pending = NULL;
            }
            if (add_message(ss.conv, "user", line) < 0) goto oom;
        }
        if (answer(&ss, &err) < 0) goto out;
    }
    rc = 0;
    goto out;
oom:
    ms_errf(&err, ENOMEM, "out of memory");
out:
    if (gen_ok) {
        ms_gen_stats st;
        char buf[1024];
        ms_gen_get_stats(&g, &st);
        fprintf(stderr, "%s\n", ms_gen_stats_line(&st, buf, sizeof buf));
        ms_gen_free(&g);
    }
    if (rc) ms_cli_fail("chat", &err);
    json_object_put(ss.conv);
    json_object_put(ss.pending);
    free(ss.hist);
    free(ss.ans);
    free(line);
    ms_detok_free(ss.dt);
    ms_engine_close(e);
    ms_cli_prompt_free(&pr);
    ms_tokenizer_free(tok);
    return rc;
}

int cmd_chat(int argc, char **argv)
{
    chat_args a;
    int rc = chat_parse(argc, argv, &a);
    return rc >= 0 ? rc : chat_exec(&a);
}

/* cli_chat.c - `moestream chat`: interactive multi-turn chat that keeps the KV
 * cache between turns. Each turn renders the whole conversation with the model's
 * chat template, encodes it, and feeds only the tokens after the longest prefix
 * already in the KV cache (the cache position is rolled back if the rendering
 * diverges, e.g. after a stop token that was not fed). Lines starting with '/'
 * are commands: /reset, /stats, /quit. One user message per input line. */
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "cli.h"
#include "cli_engine.h"
#include "generate.h"
#include "tokenizer.h"
#include "util.h"

static volatile sig_atomic_t g_interrupted; /* SIGINT stops the current answer */

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream chat --model DIR [--system TEXT] [options]\n"
            "\n"
            "Interactive chat: one user message per line on stdin, the answer streams to stdout.\n"
            "The KV cache is kept between turns, so earlier turns are not recomputed.\n"
            "Commands: /reset (new conversation), /stats (figures so far), /quit (or Ctrl-D).\n"
            "Ctrl-C interrupts the current answer.\n"
            "\n"
            "  --model DIR          model directory (needs tokenizer.json and a known chat template)\n"
            "  --system TEXT        system message\n"
            "  -n, --max-tokens N   tokens per answer (default 512)\n"
            "  --temp T, --top-k K, --top-p P, --min-p P, --seed S   sampling (as in `run`)\n"
            "\n");
    ms_cli_engine_help(f);
}

static int conv_add(json_object *conv, const char *role, const char *content)
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

enum { O_TEMP = 2000, O_TOPK, O_TOPP, O_MINP, O_SEED, O_SYSTEM };

int cmd_chat(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"system", required_argument, 0, O_SYSTEM},
        {"max-tokens", required_argument, 0, 'n'}, {"temp", required_argument, 0, O_TEMP},
        {"top-k", required_argument, 0, O_TOPK}, {"top-p", required_argument, 0, O_TOPP},
        {"min-p", required_argument, 0, O_MINP}, {"seed", required_argument, 0, O_SEED},
        {"help", no_argument, 0, 'h'},          MS_CLI_ENGINE_LONGOPTS,
        {0}};
    const char *model = NULL, *system = NULL;
    ms_engine_opts eo = {0};
    ms_gen_params gp = {.sampling = ms_sampler_defaults(), .max_new = 512};
    ms_err err = {0};
    long long v;
    double d;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:n:h", opts, NULL)) != -1) {
        int h = ms_cli_engine_opt(o, optarg, &eo, &err);
        if (h < 0) return ms_cli_usage_error("chat", "%s", err.msg);
        if (h > 0) continue;
        switch (o) {
        case 'm': model = optarg; break;
        case O_SYSTEM: system = optarg; break;
        case 'n':
            if (ms_parse_int(optarg, 1, 1 << 24, &v, "--max-tokens", &err) < 0) return ms_cli_usage_error("chat", "%s", err.msg);
            gp.max_new = (int)v;
            break;
        case O_TEMP:
        case O_TOPP:
        case O_MINP:
            if (ms_parse_double(optarg, &d, "sampling option", &err) < 0) return ms_cli_usage_error("chat", "%s", err.msg);
            if (o == O_TEMP) gp.sampling.temperature = (float)d;
            else if (o == O_TOPP) gp.sampling.top_p = (float)d;
            else gp.sampling.min_p = (float)d;
            break;
        case O_TOPK:
            if (ms_parse_int(optarg, 0, 1 << 24, &v, "--top-k", &err) < 0) return ms_cli_usage_error("chat", "%s", err.msg);
            gp.sampling.top_k = (int)v;
            break;
        case O_SEED:
            if (ms_parse_int(optarg, 0, INT64_MAX, &v, "--seed", &err) < 0) return ms_cli_usage_error("chat", "%s", err.msg);
            gp.sampling.seed = (uint64_t)v;
            break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("chat", o, argv);
        }
    }
    if (optind != argc) return ms_cli_usage_error("chat", "unexpected argument '%s'", argv[optind]);
    if (!model) return ms_cli_usage_error("chat", "--model is required");

    int rc = 1;
    ms_tokenizer *tok = NULL;
    ms_chat_template *ct = NULL;
    bool gen_ok = false;
    ms_engine *e = NULL;
    ms_detok *dt = NULL;
    ms_gen g = {0};
    json_object *cv = json_object_new_array();
    int32_t *hist = NULL; /* tokens in the KV cache */
    size_t n_hist = 0, cap_hist = 0;
    int32_t *ans = NULL;  /* this turn's answer */
    size_t n_ans = 0, cap_ans = 0;
    char *line = NULL;
    size_t line_cap = 0;
    int32_t stop[64];
    bool tty = isatty(0);

    if (ms_tokenizer_load(model, &tok, &err) < 0) goto out;
    if (ms_chat_template_load(model, NULL, tok, &ct, &err) < 0) goto out;
    eo.progress = ms_cli_progress;
    if (ms_engine_open(model, &eo, &e, &err) < 0) goto out;
    {
        size_t ns;
        const int32_t *sid = ms_tokenizer_stop_ids(tok, &ns);
        gp.n_stop = 0;
        for (size_t i = 0; i < ns && gp.n_stop < (int)MS_ARRAY_LEN(stop); i++) stop[gp.n_stop++] = sid[i];
    }
    gp.stop = stop;
    gp.interrupted = &g_interrupted;
    int max_new = gp.max_new;
    if (ms_gen_init(&g, e, &gp, &err) < 0) goto out;
    gen_ok = true;
    if (ms_detok_new(tok, MS_TOK_SKIP_SPECIAL, &dt, &err) < 0) goto out;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (system && conv_add(cv, "system", system) < 0) goto oom;
    size_t base = json_object_array_length(cv);
    if (tty) fprintf(stderr, "moestream chat: %s (template: %s). /reset, /stats, /quit\n", model, ct->origin);
    for (;;) {
        if (tty) fprintf(stderr, "> ");
        ssize_t l = getline(&line, &line_cap, stdin);
        if (l < 0) break;
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        if (l == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            conv_clear(cv, base);
            n_hist = 0;
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
        if (conv_add(cv, "user", line) < 0) goto oom;
        /* 1. render, encode, feed what the KV cache lacks */
        char *rendered = NULL;
        size_t rl;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        if (ms_chat_template_render(ct, cv, NULL, NULL, NULL, true, &rendered, &rl, &err) < 0) goto out;
        int erc = ms_tokenizer_encode(tok, rendered, rl, 0, &ids, &n_ids, &err);
        free(rendered);
        if (erc < 0) goto out;
        size_t common = 0;
        while (common < n_hist && common < n_ids && hist[common] == ids[common]) common++;
        if (common == n_ids) common = n_ids - 1; /* re-feed the last token to get logits */
        e->pos = (int)common;                    /* roll back whatever diverged */
        n_hist = common;
        if (n_ids > cap_hist) {
            int32_t *nh = realloc(hist, n_ids * 2 * sizeof *nh);
            if (!nh) {
                free(ids);
                goto oom;
            }
            hist = nh;
            cap_hist = n_ids * 2;
        }
        memcpy(hist + common, ids + common, (n_ids - common) * sizeof *ids);
        n_hist = n_ids;
        g_interrupted = 0;
        int prc = ms_gen_prompt(&g, ids + common, (int)(n_ids - common), &err);
        free(ids);
        if (prc < 0) goto out;
        /* 2. answer */
        ms_gen_new_turn(&g, max_new);
        ms_detok_reset(dt);
        n_ans = 0;
        int32_t t;
        int k;
        while ((k = ms_gen_next(&g, &t, &err)) > 0) {
            bool is_stop = false;
            for (int i = 0; i < gp.n_stop; i++) is_stop |= stop[i] == t;
            if (!is_stop) {
                const char *s;
                size_t sl;
                if (ms_detok_feed(dt, t, &s, &sl, &err) < 0) goto out;
                fwrite(s, 1, sl, stdout);
                fflush(stdout);
            }
            if (n_ans == cap_ans) {
                size_t cap = cap_ans ? cap_ans * 2 : 256;
                int32_t *na = realloc(ans, cap * sizeof *na);
                if (!na) goto oom;
                ans = na;
                cap_ans = cap;
            }
            ans[n_ans++] = t;
        }
        if (k < 0) goto out;
        const char *s;
        size_t sl;
        ms_detok_flush(dt, &s, &sl);
        fwrite(s, 1, sl, stdout);
        printf("\n");
        fflush(stdout);
        /* the token returned together with a stop/length/context end was not fed */
        size_t fed = n_ans;
        if (n_ans && g.stop_reason && strcmp(g.stop_reason, "interrupt") != 0) fed = n_ans - 1;
        if (n_hist + fed > cap_hist) {
            int32_t *nh = realloc(hist, (n_hist + fed) * 2 * sizeof *nh);
            if (!nh) goto oom;
            hist = nh;
            cap_hist = (n_hist + fed) * 2;
        }
        memcpy(hist + n_hist, ans, fed * sizeof *ans);
        n_hist += fed;
        /* 3. the answer joins the conversation (without the stop token) */
        size_t keep = n_ans;
        for (int i = 0; i < gp.n_stop && keep; i++)
            if (ans[keep - 1] == stop[i]) {
                keep--;
                break;
            }
        char *text = NULL;
        size_t tl;
        if (ms_tokenizer_decode(tok, ans, keep, MS_TOK_SKIP_SPECIAL, &text, &tl, &err) < 0) goto out;
        int arc = conv_add(cv, "assistant", text);
        free(text);
        if (arc < 0) goto oom;
        if (g.stop_reason && !strcmp(g.stop_reason, "context")) {
            fprintf(stderr, "(context full: /reset to start over)\n");
        }
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
    json_object_put(cv);
    free(hist);
    free(ans);
    free(line);
    ms_detok_free(dt);
    ms_engine_close(e);
    ms_chat_template_free(ct);
    ms_tokenizer_free(tok);
    return rc;
}

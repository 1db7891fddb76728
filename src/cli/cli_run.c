/* cli_run.c - `moestream run`: generate from a prompt (text through the model's
 * tokenizer and chat template, or raw token ids), streaming the output to stdout
 * as it is produced, then one stats line on stderr (and --stats-json). With a chat
 * template the answer is parsed by the template's format: content on stdout,
 * reasoning on stderr, tool calls as "[tool call] ID NAME ARGS" lines.
 * Ctrl-C stops generation, prints the stats and exits with 130. */
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
#include "cli_prompt.h"
#include "cli_sampling.h"
#include "generate.h"
#include "tokenizer.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream run --model DIR (--prompt TEXT | --file PATH | --tokens IDS) [options]\n"
            "\n"
            "Generate text with a Mixture-of-Experts model whose routed experts stream from disk into an\n"
            "expert cache bounded by --ram. Output streams to stdout as it is generated: text when the\n"
            "prompt is text, comma-separated token ids with --tokens. A stats line goes to stderr at the end.\n"
            "\n"
            "prompt:\n"
            "  --model DIR          model directory as published (config.json, *.safetensors, tokenizer.json)\n"
            "  --prompt TEXT        user message; the model's chat template is applied unless --raw\n"
            "  --file PATH          read the prompt from a file ('-' = stdin)\n"
            "  --system TEXT        system message for the chat template\n"
            "  --raw                feed the prompt text as is (BOS added if the tokenizer asks for it)\n"
            "                       (without --raw a model with no chat template is also fed raw)\n"
            "  --tokens IDS         comma-separated prompt token ids (no tokenizer needed)\n"
            "generation:\n"
            "  -n, --max-tokens N   tokens to generate (default 128)\n"
            "  --ignore-eos         do not stop at end-of-sequence tokens\n"
            "output:\n"
            "  --stats-json FILE    write the run's figures as JSON ('-' = stdout)\n"
            "  --trace FILE         record which experts every MoE layer chose for every token\n"
            "                       (JSON lines; a .bin name writes the compact binary form)\n"
            "  --quiet              no stats line on stderr\n");
    ms_cli_sampling_help(f);
    fputc('\n', f);
    ms_cli_prompt_help(f);
    ms_cli_engine_help(f);
}

static char *read_all(const char *path, ms_err *err)
{
    if (strcmp(path, "-") != 0) {
        char *s;
        if (ms_read_file(path, 64u << 20, &s, NULL, err) < 0) return NULL;
        return s;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf) {
        ms_errf(err, ENOMEM, "out of memory reading stdin");
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

enum { O_IGNORE = 2000, O_STATS, O_TRACE, O_RAW, O_SYSTEM, O_QUIET };

/* What the command line asks for (run_parse -> run_exec). */
typedef struct run_args {
    const char *model, *prompt, *file, *toks, *stats_json, *trace, *system;
    ms_cli_prompt pr;
    bool raw, quiet;
    ms_engine_opts eo;
    ms_gen_params gp;
} run_args;

/* Parse and validate everything that can be checked before the model loads.
 * Returns -1 to go on, else the exit status (0 after --help, 2 on usage errors). */
static int run_parse(int argc, char **argv, run_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"prompt", required_argument, 0, 'p'},
        {"file", required_argument, 0, 'f'},    {"tokens", required_argument, 0, 't'},
        {"max-tokens", required_argument, 0, 'n'}, MS_CLI_SAMPLING_LONGOPTS,
        {"ignore-eos", no_argument, 0, O_IGNORE}, {"stats-json", required_argument, 0, O_STATS},
        {"trace", required_argument, 0, O_TRACE}, {"raw", no_argument, 0, O_RAW},
        {"system", required_argument, 0, O_SYSTEM}, {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, 'h'},          MS_CLI_ENGINE_LONGOPTS,
        MS_CLI_PROMPT_LONGOPTS,                 {0}};
    const char *model = NULL, *prompt = NULL, *file = NULL, *toks = NULL, *stats_json = NULL, *trace = NULL,
               *system = NULL;
    ms_cli_prompt pr = {0};
    bool raw = false, quiet = false;
    ms_engine_opts eo = {0};
    ms_gen_params gp = {.sampling = ms_sampler_defaults(), .max_new = 128};
    ms_err err = {0};
    long long v;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:p:f:t:n:h", opts, NULL)) != -1) {
        int h = ms_cli_engine_opt(o, optarg, &eo, &err);
        if (h == 0) h = ms_cli_prompt_opt(o, optarg, &pr, &err);
        if (h == 0) h = ms_cli_sampling_opt(o, optarg, &gp.sampling, &err);
        if (h < 0) return ms_cli_usage_error("run", "%s", err.msg);
        if (h > 0) continue;
        switch (o) {
        case 'm': model = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': file = optarg; break;
        case 't': toks = optarg; break;
        case 'n':
            if (ms_parse_int(optarg, 0, 1 << 24, &v, "--max-tokens", &err) < 0) return ms_cli_usage_error("run", "%s", err.msg);
            gp.max_new = (int)v;
            break;
        case O_IGNORE: gp.ignore_eos = true; break;
        case O_STATS: stats_json = optarg; break;
        case O_TRACE: trace = optarg; break;
        case O_RAW: raw = true; break;
        case O_SYSTEM: system = optarg; break;
        case O_QUIET: quiet = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("run", o, argv);
        }
    }
    if (optind != argc) return ms_cli_usage_error("run", "unexpected argument '%s'", argv[optind]);
    if (!model) return ms_cli_usage_error("run", "--model is required");
    if (!!prompt + !!file + !!toks != 1) return ms_cli_usage_error("run", "give exactly one of --prompt, --file, --tokens");
    if ((raw || toks) && (pr.template_file || pr.kwargs_text || pr.tools_file))
        return ms_cli_usage_error("run", "--chat-template, --chat-template-kwargs and --tools need a chat prompt (not --raw/--tokens)");
    /* sampling parameters are validated before the (possibly long) load */
    if (ms_cli_sampling_check(&gp.sampling, &err) < 0) return ms_cli_usage_error("run", "%s", err.msg);
    *a = (run_args){.model = model, .prompt = prompt, .file = file, .toks = toks, .stats_json = stats_json,
                    .trace = trace, .system = system, .pr = pr, .raw = raw, .quiet = quiet, .eo = eo, .gp = gp};
    return -1;
}

/* Tokenize the prompt, open the engine, generate while streaming. */
static int run_exec(run_args *a)
{
    const char *model = a->model, *prompt = a->prompt, *file = a->file, *toks = a->toks,
               *stats_json = a->stats_json, *trace = a->trace, *system = a->system;
    ms_cli_prompt pr = a->pr;
    const bool raw = a->raw, quiet = a->quiet;
    ms_engine_opts eo = a->eo;
    ms_gen_params gp = a->gp;
    ms_err err = {0};

    int rc = 1;
    ms_tokenizer *tok = NULL;
    ms_chat_parser *cp = NULL;
    bool line_open = false;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *text = NULL, *rendered = NULL;
    ms_engine *e = NULL;
    ms_detok *dt = NULL;
    ms_gen g = {0};
    bool gen_ok = false, ran = false;
    int32_t stop[64];
    int n_stop = 0;

    /* 1. the prompt */
    if (toks) {
        long long *ids64;
        int n;
        if (ms_parse_int_list(toks, 0, INT32_MAX, &ids64, &n, "--tokens", &err) < 0) return ms_cli_usage_error("run", "%s", err.msg);
        ids = malloc((size_t)n * sizeof *ids);
        for (int i = 0; i < n; i++) ids[i] = (int32_t)ids64[i];
        n_ids = (size_t)n;
        free(ids64);
    } else {
        if (ms_tokenizer_load(model, &tok, &err) < 0) goto out;
        text = prompt ? strdup(prompt) : read_all(file, &err);
        if (!text) goto out;
        const char *to_encode = text;
        unsigned flags = 0;
        if (!raw && ms_cli_prompt_setup(&pr, model, tok, true, &err) < 0) goto out;
        if (pr.ct) {
            json_object *msgs = json_object_new_array();
            if (system) {
                json_object *m = json_object_new_object();
                json_object_object_add(m, "role", json_object_new_string("system"));
                json_object_object_add(m, "content", json_object_new_string(system));
                json_object_array_add(msgs, m);
            }
            json_object *m = json_object_new_object();
            json_object_object_add(m, "role", json_object_new_string("user"));
            json_object_object_add(m, "content", json_object_new_string(text));
            json_object_array_add(msgs, m);
            size_t rl;
            int rrc = ms_cli_prompt_render(&pr, msgs, true, &rendered, &rl, &err);
            json_object_put(msgs);
            if (rrc < 0) goto out;
            to_encode = rendered;
            if (ms_chat_parser_new(pr.format, pr.tools, ms_toolcall_prompt_in_reasoning(pr.format, rendered, rl), &cp,
                                   &err) < 0)
                goto out;
        } else {
            flags = MS_TOK_ADD_BOS;
        }
        if (ms_tokenizer_encode(tok, to_encode, strlen(to_encode), flags, &ids, &n_ids, &err) < 0) goto out;
        if (n_ids == 0) {
            ms_errf(&err, EINVAL, "the prompt encodes to no tokens");
            goto out;
        }
    }
    /* 2. the model */
    eo.progress = ms_cli_progress;
    e = NULL;
    if (ms_engine_open(model, &eo, &e, &err) < 0) goto out;
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= ms_engine_vocab(e)) {
            ms_errf(&err, EINVAL, "prompt token id %d is outside the vocabulary (0..%d)", ids[i], ms_engine_vocab(e) - 1);
            goto out;
        }
    /* 3. stop tokens: tokenizer + chat template format, else config.json */
    if (tok) n_stop = ms_cli_prompt_stops(&pr, tok, stop, (int)MS_ARRAY_LEN(stop));
    if (n_stop == 0)
        for (int i = 0; i < e->model.cfg.n_eos; i++) stop[n_stop++] = e->model.cfg.eos_token_ids[i];
    n_stop = MS_MIN(n_stop, (int)MS_ARRAY_LEN(stop));
    if ((size_t)n_stop > MS_ARRAY_LEN(stop)) n_stop = MS_ARRAY_LEN(stop);
    gp.stop = stop;
    gp.n_stop = n_stop;
    gp.interrupted = ms_cli_sigint_flag();
    if (ms_gen_init(&g, e, &gp, &err) < 0) goto out;
    gen_ok = true;
    if (trace && ms_gen_trace_open(&g, trace, &err) < 0) goto out;
    /* with a chat template, special tokens carry the format's markers: the parser strips them */
    if (tok && !toks && ms_detok_new(tok, cp ? 0 : MS_TOK_SKIP_SPECIAL, &dt, &err) < 0) goto out;
    ms_cli_sigint_install();
    /* 4. prefill + decode, streaming */
    if (ms_gen_prompt(&g, ids, (int)n_ids, &err) < 0) goto out;
    ran = true;
    int32_t t;
    int k, count = 0;
    while ((k = ms_gen_next(&g, &t, &err)) > 0) {
        bool is_stop = false;
        for (int i = 0; i < n_stop; i++) is_stop |= stop[i] == t;
        if (dt && cp) {
            const char *s;
            size_t l;
            if (is_stop && !gp.ignore_eos) continue; /* the end-of-turn token is not part of the answer */
            if (ms_detok_feed(dt, t, &s, &l, &err) < 0 || ms_chat_parser_feed(cp, s, l, &err) < 0) goto out;
            ms_cli_prompt_print(cp, stdout, stderr, &line_open);
        } else if (dt) {
            const char *s;
            size_t l;
            if (ms_detok_feed(dt, t, &s, &l, &err) < 0) goto out;
            fwrite(s, 1, l, stdout);
        } else {
            printf(count ? ",%d" : "%d", t);
        }
        count++;
        fflush(stdout);
    }
    if (k < 0) goto out;
    if (dt) {
        const char *s;
        size_t l;
        ms_detok_flush(dt, &s, &l);
        if (cp) {
            if (ms_chat_parser_feed(cp, s, l, &err) < 0 || ms_chat_parser_finish(cp, &err) < 0) goto out;
            ms_cli_prompt_print(cp, stdout, stderr, &line_open);
            if (ms_chat_parser_reasoning(cp, NULL)) fputc('\n', stderr);
        } else {
            fwrite(s, 1, l, stdout);
        }
    }
    if (!cp || line_open || ms_chat_parser_n_calls(cp) == 0) printf("\n");
    fflush(stdout);
    rc = *ms_cli_sigint_flag() ? 130 : 0;
out:
    if (gen_ok) {
        ms_gen_stats st;
        ms_gen_get_stats(&g, &st);
        if (!quiet && ran) { /* a prompt that never ran (too long, ...) gets its error line only */
            char line[1024];
            fprintf(stderr, "%s\n", ms_gen_stats_line(&st, line, sizeof line));
        }
        if (stats_json) {
            ms_err e2 = {0};
            if (ms_gen_stats_json(&st, stats_json, &e2) < 0 && rc == 0) {
                err = e2;
                rc = 1;
            }
        }
        ms_err e3 = {0};
        if (g.trace) {
            int trc = ms_trace_writer_close(g.trace, &e3);
            g.trace = NULL;
            if (trc < 0 && rc == 0) {
                err = e3;
                rc = 1;
            }
        }
        ms_gen_free(&g);
    }
    if (rc == 1) ms_cli_fail("run", &err);
    ms_detok_free(dt);
    ms_engine_close(e);
    ms_chat_parser_free(cp);
    ms_cli_prompt_free(&pr);
    ms_tokenizer_free(tok);
    free(ids);
    free(text);
    free(rendered);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    run_args a;
    int rc = run_parse(argc, argv, &a);
    return rc >= 0 ? rc : run_exec(&a);
}

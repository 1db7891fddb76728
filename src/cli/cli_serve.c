/* cli_serve.c - `moestream serve`: an OpenAI-compatible HTTP server over one
 * model. Opens the engine with --parallel KV caches (the plan counts them in
 * --ram), starts the scheduler (src/serve/serve_sched.c) and the HTTP daemon
 * (src/serve/serve_http.c), prints the address, and runs until SIGINT or
 * SIGTERM, which finish every request and stop cleanly (exit 0). SIGINT and
 * SIGTERM are blocked in every thread and taken by sigwait here. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_engine.h"
#include "cli_prompt.h"
#include "cli_sampling.h"
#include "json.h"
#include "serve_chat.h"
#include "serve_http.h"
#include "serve_sched.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream serve --model DIR [options]\n"
            "\n"
            "Serve the model over HTTP with the OpenAI API: POST /v1/chat/completions, POST /v1/completions,\n"
            "GET /v1/models, GET /health, GET /metrics (Prometheus). Up to --parallel requests decode together:\n"
            "each step is one forward pass over all of them, so a routed expert is read from disk once per\n"
            "step for every sequence that uses it. A request's tokens do not depend on what runs with it\n"
            "(greedy output equals `run --temp 0` with the same --batch). With --mtp N every decoding request\n"
            "drafts N tokens per step with the checkpoint's MTP head and one exact step verifies them all:\n"
            "its tokens equal `run --mtp N` (greedy: equal to no MTP); --batch must hold --parallel x (N+1)\n"
            "rows. See docs/SERVE.md.\n"
            "\n"
            "server:\n"
            "  --model DIR          model directory (config.json, *.safetensors, tokenizer.json)\n"
            "  --host ADDR          address to bind (default 127.0.0.1; 0.0.0.0 or :: for every interface)\n"
            "  --port N             TCP port (default 8080; 0 = any free port, printed at start)\n"
            "  --parallel N         sequences decoding together, each with its own KV cache (default 4)\n"
            "  --queue N            requests waiting for a slot before 429 (default 64)\n"
            "  --api-key KEY        require 'Authorization: Bearer KEY' (default: $MOESTREAM_API_KEY if set)\n"
            "  --name NAME          model id of /v1/models and the requests (default: the directory name)\n"
            "  --max-body SIZE      largest request body (default 8M; more gets 413)\n"
            "  --max-connections N  open connections (default 256)\n"
            "  --reuse MODE         prompt prefix reuse per slot: exact (default: whole --batch chunks of the\n"
            "                       previous prompt, output unchanged), any (longest common prefix incl. the\n"
            "                       previous answer; logits may differ in the last bits), off\n"
            "  --quiet              no log line per request\n"
            "request defaults (a request's own fields win):\n"
            "  --max-tokens N       chat answers without max_tokens (default: until the context is full)\n"
            "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R --repeat-last-n N\n"
            "                       sampling (defaults as `run`: 0.2, 50, 0.95, 0.01, 1.0, 64)\n"
            "  --chat-template FILE         use this Jinja template instead of the model's own\n"
            "  --chat-template-kwargs JSON  default template variables (a request's chat_template_kwargs win)\n"
            "testing:\n"
            "  --script FILE        JSON object {\"<last user message or prompt>\": \"<answer text>\"}: a request\n"
            "                       that matches gets the answer's tokens in place of sampled ones (tool-call\n"
            "                       parsing and streaming are tested through the real path)\n"
            "\n");
    ms_cli_engine_help(f);
}

enum { O_HOST = 2000, O_PORT, O_PARALLEL, O_QUEUE, O_KEY, O_NAME, O_MAXBODY, O_MAXCONN, O_REUSE, O_QUIET, O_MAXTOK,
       O_SCRIPT };

int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"host", required_argument, 0, O_HOST},
        {"port", required_argument, 0, O_PORT},     {"parallel", required_argument, 0, O_PARALLEL},
        {"queue", required_argument, 0, O_QUEUE},   {"api-key", required_argument, 0, O_KEY},
        {"name", required_argument, 0, O_NAME},     {"max-body", required_argument, 0, O_MAXBODY},
        {"max-connections", required_argument, 0, O_MAXCONN}, {"reuse", required_argument, 0, O_REUSE},
        {"quiet", no_argument, 0, O_QUIET},         {"max-tokens", required_argument, 0, O_MAXTOK},
        {"script", required_argument, 0, O_SCRIPT}, {"help", no_argument, 0, 'h'},
        MS_CLI_ENGINE_LONGOPTS,                     MS_CLI_PROMPT_LONGOPTS,
        MS_CLI_SAMPLING_LONGOPTS,                   {0}};
    const char *model = NULL, *script = NULL, *name = NULL;
    ms_engine_opts eo = {0};
    ms_srv_opts so = {.host = "127.0.0.1", .port = 8080, .max_body = 8u << 20, .max_connections = 256,
                      .api_key = getenv("MOESTREAM_API_KEY")};
    so.defaults = (ms_srv_defaults){.sampling = ms_sampler_defaults(), .max_tokens = -1, .completion_max_tokens = 16};
    ms_sched_opts sco = {.queue = 64, .reuse = MS_REUSE_EXACT};
    ms_cli_prompt pr = {0};
    int parallel = 4;
    ms_err err = {0};
    long long v;
    uint64_t sz;
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        int h = ms_cli_engine_opt(o, optarg, &eo, &err);
        if (h < 0) return ms_cli_usage_error("serve", "%s", err.msg);
        if (h > 0) continue;
        if (o == MS_OPT_TOOLS) return ms_cli_usage_error("serve", "--tools: serve takes the tools of each request");
        if (o == MS_OPT_SEED) return ms_cli_usage_error("serve", "--seed: serve takes the seed of each request");
        if (ms_cli_prompt_opt(o, optarg, &pr, &err) > 0) continue;
        if ((h = ms_cli_sampling_opt(o, optarg, &so.defaults.sampling, &err)) < 0)
            return ms_cli_usage_error("serve", "%s", err.msg);
        if (h > 0) continue;
#define INT_OPT(lo, hi, name, dst)                                                                           \
    do {                                                                                                     \
        if (ms_parse_int(optarg, lo, hi, &v, name, &err) < 0) return ms_cli_usage_error("serve", "%s", err.msg); \
        dst = (int)v;                                                                                        \
    } while (0)
        switch (o) {
        case 'm': model = optarg; break;
        case O_HOST: so.host = optarg; break;
        case O_PORT: INT_OPT(0, 65535, "--port", so.port); break;
        case O_PARALLEL: INT_OPT(1, 256, "--parallel", parallel); break;
        case O_QUEUE: INT_OPT(0, 1 << 20, "--queue", sco.queue); break;
        case O_KEY: so.api_key = optarg; break;
        case O_NAME: name = optarg; break;
        case O_MAXBODY:
            if (ms_parse_size(optarg, &sz, "--max-body", &err) < 0) return ms_cli_usage_error("serve", "%s", err.msg);
            if (sz < 1024 || sz > (1ull << 30)) return ms_cli_usage_error("serve", "--max-body must be in 1K..1G");
            so.max_body = (size_t)sz;
            break;
        case O_MAXCONN: INT_OPT(1, 65536, "--max-connections", so.max_connections); break;
        case O_REUSE:
            if (!strcmp(optarg, "exact")) sco.reuse = MS_REUSE_EXACT;
            else if (!strcmp(optarg, "any")) sco.reuse = MS_REUSE_ANY;
            else if (!strcmp(optarg, "off")) sco.reuse = MS_REUSE_OFF;
            else return ms_cli_usage_error("serve", "--reuse %s: use exact, any or off", optarg);
            break;
        case O_QUIET: so.quiet = true; break;
        case O_MAXTOK: INT_OPT(1, 1 << 24, "--max-tokens", so.defaults.max_tokens); break;
        case O_SCRIPT: script = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("serve", o, argv);
        }
#undef INT_OPT
    }
    if (optind != argc) return ms_cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (!model) return ms_cli_usage_error("serve", "--model is required");
    if (so.api_key && !*so.api_key) so.api_key = NULL;
    if (ms_cli_sampling_check(&so.defaults.sampling, &err) < 0) return ms_cli_usage_error("serve", "%s", err.msg);
    char base[256];
    if (!name) {
        size_t l = strlen(model);
        while (l > 1 && model[l - 1] == '/') l--;
        const char *b = model + l;
        while (b > model && b[-1] != '/') b--;
        snprintf(base, sizeof base, "%.*s", (int)(model + l - b), b);
        name = base;
    }
    so.name = name;
    eo.n_seq = parallel;

    /* SIGINT/SIGTERM go to sigwait below: block them before any thread exists */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    ms_tokenizer *tok = NULL;
    ms_engine *e = NULL;
    ms_srv_chat *chat = NULL;
    ms_sched *sched = NULL;
    ms_srv *srv = NULL;
    json_object *script_map = NULL;
    if (script && ms_json_load(script, 64u << 20, false, &script_map, &err) < 0) goto out;
    if (script_map && !json_object_is_type(script_map, json_type_object)) {
        ms_errf(&err, EINVAL, "--script %s: expected a JSON object of prompt -> answer text", script);
        goto out;
    }
    so.script = script_map;
    if (ms_tokenizer_load(model, &tok, &err) < 0) goto out;
    if (ms_cli_prompt_setup(&pr, model, tok, true, &err) < 0) goto out;
    eo.progress = ms_cli_progress;
    if (ms_engine_open(model, &eo, &e, &err) < 0) goto out;
    ms_chat_template *ct = pr.ct;
    pr.ct = NULL; /* the adapter owns the template from here */
    if (ms_srv_chat_new(ct, pr.kwargs, tok, &chat, &err) < 0) goto out;
    if (ms_sched_start(e, tok, &sco, &sched, &err) < 0) goto out;
    if (ms_srv_start(e, tok, chat, sched, &so, &srv, &err) < 0) goto out;
    char a[32], b[32];
    const char *h6 = strchr(so.host, ':') ? "[" : "";
    printf("moestream serve: listening on http://%s%s%s:%d (model %s, --parallel %d, ctx %d, --ram %s, expert cache %s, "
           "chat format %s%s)\n",
           h6, so.host, *h6 ? "]" : "", ms_srv_port(srv), name, parallel, e->ctx, ms_fmt_bytes(e->budget, a, sizeof a),
           ms_fmt_bytes(e->stats.expert_mem_bytes, b, sizeof b), ms_srv_chat_format(chat),
           ms_srv_chat_available(chat) ? "" : ", no chat template: /v1/completions only");
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "moestream serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    rc = 0;
out:
    if (sched) ms_sched_stop(sched); /* every request finishes: no connection keeps waiting */
    ms_srv_stop(srv);
    ms_sched_free(sched);
    if (rc) ms_cli_fail("serve", &err);
    ms_srv_chat_free(chat);
    ms_cli_prompt_free(&pr);
    ms_engine_close(e);
    ms_tokenizer_free(tok);
    if (script_map) json_object_put(script_map);
    return rc;
}

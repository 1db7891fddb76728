/* cli_sampling.c - the sampling options and the SIGINT flag shared by run,
 * chat and serve (see cli_sampling.h). */
#include "cli_sampling.h"

#include <stdint.h>
#include <string.h>

#include "util.h"

int ms_cli_sampling_opt(int opt, const char *arg, ms_sampler_params *p, ms_err *err)
{
    long long v;
    double d;
    switch (opt) {
    case MS_OPT_TEMP:
    case MS_OPT_TOPP:
    case MS_OPT_MINP:
    case MS_OPT_REP: {
        static const char *const names[] = {"--temp", "--top-p", "--min-p", "--repeat-penalty"};
        const char *name = names[opt == MS_OPT_TEMP ? 0 : opt == MS_OPT_TOPP ? 1 : opt == MS_OPT_MINP ? 2 : 3];
        if (ms_parse_double(arg, &d, name, err) < 0) return -1;
        if (opt == MS_OPT_TEMP) p->temperature = (float)d;
        else if (opt == MS_OPT_TOPP) p->top_p = (float)d;
        else if (opt == MS_OPT_MINP) p->min_p = (float)d;
        else p->repetition_penalty = (float)d;
        return 1;
    }
    case MS_OPT_TOPK:
        if (ms_parse_int(arg, 0, 1 << 24, &v, "--top-k", err) < 0) return -1;
        p->top_k = (int)v;
        return 1;
    case MS_OPT_REPN:
        if (ms_parse_int(arg, 0, 1 << 24, &v, "--repeat-last-n", err) < 0) return -1;
        p->repeat_last_n = (int)v;
        return 1;
    case MS_OPT_SEED:
        if (ms_parse_int(arg, 0, INT64_MAX, &v, "--seed", err) < 0) return -1;
        p->seed = (uint64_t)v;
        return 1;
    default: return 0;
    }
}

int ms_cli_sampling_check(const ms_sampler_params *p, ms_err *err)
{
    ms_sampler tmp;
    int rc = ms_sampler_init(&tmp, p, 16, err);
    if (rc == 0) ms_sampler_free(&tmp);
    return rc;
}

void ms_cli_sampling_help(FILE *f)
{
    ms_sampler_params d = ms_sampler_defaults();
    fprintf(f,
            "sampling:\n"
            "  --temp T             temperature (default %g; 0 = greedy)\n"
            "  --top-k K            keep the K most likely tokens (default %d; 0 = off)\n"
            "  --top-p P            nucleus sampling mass (default %g; 1 = off)\n"
            "  --min-p P            drop tokens below P x the best probability (default %g)\n"
            "  --repeat-penalty R   repetition penalty (default %g = off)\n"
            "  --repeat-last-n N    window of the penalty (default %d; 0 = everything seen)\n"
            "  --seed S             sampling seed (default %llu: runs are reproducible)\n",
            (double)d.temperature, d.top_k, (double)d.top_p, (double)d.min_p, (double)d.repetition_penalty,
            d.repeat_last_n, (unsigned long long)d.seed);
}

static volatile sig_atomic_t g_sigint; /* the one flag a signal handler can reach */

static void on_sigint(int sig)
{
    (void)sig;
    g_sigint = 1;
}

volatile sig_atomic_t *ms_cli_sigint_install(void)
{
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    g_sigint = 0;
    return &g_sigint;
}

volatile sig_atomic_t *ms_cli_sigint_flag(void) { return &g_sigint; }

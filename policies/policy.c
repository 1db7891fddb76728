/* policy.c - the policy registry (a static table of ops), spec parsing
 * ("name:opt=value:..."), parameter validation and instance creation. */
#include "policy.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "policies_all.h"

static const ms_policy_ops *const registry[] = {
    &ms_policy_lru,   &ms_policy_lfu,     &ms_policy_lru_layer, &ms_policy_2q,
    &ms_policy_tinylfu, &ms_policy_lfu_decay, &ms_policy_next_use, &ms_policy_eva_duel, &ms_policy_pin, &ms_policy_belady,
};

/* The policy `run` uses unless told otherwise (see docs/POLICIES.md for why). */
#define MS_DEFAULT_POLICY "eva-duel"

size_t ms_policy_count(void) { return sizeof registry / sizeof registry[0]; }

const ms_policy_ops *ms_policy_at(size_t i) { return i < ms_policy_count() ? registry[i] : NULL; }

const ms_policy_ops *ms_policy_find(const char *name)
{
    if (!name) return NULL;
    for (size_t i = 0; i < ms_policy_count(); i++)
        if (!strcmp(registry[i]->name, name)) return registry[i];
    return NULL;
}

const char *ms_policy_default(void) { return MS_DEFAULT_POLICY; }

int ms_policy_parse_spec(char *spec, const ms_policy_ops **ops, ms_policy_params *params, ms_err *err)
{
    char *save = NULL;
    char *name = strtok_r(spec, ":", &save);
    if (!name || !*name) return ms_errf(err, EINVAL, "empty policy name");
    *ops = ms_policy_find(name);
    if (!*ops) return ms_errf(err, EINVAL, "unknown policy '%s'", name);
    params->n_opts = 0;
    for (char *o = strtok_r(NULL, ":", &save); o; o = strtok_r(NULL, ":", &save)) {
        char *eq = strchr(o, '=');
        if (!eq || eq == o || !eq[1])
            return ms_errf(err, EINVAL, "policy %s: option '%s' is not name=value", name, o);
        *eq = 0;
        char *end;
        double v = strtod(eq + 1, &end);
        if (*end || !isfinite(v))
            return ms_errf(err, EINVAL, "policy %s: option %s: '%s' is not a number", name, o, eq + 1);
        if (params->n_opts == MS_POLICY_MAX_OPTS)
            return ms_errf(err, EINVAL, "policy %s: more than %d options", name, MS_POLICY_MAX_OPTS);
        bool known = false;
        for (const char *const *n = (*ops)->opt_names; n && *n; n++)
            if (!strcmp(*n, o)) known = true;
        if (!known) return ms_errf(err, EINVAL, "policy %s: unknown option '%s'", name, o);
        params->opt_name[params->n_opts] = o;
        params->opt_value[params->n_opts++] = v;
    }
    return 0;
}

double ms_policy_opt(const ms_policy_params *p, const char *name, double def)
{
    for (int i = p->n_opts - 1; i >= 0; i--)
        if (!strcmp(p->opt_name[i], name)) return p->opt_value[i];
    return def;
}

int ms_policy_create(const ms_policy_ops *ops, const ms_policy_params *p, ms_policy *out, ms_err *err)
{
    out->ops = NULL;
    out->state = NULL;
    if (!ops) return ms_errf(err, EINVAL, "no policy");
    if (ops->version != MS_POLICY_API_VERSION)
        return ms_errf(err, EINVAL, "policy %s: API version %d, expected %d", ops->name, ops->version,
                       MS_POLICY_API_VERSION);
    if (p->top_k < 1 || p->n_layers < 1 || p->n_experts < p->top_k)
        return ms_errf(err, EINVAL, "policy %s: bad geometry (n_layers %u, n_experts %u, top_k %u)", ops->name,
                       p->n_layers, p->n_experts, p->top_k);
    if ((uint64_t)p->n_layers * p->n_experts >= UINT32_MAX)
        return ms_errf(err, EINVAL, "policy %s: key space n_layers*n_experts = %llu does not fit 32 bits",
                       ops->name, (unsigned long long)p->n_layers * p->n_experts);
    if (p->n_slots < p->top_k)
        return ms_errf(err, EINVAL, "policy %s: %u slots cannot hold the %u experts of one layer", ops->name,
                       p->n_slots, p->top_k);
    if (p->n_slots >= UINT32_MAX)
        return ms_errf(err, EINVAL, "policy %s: too many slots", ops->name);
    if ((ops->flags & MS_POLICY_NEEDS_PROFILE) && (!p->profile_path || !*p->profile_path))
        return ms_errf(err, EINVAL, "policy %s needs a profile (--profile FILE)", ops->name);
    for (int i = 0; i < p->n_opts; i++) {
        bool known = false;
        for (const char *const *n = ops->opt_names; n && *n; n++)
            if (!strcmp(*n, p->opt_name[i])) known = true;
        if (!known) return ms_errf(err, EINVAL, "policy %s: unknown option '%s'", ops->name, p->opt_name[i]);
    }
    int rc = ops->create(p, &out->state, err);
    if (rc < 0) {
        if (err && !err->code) ms_errf(err, -rc, "policy %s: create failed", ops->name);
        return rc;
    }
    out->ops = ops;
    return 0;
}

void ms_policy_destroy(ms_policy *pol)
{
    if (pol && pol->ops) pol->ops->destroy(pol->state);
    if (pol) {
        pol->ops = NULL;
        pol->state = NULL;
    }
}

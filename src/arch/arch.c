/* arch.c - the registry of model families and config.json loading through it
 * (see arch.h).
 *
 * Loading config.json:
 *   1. parse the document; the text model's config is `text_config` when the
 *      document nests one (VLM wrappers), else the document itself;
 *   2. model_type = the text config's, else the wrapper table's text type for
 *      the document's model_type, else the document's; wrapper_type = the
 *      document's model_type when it differs;
 *   3. find the family (one registry row per family, a family lists every
 *      model_type it runs);
 *   4. common fields (ms_config_parse_common), then the family's parse_config
 *      (its MoE fields and private block).
 * Every error is one line naming the file and the field. */
#include "arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

extern const ms_family ms_family_deepseek_v3;
extern const ms_family ms_family_step3p5;

/* One row per family. */
static const ms_family *const families[] = {
    &ms_family_deepseek_v3,
    &ms_family_step3p5,
};

/* VLM wrappers: document model_type -> the text model's type when text_config
 * does not say (text_config.model_type wins when present). */
static const struct {
    const char *wrapper, *text;
} wrappers[] = {
    {"step3p7", "step3p5"},
};

const ms_family *ms_family_find(const char *model_type)
{
    for (size_t i = 0; i < MS_ARRAY_LEN(families); i++)
        for (const char *const *t = families[i]->model_types; *t; t++)
            if (!strcmp(*t, model_type)) return families[i];
    return NULL;
}

void ms_family_list(ms_strbuf *out)
{
    bool first = true;
    for (size_t i = 0; i < MS_ARRAY_LEN(families); i++)
        for (const char *const *t = families[i]->model_types; *t; t++) {
            ms_sb_printf(out, "%s%s", first ? "" : ", ", *t);
            first = false;
        }
}

const ms_arch_ops *ms_arch_for(const ms_config *c, ms_err *err)
{
    if (c->family && c->family->ops) return c->family->ops;
    ms_errf(err, ENOTSUP, "model_type %s has no forward pass yet", c->model_type);
    return NULL;
}

int ms_config_parse(const char *json, const char *what, ms_config *cfg, ms_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    json_object *root;
    /* 1. the document and the text model's part of it */
    int rc = ms_json_parse(json, strlen(json), what, &root, err);
    if (rc < 0) return rc;
    ms_jctx jc = {what, err};
    if (!json_object_is_type(root, json_type_object)) {
        rc = ms_errf(err, EINVAL, "%s: not a JSON object", what);
        goto out;
    }
    json_object *o = root, *tc = ms_json_get(root, "text_config");
    if (!ms_json_null(tc) && json_object_is_type(tc, json_type_object) && ms_json_get(tc, "hidden_size")) o = tc;
    /* 2. model_type and wrapper_type */
    char doc_type[64];
    if ((rc = ms_json_str(&jc, root, "model_type", o == root, "", doc_type, sizeof doc_type)) < 0) goto out;
    if ((rc = ms_json_str(&jc, o, "model_type", false, "", cfg->model_type, sizeof cfg->model_type)) < 0) goto out;
    if (o != root && !cfg->model_type[0])
        for (size_t i = 0; i < MS_ARRAY_LEN(wrappers); i++)
            if (!strcmp(doc_type, wrappers[i].wrapper)) snprintf(cfg->model_type, sizeof cfg->model_type, "%s",
                                                                 wrappers[i].text);
    if (!cfg->model_type[0]) snprintf(cfg->model_type, sizeof cfg->model_type, "%s", doc_type);
    if (!cfg->model_type[0]) {
        rc = ms_errf(err, EINVAL, "%s: missing field \"model_type\"", what);
        goto out;
    }
    if (o != root && strcmp(doc_type, cfg->model_type)) snprintf(cfg->wrapper_type, sizeof cfg->wrapper_type, "%s", doc_type);
    /* 3. the family */
    cfg->family = ms_family_find(cfg->model_type);
    if (!cfg->family) {
        ms_strbuf known = {0};
        ms_family_list(&known);
        rc = ms_errf(err, EINVAL, "%s: model_type \"%s\" is not supported (supported: %s)", what, cfg->model_type,
                     ms_sb_str(&known));
        ms_sb_free(&known);
        goto out;
    }
    cfg->moe_modules = cfg->family->moe_modules;
    /* 4. common fields, then the family's */
    if ((rc = ms_config_parse_common(&jc, o, root, 1e-6, cfg)) < 0) goto out;
    rc = cfg->family->parse_config(&jc, o, root, cfg);
out:
    json_object_put(root);
    if (rc < 0) ms_config_free(cfg);
    return rc;
}

int ms_config_load(const char *path, ms_config *cfg, ms_err *err)
{
    char file[4096], *text;
    int rc = ms_config_read(path, file, sizeof file, &text, err);
    if (rc < 0) return rc;
    rc = ms_config_parse(text, file, cfg, err);
    free(text);
    return rc;
}

int ms_model_open(const char *dir, ms_model *m, ms_err *err) { return ms_model_open_mtp(dir, 0, m, err); }

int ms_model_open_mtp(const char *dir, int mtp_layers, ms_model *m, ms_err *err)
{
    ms_config cfg;
    memset(m, 0, sizeof *m);
    int rc = ms_config_load(dir, &cfg, err);
    if (rc < 0) return rc;
    if (mtp_layers > 0) {
        if (!cfg.family->ops || !cfg.family->ops->mtp_forward) {
            rc = ms_errf(err, ENOTSUP, "%s: --mtp: model_type %s has no MTP draft head in moestream yet", dir,
                         cfg.model_type);
        } else if (cfg.num_nextn_predict_layers < 1) {
            rc = ms_errf(err, EINVAL, "%s/config.json: --mtp needs an MTP layer, but num_nextn_predict_layers is 0",
                         dir);
        }
        if (rc < 0) {
            ms_config_free(&cfg);
            return rc;
        }
        cfg.mtp_layers = MS_MIN(mtp_layers, cfg.num_nextn_predict_layers);
    }
    return ms_model_open_cfg(dir, &cfg, m, err);
}

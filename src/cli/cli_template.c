/* cli_template.c - `moestream template`: render one conversation with a chat template
 * and write exactly the rendered text to stdout (nothing added), as transformers'
 * apply_chat_template(..., tokenize=False) would. The input is one JSON object with
 * the keys of the shared reference cases: messages, tools, add_generation_prompt,
 * kwargs, special_tokens. A template error (including raise_exception) is one line on
 * stderr and exit status 1. */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_template.h"
#include "cli.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream template (--model DIR | --chat-template FILE) --input INPUT.json [--now TIME]\n"
            "\n"
            "Render a conversation with a model's chat template (Jinja, exactly as transformers'\n"
            "apply_chat_template(..., tokenize=False)) and write the text to stdout, nothing added.\n"
            "\n"
            "  --model DIR            the checkpoint's template (chat_template.jinja or tokenizer_config.json)\n"
            "                         and its special tokens (bos_token, eos_token, ...)\n"
            "  --chat-template FILE   use this template instead (with --model: the model's special tokens)\n"
            "  --input FILE           JSON object: {\"messages\": [...], \"tools\": [...] | null,\n"
            "                         \"add_generation_prompt\": bool, \"kwargs\": {...}, \"special_tokens\": {...}}\n"
            "                         ('-' = stdin)\n"
            "  --now TIME             the clock of strftime_now(): YYYY-MM-DD[THH:MM[:SS]] local time, or @EPOCH\n"
            "                         (default: $MOESTREAM_NOW, else the real clock)\n");
}

/* "YYYY-MM-DD[THH:MM[:SS]]" (local time) or "@seconds" */
int ms_cli_parse_now(const char *s, int64_t *out, ms_err *err);
int ms_cli_parse_now(const char *s, int64_t *out, ms_err *err)
{
    if (s[0] == '@') {
        long long v;
        if (ms_parse_int(s + 1, 0, INT64_MAX, &v, "--now", err) < 0) return -EINVAL;
        *out = v;
        return 0;
    }
    struct tm tm = {0};
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    int k = sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n);
    if (k == 3 && (s[n] == 'T' || s[n] == ' ')) {
        int n2 = 0;
        k = sscanf(s + n + 1, "%2d:%2d%n:%2d%n", &h, &mi, &n2, &sec, &n2);
        n += 1 + n2;
        if (k < 2) k = 0;
        else k = 3;
    }
    if (k != 3 || s[n] || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return ms_errf(err, EINVAL, "--now: expected YYYY-MM-DD[THH:MM[:SS]] or @EPOCH, got '%s'", s);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    *out = (int64_t)mktime(&tm);
    return 0;
}

static json_object *read_input(const char *path, ms_err *err)
{
    char *txt = NULL;
    size_t len = 0;
    if (!strcmp(path, "-")) {
        size_t cap = 0;
        for (;;) {
            if (len + 65536 > cap) {
                cap = cap ? cap * 2 : 131072;
                char *t = realloc(txt, cap);
                if (!t) {
                    free(txt);
                    ms_errf(err, ENOMEM, "out of memory reading stdin");
                    return NULL;
                }
                txt = t;
            }
            size_t r = fread(txt + len, 1, cap - len - 1, stdin);
            len += r;
            if (r == 0) break;
            if (len > (256u << 20)) {
                free(txt);
                ms_errf(err, EFBIG, "stdin: input larger than 256 MiB");
                return NULL;
            }
        }
        if (!txt && !(txt = calloc(1, 1))) return NULL;
        txt[len] = 0;
    } else if (ms_read_file(path, 256u << 20, &txt, &len, err) < 0) {
        return NULL;
    }
    json_tokener *tk = json_tokener_new_ex(512);
    json_object *o = tk ? json_tokener_parse_ex(tk, txt, (int)len) : NULL;
    enum json_tokener_error je = tk ? json_tokener_get_error(tk) : json_tokener_error_depth;
    size_t used = tk ? (size_t)json_tokener_get_parse_end(tk) : 0;
    if (tk) json_tokener_free(tk);
    bool trailing = false;
    for (size_t i = used; o && i < len; i++)
        if (txt[i] != ' ' && txt[i] != '\n' && txt[i] != '\r' && txt[i] != '\t') trailing = true;
    free(txt);
    if (!o || je != json_tokener_success || trailing) {
        json_object_put(o);
        ms_errf(err, EINVAL, "%s: invalid JSON%s%s", path, je != json_tokener_success ? ": " : " (trailing data)",
                je != json_tokener_success ? json_tokener_error_desc(je) : "");
        return NULL;
    }
    return o;
}

enum { O_MODEL = 1, O_TEMPLATE, O_INPUT, O_NOW };

int cmd_template(int argc, char **argv)
{
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"chat-template", required_argument, 0, O_TEMPLATE},
                                         {"input", required_argument, 0, O_INPUT},
                                         {"now", required_argument, 0, O_NOW},
                                         {"help", no_argument, 0, 'h'},
                                         {0}};
    const char *model = NULL, *tmpl = NULL, *input = NULL, *now = getenv("MOESTREAM_NOW");
    ms_err err = {0};
    int o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (o) {
        case O_MODEL: model = optarg; break;
        case O_TEMPLATE: tmpl = optarg; break;
        case O_INPUT: input = optarg; break;
        case O_NOW: now = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("template", o, argv);
        }
    }
    if (optind != argc) return ms_cli_usage_error("template", "unexpected argument '%s'", argv[optind]);
    if (!model && !tmpl) return ms_cli_usage_error("template", "give --model DIR or --chat-template FILE");
    if (!input) return ms_cli_usage_error("template", "--input is required");
    int64_t t = 0;
    if (now && *now && ms_cli_parse_now(now, &t, &err) < 0) return ms_cli_usage_error("template", "%s", err.msg);

    ms_chat_template *ct = NULL;
    json_object *in = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = 1;
    if (ms_chat_template_load(model, tmpl, NULL, &ct, &err) < 0) goto out;
    if (now && *now) {
        ct->opts.fixed_now = true;
        ct->opts.now = t;
    }
    if (!(in = read_input(input, &err))) goto out;
    if (ms_chat_template_render_input(ct, in, &text, &len, &err) < 0) goto out;
    if (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0) {
        ms_errf(&err, EIO, "stdout: write failed");
        goto out;
    }
    rc = 0;
out:
    if (rc) {
        /* one line: newlines of a raise_exception message are shown as \n */
        for (char *p = err.msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        ms_cli_fail("template", &err);
    }
    free(text);
    json_object_put(in);
    ms_chat_template_free(ct);
    return rc;
}

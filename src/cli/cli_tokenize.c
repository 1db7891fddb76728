/* cli_tokenize.c - `moestream tokenize`: encode / decode JSON lines with a tokenizer.json.
 *
 * Reads one JSON object per input line from stdin and writes one JSON object per
 * line to stdout (flushed per line, so it can serve as a co-process):
 *   encode:   {"text": "..."}  ->  {"ids": [...]}      (no BOS, like add_special_tokens=false)
 *   --decode: {"ids": [...]}   ->  {"text": "..."}
 * A malformed line stops the run with one error line naming the line number and
 * exit status 1; the lines before it have been answered already.
 */
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: moestream tokenize --tokenizer PATH [--decode] [--skip-special] [--add-bos]\n"
            "\n"
            "Encode or decode JSON lines with a Hugging Face tokenizer.json (BPE).\n"
            "Reads one JSON object per line on stdin, writes one per line on stdout:\n"
            "  encode (default):  {\"text\": \"...\"}  ->  {\"ids\": [...]}\n"
            "  --decode:          {\"ids\": [...]}   ->  {\"text\": \"...\"}\n"
            "\n"
            "options:\n"
            "  --tokenizer PATH  tokenizer.json, or a model directory containing it (required);\n"
            "                    tokenizer_config.json / config.json / generation_config.json\n"
            "                    next to it give BOS/EOS\n"
            "  --decode          decode ids to text instead of encoding (default: encode)\n"
            "  --skip-special    with --decode: leave special tokens out of the text (default: keep)\n"
            "  --add-bos         when encoding: prepend the BOS id unless the text starts with the\n"
            "                    BOS string (default: no BOS, like add_special_tokens=false)\n"
            "  -h, --help        show this help\n"
            "\n"
            "Special tokens written in the text (e.g. <｜User｜>) encode to their ids. A malformed\n"
            "input line is an error naming its line number (exit status 1).\n");
}

/* Process one line; returns 0 or an error message in err. */
static int do_line(const ms_tokenizer *tok, const char *line, size_t len, bool decode, unsigned flags, FILE *out,
                   ms_err *err)
{
    if (len == 0) return ms_errf(err, EINVAL, "empty line (expected a JSON object)");
    json_tokener *tk = json_tokener_new();
    if (!tk) return ms_errf(err, ENOMEM, "out of memory");
    json_object *o = json_tokener_parse_ex(tk, line, (int)len);
    enum json_tokener_error je = json_tokener_get_error(tk);
    size_t end = json_tokener_get_parse_end(tk);
    json_tokener_free(tk);
    while (o && end < len && (line[end] == ' ' || line[end] == '\t' || line[end] == '\r')) end++;
    int rc = 0;
    if (!o || je != json_tokener_success || end < len) {
        rc = ms_errf(err, EINVAL, "invalid JSON: %s",
                     je == json_tokener_continue  ? "incomplete object"
                     : je != json_tokener_success ? json_tokener_error_desc(je)
                                                  : "trailing data after the object");
        goto out;
    }
    if (!json_object_is_type(o, json_type_object)) {
        rc = ms_errf(err, EINVAL, "expected a JSON object, got %s", json_type_to_name(json_object_get_type(o)));
        goto out;
    }
    json_object *v = NULL;
    if (!decode) {
        if (!json_object_object_get_ex(o, "text", &v) || !json_object_is_type(v, json_type_string)) {
            rc = ms_errf(err, EINVAL, "missing \"text\" string");
            goto out;
        }
        int32_t *ids;
        size_t n;
        rc = ms_tokenizer_encode(tok, json_object_get_string(v), (size_t)json_object_get_string_len(v), flags, &ids, &n,
                                 err);
        if (rc < 0) goto out;
        fputs("{\"ids\": [", out);
        for (size_t i = 0; i < n; i++) fprintf(out, i ? ", %d" : "%d", ids[i]);
        fputs("]}\n", out);
        free(ids);
    } else {
        if (!json_object_object_get_ex(o, "ids", &v) || !json_object_is_type(v, json_type_array)) {
            rc = ms_errf(err, EINVAL, "missing \"ids\" array");
            goto out;
        }
        size_t n = json_object_array_length(v);
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        if (!ids) {
            rc = ms_errf(err, ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *x = json_object_array_get_idx(v, i);
            int64_t id = x && json_object_is_type(x, json_type_int) ? json_object_get_int64(x) : -1;
            if (!x || !json_object_is_type(x, json_type_int) || id < 0 || id > INT32_MAX) {
                free(ids);
                rc = ms_errf(err, EINVAL, "ids[%zu]: not a non-negative integer", i);
                goto out;
            }
            ids[i] = (int32_t)id;
        }
        char *text;
        size_t tl;
        rc = ms_tokenizer_decode(tok, ids, n, flags, &text, &tl, err);
        free(ids);
        if (rc < 0) goto out;
        json_object *s = json_object_new_string_len(text, (int)tl);
        free(text);
        if (!s) {
            rc = ms_errf(err, ENOMEM, "out of memory");
            goto out;
        }
        fprintf(out, "{\"text\": %s}\n",
                json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(s);
    }
out:
    json_object_put(o);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tokenizer", required_argument, NULL, 't'}, {"decode", no_argument, NULL, 'd'},
        {"skip-special", no_argument, NULL, 's'},    {"add-bos", no_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},            {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool decode = false, skip = false, bos = false;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 't': path = optarg; break;
        case 'd': decode = true; break;
        case 's': skip = true; break;
        case 'b': bos = true; break;
        case 'h': usage(stdout); return 0;
        default: return ms_cli_bad_option("tokenize", c, argv);
        }
    }
    if (optind < argc) return ms_cli_usage_error("tokenize", "unexpected argument '%s'", argv[optind]);
    if (!path) return ms_cli_usage_error("tokenize", "--tokenizer PATH is required");
    if (skip && !decode) return ms_cli_usage_error("tokenize", "--skip-special only applies with --decode");
    if (bos && decode) return ms_cli_usage_error("tokenize", "--add-bos only applies when encoding");

    ms_err err = {0};
    ms_tokenizer *tok;
    if (ms_tokenizer_load(path, &tok, &err) < 0) return ms_cli_fail("tokenize", &err);
    unsigned flags = decode ? (skip ? MS_TOK_SKIP_SPECIAL : 0) : (bos ? MS_TOK_ADD_BOS : 0);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int status = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n') len--;
        if (len && line[len - 1] == '\r') len--;
        if (memchr(line, 0, len)) {
            fprintf(stderr, "moestream tokenize: line %ld: NUL byte in input (JSON text must escape it as \\u0000)\n",
                    lineno);
            status = 1;
            break;
        }
        ms_err_clear(&err);
        if (do_line(tok, line, len, decode, flags, stdout, &err) < 0) {
            fflush(stdout);
            fprintf(stderr, "moestream tokenize: line %ld: %s\n", lineno, err.msg);
            status = 1;
            break;
        }
        fflush(stdout);
    }
    if (status == 0 && ferror(stdin)) {
        fprintf(stderr, "moestream tokenize: error reading stdin\n");
        status = 1;
    }
    free(line);
    ms_tokenizer_free(tok);
    if (fflush(stdout) != 0 && status == 0) {
        fprintf(stderr, "moestream tokenize: error writing stdout\n");
        status = 1;
    }
    return status;
}

/* ms_test.c - see ms_test.h. */
#include "ms_test.h"

#include <json-c/json.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

char *mst_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) s = NULL;
    va_end(ap);
    return s;
}

char *mst_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

bool mst_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

char *mst_tmpdir(const char *name)
{
    char *p = mst_fmt("%s/%s", MS_TMP_DIR, name);
    char *cmd = mst_fmt("rm -rf '%s' && mkdir -p '%s'", p, p);
    int rc = system(cmd);
    free(cmd);
    if (rc != 0) {
        free(p);
        return NULL;
    }
    return p;
}

int mst_run(char **out, char **errout, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd = NULL;
    if (vasprintf(&cmd, fmt, ap) < 0) cmd = NULL;
    va_end(ap);
    if (!cmd) return -1;
    char ofile[] = MS_TMP_DIR "/mst_outXXXXXX";
    char efile[] = MS_TMP_DIR "/mst_errXXXXXX";
    int ofd = mkstemp(ofile), efd = mkstemp(efile);
    close(ofd);
    close(efd);
    char *full = mst_fmt("(%s) >'%s' 2>'%s'", cmd, ofile, efile);
    int st = system(full);
    free(full);
    free(cmd);
    if (out) *out = mst_slurp(ofile, NULL);
    if (errout) *errout = mst_slurp(efile, NULL);
    unlink(ofile);
    unlink(efile);
    if (st == -1) return -1;
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return -1;
}

int64_t mst_json_int(struct json_object *o, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(o, k, &v)) fail_msg("missing %s", k);
    return json_object_get_int64(v);
}

/* replay_main.c - a main() for the libFuzzer targets without libFuzzer: feeds
 * every file of the given directories (or the given files), in name order, to
 * LLVMFuzzerTestOneInput once. Linked with one tests/fuzz/fuzz_<t>.c by plain
 * gcc into fuzz_replay_<t> (tests/CMakeLists.txt), so ctest replays every
 * committed seed and regression input (tests/fuzz/corpus/<t>/, regress-* ones
 * included) in the Release and the ASan/UBSan job: a target's property checks
 * abort(), a sanitizer finding aborts, a hang hits the test's TIMEOUT.
 * Prints one line: inputs replayed, bytes, the largest input. Exit 0 after the
 * last input; 2 when a path cannot be read or no input was found. */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* One input: the whole file. */
static int replay_file(const char *path, size_t *bytes, size_t *largest)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: cannot open\n", path);
        return -1;
    }
    size_t cap = 1 << 16, n = 0, r;
    uint8_t *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
    }
    bool bad = ferror(f) || !buf;
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(buf);
        return -1;
    }
    /* an exactly sized copy, so ASan sees a read past the input's end */
    uint8_t *in = malloc(n ? n : 1);
    if (!in) abort();
    memcpy(in, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    *bytes += n;
    if (n > *largest) *largest = n;
    return 0;
}

int main(int argc, char **argv)
{
    size_t inputs = 0, bytes = 0, largest = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            fprintf(stderr, "replay: %s: not found\n", argv[a]);
            return 2;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[a], &bytes, &largest) < 0) return 2;
            inputs++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) return 2;
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                names = realloc(names, cap * sizeof *names);
                if (!names) abort();
            }
            names[n++] = strdup(de->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_names);
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(argv[a]) + strlen(names[i]) + 2;
            char *p = malloc(l);
            snprintf(p, l, "%s/%s", argv[a], names[i]);
            int rc = replay_file(p, &bytes, &largest);
            free(p);
            free(names[i]);
            if (rc < 0) return 2;
            inputs++;
        }
        free(names);
    }
    if (!inputs) {
        fprintf(stderr, "replay: no input (usage: %s DIR_OR_FILE...)\n", argv[0]);
        return 2;
    }
    printf("replayed %zu inputs (%zu bytes, largest %zu) through LLVMFuzzerTestOneInput: no failure\n", inputs, bytes,
           largest);
    return 0;
}

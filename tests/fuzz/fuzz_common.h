/* fuzz_common.h - helpers shared by the libFuzzer targets in tests/fuzz/.
 *
 * The library reads files by path, so each target writes the fuzz input into a
 * private scratch directory on tmpfs (/dev/shm when present, else $TMPDIR or
 * /tmp) created once per process and removed at exit. Everything here is
 * header-only so each target stays one translation unit plus the library. */
#ifndef MS_FUZZ_COMMON_H
#define MS_FUZZ_COMMON_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The scratch directory of this process (created on first use). A fuzzer
 * process is single-threaded, so a static is fine here (test harness only). */
static char fz_dir_buf[512];

static void fz_cleanup(void)
{
    if (!fz_dir_buf[0]) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir_buf);
    if (system(cmd) != 0) { /* best effort */
    }
}

static const char *fz_dir(void)
{
    if (fz_dir_buf[0]) return fz_dir_buf;
    const char *base = "/dev/shm";
    struct stat st;
    if (stat(base, &st) != 0 || !S_ISDIR(st.st_mode) || access(base, W_OK) != 0) {
        base = getenv("TMPDIR");
        if (!base || !*base) base = "/tmp";
    }
    snprintf(fz_dir_buf, sizeof fz_dir_buf, "%s/msfuzz-%ld", base, (long)getpid());
    if (mkdir(fz_dir_buf, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "fuzz: cannot create %s: %s\n", fz_dir_buf, strerror(errno));
        abort();
    }
    atexit(fz_cleanup);
    return fz_dir_buf;
}

/* Full path of `name` inside the scratch directory (static buffer per call site
 * is the caller's business: this returns a malloc'd string). */
static char *fz_path(const char *name)
{
    const char *d = fz_dir();
    size_t n = strlen(d) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p) abort();
    snprintf(p, n, "%s/%s", d, name);
    return p;
}

/* Write parts (data, len) back to back into path, truncating it first; then
 * extend the file to total + extra bytes (a sparse hole of zeros). */
static void fz_write_file(const char *path, const void *a, size_t alen, const void *b, size_t blen, uint64_t extra)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", path, strerror(errno));
        abort();
    }
    const void *parts[2] = {a, b};
    size_t lens[2] = {alen, blen};
    uint64_t total = 0;
    for (int i = 0; i < 2; i++) {
        const char *p = parts[i];
        size_t l = lens[i];
        while (l > 0) {
            ssize_t w = write(fd, p, l);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                fprintf(stderr, "fuzz: short write to %s\n", path);
                abort();
            }
            p += w;
            l -= (size_t)w;
            total += (uint64_t)w;
        }
    }
    if (extra && ftruncate(fd, (off_t)(total + extra)) != 0) abort();
    close(fd);
}

/* The input as a NUL-terminated malloc'd string (embedded NULs end it early,
 * which is what a C string argument would see). */
static char *fz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

#endif

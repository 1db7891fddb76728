/* test_io_bench.c - the engine of `bench io` (bench/bench_io_core.h) on a small
 * generated MLX-like shard: a raw row and one row per backend, every backend
 * delivering the same payload bytes, sane figures; bad workloads refused. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_io_core.h"
#include "io.h"
#include "ms_test.h"
#include "util.h"

static char *make_shard(const char *dir, uint64_t size)
{
    char *path = mst_fmt("%s/shard.safetensors", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(1 << 20);
    for (int i = 0; i < (1 << 20); i++) buf[i] = (uint8_t)(i * 131 + 7);
    for (uint64_t off = 0; off < size; off += 1 << 20) {
        size_t n = (size_t)MS_MIN((uint64_t)1 << 20, size - off);
        assert_true(write(fd, buf, n) == (ssize_t)n);
    }
    assert_int_equal(fsync(fd), 0);
    close(fd);
    free(buf);
    return path;
}

static void test_bench_file(void **state)
{
    (void)state;
    char *dir = mst_tmpdir("test_io_bench");
    char *path = make_shard(dir, (40u << 20) + 5000);
    const char *backends[4] = {"uring", "pread", "mmap", "fault:inner=pread,short=0.2,eagain=0.1"};
    int nb = ms_io_uring_available() ? 4 : 3;
    ms_bench_io_opts o = {.backends = nb == 4 ? backends : backends + 1, .n_backends = nb, .batch_experts = 4,
                          .seed = 3, .queue_depth = 16, .raw_qd = 8};
    ms_bench_io_row *rows;
    int n;
    ms_err err = {0};
    /* hidden 1024, inter 512: 884,736 bytes per expert, 9 ranges */
    int rc = ms_bench_io_file(path, 1024, 512, &o, &rows, &n, &err);
    if (rc < 0) fprintf(stderr, "%s\n", err.msg);
    assert_int_equal(rc, 0);
    assert_int_equal(n, nb + 1);
    assert_string_equal(rows[0].backend, "raw");
    assert_true(rows[0].ratio_to_raw == 1.0);
    uint64_t experts = ((40u << 20) + 5000 - 12345) / 884736;
    assert_true(rows[0].bytes >= experts * 884736);
    for (int i = 1; i < n; i++) {
        assert_true(rows[i].bytes == experts * 884736); /* same payload through every backend */
        assert_true(rows[i].bytes_read >= rows[i].bytes);
        assert_true(rows[i].requests == experts * 9);
        assert_true(rows[i].seconds > 0 && isfinite(rows[i].gbps) && rows[i].gbps > 0);
        assert_true(rows[i].ratio_to_raw > 0 && isfinite(rows[i].ratio_to_raw));
    }
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ms_bench_io_print(f, rows, n, true);
    fclose(f);
    assert_non_null(strstr(out, "\"backend\": \"raw\""));
    assert_non_null(strstr(out, "\"ratio_to_raw\""));
    free(out);
    free(rows);

    /* max_bytes: a prefix of the experts; a batch larger than the experts used
     * is one batch of them (the arena is sized for the experts read) */
    o.max_bytes = 5u << 20;
    o.n_backends = 1;
    o.batch_experts = 100000;
    o.raw_expert_order = true;
    o.repeat = 2;
    assert_int_equal(ms_bench_io_file(path, 1024, 512, &o, &rows, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_true(rows[1].bytes <= (5u << 20) && rows[1].bytes >= (4u << 20));
    assert_string_equal(rows[2].backend, "raw-expert-order");
    assert_true(rows[2].bytes >= rows[1].bytes && rows[2].bytes >= rows[0].bytes); /* unmerged spans */
    free(rows);

    /* refusals */
    assert_true(ms_bench_io_file(path, 1000, 512, &o, &rows, &n, &err) < 0);
    ms_err_clear(&err);
    assert_true(ms_bench_io_file(path, 65536, 65536, &o, &rows, &n, &err) < 0);
    assert_non_null(strstr(err.msg, "too small"));
    ms_err_clear(&err);
    const char *bad[1] = {"floppy"};
    o.backends = bad;
    assert_true(ms_bench_io_file(path, 1024, 512, &o, &rows, &n, &err) < 0);
    assert_non_null(strstr(err.msg, "floppy"));
    unlink(path);
    free(path);
    free(dir);
    if (nb == 3) MST_SKIP("io_uring unavailable: the uring backend was not benchmarked (the others were)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

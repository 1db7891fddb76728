/* test_kernels_bench.c - `moestream bench kernels` end to end (a smoke test,
 * never a timing test): the JSON rows are well-formed, cover every kernel x
 * shape x thread count, carry positive figures, and bad options are usage
 * errors (exit 2, one line). */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "ms_test.h"

static void test_bench_json(void **state)
{
    (void)state;
    char *out = NULL, *errs = NULL;
    int rc = mst_run(&out, &errs, "%s bench kernels --json --time 0.005 --mem 64M --threads 2", MS_BIN);
    if (rc != 0) fail_msg("exit %d: %s", rc, errs ? errs : "");
    static const char *kernels[] = {"q4g64", "q8g64", "q5g64", "q3g128", "bf16"};
    int seen[5][3][2] = {{{0}}}, memread = 0, lines = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_object *o = json_tokener_parse(line);
        if (!o) fail_msg("not JSON: %s", line);
        json_object *k, *t, *r, *c, *g, *rf;
        assert_true(json_object_object_get_ex(o, "kernel", &k));
        assert_true(json_object_object_get_ex(o, "threads", &t));
        assert_true(json_object_object_get_ex(o, "rows", &r));
        assert_true(json_object_object_get_ex(o, "cols", &c));
        assert_true(json_object_object_get_ex(o, "gbps", &g));
        assert_true(json_object_object_get_ex(o, "roofline_gbps", &rf));
        assert_true(json_object_get_double(g) > 0);
        assert_true(json_object_get_double(rf) > 0);
        int th = json_object_get_int(t);
        assert_true(th == 1 || th == 2);
        const char *name = json_object_get_string(k);
        if (!strcmp(name, "memread")) {
            memread++;
        } else {
            int ki = -1, si = -1;
            for (int i = 0; i < 5; i++)
                if (!strcmp(name, kernels[i])) ki = i;
            long rows = json_object_get_int(r), cols = json_object_get_int(c);
            if (rows == 7168 && cols == 2048) si = 0;
            if (rows == 2048 && cols == 7168) si = 1;
            if (rows == 4096 && cols == 4096) si = 2;
            if (ki < 0 || si < 0) fail_msg("unexpected row: %s", line);
            seen[ki][si][th - 1]++;
        }
        json_object_put(o);
        lines++;
    }
    assert_int_equal(memread, 2);
    for (int i = 0; i < 5; i++)
        for (int s = 0; s < 3; s++)
            for (int t = 0; t < 2; t++) assert_int_equal(seen[i][s][t], 1);
    assert_int_equal(lines, 2 + 5 * 3 * 2);
    free(out);
    free(errs);
}

static void test_bench_usage(void **state)
{
    (void)state;
    const char *bad[] = {"--threads 0", "--time -1", "--mem 1M", "--impl sse9", "--bogus", "extra"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *errs = NULL;
        int rc = mst_run(NULL, &errs, "%s bench kernels %s", MS_BIN, bad[i]);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(errs, "moestream bench kernels"));
        free(errs);
    }
    char *out = NULL;
    assert_int_equal(mst_run(&out, NULL, "%s bench kernels --help", MS_BIN), 0);
    assert_non_null(strstr(out, "--json"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_json),
        cmocka_unit_test(test_bench_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

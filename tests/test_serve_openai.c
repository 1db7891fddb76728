/* test_serve_openai.c - `moestream serve` through the official OpenAI client
 * for Node (the `openai` npm package, pinned in tests/serve_client/package.json
 * and package-lock.json, installed here with `npm ci` into the build tree):
 * tests/serve_client/test.mjs checks models.list, a non-streamed chat answer
 * equal to `moestream run --temp 0`, its streamed chunks reassembling to the
 * same text with the same usage, the SDK's stream helper, stop strings, seed
 * reproducibility, a scripted tool call (non-streamed, streamed deltas, stream
 * helper), completions, and the SDK's typed errors (404 model, 400 n and
 * unknown field, 401 key). Without node/npm the test is a visible SKIP (a failure
 * under CI=true: scripts/deps.sh installs nodejs and npm). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "ms_test.h"
#include "mst_serve.h"

#define CLIENT_SRC MS_TEST_DATA "/../serve_client"

static void test_openai_client(void **state)
{
    (void)state;
    if (mst_run(NULL, NULL, "command -v node && command -v npm") != 0)
        MST_SKIP("node/npm not found: the OpenAI Node client test needs Node >= 18 and npm (scripts/deps.sh installs them)");
    char *dir = mst_tmpdir("serve_openai"), *out = NULL, *err = NULL;
    int rc = mst_run(&out, &err,
                     "mkdir -p %s/client && cp %s/package.json %s/package-lock.json %s/test.mjs %s/client/ && "
                     "cd %s/client && npm ci --no-audit --no-fund --loglevel=error",
                     dir, CLIENT_SRC, CLIENT_SRC, CLIENT_SRC, dir, dir);
    if (rc != 0) fail_msg("npm ci failed (%d): %s%s", rc, out, err);
    free(out);
    free(err);
    char *model = mst_serve_model("serve_openai_model");
    assert_non_null(model);
    rc = mst_run(NULL, &err,
                 "%s run --model %s --prompt 'Hello there' -n 12 --temp 0 --ignore-eos --batch 8 --ctx 512 --threads 2 "
                 "--quiet > %s/reference.txt",
                 MS_BIN, model, dir);
    if (rc != 0) fail_msg("run: %s", err);
    free(err);
    const char *args[] = {"--model", model, "--parallel", "4", "--ctx", "512", "--batch", "8", "--threads", "2",
                          "--ram", "160M", "--api-key", "sk-node", "--name", "tiny", "--script",
                          MS_TEST_DATA "/serve/script.json", NULL};
    pid_t pid;
    int port = mst_serve_start(dir, args, &pid);
    assert_true(port > 0);
    rc = mst_run(&out, &err, "cd %s/client && node test.mjs http://127.0.0.1:%d/v1 sk-node tiny %s/reference.txt", dir,
                 port, dir);
    print_message("%s", out);
    int st = mst_serve_stop(pid, 10);
    if (rc != 0) fail_msg("the OpenAI client test failed (%d):\n%s%s", rc, out, err);
    assert_non_null(strstr(out, "checks passed"));
    assert_int_equal(st, 0);
    free(out);
    free(err);
    free(model);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_openai_client)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}

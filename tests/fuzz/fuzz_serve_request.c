/* fuzz_serve_request.c - libFuzzer target: an HTTP request body of `serve`
 * through ms_srv_request_parse as a /v1/chat/completions body and as a
 * /v1/completions body, then the error object the server would send. Checks
 * on every input: a parse either succeeds with a consistent request (messages
 * normalized to role + string/null content, at most 16 stop strings, top
 * log-probs only with log-probs, a prompt for completions, sampling values in
 * range) or fails with a 4xx/5xx status and a message; nothing leaks.
 * Seeds: request bodies of the OpenAI API (tests/fuzz/make_seeds.py). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "serve_req.h"
#include "serve_resp.h"

static void check(ms_srv_kind kind, const uint8_t *data, size_t size)
{
    ms_srv_defaults d = {.sampling = ms_sampler_defaults(), .max_tokens = -1, .completion_max_tokens = 16};
    ms_srv_request r;
    ms_srv_error e = {0};
    if (ms_srv_request_parse(kind, (const char *)data, size, &d, &r, &e) == 0) {
        if (r.n_stop > MS_SRV_MAX_STOP || r.top_logprobs > MS_SRV_MAX_TOP_LOGPROBS) abort();
        if (!(r.sampling.temperature >= 0 && r.sampling.temperature <= 2)) abort();
        if (!(r.sampling.top_p > 0 && r.sampling.top_p <= 1) || r.sampling.top_k < 0) abort();
        if (r.max_tokens == 0 || r.max_tokens < -1) abort();
        if (r.sampling.n_bias && (!r.sampling.bias_ids || !r.sampling.bias)) abort();
        if (kind == MS_SRV_CHAT) {
            if (!json_object_is_type(r.messages, json_type_array) || json_object_array_length(r.messages) == 0) abort();
            if (r.top_logprobs && !r.logprobs) abort();
            for (size_t i = 0; i < json_object_array_length(r.messages); i++) {
                json_object *m = json_object_array_get_idx(r.messages, i), *c = ms_json_get(m, "content");
                if (!json_object_is_type(ms_json_get(m, "role"), json_type_string)) abort();
                if (c && !json_object_is_type(c, json_type_string)) abort();
            }
            if (r.tool_choice == MS_TOOLS_NAMED && (!r.tools || !r.tool_name)) abort();
        } else if (!r.prompt && !(r.prompt_ids && r.n_prompt_ids > 0)) {
            abort();
        }
    } else if (e.status < 400 || e.status > 599 || !e.message[0]) {
        abort();
    }
    ms_strbuf b = {0};
    if (e.status) ms_srv_error_body(&b, &e);
    ms_sb_free(&b);
    ms_srv_request_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(MS_SRV_CHAT, data, size);
    check(MS_SRV_COMPLETION, data, size);
    return 0;
}

/* test_serve_req.c - the OpenAI request parser of `serve` (serve_req.c):
 * every accepted field lands in the struct with its value; every refusal is a
 * 400 whose param names the field (unknown fields, wrong types, ranges,
 * unsupported features such as n > 1, echo, non-text content parts, several
 * prompts); cross-field rules (tool_choice needs tools and a known name,
 * top_logprobs needs logprobs, stream_options needs stream); messages are
 * normalized (parts joined, developer -> system, tool calls kept). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "ms_test.h"
#include "serve_req.h"

static ms_srv_defaults defaults(void)
{
    return (ms_srv_defaults){.sampling = ms_sampler_defaults(), .max_tokens = -1, .completion_max_tokens = 16};
}

static int parse(ms_srv_kind k, const char *body, ms_srv_request *r, ms_srv_error *e)
{
    ms_srv_defaults d = defaults();
    memset(e, 0, sizeof *e);
    return ms_srv_request_parse(k, body, strlen(body), &d, r, e);
}

/* body must fail with 400 naming param (NULL: no param) and mentioning `what`. */
static void refuse(ms_srv_kind k, const char *body, const char *param, const char *what)
{
    ms_srv_request r;
    ms_srv_error e;
    if (parse(k, body, &r, &e) == 0) fail_msg("accepted: %s", body);
    ms_srv_request_free(&r);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    if (param && strcmp(e.param, param)) fail_msg("%s: param '%s', expected '%s' (%s)", body, e.param, param, e.message);
    if (!param && e.param[0]) fail_msg("%s: param '%s', expected none", body, e.param);
    if (what && !strstr(e.message, what)) fail_msg("%s: message '%s' lacks '%s'", body, e.message, what);
}

static void test_chat_fields(void **state)
{
    (void)state;
    ms_srv_request r;
    ms_srv_error e;
    const char *body =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"}],"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":7,\"max_completion_tokens\":9,"
        "\"temperature\":0.5,\"top_p\":0.9,\"top_k\":-1,\"min_p\":0.05,\"repeat_penalty\":1.1,"
        "\"presence_penalty\":0.5,\"frequency_penalty\":-0.25,\"seed\":-3,\"stop\":[\"x\",\"yy\"],"
        "\"logprobs\":true,\"top_logprobs\":3,\"logit_bias\":{\"5\":-100,\"7\":2.5},\"n\":1,\"user\":\"u\","
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},\"ignore_eos\":true,"
        "\"chat_template_kwargs\":{\"thinking\":true},\"response_format\":{\"type\":\"text\"}}";
    if (parse(MS_SRV_CHAT, body, &r, &e) < 0) fail_msg("%s", e.message);
    assert_string_equal(r.model, "m");
    assert_true(r.stream && r.include_usage && r.ignore_eos && r.logprobs && r.seed_given);
    assert_int_equal(r.max_tokens, 9); /* max_completion_tokens wins */
    assert_true(r.sampling.temperature == 0.5f && r.sampling.top_p == 0.9f && r.sampling.top_k == 0);
    assert_true(r.sampling.min_p == 0.05f && r.sampling.repetition_penalty == 1.1f);
    assert_true(r.sampling.presence_penalty == 0.5f && r.sampling.frequency_penalty == -0.25f);
    assert_true(r.sampling.seed == (uint64_t)-3);
    assert_int_equal(r.n_stop, 2);
    assert_string_equal(r.stop[1], "yy");
    assert_int_equal(r.top_logprobs, 3);
    assert_int_equal(r.sampling.n_bias, 2);
    assert_true(r.sampling.bias_ids[0] == 5 && r.sampling.bias[0] == -100.0f && r.sampling.bias[1] == 2.5f);
    assert_int_equal(r.tool_choice, MS_TOOLS_NAMED);
    assert_string_equal(r.tool_name, "f");
    assert_non_null(r.tools);
    assert_non_null(r.template_kwargs);
    /* normalized messages */
    assert_int_equal(json_object_array_length(r.messages), 4);
    json_object *m0 = json_object_array_get_idx(r.messages, 0), *m1 = json_object_array_get_idx(r.messages, 1),
                *m2 = json_object_array_get_idx(r.messages, 2), *m3 = json_object_array_get_idx(r.messages, 3);
    assert_string_equal(json_object_get_string(ms_json_get(m0, "role")), "system");
    assert_string_equal(json_object_get_string(ms_json_get(m1, "content")), "a\nb");
    assert_true(ms_json_null(ms_json_get(m2, "content")));
    json_object *fn = ms_json_get(json_object_array_get_idx(ms_json_get(m2, "tool_calls"), 0), "function");
    assert_string_equal(json_object_get_string(ms_json_get(fn, "arguments")), "{\"x\":1}");
    assert_string_equal(json_object_get_string(ms_json_get(m3, "tool_call_id")), "c1");
    ms_srv_request_free(&r);
    /* defaults */
    assert_int_equal(parse(MS_SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"seed\":null}", &r, &e), 0);
    ms_sampler_params d = ms_sampler_defaults();
    assert_true(r.sampling.temperature == d.temperature && r.sampling.top_k == d.top_k && !r.seed_given);
    assert_int_equal(r.max_tokens, -1);
    assert_false(r.stream || r.logprobs);
    assert_null(r.model);
    ms_srv_request_free(&r);
}

static void test_completion_fields(void **state)
{
    (void)state;
    ms_srv_request r;
    ms_srv_error e;
    assert_int_equal(parse(MS_SRV_COMPLETION, "{\"prompt\":\"hello\",\"logprobs\":2,\"echo\":false,\"best_of\":1}", &r, &e), 0);
    assert_string_equal(r.prompt, "hello");
    assert_int_equal(r.max_tokens, 16); /* OpenAI's completions default */
    assert_true(r.logprobs && r.top_logprobs == 2);
    ms_srv_request_free(&r);
    assert_int_equal(parse(MS_SRV_COMPLETION, "{\"prompt\":[1,2,3]}", &r, &e), 0);
    assert_null(r.prompt);
    assert_int_equal(r.n_prompt_ids, 3);
    assert_int_equal(r.prompt_ids[2], 3);
    ms_srv_request_free(&r);
    assert_int_equal(parse(MS_SRV_COMPLETION, "{\"prompt\":[[4,5]]}", &r, &e), 0);
    assert_int_equal(r.n_prompt_ids, 2);
    ms_srv_request_free(&r);
    assert_int_equal(parse(MS_SRV_COMPLETION, "{\"prompt\":[\"one\"],\"stop\":\"\\n\"}", &r, &e), 0);
    assert_string_equal(r.prompt, "one");
    assert_string_equal(r.stop[0], "\n");
    ms_srv_request_free(&r);
}

static void test_refusals(void **state)
{
    (void)state;
    const ms_srv_kind C = MS_SRV_CHAT, P = MS_SRV_COMPLETION;
#define U "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
    refuse(C, "{\"messages\":", NULL, "invalid JSON");
    refuse(C, "[1,2]", NULL, "JSON object");
    refuse(C, "", NULL, "invalid JSON");
    refuse(C, "{}", "messages", "required");
    refuse(C, "{\"messages\":[]}", "messages", "empty");
    refuse(C, "{" U ",\"frobnicate\":1}", "frobnicate", "unknown field");
    refuse(C, "{" U ",\"n\":2}", "n", "n = 1");
    refuse(C, "{" U ",\"temperature\":3}", "temperature", "out of range");
    refuse(C, "{" U ",\"temperature\":\"hot\"}", "temperature", "number");
    refuse(C, "{" U ",\"top_p\":0}", "top_p", "> 0");
    refuse(C, "{" U ",\"max_tokens\":0}", "max_tokens", "out of range");
    refuse(C, "{" U ",\"max_tokens\":1.5}", "max_tokens", "integer");
    refuse(C, "{" U ",\"stop\":[\"a\",2]}", "stop", "strings");
    refuse(C, "{" U ",\"stop\":\"\"}", "stop", "empty");
    refuse(C, "{" U ",\"stream\":\"yes\"}", "stream", "boolean");
    refuse(C, "{" U ",\"stream_options\":{\"include_usage\":true}}", "stream_options", "stream");
    refuse(C, "{" U ",\"stream\":true,\"stream_options\":{\"x\":1}}", "stream_options.x", "unknown");
    refuse(C, "{" U ",\"top_logprobs\":2}", "top_logprobs", "logprobs");
    refuse(C, "{" U ",\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs", "out of range");
    refuse(C, "{" U ",\"logit_bias\":{\"x\":1}}", "logit_bias", "token id");
    refuse(C, "{" U ",\"logit_bias\":{\"3\":101}}", "logit_bias", "out of range");
    refuse(C, "{" U ",\"presence_penalty\":2.5}", "presence_penalty", "out of range");
    refuse(C, "{" U ",\"response_format\":{\"type\":\"json_object\"}}", "response_format", "not supported");
    refuse(C, "{" U ",\"tool_choice\":\"required\"}", "tool_choice", "tools");
    refuse(C, "{" U ",\"tool_choice\":\"sometimes\"}", "tool_choice", "auto");
    refuse(C, "{" U ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
              "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}}}", "tool_choice", "not in 'tools'");
    refuse(C, "{" U ",\"tools\":[{\"type\":\"retrieval\"}]}", "tools[0]", "function");
    refuse(C, "{" U ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]}", "tools[0]", "name");
    refuse(C, "{" U ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
              "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", "tools[1]", "duplicate");
    refuse(C, "{\"messages\":[{\"content\":\"hi\"}]}", "messages[0]", "role");
    refuse(C, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", "messages[0]", "unknown role");
    refuse(C, "{\"messages\":[{\"role\":\"user\"}]}", "messages[0]", "content");
    refuse(C, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content", "string");
    refuse(C, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
           "messages[0].content", "text only");
    refuse(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"colour\":1}]}", "messages[0].colour", "unknown");
    refuse(C, "{\"messages\":[{\"role\":\"assistant\",\"content\":null}]}", "messages[0]", "tool_calls");
    refuse(C, "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"arguments\":\"{}\"}}]}]}",
           "messages[0].tool_calls", "name");
    refuse(C, "{" U ",\"prompt\":\"x\"}", "prompt", "unknown field"); /* a completions field in chat */
    refuse(P, "{}", "prompt", "required");
    refuse(P, "{\"prompt\":\"\"}", "prompt", "empty");
    refuse(P, "{\"prompt\":[]}", "prompt", "empty");
    refuse(P, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "several prompts");
    refuse(P, "{\"prompt\":[1,-2]}", "prompt", "out of range");
    refuse(P, "{\"prompt\":[1,\"x\"]}", "prompt", "integer");
    refuse(P, "{\"prompt\":\"a\",\"echo\":true}", "echo", "not supported");
    refuse(P, "{\"prompt\":\"a\",\"suffix\":\"z\"}", "suffix", "not supported");
    refuse(P, "{\"prompt\":\"a\",\"best_of\":3}", "best_of", "best_of = 1");
    refuse(P, "{\"prompt\":\"a\",\"logprobs\":6}", "logprobs", "out of range");
    refuse(P, "{\"prompt\":\"a\",\"messages\":[]}", "messages", "unknown field");
#undef U
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_fields),
        cmocka_unit_test(test_completion_fields),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

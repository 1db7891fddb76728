/* serve_req.h - the request bodies of the OpenAI API that `serve` accepts,
 * parsed and validated into one struct before anything runs.
 *
 * POST /v1/chat/completions and POST /v1/completions bodies are parsed with
 * json-c; every field is checked for type and range, and anything the server
 * does not implement is refused with a 400 naming the field (n > 1, echo,
 * suffix, best_of > 1, non-text content parts, response_format other than
 * text, unknown fields), never silently ignored. A few fields that carry no
 * meaning here are accepted and ignored (user, metadata, store, service_tier,
 * parallel_tool_calls). Extensions llama.cpp / vLLM clients send are accepted:
 * top_k, min_p, repeat_penalty / repetition_penalty, ignore_eos,
 * chat_template_kwargs.
 *
 * Messages are normalized: content parts are joined ("\n") into one string,
 * "developer" becomes "system". The parser knows nothing of the model: the
 * served model's name, the vocabulary range of token ids and logit_bias keys,
 * and the context length are checked by the server afterwards. This parser is
 * the fuzz target tests/fuzz/fuzz_serve_request.c. */
#ifndef MS_SERVE_REQ_H
#define MS_SERVE_REQ_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sampler.h"

typedef enum { MS_SRV_CHAT, MS_SRV_COMPLETION } ms_srv_kind;

typedef enum { MS_TOOLS_AUTO, MS_TOOLS_NONE, MS_TOOLS_REQUIRED, MS_TOOLS_NAMED } ms_srv_tool_choice;

/* An OpenAI error object: {"error": {"message", "type", "param", "code"}} with
 * its HTTP status. */
typedef struct ms_srv_error {
    int status;        /* 400, 401, 404, 413, 429, 500, 503 */
    const char *type;  /* "invalid_request_error", "authentication_error", ... */
    char param[64];    /* the field at fault ("" = null) */
    char code[48];     /* "context_length_exceeded", "model_not_found", ... ("" = null) */
    char message[512];
} ms_srv_error;

/* Fill e (status, type, param, code may be NULL) and return -1. */
int ms_srv_errorf(ms_srv_error *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

enum { MS_SRV_MAX_STOP = 16, MS_SRV_MAX_TOP_LOGPROBS = 20, MS_SRV_MAX_BIAS = 1024 };

/* Server-side defaults a request starts from. */
typedef struct ms_srv_defaults {
    ms_sampler_params sampling; /* temperature, top_k, top_p, min_p, repeat penalty (seed unused) */
    int max_tokens;             /* chat without max_tokens (-1: until the context is full) */
    int completion_max_tokens;  /* /v1/completions without max_tokens (OpenAI: 16) */
} ms_srv_defaults;

typedef struct ms_srv_request {
    ms_srv_kind kind;
    json_object *root;        /* the parsed body (strings below point into it) */
    const char *model;        /* NULL: not given */
    /* chat */
    json_object *messages;    /* normalized array (owned): {role, content (string|null), name,
                                 tool_calls [{id, type, function {name, arguments (string)}}],
                                 tool_call_id, reasoning_content} */
    json_object *tools;       /* the request's tools array (in root) or NULL */
    ms_srv_tool_choice tool_choice;
    const char *tool_name;    /* MS_TOOLS_NAMED */
    json_object *template_kwargs; /* chat_template_kwargs object (in root) or NULL */
    /* completion */
    const char *prompt;       /* text prompt, or NULL when given as token ids */
    int32_t *prompt_ids;      /* owned */
    int n_prompt_ids;
    /* both */
    bool stream, include_usage, ignore_eos;
    int max_tokens;           /* -1: until the context is full */
    ms_sampler_params sampling; /* bias_ids/bias point into this struct's arrays */
    bool seed_given;
    const char *stop[MS_SRV_MAX_STOP];
    int n_stop;
    bool logprobs;
    int top_logprobs;
    int32_t *bias_ids;        /* owned */
    float *bias;              /* owned */
} ms_srv_request;

/* Parse a body. 0 or -1 with e filled (status 400). */
int ms_srv_request_parse(ms_srv_kind kind, const char *body, size_t len, const ms_srv_defaults *def,
                         ms_srv_request *out, ms_srv_error *e);
void ms_srv_request_free(ms_srv_request *r);

#endif

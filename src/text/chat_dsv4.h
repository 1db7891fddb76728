/* chat_dsv4.h - DeepSeek-V4's prompt format. DeepSeek ships no Jinja template
 * for V4, only a Python encoder (encoding/encoding_dsv4.py, encode_messages);
 * this is that encoder in C, byte for byte:
 *
 *   <｜begin▁of▁sentence｜>[system text][\n\n## Tools ...]
 *   <｜User｜>user text<｜Assistant｜></think>assistant text<｜end▁of▁sentence｜>
 *   <｜User｜>...<｜Assistant｜></think>                 (chat mode, generation prompt)
 *   <｜User｜>...<｜Assistant｜><think>                  (thinking mode)
 *
 * What it covers: roles system, developer, user, assistant, tool (merged into
 * the following user turn as <tool_result>...</tool_result> blocks, ordered as
 * the assistant called them) and latest_reminder; chat and thinking modes
 * (earlier turns' reasoning dropped unless keep_reasoning or tools are
 * present; reasoning_effort "max" prefix); tool schemas (OpenAI "tools"
 * arrays) on system/developer messages; response_format; assistant tool calls
 * in DSML (<｜DSML｜tool_calls> / invoke / parameter, string="true|false").
 * Not covered: the encoder's internal classification tasks and `wo_eos`.
 * JSON it prints (schemas, non-string arguments) is Python's json.dumps. */
#ifndef MS_CHAT_DSV4_H
#define MS_CHAT_DSV4_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef struct ms_dsv4_tool_call {
    const char *id;        /* optional; orders the tool results that answer it */
    const char *name;
    const char *arguments; /* JSON text of an object, as OpenAI clients send it */
} ms_dsv4_tool_call;

typedef struct ms_dsv4_msg {
    const char *role;      /* system, developer, user, assistant, tool, latest_reminder */
    const char *content;   /* NULL renders as empty */
    const char *reasoning; /* assistant: reasoning_content (thinking mode) */
    const ms_dsv4_tool_call *tool_calls; /* assistant */
    size_t n_tool_calls;
    const char *tool_call_id;    /* tool: the call it answers */
    const char *tools;           /* system / developer: OpenAI tools array (JSON text) */
    const char *response_format; /* system / developer: JSON text */
} ms_dsv4_msg;

typedef struct ms_dsv4_opts {
    bool thinking;        /* thinking_mode "thinking" (default "chat") */
    bool keep_reasoning;  /* drop_thinking = False */
    bool reasoning_max;   /* reasoning_effort "max" */
    bool no_bos;          /* add_default_bos_token = False */
} ms_dsv4_opts;

/* The prompt for msgs[0..n) (malloc'd, NUL-terminated; *out_len may be NULL).
 * add_generation_prompt: end with the assistant turn's opening after a final
 * user / developer message (the encoder always does; false leaves it off).
 * opts may be NULL (chat mode). Errors name the message and field. */
int ms_chat_dsv4_render(const ms_dsv4_msg *msgs, size_t n, const ms_dsv4_opts *opts, bool add_generation_prompt,
                        char **out, size_t *out_len, ms_err *err);

/* The same from OpenAI-style JSON (what run, chat and serve hold): messages (role,
 * content, reasoning_content, tool_calls with function.name/arguments, tool_call_id,
 * response_format), the request's tools (put on the first system message; an empty
 * one is added when the conversation has none), template kwargs thinking /
 * enable_thinking / thinking_mode, drop_thinking / keep_reasoning, reasoning_effort. */
struct json_object;
int ms_chat_dsv4_render_json(struct json_object *messages, struct json_object *tools, struct json_object *kwargs,
                             bool add_generation_prompt, char **out, size_t *out_len, ms_err *err);

#endif

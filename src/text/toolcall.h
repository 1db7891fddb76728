/* toolcall.h - what a chat model wrote, split into {content, reasoning_content,
 * tool_calls[]}: the tool-call and reasoning formats of the model families, as an ops
 * table chosen from the checkpoint's chat template, parsed incrementally from a text
 * stream (generated text decoded WITH special tokens, which carry the markers).
 *
 * Formats (the template text selects one, ms_toolcall_detect):
 *   deepseek_v3    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 *   deepseek_v3_1  <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 *   gigachat3_1    CONTENT<|function_call|>{"name": ..., "arguments": {...}}
 *   gigachat3      CONTENT<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": ..., "arguments": {...}}
 *   glm4           <tool_call>NAME<arg_key>K</arg_key><arg_value>V</arg_value>...</tool_call>
 *   qwen3_xml      <tool_call>\n<function=NAME>\n<parameter=K>\nV\n</parameter>\n</function>\n</tool_call> (Step-3.5/3.7, Qwen3-Coder)
 *   hermes         <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call> (Qwen3, Qwen2.5)
 *   kimi_k2        <|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:I<|tool_call_argument_begin|>ARGS<|tool_call_end|>...
 *   none           content only
 * Reasoning is <think>...</think> where the template uses it; a prompt that ends inside
 * <think> (the generation prompt opened it) starts the stream in reasoning.
 *
 * Each call's arguments come out as one JSON object text in json.dumps' style; XML-style
 * values take their types from the tool's JSON schema when the tools are given (else
 * they are JSON if they parse as JSON, strings otherwise). A call that does not parse
 * (bad JSON, missing name, ...) comes back as content, markers included. Results do not
 * depend on how the text was split into pieces: a piece may end anywhere, even inside
 * a marker or a UTF-8 character. Content and reasoning have surrounding whitespace
 * trimmed.
 */
#ifndef MS_TOOLCALL_H
#define MS_TOOLCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct json_object;
struct ms_strbuf;
struct ms_tokenizer;
typedef struct ms_toolcall_ops ms_toolcall_ops;
typedef struct ms_chat_parser ms_chat_parser;

typedef struct ms_toolcall {
    char *id;        /* "call00000"-style, or the model's own (kimi_k2) */
    char *name;
    char *arguments; /* a JSON object, e.g. {"city": "Москва", "days": 2} */
} ms_toolcall;

/* The format of a chat template (never NULL: "none" when nothing matches). */
const ms_toolcall_ops *ms_toolcall_detect(const char *template_text);
/* By name ("deepseek_v3", "hermes", ...), NULL if unknown. */
const ms_toolcall_ops *ms_toolcall_by_name(const char *name);
const char *ms_toolcall_name(const ms_toolcall_ops *ops);
/* Token texts that end an assistant turn in this format (NULL-terminated), on top of
 * the tokenizer's own stop set. with_tools=false adds the end-of-turn markers that a
 * tool call would otherwise follow (GigaChat's <|message_sep|>). */
const char *const *ms_toolcall_stop_texts(const ms_toolcall_ops *ops, bool with_tools);
/* Stop ids of an assistant turn: the tokenizer's stop set plus the format's end-of-turn
 * tokens above (ops NULL: the tokenizer's only). Returns the count (at most cap). */
size_t ms_toolcall_stop_ids(const ms_toolcall_ops *ops, bool with_tools, const struct ms_tokenizer *tok, int32_t *ids,
                            size_t cap);
/* Does the format's chat template concatenate tool-call arguments as text (else the
 * template wants them as a mapping, as transformers passes them)? */
bool ms_toolcall_args_as_string(const ms_toolcall_ops *ops);
/* Append the text that opens a call in this format, with the function's name when
 * given (tool_choice required / named: the prompt ends inside a call). false: the
 * format has no fixed opening (nothing appended). */
bool ms_toolcall_force_opening(const ms_toolcall_ops *ops, const char *name, struct ms_strbuf *sb);
/* Does a rendered prompt leave the model inside a reasoning block (ends with <think>)? */
bool ms_toolcall_prompt_in_reasoning(const ms_toolcall_ops *ops, const char *prompt, size_t len);

/* A parser for one assistant message. tools: the request's tools (JSON array, may be
 * NULL; only read during the call). in_reasoning: the prompt opened a <think> block. */
int ms_chat_parser_new(const ms_toolcall_ops *ops, struct json_object *tools, bool in_reasoning, ms_chat_parser **out,
                       ms_err *err);
void ms_chat_parser_free(ms_chat_parser *p);
/* Feed generated text (any split). */
int ms_chat_parser_feed(ms_chat_parser *p, const char *text, size_t len, ms_err *err);
/* End of the message: unfinished calls are completed if they parse, else kept as content. */
int ms_chat_parser_finish(ms_chat_parser *p, ms_err *err);

/* What became final since the last call: text that will not change any more (whole
 * UTF-8 characters) and the calls completed in the meantime (indices first_call ..
 * first_call + n_calls - 1). */
typedef struct ms_chat_delta {
    const char *content, *reasoning;
    size_t content_len, reasoning_len;
    size_t first_call, n_calls;
} ms_chat_delta;
void ms_chat_parser_delta(ms_chat_parser *p, ms_chat_delta *d);

/* The result so far (complete after finish). reasoning is NULL when there was none. */
const char *ms_chat_parser_content(const ms_chat_parser *p, size_t *len);
const char *ms_chat_parser_reasoning(const ms_chat_parser *p, size_t *len);
size_t ms_chat_parser_n_calls(const ms_chat_parser *p);
const ms_toolcall *ms_chat_parser_call(const ms_chat_parser *p, size_t i);
/* The message as the next chat-template render wants it: {"role": "assistant",
 * "content": ..., "reasoning_content": ... (if any), "tool_calls": [{"id", "type":
 * "function", "function": {"name", "arguments": {...}}}] (if any)}. New reference. */
struct json_object *ms_chat_parser_message(const ms_chat_parser *p);

#endif

/* serve_chat.h - the server's one door to chat formats: render a request's
 * messages (+ tools, template kwargs, forced tool choice) into prompt text, and
 * parse the model's output incrementally into content / reasoning_content /
 * tool_calls deltas. Everything format-specific stays behind these functions
 * (src/text does the work), so the scheduler and the HTTP layer never look at
 * a marker.
 *
 * The parser is fed generated text decoded WITH special tokens (they carry the
 * markers) and hands back what became final since the last call: content and
 * reasoning text that will not change any more, and tool calls completed in the
 * meantime. The concatenation of the deltas is the whole result, so a streamed
 * answer reassembles to the non-streamed one. */
#ifndef MS_SERVE_CHAT_H
#define MS_SERVE_CHAT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "serve_req.h"
#include "tokenizer.h"

struct ms_chat_template;

typedef struct ms_srv_chat ms_srv_chat;

/* The chat adapter over a loaded chat template (ct, taken over; NULL: the model has
 * none, completions still work and rendering fails) and the server's default
 * template kwargs (kwargs, a JSON object or NULL; a reference is taken; a request's
 * chat_template_kwargs win key by key). The output format comes from the template. */
int ms_srv_chat_new(struct ms_chat_template *ct, json_object *kwargs, const ms_tokenizer *tok, ms_srv_chat **out,
                    ms_err *err);
void ms_srv_chat_free(ms_srv_chat *c);
bool ms_srv_chat_available(const ms_srv_chat *c);
/* The output format's name ("deepseek_v3", "none", ...). */
const char *ms_srv_chat_format(const ms_srv_chat *c);

/* The prompt of a chat request: the template over r->messages with r->tools
 * (unless tool_choice is none) and r->template_kwargs, generation prompt added;
 * for tool_choice required / a named function the format's call opening is
 * appended so the model continues inside a call (*forced = that text, for the
 * parser; NULL otherwise). -ENOTSUP with a message when the format cannot force
 * a call. *prompt is malloc'd. */
int ms_srv_chat_render(const ms_srv_chat *c, const ms_srv_request *r, char **prompt, size_t *len,
                       const char **forced, ms_err *err);

/* Stop ids of an assistant turn (tokenizer stop set + the format's end tokens). */
size_t ms_srv_chat_stop_ids(const ms_srv_chat *c, bool with_tools, int32_t *ids, size_t cap);

typedef struct ms_srv_call {
    char *id, *name, *arguments; /* arguments: a JSON object text */
} ms_srv_call;

typedef struct ms_srv_delta {
    const char *content, *reasoning;
    size_t content_len, reasoning_len;
    size_t first_call, n_calls; /* calls completed since the last delta */
} ms_srv_delta;

typedef struct ms_srv_parser ms_srv_parser;

/* A parser for one answer. tools: parse tool calls (the request has tools and
 * tool_choice is not none); prompt: the rendered prompt (a prompt ending inside
 * a reasoning block starts the answer in reasoning); forced: text the prompt
 * ends with that the parser must see as the answer's beginning (may be NULL). */
int ms_srv_parser_new(const ms_srv_chat *c, json_object *tools, const char *prompt, size_t prompt_len,
                      const char *forced, ms_srv_parser **out, ms_err *err);
void ms_srv_parser_free(ms_srv_parser *p);
int ms_srv_parser_feed(ms_srv_parser *p, const char *text, size_t len, ms_err *err);
/* End of the answer: held-back text becomes final. */
int ms_srv_parser_finish(ms_srv_parser *p, ms_err *err);
/* What became final since the last call (pointers valid until the next feed). */
void ms_srv_parser_delta(ms_srv_parser *p, ms_srv_delta *d);
/* Tool call i (its strings belong to the parser); -1 if there is none. */
int ms_srv_parser_call(const ms_srv_parser *p, size_t i, ms_srv_call *out);

#endif

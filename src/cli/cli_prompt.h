/* cli_prompt.h - what run and chat share to talk to a chat model: the options that
 * reach the chat template (--chat-template FILE, --chat-template-kwargs JSON,
 * --tools FILE), loading the checkpoint's template with them, stop ids for the
 * template's format, streaming the parsed answer (content on stdout, reasoning on
 * stderr, tool calls as "[tool call] ID NAME ARGS" lines on stdout), and keeping the
 * conversation: the answer as a message, tool results answering its calls in order.
 * Commands put MS_CLI_PROMPT_LONGOPTS in their getopt_long table and pass unknown
 * option codes to ms_cli_prompt_opt. */
#ifndef MS_CLI_PROMPT_H
#define MS_CLI_PROMPT_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "chat_template.h"
#include "err.h"
#include "tokenizer.h"
#include "toolcall.h"

struct json_object;

enum { MS_OPT_CHAT_TEMPLATE = 3000, MS_OPT_CHAT_KWARGS, MS_OPT_TOOLS };

#define MS_CLI_PROMPT_LONGOPTS                                                                               \
    {"chat-template", required_argument, 0, MS_OPT_CHAT_TEMPLATE},                                           \
        {"chat-template-kwargs", required_argument, 0, MS_OPT_CHAT_KWARGS}, {"tools", required_argument, 0, MS_OPT_TOOLS}

typedef struct ms_cli_prompt {
    const char *template_file, *kwargs_text, *tools_file; /* the options */
    ms_chat_template *ct;                                 /* NULL: no template (raw prompt) */
    struct json_object *kwargs, *tools;                   /* parsed options (NULL if not given) */
    const ms_toolcall_ops *format;
} ms_cli_prompt;

/* Handle one option: 1 handled, 0 not one of these, -1 bad value (message in err). */
int ms_cli_prompt_opt(int opt, const char *arg, ms_cli_prompt *p, ms_err *err);
void ms_cli_prompt_help(FILE *f);

/* Parse the option values and load the model's template (or --chat-template). With
 * optional=true a model without any template gives 0 and p->ct == NULL. */
int ms_cli_prompt_setup(ms_cli_prompt *p, const char *model, const ms_tokenizer *tok, bool optional, ms_err *err);
void ms_cli_prompt_free(ms_cli_prompt *p);

/* Render the conversation (a JSON array) with the tools and kwargs of the options. */
int ms_cli_prompt_render(const ms_cli_prompt *p, struct json_object *messages, bool add_generation_prompt, char **out,
                         size_t *len, ms_err *err);

/* Stop ids: the tokenizer's stop set plus the template format's end-of-turn tokens. */
int ms_cli_prompt_stops(const ms_cli_prompt *p, const ms_tokenizer *tok, int32_t *ids, int cap);

/* Print what a parser has made final since the last call (see above); *line_open
 * tracks whether the last line on out is unfinished. */
void ms_cli_prompt_print(ms_chat_parser *cp, FILE *out, FILE *reasoning_out, bool *line_open);

/* The parsed answer joins the conversation (a JSON array) as the template reads it back
 * (ms_chat_parser_message); its tool calls, if any, replace *pending (a JSON array of the
 * calls still to answer; NULL when there are none). Returns the number of calls. */
size_t ms_cli_prompt_add_answer(struct json_object *conv, ms_chat_parser *cp, struct json_object **pending);

/* The result of the next pending call becomes a "tool" message (tool_call_id, name,
 * content). Returns 1 when every call is answered (the model goes on), 0 when more
 * are pending, -1 when none was pending (nothing added). */
int ms_cli_prompt_tool_result(struct json_object *conv, struct json_object **pending, const char *result);

#endif

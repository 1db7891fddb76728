/* chat_template.h - chat prompts from the checkpoint's own Jinja chat template,
 * rendered as transformers' tokenizer.apply_chat_template(..., tokenize=False) does.
 *
 * The template comes from the model directory the way transformers loads it:
 * chat_template.jinja (which wins), else tokenizer_config.json "chat_template" (a
 * string, or a list of {name, template}: "default", plus "tool_use" when tools are
 * given), else chat_template.json; a --chat-template FILE overrides it. Special tokens
 * (bos/eos/unk/sep/pad/cls/mask_token as strings or AddedToken dicts, and
 * additional_special_tokens) come from tokenizer_config.json and are template
 * variables, as transformers passes {**special_tokens_map, **kwargs}. Checkpoints
 * without any template but with DeepSeek-V3's tokens fall back to DeepSeek-V3's
 * template (built in).
 *
 * Render variables: special tokens, then per-call special tokens, then kwargs (kwargs
 * win), plus messages, tools (None when not given), documents (None) and
 * add_generation_prompt. Messages, tools and kwargs are JSON values (json-c).
 * A loaded template is immutable and can be rendered from several threads.
 */
#ifndef MS_CHAT_TEMPLATE_H
#define MS_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "jinja.h"

struct json_object;
struct ms_tokenizer;

typedef struct ms_chat_template {
    ms_jinja *tmpl;          /* the default template */
    ms_jinja *tool_tmpl;     /* the "tool_use" named template (NULL: none) */
    char *text, *tool_text;  /* their sources */
    struct json_object *special; /* special tokens as template variables (an object) */
    char origin[4400];       /* where the template came from, for messages */
    ms_jinja_opts opts;      /* render limits and clock (zero: defaults, real clock) */
} ms_chat_template;

/* Load from a model directory; override_file (may be NULL) replaces the template text
 * (the special tokens still come from model_dir when it is given; model_dir may be
 * NULL with an override). tok (may be NULL) enables the DeepSeek-V3 fallback for
 * checkpoints without a template. -ENOENT with a clear message when there is none. */
int ms_chat_template_load(const char *model_dir, const char *override_file, const struct ms_tokenizer *tok,
                          ms_chat_template **out, ms_err *err);

/* From template text (no special tokens). name appears in error messages. */
int ms_chat_template_from_text(const char *text, size_t len, const char *name, ms_chat_template **out, ms_err *err);

void ms_chat_template_free(ms_chat_template *ct);

/* Render. messages: a JSON array; tools: a JSON array or NULL (None); kwargs: a JSON
 * object or NULL; special: extra special tokens (object) or NULL. *out is malloc'd,
 * NUL-terminated, *len excludes the NUL. */
int ms_chat_template_render(const ms_chat_template *ct, struct json_object *messages, struct json_object *tools,
                            struct json_object *kwargs, struct json_object *special, bool add_generation_prompt,
                            char **out, size_t *len, ms_err *err);

/* Render one case input: {"messages": [...], "tools": [...] | null, "add_generation_prompt":
 * bool, "kwargs": {...}, "special_tokens": {...}} (the format of shared cases.jsonl). */
int ms_chat_template_render_input(const ms_chat_template *ct, struct json_object *input, char **out, size_t *len,
                                  ms_err *err);

/* The template text that renders with/without tools (format detection). */
const char *ms_chat_template_text(const ms_chat_template *ct, bool with_tools);

/* DeepSeek-V3's chat template, byte-exact (the fallback, and what synth models ship). */
extern const char ms_chat_template_deepseek_v3[];

#endif

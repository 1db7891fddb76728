/* chat_template.h - prompt rendering for chat models: DeepSeek-V3 (and R1-style) and
 * GigaChat3 / GigaChat3.1, the formats of shared/spec/tokenizer-chat.md.
 *
 * The family is detected from the checkpoint (tokenizer_config.json "chat_template" or
 * chat_template.jinja, else the special tokens the tokenizer defines); the renderer is
 * native C (no Jinja engine). GigaChat's long developer-system text is extracted
 * byte-exactly from the checkpoint's own template ({% set DEVSYSTEM %}...{% endset %}).
 *
 * Rendering is prefix-stable: rendering a conversation with add_generation_prompt and
 * then the same conversation plus the assistant's reply yields a string that starts
 * with the first one, so a chat session can keep its KV cache and only feed the tail.
 */
#ifndef MS_CHAT_TEMPLATE_H
#define MS_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tokenizer.h"

typedef enum {
    MS_CHAT_NONE = 0,
    MS_CHAT_DEEPSEEK_V3,  /* <｜User｜> / <｜Assistant｜> framing */
    MS_CHAT_GIGACHAT3,    /* role<|role_sep|>\n ... <|message_sep|>\n\n, tool call as a `function call` message */
    MS_CHAT_GIGACHAT3_1,  /* same, tool call inline after <|function_call|> */
} ms_chat_family;

typedef struct {
    const char *type;      /* "function" when NULL (DeepSeek prints it) */
    const char *name;
    const char *arguments; /* JSON text, inserted verbatim */
} ms_chat_tool_call;

typedef struct {
    const char *role;    /* "system", "user", "assistant", "tool"; GigaChat accepts any role text */
    const char *content; /* NULL renders as empty */
    const ms_chat_tool_call *tool_calls;
    size_t n_tool_calls;
} ms_chat_msg;

typedef struct {
    ms_chat_family family;
    char *bos;           /* BOS text printed first ("" if the tokenizer has none) */
    char *eos;           /* DeepSeek: "<｜end▁of▁sentence｜>" unless the tokenizer says otherwise */
    char *devsystem;     /* GigaChat developer-system text from the checkpoint (NULL: not found) */
    bool r1_think;       /* DeepSeek R1-style template: drop past reasoning, prompt ends "<think>\n" */
    int32_t *stop;       /* stop ids for generation (tokenizer stop set + family end tokens) */
    size_t n_stop;
    int32_t turn_end_id; /* GigaChat <|message_sep|> id (-1 if none): a stop only without tools */
} ms_chat_template;

/* Detect the family and read what it needs from model_dir (tokenizer_config.json,
 * chat_template.jinja) and tok. Fails with a clear error when no supported family is
 * recognised. */
int ms_chat_template_load(const char *model_dir, const ms_tokenizer *tok, ms_chat_template *ct, ms_err *err);

/* Set up a template by hand (tests, --chat-template overrides). bos/eos/devsystem may be
 * NULL. No stop ids. */
int ms_chat_template_init(ms_chat_template *ct, ms_chat_family family, const char *bos, const char *devsystem,
                          ms_err *err);
void ms_chat_template_free(ms_chat_template *ct);

/* Render messages (and GigaChat tools: a JSON array of {"type":"function","function":
 * {name, description, parameters, return_parameters}} or NULL) into a malloc'd
 * NUL-terminated prompt. The prompt includes BOS: encode it without MS_TOK_ADD_BOS. */
int ms_chat_render(const ms_chat_template *ct, const ms_chat_msg *msgs, size_t n_msgs, const char *tools_json,
                   bool add_generation_prompt, char **out, size_t *out_len, ms_err *err);

/* Stop ids for generation; with_tools=false adds GigaChat's end-of-turn token. */
size_t ms_chat_stop_ids(const ms_chat_template *ct, bool with_tools, int32_t *ids, size_t cap);

/* Extract the GigaChat developer-system text from a Jinja template ({% set DEVSYSTEM %}
 * ... {% endset %}, honouring the whitespace-control dashes). NULL if absent. */
char *ms_chat_extract_devsystem(const char *tmpl, size_t len);

const char *ms_chat_family_name(ms_chat_family f);
/* "deepseek_v3", "gigachat3", "gigachat3.1" (also accepts "deepseek"). */
int ms_chat_family_parse(const char *s, ms_chat_family *out);

#endif

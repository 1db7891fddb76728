/* synth_tokenizer.c - a small but real byte-level BPE tokenizer for generated models.
 *
 * Writes dir/tokenizer.json and dir/tokenizer_config.json in DeepSeek-V3's format
 * (same normalizer, pre-tokenizer Sequence, ByteLevel decoder, merges as "a b"
 * strings), with exactly vocab_size ids:
 *
 *   0                 <｜begin▁of▁sentence｜>  (BOS, special, also in model.vocab)
 *   1                 <｜end▁of▁sentence｜>    (EOS, special, also in model.vocab)
 *   2 .. 257          the 256 byte tokens (GPT-2 byte-to-unicode alphabet, by byte value)
 *   258 .. V-3        merged tokens
 *   V-2, V-1          <｜User｜>, <｜Assistant｜> (added tokens, like DeepSeek's 128803/4)
 *
 * Merges: first learned by classic BPE training over an embedded English text
 * (pre-split with an ASCII version of DeepSeek's pre-tokenizer regex, so " the",
 * " and", ... become single tokens), most frequent pair first, ties broken by id;
 * learning stops when no pair occurs twice. The remaining ids are filled with
 * merges of two random existing tokens (xorshift seeded by `seed`, word-like
 * tokens preferred), so the vocabulary size is exact and the output is a pure
 * function of (vocab_size, seed). A merge whose result string already exists is
 * never emitted, so merges == merged ids. 129280 ids take well under a second.
 */
#include "synth_tokenizer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_template.h"
#include "tokenizer.h"
#include "util.h"

/* ---- training text (original prose, plain ASCII) ------------------------------- */

static const char synth_text[] =
    "The quick brown fox jumps over the lazy dog. This is a small piece of English text that "
    "the synthetic tokenizer learns its merges from, so that the most common words of the "
    "language become single tokens and a prompt does not turn into one token per letter.\n\n"
    "A language model reads text as a sequence of tokens. Each token is a number, and the "
    "model has learned a vector for every number in its vocabulary. When you write a question, "
    "the tokenizer first cuts the text into pieces: words, spaces, numbers and punctuation. "
    "Then it joins the bytes of each piece, pair by pair, in the order in which the pairs were "
    "learned, until no learned pair is left. What remains are the tokens of the piece.\n\n"
    "In the morning the people of the town went to the market. They bought bread, milk, eggs, "
    "fish and fresh vegetables, and they talked about the weather, about their children and "
    "about the news of the day. The market was open from seven in the morning until one in the "
    "afternoon, and in the evening the square was quiet again.\n\n"
    "There is a time for work and a time for rest. Most of us work during the day and sleep at "
    "night, but some people work at night, when the city is dark and the streets are empty. "
    "Doctors, nurses, drivers and engineers keep the world running while the others are asleep. "
    "We should thank them more often than we do.\n\n"
    "Computers are machines that follow instructions. A program is a list of instructions "
    "written in a language that the machine can understand. The first programs were written by "
    "hand, one number at a time; today we write them in languages that look almost like "
    "English, and other programs translate them for the machine. A good program is simple, "
    "clear and correct, and it tells the user what went wrong when something fails.\n\n"
    "Memory is fast but small, and disks are large but slow. A system that runs a model which "
    "is larger than its memory must keep the parts it uses most often in memory and read the "
    "other parts from the disk when they are needed. If it reads them in large blocks and in "
    "the right order, the disk can be almost as fast as memory for this kind of work.\n\n"
    "Water covers most of the surface of the Earth. The oceans are deep and cold, and many of "
    "the animals that live there have never been seen by people. Rivers carry water from the "
    "mountains to the sea, and along the rivers there are forests, fields and cities. Without "
    "water there would be no life, no food and no trees.\n\n"
    "She opened the door and looked outside. It was raining, and the wind was moving the "
    "branches of the old tree in front of the house. \"We will stay inside today,\" she said. "
    "\"I will make some tea, and you can read your book.\" He smiled and said that it was a "
    "good idea, because he had wanted to finish the story for a long time.\n\n"
    "History is the study of the past. It tells us how people lived, what they believed, how "
    "they worked and how they fought. By reading about the past we can understand the present "
    "a little better, and perhaps we can make better choices for the future. Every country has "
    "its own history, but all of them are part of one long human story.\n\n"
    "Numbers are everywhere: 1, 2, 3, 10, 42, 100, 365, 1000, 2024 and 3.14 are all numbers. "
    "A year has 12 months, a week has 7 days, a day has 24 hours and an hour has 60 minutes. "
    "If you save 5 dollars every day, after 30 days you will have 150 dollars.\n\n"
    "Good questions are short and precise. Ask one thing at a time, give the details that "
    "matter, and say what you have already tried. A good answer is also short: it answers the "
    "question first and explains the reasons after. Both the question and the answer should "
    "be written with care, because other people will read them later.\n\n"
    "The children played in the garden until the sun went down. Then their mother called them "
    "for dinner, and they came running into the kitchen with dirty hands and happy faces. After "
    "dinner they washed the dishes, read a story together and went to bed early, because the "
    "next day was the first day of the new school year.\n\n"
    "Science is a way of learning about the world. Scientists make observations, form ideas "
    "that could explain what they see, and then test those ideas with experiments. When an "
    "experiment does not agree with an idea, the idea must change. This simple rule has given "
    "us medicine, electricity, airplanes, telephones and the internet.\n\n"
    "Hello! How are you? I am fine, thank you. What is your name? My name is Anna, and I live "
    "in a small house near the river. I like music, books, long walks and good coffee. Would "
    "you like to come with me to the library tomorrow? It opens at nine o'clock.\n";

/* ---- small helpers --------------------------------------------------------------- */

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* GPT-2 byte-to-unicode: printable Latin-1 bytes map to themselves, the other 68
 * bytes to U+0100.. in ascending byte order. */
/* One token: its byte-level (already mapped) UTF-8 string. */
typedef struct {
    char *s;
    uint32_t len;
    uint32_t raw_len;   /* number of underlying bytes */
    bool wordy;         /* only letters, optionally after one leading mapped space */
} synth_tok;

/* Open-addressing string set over the token table (values are token ids). */
typedef struct {
    int32_t *slot;      /* [cap], -1 empty */
    size_t cap;
    const synth_tok *toks;
} synth_set;

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int32_t set_find(const synth_set *st, const char *s, size_t n)
{
    size_t i = fnv1a(s, n) & (st->cap - 1);
    for (;; i = (i + 1) & (st->cap - 1)) {
        int32_t id = st->slot[i];
        if (id < 0) return -1;
        if (st->toks[id].len == n && memcmp(st->toks[id].s, s, n) == 0) return id;
    }
}

static void set_insert(synth_set *st, int32_t id)
{
    size_t i = fnv1a(st->toks[id].s, st->toks[id].len) & (st->cap - 1);
    while (st->slot[i] >= 0) i = (i + 1) & (st->cap - 1);
    st->slot[i] = id;
}

/* ---- pre-tokenization of the training text --------------------------------------- */

/* A unique piece of the training text: its symbol (token id) sequence + frequency. */
typedef struct {
    int32_t *sym;
    int n;
    int freq;
} synth_word;

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ASCII rendition of DeepSeek-V3's pre-tokenizer: digit runs in chunks of <= 3,
 * [punct][letters]+, [optional non-letter]letters+, optional space + punctuation run
 * + newlines, whitespace ending in newline, whitespace (leaving the last space of a
 * run before a word to that word). Returns the length of the piece at p. */
static size_t next_piece(const char *p, size_t n)
{
    int c = (unsigned char)p[0];
    size_t i = 0;
    if (is_digit(c)) {
        while (i < n && i < 3 && is_digit((unsigned char)p[i])) i++;
        return i;
    }
    if (!is_alpha(c) && !is_space(c) && n > 1 && is_alpha((unsigned char)p[1])) {
        i = 1;
        while (i < n && is_alpha((unsigned char)p[i])) i++;
        return i;
    }
    if (is_alpha(c) || (c == ' ' && n > 1 && is_alpha((unsigned char)p[1]))) {
        i = 1;
        while (i < n && is_alpha((unsigned char)p[i])) i++;
        return i;
    }
    if (!is_space(c) || (c == ' ' && n > 1 && !is_space((unsigned char)p[1]) && !is_digit((unsigned char)p[1]))) {
        i = c == ' ' ? 1 : 0;
        while (i < n && !is_space((unsigned char)p[i]) && !is_alpha((unsigned char)p[i]) &&
               !is_digit((unsigned char)p[i]))
            i++;
        while (i < n && (p[i] == '\r' || p[i] == '\n')) i++;
        return i ? i : 1;
    }
    /* whitespace run */
    while (i < n && is_space((unsigned char)p[i])) i++;
    size_t last_nl = 0;
    for (size_t k = 0; k < i; k++)
        if (p[k] == '\n' || p[k] == '\r') last_nl = k + 1;
    if (last_nl) return last_nl;
    if (i < n && i > 1) return i - 1; /* leave one space for the next word */
    return i;
}

/* ---- JSON output ------------------------------------------------------------------ */

static void json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c == '\n') {
            fputs("\\n", f);
        } else if (c < 0x20) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static const char *const SYNTH_BOS = "<\xEF\xBD\x9C" "begin\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>";
static const char *const SYNTH_EOS = "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>";
static const char *const SYNTH_USER = "<\xEF\xBD\x9CUser\xEF\xBD\x9C>";
static const char *const SYNTH_ASSISTANT = "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>";

/* ---- the writer ------------------------------------------------------------------- */

typedef struct {
    synth_tok *toks;     /* [vocab_size] (special slots have s == NULL until filled) */
    int ntok;            /* tokens defined so far in model.vocab order */
    int32_t (*merges)[2];
    int nmerge;
    synth_set set;
} synth_state;

static int add_token(synth_state *S, char *s, uint32_t len, uint32_t raw_len)
{
    synth_tok *t = &S->toks[S->ntok];
    t->s = s;
    t->len = len;
    t->raw_len = raw_len;
    /* word-like: optional leading 'Ġ' (U+0120 = C4 A0) then ASCII letters only */
    uint32_t i = 0;
    if (len >= 2 && (unsigned char)s[0] == 0xC4 && (unsigned char)s[1] == 0xA0) i = 2;
    bool w = i < len;
    for (; i < len; i++)
        if (!is_alpha((unsigned char)s[i])) w = false;
    t->wordy = w;
    set_insert(&S->set, S->ntok);
    return S->ntok++;
}

/* Merge tokens a and b into a new token unless the string exists; returns the new id,
 * -1 when it already exists, -ENOMEM. */
static int try_merge(synth_state *S, int32_t a, int32_t b)
{
    uint32_t len = S->toks[a].len + S->toks[b].len;
    char tmp[512];
    if (len > sizeof tmp) return -1;
    memcpy(tmp, S->toks[a].s, S->toks[a].len);
    memcpy(tmp + S->toks[a].len, S->toks[b].s, S->toks[b].len);
    if (set_find(&S->set, tmp, len) >= 0) return -1;
    char *s = malloc(len);
    if (!s) return -ENOMEM;
    memcpy(s, tmp, len);
    S->merges[S->nmerge][0] = a;
    S->merges[S->nmerge][1] = b;
    S->nmerge++;
    return add_token(S, s, len, S->toks[a].raw_len + S->toks[b].raw_len);
}

/* BPE training over the embedded text until n_target tokens exist or no pair repeats. */
static int learn_merges(synth_state *S, int n_target, const int32_t byte_id[256])
{
    size_t tn = sizeof synth_text - 1;
    /* pieces -> unique words (sorted by text, so the result is order independent) */
    size_t npieces = 0;
    for (size_t p = 0; p < tn; p += next_piece(synth_text + p, tn - p)) npieces++;
    struct piece {
        uint32_t off, len;
    } *pc = malloc(npieces * sizeof *pc);
    synth_word *w = calloc(npieces, sizeof *w);
    if (!pc || !w) {
        free(pc);
        free(w);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t p = 0; p < tn;) {
        size_t l = next_piece(synth_text + p, tn - p);
        pc[k].off = (uint32_t)p;
        pc[k].len = (uint32_t)l;
        k++;
        p += l;
    }
    /* dedupe the pieces through a hash over their text */
    int nw = 0;
    {
        size_t cap = 1;
        while (cap < npieces * 2) cap <<= 1;
        int32_t *h = malloc(cap * sizeof *h);
        if (!h) {
            free(pc);
            free(w);
            return -ENOMEM;
        }
        memset(h, 0xff, cap * sizeof *h);
        uint32_t *woff = malloc(npieces * sizeof *woff);
        if (!woff) {
            free(h);
            free(pc);
            free(w);
            return -ENOMEM;
        }
        for (size_t i = 0; i < npieces; i++) {
            const char *s = synth_text + pc[i].off;
            size_t j = fnv1a(s, pc[i].len) & (cap - 1);
            for (;; j = (j + 1) & (cap - 1)) {
                int32_t id = h[j];
                if (id < 0) {
                    h[j] = nw;
                    woff[nw] = (uint32_t)i;
                    w[nw].freq = 1;
                    w[nw].n = (int)pc[i].len;
                    w[nw].sym = malloc(pc[i].len * sizeof(int32_t));
                    if (!w[nw].sym) {
                        free(woff);
                        free(h);
                        for (int q = 0; q < nw; q++) free(w[q].sym);
                        free(pc);
                        free(w);
                        return -ENOMEM;
                    }
                    for (uint32_t c = 0; c < pc[i].len; c++) w[nw].sym[c] = byte_id[(unsigned char)s[c]];
                    nw++;
                    break;
                }
                const struct piece *o = &pc[woff[id]];
                if (o->len == pc[i].len && memcmp(synth_text + o->off, s, o->len) == 0) {
                    w[id].freq++;
                    break;
                }
            }
        }
        free(woff);
        free(h);
    }
    free(pc);

    int rc = 0;
    while (S->ntok < n_target) {
        /* count pairs: key = a<<32 | b, each occurrence weighted by freq */
        size_t nk = 0;
        for (int i = 0; i < nw; i++) nk += w[i].n > 1 ? (size_t)w[i].n - 1 : 0;
        if (nk == 0) break;
        /* pair -> summed word frequency, in an open-addressing table */
        size_t cap = 1;
        while (cap < nk * 2) cap <<= 1;
        uint64_t *hk = malloc(cap * sizeof *hk);
        int64_t *hv = calloc(cap, sizeof *hv);
        if (!hk || !hv) {
            free(hk);
            free(hv);
            rc = -ENOMEM;
            break;
        }
        memset(hk, 0xff, cap * sizeof *hk);
        uint64_t best = UINT64_MAX;
        int64_t best_n = 0;
        for (int i = 0; i < nw; i++)
            for (int j = 0; j + 1 < w[i].n; j++) {
                uint64_t key = (uint64_t)w[i].sym[j] << 32 | (uint32_t)w[i].sym[j + 1];
                size_t s = (key * 0x9E3779B97F4A7C15ull) >> 20 & (cap - 1);
                while (hk[s] != UINT64_MAX && hk[s] != key) s = (s + 1) & (cap - 1);
                hk[s] = key;
                hv[s] += w[i].freq;
                if (hv[s] > best_n || (hv[s] == best_n && key < best)) {
                    best_n = hv[s];
                    best = key;
                }
            }
        free(hk);
        free(hv);
        if (best_n < 2) break;
        int32_t a = (int32_t)(best >> 32), b = (int32_t)(best & 0xffffffffu);
        int nid = try_merge(S, a, b);
        if (nid == -ENOMEM) {
            rc = -ENOMEM;
            break;
        }
        if (nid < 0) {
            /* string exists already (reached by another split): use that id */
            char tmp[512];
            uint32_t len = S->toks[a].len + S->toks[b].len;
            memcpy(tmp, S->toks[a].s, S->toks[a].len);
            memcpy(tmp + S->toks[a].len, S->toks[b].s, S->toks[b].len);
            nid = set_find(&S->set, tmp, len);
        }
        /* apply the merge to every word */
        for (int i = 0; i < nw; i++) {
            int o = 0;
            for (int j = 0; j < w[i].n; j++) {
                if (j + 1 < w[i].n && w[i].sym[j] == a && w[i].sym[j + 1] == b) {
                    w[i].sym[o++] = nid;
                    j++;
                } else {
                    w[i].sym[o++] = w[i].sym[j];
                }
            }
            w[i].n = o;
        }
    }
    for (int i = 0; i < nw; i++) free(w[i].sym);
    free(w);
    return rc;
}

static int write_tokenizer_json(const char *path, const synth_state *S, int vocab_size, ms_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return ms_errf(err, errno, "%s: cannot create: %s", path, strerror(errno));
    const char *specials[4] = {SYNTH_BOS, SYNTH_EOS, SYNTH_USER, SYNTH_ASSISTANT};
    int special_id[4] = {0, 1, vocab_size - 2, vocab_size - 1};
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", f);
    for (int i = 0; i < 4; i++) {
        fprintf(f, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", special_id[i]);
        json_str(f, specials[i], strlen(specials[i]));
        fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                   "\"special\": %s}",
                i < 2 ? "true" : "false");
    }
    fputs("\n  ],\n"
          "  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": []},\n"
          "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
          "    {\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\p{N}{1,3}\"}, \"behavior\": \"Isolated\", "
          "\"invert\": false},\n"
          "    {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F"
          "\xE3\x82\xA0-\xE3\x83\xBF]+\"}, \"behavior\": \"Isolated\", \"invert\": false},\n"
          "    {\"type\": \"Split\", \"pattern\": {\"Regex\": "
          "\"[!\\\"#$%&'()*+,\\\\-./:;<=>?@\\\\[\\\\\\\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\\\p{L}\\\\p{P}\\\\p{S}]?"
          "[\\\\p{L}\\\\p{M}]+| ?[\\\\p{P}\\\\p{S}]+[\\r\\n]*|\\\\s*[\\r\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
          "\"behavior\": \"Isolated\", \"invert\": false},\n"
          "    {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}\n"
          "  ]},\n"
          "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, "
          "\"use_regex\": true},\n"
          "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
          "\"use_regex\": true},\n"
          "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
          "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
          "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
          "    \"vocab\": {",
          f);
    for (int i = 0; i < S->ntok; i++) {
        fputs(i ? ",\n      " : "\n      ", f);
        json_str(f, S->toks[i].s, S->toks[i].len);
        fprintf(f, ": %d", i);
    }
    fputs("\n    },\n    \"merges\": [", f);
    char tmp[1100];
    for (int i = 0; i < S->nmerge; i++) {
        const synth_tok *a = &S->toks[S->merges[i][0]], *b = &S->toks[S->merges[i][1]];
        memcpy(tmp, a->s, a->len);
        tmp[a->len] = ' ';
        memcpy(tmp + a->len + 1, b->s, b->len);
        fputs(i ? ",\n      " : "\n      ", f);
        json_str(f, tmp, a->len + 1 + b->len);
    }
    fputs("\n    ]\n  }\n}\n", f);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) return ms_errf(err, EIO, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
    return 0;
}

static void added_token_json(FILE *f, const char *key, const char *content)
{
    fprintf(f, "  \"%s\": {\n    \"__type\": \"AddedToken\",\n    \"content\": ", key);
    json_str(f, content, strlen(content));
    fputs(",\n    \"lstrip\": false,\n    \"normalized\": true,\n    \"rstrip\": false,\n"
          "    \"single_word\": false\n  },\n",
          f);
}

static int write_config_json(const char *path, ms_err *err)
{
    FILE *f = fopen(path, "w");
    if (!f) return ms_errf(err, errno, "%s: cannot create: %s", path, strerror(errno));
    fputs("{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n", f);
    added_token_json(f, "bos_token", SYNTH_BOS);
    fputs("  \"clean_up_tokenization_spaces\": false,\n", f);
    added_token_json(f, "eos_token", SYNTH_EOS);
    fputs("  \"legacy\": true,\n  \"model_max_length\": 131072,\n", f);
    added_token_json(f, "pad_token", SYNTH_EOS);
    fputs("  \"sp_model_kwargs\": {},\n  \"unk_token\": null,\n"
          "  \"tokenizer_class\": \"LlamaTokenizerFast\",\n  \"chat_template\": ",
          f);
    json_str(f, ms_chat_template_deepseek_v3, strlen(ms_chat_template_deepseek_v3)); /* DeepSeek-V3's own */
    fputs("\n}\n", f);
    bool bad = ferror(f) != 0;
    if (fclose(f) != 0 || bad) return ms_errf(err, EIO, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
    return 0;
}

/* Write to path.tmp then rename, so a reader never sees half a file. */
static int write_atomic(const char *dir, const char *name, int (*fn)(const char *, void *, ms_err *), void *ctx,
                        ms_err *err)
{
    char path[4096], tmp[4200];
    int rc = ms_path_join(path, sizeof path, dir, name, err);
    if (rc < 0) return rc;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    rc = fn(tmp, ctx, err);
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ms_errf(err, e, "%s: cannot rename into place: %s", path, strerror(e));
    }
    return 0;
}

struct tok_ctx {
    const synth_state *S;
    int vocab_size;
};

static int tok_writer(const char *p, void *c, ms_err *err)
{
    const struct tok_ctx *t = c;
    return write_tokenizer_json(p, t->S, t->vocab_size, err);
}

static int cfg_writer(const char *p, void *c, ms_err *err)
{
    (void)c;
    return write_config_json(p, err);
}

int ms_synth_tokenizer_write(const char *dir, int vocab_size, uint64_t seed, ms_err *err)
{
    if (!dir || !*dir) return ms_errf(err, EINVAL, "synthetic tokenizer: empty output directory");
    if (vocab_size < 512 || vocab_size > (1 << 24))
        return ms_errf(err, EINVAL, "%s: synthetic tokenizer: vocab_size %d out of range [512, %d]", dir, vocab_size,
                       1 << 24);
    int n_model = vocab_size - 2; /* ids in model.vocab: BOS, EOS, bytes, merges */
    synth_state S = {0};
    S.toks = calloc((size_t)n_model, sizeof *S.toks);
    S.merges = calloc((size_t)n_model, sizeof *S.merges);
    S.set.cap = 1;
    while (S.set.cap < (size_t)n_model * 2) S.set.cap <<= 1;
    S.set.slot = malloc(S.set.cap * sizeof *S.set.slot);
    S.set.toks = S.toks;
    int rc = 0;
    if (!S.toks || !S.merges || !S.set.slot) {
        rc = ms_errf(err, ENOMEM, "%s: synthetic tokenizer: out of memory", dir);
        goto out;
    }
    memset(S.set.slot, 0xff, S.set.cap * sizeof *S.set.slot);

    /* specials 0, 1 (their strings never collide with byte-level strings: '<' '>' are
     * plain but U+FF5C is not in the byte alphabet, so no merge can produce them) */
    const char *sp[2] = {SYNTH_BOS, SYNTH_EOS};
    for (int i = 0; i < 2; i++) {
        char *s = strdup(sp[i]);
        if (!s) {
            rc = ms_errf(err, ENOMEM, "%s: synthetic tokenizer: out of memory", dir);
            goto out;
        }
        add_token(&S, s, (uint32_t)strlen(s), 0);
    }
    uint32_t cp[256];
    ms_tokenizer_byte_alphabet(cp);
    int32_t byte_id[256];
    for (int b = 0; b < 256; b++) {
        char *s = malloc(4);
        if (!s) {
            rc = ms_errf(err, ENOMEM, "%s: synthetic tokenizer: out of memory", dir);
            goto out;
        }
        int l = ms_utf8_put(s, cp[b]);
        byte_id[b] = add_token(&S, s, (uint32_t)l, 1);
    }
    rc = learn_merges(&S, n_model, byte_id);
    if (rc < 0) {
        rc = ms_errf(err, -rc, "%s: synthetic tokenizer: out of memory", dir);
        goto out;
    }

    /* Fill the rest: merges of random existing tokens, word-like ones preferred. */
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!st) st = 1;
    long fails = 0;
    while (S.ntok < n_model) {
        int lo = 2; /* byte tokens and merged tokens */
        int32_t a = lo + (int32_t)(xorshift64(&st) % (uint64_t)(S.ntok - lo));
        int32_t b = lo + (int32_t)(xorshift64(&st) % (uint64_t)(S.ntok - lo));
        bool relaxed = fails > 64;
        if (!relaxed) {
            /* prefer word + letters: "Ġsome" + "thing" shaped merges */
            if (!S.toks[a].wordy || !S.toks[b].wordy) {
                fails++;
                continue;
            }
            if ((unsigned char)S.toks[b].s[0] == 0xC4) {
                fails++;
                continue;
            }
        }
        if (S.toks[a].raw_len + S.toks[b].raw_len > 24) {
            fails++;
            continue;
        }
        int nid = try_merge(&S, a, b);
        if (nid == -ENOMEM) {
            rc = ms_errf(err, ENOMEM, "%s: synthetic tokenizer: out of memory", dir);
            goto out;
        }
        fails = nid < 0 ? fails + 1 : 0;
    }

    struct tok_ctx tc = {&S, vocab_size};
    rc = write_atomic(dir, "tokenizer.json", tok_writer, &tc, err);
    if (rc == 0) rc = write_atomic(dir, "tokenizer_config.json", cfg_writer, NULL, err);
out:
    for (int i = 0; i < S.ntok; i++) free(S.toks[i].s);
    free(S.toks);
    free(S.merges);
    free(S.set.slot);
    return rc;
}

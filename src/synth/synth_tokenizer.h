/* synth_tokenizer.h - writes a small but real byte-level BPE tokenizer (DeepSeek-V3
 * format: tokenizer.json + tokenizer_config.json) for generated models. */
#ifndef MS_SYNTH_TOKENIZER_H
#define MS_SYNTH_TOKENIZER_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

/* Write dir/tokenizer.json and dir/tokenizer_config.json with exactly vocab_size ids
 * (vocab_size >= 512). Deterministic for a seed. chat_template: ship DeepSeek-V3's
 * template in tokenizer_config.json (false for DeepSeek-V4, which publishes none). */
int ms_synth_tokenizer_write(const char *dir, int vocab_size, uint64_t seed, bool chat_template, ms_err *err);

#endif

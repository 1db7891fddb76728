/* synth_tokenizer.c - placeholder until the tokenizer lands (see synth_tokenizer.h). */
#include "synth_tokenizer.h"

int ms_synth_tokenizer_write(const char *dir, int vocab_size, uint64_t seed, ms_err *err)
{
    (void)vocab_size;
    (void)seed;
    return ms_errf(err, ENOSYS, "%s: synthetic tokenizer not implemented yet", dir);
}

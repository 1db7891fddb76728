/* rng.h - a small seeded PRNG and normal samplers (header-only).
 *
 * Generator: xoshiro256** (Blackman & Vigna), state seeded through splitmix64,
 * so any 64-bit seed (0 included) gives a well-mixed state. ms_rng_seed takes a
 * (seed, stream) pair: independent streams for the same seed are cheap (e.g.
 * one per tensor, stream = ms_hash64(tensor name)), which makes generated data
 * independent of the order in which it is produced.
 *
 * Samplers:
 *   ms_rng_u64 / ms_rng_u32      raw bits
 *   ms_rng_uniform / _uniformf   [0, 1) with 53 / 24 random bits
 *   ms_rng_below(n)              unbiased integer in [0, n) (Lemire's method)
 *   ms_rng_normal                exact N(0,1) (Box-Muller, one value per call)
 *   ms_rng_gauss_fast            approximate N(0,1): sum of four 16-bit uniforms
 *                                (Irwin-Hall n=4, rescaled to unit variance);
 *                                bounded to |x| < 3.47, about 2 ns per value. For
 *                                bulk synthetic weights, where speed matters more
 *                                than the tails.
 *   ms_rng_gauss_fast2           two such values from one draw (8-bit lanes)
 *   ms_hash64(str)               FNV-1a 64 + a splitmix finalizer (stream ids)
 *
 * Everything is deterministic for a seed; the exact sampler (ms_rng_normal) uses
 * libm log/cos, whose last-ulp results may differ between C libraries. Mutable
 * state lives only in the ms_rng the caller owns. */
#ifndef MS_RNG_H
#define MS_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct ms_rng {
    uint64_t s[4];
} ms_rng;

static inline uint64_t ms_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Seed stream `stream` of `seed`. Distinct (seed, stream) pairs give unrelated
 * sequences. */
static inline void ms_rng_seed(ms_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed;
    uint64_t a = ms_splitmix64(&x);
    x = stream ^ 0x6a09e667f3bcc909ull;
    uint64_t b = ms_splitmix64(&x);
    x = a ^ (b * 0x9e3779b97f4a7c15ull) ^ (b >> 29);
    for (int i = 0; i < 4; i++) r->s[i] = ms_splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1; /* the all-zero state is absorbing */
}

static inline uint64_t ms_rng_rotl(uint64_t v, int k) { return (v << k) | (v >> (64 - k)); }

static inline uint64_t ms_rng_u64(ms_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = ms_rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = ms_rng_rotl(s[3], 45);
    return out;
}

static inline uint32_t ms_rng_u32(ms_rng *r) { return (uint32_t)(ms_rng_u64(r) >> 32); }

/* Uniform in [0, 1). */
static inline double ms_rng_uniform(ms_rng *r) { return (double)(ms_rng_u64(r) >> 11) * 0x1.0p-53; }
static inline float ms_rng_uniformf(ms_rng *r) { return (float)(ms_rng_u64(r) >> 40) * 0x1.0p-24f; }

/* Unbiased integer in [0, n), n > 0. */
static inline uint64_t ms_rng_below(ms_rng *r, uint64_t n)
{
    unsigned __int128 m = (unsigned __int128)ms_rng_u64(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t thresh = (0 - n) % n;
        while (lo < thresh) {
            m = (unsigned __int128)ms_rng_u64(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Exact standard normal (Box-Muller; the second value of the pair is dropped
 * so the generator carries no hidden state). */
static inline double ms_rng_normal(ms_rng *r)
{
    double u1 = ((double)(ms_rng_u64(r) >> 11) + 0.5) * 0x1.0p-53; /* (0, 1) */
    double u2 = ms_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Approximate standard normal from one 64-bit draw: the four 16-bit lanes are
 * summed (Irwin-Hall, n = 4), centred and scaled to unit variance. */
static inline float ms_rng_gauss_fast(ms_rng *r)
{
    uint64_t v = ms_rng_u64(r);
    uint32_t s = (uint32_t)(v & 0xffff) + (uint32_t)((v >> 16) & 0xffff) + (uint32_t)((v >> 32) & 0xffff) +
                 (uint32_t)(v >> 48);
    /* sum of 4 U{0..65535}: mean 2*65535, variance 4*(65536^2-1)/12 */
    return ((float)s - 131070.0f) * (float)(1.0 / 37837.23);
}

/* Two approximate standard normals from one 64-bit draw, for bulk data: each
 * is the sum of four 8-bit lanes (Irwin-Hall n = 4 over 256 levels: 1021
 * distinct values, step 0.0068 sigma, |x| < 3.46), centred and scaled to unit
 * variance. Twice as fast as ms_rng_gauss_fast; the granularity is below the
 * resolution of a bf16 weight. */
static inline void ms_rng_gauss_fast2(ms_rng *r, float out[2])
{
    uint64_t v = ms_rng_u64(r);
    uint64_t a = (v & 0x00ff00ff00ff00ffull) + ((v >> 8) & 0x00ff00ff00ff00ffull); /* 4 sums of 2 lanes */
    uint32_t s0 = (uint32_t)(a & 0xffff) + (uint32_t)((a >> 16) & 0xffff);
    uint32_t s1 = (uint32_t)((a >> 32) & 0xffff) + (uint32_t)(a >> 48);
    /* sum of 4 U{0..255}: mean 510, variance 4*(256^2-1)/12 */
    const float k = (float)(1.0 / 147.80054127);
    out[0] = ((float)s0 - 510.0f) * k;
    out[1] = ((float)s1 - 510.0f) * k;
}

/* Stream id of a string (FNV-1a 64, finalized). */
static inline uint64_t ms_hash64(const char *str)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return ms_splitmix64(&h);
}

#endif

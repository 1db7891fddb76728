/* kern_neon.c - AArch64 Advanced SIMD (NEON) kernels: what differs from the
 * other instruction sets. NEON, FMA and the f16 conversions are baseline on
 * AArch64, so this file needs no flags; CMake builds it only for aarch64 and
 * ms_kern_select picks it there. The kernels themselves are kern_simd.h over
 * the 4-lane mappings of simd_map.h, with x in natural order (no permuted
 * copy) for every width:
 *   8 bit:    16 bytes -> vmovl u8->u16->u32 -> 16 codes;
 *   4 bit:    8 bytes, &15 and >>4, vzip -> 16 codes in order;
 *   2,3,5,6:  8 codes live in `bits` whole bytes: load 8 bytes, vqtbl1q the 2
 *             bytes holding code i into 32-bit lane i, shift right by
 *             (i*bits)&7, mask. The 8-byte load may run past the last pack of a
 *             row, so the row's last group is read from a zero-padded copy.
 * Dense row tails are scalar (no masked loads). */
#define MSV_NEON 1
#include "simd_map.h"

/* ---- code extraction ------------------------------------------------------ */

/* 8 codes (natural order) from the `bits` bytes at p (reads 8 bytes), as two
 * 4-lane vectors. */
AINL void unpack8_generic(const uint8_t *p, const int bits, uint32x4_t *lo, uint32x4_t *hi)
{
#define OFF(i) ((uint8_t)(((i)*bits) >> 3))
#define LANE(i) OFF(i), (uint8_t)(OFF(i) + 1), 0xff, 0xff
    const uint8_t il[16] = {LANE(0), LANE(1), LANE(2), LANE(3)};
    const uint8_t ih[16] = {LANE(4), LANE(5), LANE(6), LANE(7)};
#undef LANE
#undef OFF
    const int32_t sl[4] = {0, -(bits & 7), -((2 * bits) & 7), -((3 * bits) & 7)};
    const int32_t sh[4] = {-((4 * bits) & 7), -((5 * bits) & 7), -((6 * bits) & 7), -((7 * bits) & 7)};
    const uint8x16_t v = vcombine_u8(vld1_u8(p), vdup_n_u8(0));
    const uint32x4_t mask = vdupq_n_u32((1u << bits) - 1u);
    *lo = vandq_u32(vshlq_u32(vreinterpretq_u32_u8(vqtbl1q_u8(v, vld1q_u8(il))), vld1q_s32(sl)), mask);
    *hi = vandq_u32(vshlq_u32(vreinterpretq_u32_u8(vqtbl1q_u8(v, vld1q_u8(ih))), vld1q_s32(sh)), mask);
}

/* 16 codes of 8 / 4 bits as four f32 vectors (natural order). */
AINL void widen16(uint8x16_t b, msv q[4])
{
    uint16x8_t l = vmovl_u8(vget_low_u8(b)), h = vmovl_u8(vget_high_u8(b));
    q[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(l)));
    q[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(l)));
    q[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(h)));
    q[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(h)));
}

/* ---- hooks of kern_simd.h: one layout (natural order) for matvec and dequant -- */

#define ISA_MT 2
/* Prefill GEMM: 6 tokens x 16 rows of Y in 24 registers (block sizes not
 * tuned on ARM hardware yet). */
#define ISA_GEMM_MR 6
#define ISA_GEMM_NRV 4
#define ISA_GEMM_KC 256
#define ISA_GEMM_ROWS 64
#define ISA_CODES_MAX 4

AINL int isa_dq_chunk(const int bits)
{
    return bits == 8 || bits == 4 ? 16 : 8;
}

AINL int isa_dq_codes(const uint8_t *wg, const int bits, const int c, msv *q)
{
    if (bits == 8 || bits == 4) {
        uint8x16_t b;
        if (bits == 8) {
            b = vld1q_u8(wg + 16 * c);
        } else {
            uint8x8_t p = vld1_u8(wg + 8 * c);
            uint8x8x2_t z = vzip_u8(vand_u8(p, vdup_n_u8(15)), vshr_n_u8(p, 4));
            b = vcombine_u8(z.val[0], z.val[1]);
        }
        widen16(b, q);
        return 4;
    }
    uint32x4_t lo, hi;
    unpack8_generic(wg + c * bits, bits, &lo, &hi);
    q[0] = vcvtq_f32_u32(lo);
    q[1] = vcvtq_f32_u32(hi);
    return 2;
}

AINL int isa_dq_overread(const int bits)
{
    return bits == 8 || bits == 4 ? 0 : 8 - bits;
}

AINL int isa_dot_chunks(const int bits, const int gs)
{
    return gs / isa_dq_chunk(bits);
}

AINL int isa_dot_codes(const uint8_t *wg, const int bits, const int gs, const int c, msv *q)
{
    return isa_dq_codes(wg, bits, c, q);
}

AINL int isa_dot_overread(const int bits, const int gs)
{
    return isa_dq_overread(bits);
}

/* Natural order everywhere. */
AINL int isa_dot_interleave(const int bits, const int gs)
{
    return 1;
}

#include "kern_simd.h"

/* gemm_min_n: not measured on an ARM host yet; the AVX2 values as a start. */
const ms_kern ms_kern_neon = SIMD_TABLE("neon", prep_natural, 16, prep_natural, 12, prep_natural, 20, prep_natural, 8, prep_natural, 12, prep_natural, 8, 8, 8, 8);

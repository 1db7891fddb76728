/* dtype.c - dtype table and bulk conversion to f32 (see dtype.h). */
#include "dtype.h"

#include <errno.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_tab[MS_DT_COUNT] = {
    [MS_DT_F32] = {"F32", 4},       [MS_DT_F16] = {"F16", 2},    [MS_DT_BF16] = {"BF16", 2},
    [MS_DT_F64] = {"F64", 8},       [MS_DT_U32] = {"U32", 4},    [MS_DT_I32] = {"I32", 4},
    [MS_DT_U16] = {"U16", 2},       [MS_DT_I16] = {"I16", 2},    [MS_DT_U8] = {"U8", 1},
    [MS_DT_I8] = {"I8", 1},         [MS_DT_I64] = {"I64", 8},    [MS_DT_U64] = {"U64", 8},
    [MS_DT_BOOL] = {"BOOL", 1},     [MS_DT_F8_E4M3] = {"F8_E4M3", 1}, [MS_DT_F8_E5M2] = {"F8_E5M2", 1},
};

size_t ms_dtype_size(ms_dtype t) { return (unsigned)t < MS_DT_COUNT ? dtype_tab[t].size : 0; }

const char *ms_dtype_name(ms_dtype t) { return (unsigned)t < MS_DT_COUNT ? dtype_tab[t].name : "?"; }

int ms_dtype_parse(const char *s, ms_dtype *out)
{
    for (int i = 0; i < MS_DT_COUNT; i++)
        if (strcmp(s, dtype_tab[i].name) == 0) {
            *out = (ms_dtype)i;
            return 0;
        }
    return -EINVAL;
}

int ms_convert_to_f32(ms_dtype t, const void *src, float *dst, size_t n)
{
    switch (t) {
    case MS_DT_F32: memmove(dst, src, n * 4); return 0;
    case MS_DT_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = ms_f16_to_f32(ms_ld_u16(s, i));
        return 0;
    }
    case MS_DT_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = ms_bf16_to_f32(ms_ld_u16(s, i));
        return 0;
    }
    case MS_DT_F64: {
        const double *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = (float)s[i];
        return 0;
    }
    case MS_DT_F8_E4M3: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = ms_fp8_e4m3_to_f32(s[i]);
        return 0;
    }
    case MS_DT_U8: { const uint8_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; return 0; }
    case MS_DT_I8: { const int8_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; return 0; }
    case MS_DT_U16: { const uint16_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; return 0; }
    case MS_DT_I16: { const int16_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; return 0; }
    case MS_DT_U32: { const uint32_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; return 0; }
    case MS_DT_I32: { const int32_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; return 0; }
    case MS_DT_I64: { const int64_t *s = src; for (size_t i = 0; i < n; i++) dst[i] = (float)s[i]; return 0; }
    default: return -EINVAL;
    }
}

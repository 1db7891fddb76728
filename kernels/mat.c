/* mat.c - ms_mat descriptor helpers: byte sizes of rows / scales, row views and
 * validation. A descriptor only points at memory; nothing here allocates. */
#include <stdio.h>

#include "kernels.h"
#include "quant.h"

static size_t dense_elem_size(ms_wtype t)
{
    return t == MS_WT_F32 ? 4 : 2;
}

size_t ms_mat_row_bytes(const ms_mat *m)
{
    if (m->type == MS_WT_AFFINE) return (size_t)m->cols * (size_t)m->bits / 8;
    return (size_t)m->cols * dense_elem_size(m->type);
}

size_t ms_mat_sb_row_bytes(const ms_mat *m)
{
    if (m->type != MS_WT_AFFINE || m->group_size <= 0) return 0;
    return (size_t)(m->cols / m->group_size) * ms_dtype_size(m->sb_dtype);
}

size_t ms_mat_bytes(const ms_mat *m)
{
    return (size_t)m->rows * (ms_mat_row_bytes(m) + 2 * ms_mat_sb_row_bytes(m));
}

ms_mat ms_mat_rows(const ms_mat *m, int64_t r0, int64_t n)
{
    ms_mat v = *m;
    v.rows = n;
    v.w = (const char *)m->w + (size_t)r0 * ms_mat_row_bytes(m);
    if (m->type == MS_WT_AFFINE) {
        size_t sb = ms_mat_sb_row_bytes(m);
        v.scales = (const char *)m->scales + (size_t)r0 * sb;
        v.biases = (const char *)m->biases + (size_t)r0 * sb;
    }
    return v;
}

int ms_mat_validate(const ms_mat *m, ms_err *err)
{
    if (!m) return ms_errf(err, EINVAL, "matrix: NULL descriptor");
    if ((int)m->type < 0 || m->type >= MS_WT_COUNT)
        return ms_errf(err, EINVAL, "matrix: unknown weight type %d", (int)m->type);
    if (m->rows <= 0 || m->cols <= 0)
        return ms_errf(err, EINVAL, "matrix: bad shape [%lld x %lld]", (long long)m->rows, (long long)m->cols);
    if (m->rows > INT32_MAX || m->cols > INT32_MAX)
        return ms_errf(err, EINVAL, "matrix: shape [%lld x %lld] too large", (long long)m->rows, (long long)m->cols);
    if (!m->w)
        return ms_errf(err, EINVAL, "matrix [%lld x %lld]: NULL weight pointer", (long long)m->rows,
                       (long long)m->cols);
    if (m->type != MS_WT_AFFINE) return 0;
    if (!ms_affine_bits_ok(m->bits))
        return ms_errf(err, EINVAL, "matrix [%lld x %lld]: unsupported affine bits %d (want 2,3,4,5,6,8)",
                       (long long)m->rows, (long long)m->cols, m->bits);
    if (!ms_affine_group_ok(m->group_size))
        return ms_errf(err, EINVAL, "matrix [%lld x %lld]: unsupported group size %d (want 32, 64, 128)",
                       (long long)m->rows, (long long)m->cols, m->group_size);
    if (m->cols % m->group_size)
        return ms_errf(err, EINVAL, "matrix [%lld x %lld]: cols not a multiple of the group size %d",
                       (long long)m->rows, (long long)m->cols, m->group_size);
    if (m->sb_dtype != MS_DT_BF16 && m->sb_dtype != MS_DT_F16 && m->sb_dtype != MS_DT_F32)
        return ms_errf(err, EINVAL, "matrix [%lld x %lld]: scales/biases dtype %s not BF16, F16 or F32",
                       (long long)m->rows, (long long)m->cols, ms_dtype_name(m->sb_dtype));
    if (!m->scales || !m->biases)
        return ms_errf(err, EINVAL, "matrix [%lld x %lld]: NULL scales or biases", (long long)m->rows,
                       (long long)m->cols);
    return 0;
}

/* jinja_format.c - Python string formatting for templates: `"%s, %d" % (a, b)` (printf
 * style: %s %r %a %d %i %u %x %X %o %e %E %f %F %g %G %c %%, %(name)s with a dict,
 * flags -+ #0, width, precision, '*') and str.format() with {} / {0} / {name},
 * .attr / [key] lookups, !s / !r conversions and the format-spec mini-language
 * ([[fill]align][sign][#][0][width][,_][.precision][type]) for str, int and float.
 * Numbers are formatted through C's printf, whose conversions agree with Python's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja_int.h"
#include "util.h"

/* ---- shared: numbers as text ------------------------------------------------------------------ */

/* pad text (UTF-8) to width with fill at align ('<', '>', '^', '=' after a sign prefix) */
static int put_padded(jctx *c, jbuf *b, const char *s, size_t n, int64_t width, uint32_t fill, char align,
                      size_t sign_len)
{
    int64_t cps = 0;
    for (size_t i = 0; i < n; i++) cps += ((unsigned char)s[i] & 0xC0) != 0x80;
    int64_t pad = width > cps ? width - cps : 0, left = 0;
    if ((uint64_t)pad > c->opts.max_output) return jx_fail_limit(c, NULL, "string-size");
    if (align == '>') left = pad;
    else if (align == '^') left = pad / 2;
    char f[4];
    int fl = ms_utf8_put(f, fill);
    if (align == '=') {
        if (jx_buf_put(c, b, s, sign_len) < 0) return -1;
        for (int64_t i = 0; i < pad; i++)
            if (jx_buf_put(c, b, f, (size_t)fl) < 0) return -1;
        return jx_buf_put(c, b, s + sign_len, n - sign_len);
    }
    for (int64_t i = 0; i < left; i++)
        if (jx_buf_put(c, b, f, (size_t)fl) < 0) return -1;
    if (jx_buf_put(c, b, s, n) < 0) return -1;
    for (int64_t i = 0; i < pad - left; i++)
        if (jx_buf_put(c, b, f, (size_t)fl) < 0) return -1;
    return 0;
}

/* c is one of the characters of set (never the terminating NUL) */
static bool in_set(char c, const char *set) { return c && strchr(set, c); }

/* value * 10 + digit, saturating (callers reject anything past 100000) */
static int64_t add_digit(int64_t v, char d) { return v > 100000000 ? v : v * 10 + (d - '0'); }

static bool as_number(jval v, bool *is_float, int64_t *i, double *f)
{
    if (v.t == JT_INT || v.t == JT_BOOL) {
        *is_float = false;
        *i = v.t == JT_BOOL ? v.b : v.i;
        *f = (double)*i;
        return true;
    }
    if (v.t == JT_FLOAT) {
        *is_float = true;
        *f = v.f;
        *i = 0;
        return true;
    }
    return false;
}

/* digits of |x| in base with grouping sep every 3 (10) / 4 (others); returns length */
static size_t int_digits(uint64_t x, int base, bool upper, char sep, char *out)
{
    char tmp[96];
    size_t n = 0;
    int group = base == 10 ? 3 : 4, k = 0;
    do {
        if (sep && k && k % group == 0) tmp[n++] = sep;
        int d = (int)(x % (uint64_t)base);
        tmp[n++] = (char)(d < 10 ? '0' + d : (upper ? 'A' : 'a') + d - 10);
        x /= (uint64_t)base;
        k++;
    } while (x);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = 0;
    return n;
}

/* insert a thousands separator into the integer part of a printf'd float */
static void group_float(const char *in, char sep, char *out, size_t cap)
{
    const char *p = in;
    size_t o = 0;
    if (*p == '-' || *p == '+' || *p == ' ') out[o++] = *p++;
    size_t digits = strspn(p, "0123456789");
    for (size_t i = 0; i < digits && o + 2 < cap; i++) {
        out[o++] = p[i];
        size_t left = digits - i - 1;
        if (left && left % 3 == 0) out[o++] = sep;
    }
    snprintf(out + o, cap - o, "%s", p + digits);
}

/* ---- printf style: str % args ---------------------------------------------------------------- */

int jx_percent_format(jctx *c, const jnode *at, jval fmt, jval args, jval *out)
{
    const char *p = fmt.s->s;
    size_t n = fmt.s->len, argi = 0;
    jval one[1] = {args};
    const jval *argv = one;
    size_t argc = 1;
    if (jv_is_seq(args) && args.l->kind == LK_TUPLE) {
        argv = args.l->v;
        argc = args.l->n;
    }
    jdict *dict = args.t == JT_DICT ? args.d : NULL;
    /* Python treats any non-tuple with __getitem__ as a mapping: leftover arguments are fine */
    bool mapping = dict || args.t == JT_UNDEF ||
                   (args.t == JT_LIST && args.l->kind != LK_TUPLE && args.l->kind != LK_GEN && args.l->kind != LK_VIEW);
    jbuf b = {0};
    int rc = 0;
#define FAILF(...) do { rc = jx_fail(c, at, __VA_ARGS__); goto done; } while (0)
#define NEXTARG(dst)                                                                             \
    do {                                                                                         \
        if (argi >= argc) FAILF("TypeError: not enough arguments for format string");            \
        dst = argv[argi++];                                                                      \
    } while (0)
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (p[i] != '%') {
            size_t j = i;
            while (j < n && p[j] != '%') j++;
            rc = jx_buf_put(c, &b, p + i, j - i);
            i = j - 1;
            continue;
        }
        size_t start = i++;
        if (i >= n) FAILF("ValueError: incomplete format");
        jval arg = jv_none();
        bool have_arg = false;
        if (p[i] == '(') {
            if (args.t == JT_UNDEF) {
                rc = jx_undef_fail(c, at, args);
                goto done;
            }
            if (!dict) FAILF("TypeError: format requires a mapping");
            size_t depth = 1, k = ++i;
            while (k < n && depth) {
                if (p[k] == '(') depth++;
                else if (p[k] == ')') depth--;
                if (depth) k++;
            }
            if (k >= n) FAILF("ValueError: incomplete format key");
            jval key;
            if (jv_str(c, p + i, k - i, &key) < 0) {
                rc = -1;
                goto done;
            }
            int found = jv_dict_get(dict, key, &arg);
            if (found < 0) {
                jbuf kb = {0};
                jv_repr(c, key, &kb);
                rc = jx_fail(c, at, "KeyError: %.200s", kb.v ? kb.v : "");
                jx_buf_free(&kb);
            }
            jv_dec(c, key);
            if (rc < 0) goto done;
            have_arg = true;
            i = k + 1;
        }
        char flags[8] = "";
        size_t nf = 0;
        while (i < n && in_set(p[i], "-+ #0")) {
            if (nf < 6 && !strchr(flags, p[i])) flags[nf++] = p[i];
            i++;
        }
        int64_t width = -1, prec = -1;
        jval w;
        if (i < n && p[i] == '*') {
            NEXTARG(w);
            if (w.t != JT_INT && w.t != JT_BOOL) FAILF("TypeError: * wants int");
            width = w.t == JT_BOOL ? w.b : w.i;
            if (width < 0) {
                width = -width;
                if (!strchr(flags, '-')) flags[nf++] = '-';
            }
            i++;
        } else {
            while (i < n && p[i] >= '0' && p[i] <= '9') width = add_digit(width < 0 ? 0 : width, p[i++]);
        }
        if (i < n && p[i] == '.') {
            i++;
            prec = 0;
            if (i < n && p[i] == '*') {
                NEXTARG(w);
                if (w.t != JT_INT && w.t != JT_BOOL) FAILF("TypeError: * wants int");
                prec = w.t == JT_BOOL ? w.b : w.i;
                i++;
            } else {
                while (i < n && p[i] >= '0' && p[i] <= '9') prec = add_digit(prec, p[i++]);
            }
        }
        if (width > 100000 || prec > 100000) FAILF("ValueError: width or precision too big");
        while (i < n && (p[i] == 'h' || p[i] == 'l' || p[i] == 'L')) i++;
        if (i >= n) FAILF("ValueError: incomplete format");
        char conv = p[i];
        if (conv == '%') {
            rc = jx_buf_putc(c, &b, '%');
            continue;
        }
        if (!have_arg) NEXTARG(arg);
        bool left = strchr(flags, '-') != NULL, zero = strchr(flags, '0') && !left;
        char text[512];
        jbuf sb = {0};
        bool is_float;
        int64_t iv;
        double fv;
        switch (conv) {
        case 's': case 'r': case 'a': {
            if (conv == 's') rc = jv_to_str(c, arg, &sb);
            else rc = jv_repr(c, arg, &sb);
            if (rc < 0) {
                jx_buf_free(&sb);
                goto done;
            }
            size_t len = sb.n;
            if (prec >= 0) { /* precision counts code points */
                size_t k = 0;
                int64_t cpn = 0;
                while (k < sb.n && cpn < prec) {
                    k++;
                    while (k < sb.n && ((unsigned char)sb.v[k] & 0xC0) == 0x80) k++;
                    cpn++;
                }
                len = k;
            }
            rc = put_padded(c, &b, sb.v ? sb.v : "", len, width, ' ', left ? '<' : '>', 0);
            jx_buf_free(&sb);
            break;
        }
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': {
            if (!as_number(arg, &is_float, &iv, &fv)) {
                if (arg.t == JT_UNDEF) {
                    rc = jx_undef_fail(c, at, arg);
                    goto done;
                }
                FAILF("TypeError: %%%c format: %s is required, not %s", conv,
                      (conv == 'd' || conv == 'i' || conv == 'u') ? "a real number" : "an integer", jv_type_name(arg));
            }
            if (is_float) {
                if (conv != 'd' && conv != 'i' && conv != 'u') FAILF("TypeError: %%%c format: an integer is required, not float", conv);
                if (!isfinite(fv)) FAILF("%s: cannot convert float %s to integer", isnan(fv) ? "ValueError" : "OverflowError", isnan(fv) ? "NaN" : "infinity");
                if (fabs(fv) >= 9.2e18) FAILF("integer outside the 64-bit range");
                iv = (int64_t)fv;
            }
            int base = conv == 'x' || conv == 'X' ? 16 : conv == 'o' ? 8 : 10;
            uint64_t mag = iv < 0 ? (uint64_t)0 - (uint64_t)iv : (uint64_t)iv;
            char digits[96], num[160];
            size_t nd = int_digits(mag, base, conv == 'X', 0, digits);
            size_t o = 0;
            if (iv < 0) num[o++] = '-';
            else if (strchr(flags, '+')) num[o++] = '+';
            else if (strchr(flags, ' ')) num[o++] = ' ';
            if (strchr(flags, '#') && base != 10) {
                num[o++] = '0';
                num[o++] = conv == 'o' ? 'o' : conv;
            }
            size_t sign_len = o;
            for (int64_t z = (int64_t)nd; z < prec && o < 150; z++) num[o++] = '0';
            memcpy(num + o, digits, nd + 1);
            o += nd;
            rc = put_padded(c, &b, num, o, width, zero ? '0' : ' ', left ? '<' : zero ? '=' : '>', sign_len);
            break;
        }
        case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': {
            if (!as_number(arg, &is_float, &iv, &fv)) {
                if (arg.t == JT_UNDEF) {
                    rc = jx_undef_fail(c, at, arg);
                    goto done;
                }
                FAILF("TypeError: must be real number, not %s", jv_type_name(arg));
            }
            char spec[32];
            snprintf(spec, sizeof spec, "%%%s%s%s.%d%c", strchr(flags, '+') ? "+" : "", strchr(flags, ' ') ? " " : "",
                     strchr(flags, '#') ? "#" : "", (int)(prec < 0 ? 6 : prec > 300 ? 300 : prec), conv);
            snprintf(text, sizeof text, spec, fv);
            size_t sl = (text[0] == '-' || text[0] == '+' || text[0] == ' ') ? 1 : 0;
            rc = put_padded(c, &b, text, strlen(text), width, zero && isfinite(fv) ? '0' : ' ',
                            left ? '<' : zero && isfinite(fv) ? '=' : '>', sl);
            break;
        }
        case 'c': {
            char u[8];
            size_t ul = 0;
            if (arg.t == JT_STR && jv_str_ncp(arg) == 1) {
                memcpy(u, arg.s->s, arg.s->len);
                ul = arg.s->len;
            } else if (arg.t == JT_INT && arg.i >= 0 && arg.i <= 0x10FFFF && !(arg.i >= 0xD800 && arg.i <= 0xDFFF)) {
                ul = (size_t)ms_utf8_put(u, (uint32_t)arg.i);
            } else {
                FAILF("TypeError: %%c requires int or char");
            }
            rc = put_padded(c, &b, u, ul, width, ' ', left ? '<' : '>', 0);
            break;
        }
        default:
            FAILF("ValueError: unsupported format character '%c' (0x%x) at index %zu", conv, (unsigned char)conv, i);
        }
        (void)start;
    }
    if (rc == 0 && argi < argc && !mapping) rc = jx_fail(c, at, "TypeError: not all arguments converted during string formatting");
done:
#undef FAILF
#undef NEXTARG
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

/* ---- str.format ------------------------------------------------------------------------------ */

typedef struct fspec {
    uint32_t fill;
    char align; /* 0 = default */
    char sign;  /* '-', '+', ' ' */
    bool alt, zero;
    int64_t width, prec; /* -1 = none */
    char group;          /* ',' '_' or 0 */
    char type;           /* 0 = none */
} fspec;

static int parse_spec(jctx *c, const jnode *at, const char *s, size_t n, fspec *f)
{
    *f = (fspec){.fill = ' ', .sign = '-', .width = -1, .prec = -1};
    size_t i = 0;
    if (n) { /* [[fill]align] */
        size_t j = 0;
        uint32_t cp = jx_utf8_next(s, &j);
        if (j < n && in_set(s[j], "<>=^")) {
            f->fill = cp;
            f->align = s[j];
            i = j + 1;
        } else if (in_set(s[0], "<>=^")) {
            f->align = s[0];
            i = 1;
        }
    }
    if (i < n && in_set(s[i], "+- ")) f->sign = s[i++];
    if (i < n && s[i] == '#') f->alt = true, i++;
    if (i < n && s[i] == '0') f->zero = true, i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') f->width = add_digit(f->width < 0 ? 0 : f->width, s[i++]);
    if (i < n && (s[i] == ',' || s[i] == '_')) f->group = s[i++];
    if (i < n && s[i] == '.') {
        i++;
        f->prec = 0;
        size_t st = i;
        while (i < n && s[i] >= '0' && s[i] <= '9') f->prec = add_digit(f->prec, s[i++]);
        if (i == st) return jx_fail(c, at, "ValueError: Format specifier missing precision");
    }
    if (i < n) f->type = s[i++];
    if (i != n) return jx_fail(c, at, "ValueError: Invalid format specifier");
    if (f->width > 100000 || f->prec > 100000) return jx_fail(c, at, "ValueError: width or precision too big");
    if (f->zero && !f->align) {
        f->fill = '0';
        f->align = '=';
    }
    return 0;
}

/* format(value, spec) */
static int format_value(jctx *c, const jnode *at, jval v, const char *spec, size_t sn, jbuf *b)
{
    if (sn == 0) return jv_to_str(c, v, b);
    fspec f;
    if (parse_spec(c, at, spec, sn, &f) < 0) return -1;
    bool is_float;
    int64_t iv;
    double fv;
    if (v.t == JT_STR) {
        if (f.type && f.type != 's') return jx_fail(c, at, "ValueError: Unknown format code '%c' for object of type 'str'", f.type);
        if (f.align == '=') return jx_fail(c, at, "ValueError: '=' alignment not allowed in string format specifier");
        size_t len = v.s->len;
        if (f.prec >= 0) len = jv_str_off(v, f.prec < jv_str_ncp(v) ? f.prec : jv_str_ncp(v));
        return put_padded(c, b, v.s->s, len, f.width, f.fill, f.align ? f.align : '<', 0);
    }
    if (!as_number(v, &is_float, &iv, &fv))
        return jx_fail(c, at, "TypeError: unsupported format string passed to %s.__format__", jv_type_name(v));
    char text[700], num[760];
    char t = f.type;
    if (!is_float && (t == 0 || in_set(t, "bcdoxXn"))) {
        if (f.prec >= 0) return jx_fail(c, at, "ValueError: Precision not allowed in integer format specifier");
        if (t == 'c') {
            if (iv < 0 || iv > 0x10FFFF) return jx_fail(c, at, "OverflowError: %%c arg not in range(0x110000)");
            int l = ms_utf8_put(text, (uint32_t)iv);
            return put_padded(c, b, text, (size_t)l, f.width, f.fill, f.align ? f.align : '<', 0);
        }
        int base = t == 'b' ? 2 : t == 'o' ? 8 : (t == 'x' || t == 'X') ? 16 : 10;
        uint64_t mag = iv < 0 ? (uint64_t)0 - (uint64_t)iv : (uint64_t)iv;
        char digits[96];
        size_t nd = int_digits(mag, base, t == 'X', f.group, digits), o = 0;
        if (iv < 0) num[o++] = '-';
        else if (f.sign == '+' || f.sign == ' ') num[o++] = f.sign;
        if (f.alt && base != 10) {
            num[o++] = '0';
            num[o++] = t;
        }
        size_t sl = o;
        memcpy(num + o, digits, nd + 1);
        return put_padded(c, b, num, o + nd, f.width, f.fill, f.align ? f.align : '>', sl);
    }
    if (t && !in_set(t, "eEfFgG%n"))
        return jx_fail(c, at, "ValueError: Unknown format code '%c' for object of type '%s'", t, jv_type_name(v));
    double x = is_float ? fv : (double)iv;
    if (t == 0 && f.prec < 0) {
        jv_float_repr(x, text, sizeof text); /* repr, with the sign option */
        if (x >= 0 && (f.sign == '+' || f.sign == ' ') && !signbit(x)) {
            num[0] = f.sign;
            snprintf(num + 1, sizeof num - 1, "%s", text);
        } else {
            snprintf(num, sizeof num, "%s", text);
        }
    } else {
        char ct = t == 0 ? 'g' : t == '%' ? 'f' : t == 'n' ? 'g' : t;
        int prec = (int)(f.prec < 0 ? 6 : f.prec > 300 ? 300 : f.prec);
        char sp[32];
        snprintf(sp, sizeof sp, "%%%s%s.%d%c", f.sign == '+' ? "+" : f.sign == ' ' ? " " : "", f.alt ? "#" : "", prec, ct);
        snprintf(text, sizeof text, sp, t == '%' ? x * 100 : x);
        if (t == 0 && !strpbrk(text, ".eEn")) strcat(text, ".0"); /* no type: like repr, keep a decimal point */
        if (t == '%') strcat(text, "%");
        if (f.group) group_float(text, f.group, num, sizeof num);
        else snprintf(num, sizeof num, "%s", text);
    }
    size_t sl = (num[0] == '-' || num[0] == '+' || num[0] == ' ') ? 1 : 0;
    return put_padded(c, b, num, strlen(num), f.width, f.fill, f.align ? f.align : '>', sl);
}

/* resolve a field name: index/name then .attr / [key] parts */
static int field_value(jctx *c, const jnode *at, const char *s, size_t n, jval args, jval kwargs, int *auto_idx,
                       jval *out)
{
    size_t i = 0;
    while (i < n && s[i] != '.' && s[i] != '[') i++;
    jval cur;
    if (i == 0) {
        if (*auto_idx < 0) return jx_fail(c, at, "ValueError: cannot switch from manual field specification to automatic field numbering");
        int64_t k = (*auto_idx)++;
        if (k >= args.l->n) return jx_fail(c, at, "IndexError: Replacement index %lld out of range for positional args tuple", (long long)k);
        cur = jv_inc(args.l->v[k]);
    } else if (s[0] >= '0' && s[0] <= '9') {
        if (*auto_idx > 0) return jx_fail(c, at, "ValueError: cannot switch from automatic field numbering to manual field specification");
        *auto_idx = -1;
        int64_t k = 0;
        for (size_t q = 0; q < i; q++) {
            if (s[q] < '0' || s[q] > '9' || k > 1000000) return jx_fail(c, at, "KeyError: bad field name");
            k = k * 10 + (s[q] - '0');
        }
        if (k >= args.l->n) return jx_fail(c, at, "IndexError: Replacement index %lld out of range for positional args tuple", (long long)k);
        cur = jv_inc(args.l->v[k]);
    } else {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(i < 255 ? i : 255), s);
        jval v;
        if (jv_dict_gets(kwargs.d, name, &v) < 0) return jx_fail(c, at, "KeyError: '%s'", name);
        cur = jv_inc(v);
    }
    while (i < n) {
        jval next;
        int rc;
        if (s[i] == '.') {
            size_t st = ++i;
            while (i < n && s[i] != '.' && s[i] != '[') i++;
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)(i - st < 255 ? i - st : 255), s + st);
            rc = jx_getattr(c, at, cur, name, &next);
        } else {
            size_t st = ++i;
            while (i < n && s[i] != ']') i++;
            if (i >= n) {
                jv_dec(c, cur);
                return jx_fail(c, at, "ValueError: Missing ']' in format string");
            }
            bool digits = i > st;
            for (size_t q = st; q < i; q++) digits &= s[q] >= '0' && s[q] <= '9' && i - st < 18;
            jval key;
            if (digits) {
                int64_t k = 0;
                for (size_t q = st; q < i; q++) k = k * 10 + (s[q] - '0');
                key = jv_int(k);
                rc = 0;
            } else {
                rc = jv_str(c, s + st, i - st, &key);
            }
            i++;
            if (rc == 0) {
                rc = jx_getitem(c, at, cur, key, &next);
                jv_dec(c, key);
            }
        }
        jv_dec(c, cur);
        if (rc < 0) return -1;
        cur = next;
    }
    *out = cur;
    return 0;
}

int jx_str_format(jctx *c, const jnode *at, jval fmt, jval args, jval kwargs, jval *out)
{
    const char *p = fmt.s->s;
    size_t n = fmt.s->len;
    jbuf b = {0};
    int auto_idx = 0, rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        if (p[i] == '}') {
            if (i + 1 < n && p[i + 1] == '}') {
                rc = jx_buf_putc(c, &b, '}');
                i += 2;
                continue;
            }
            rc = jx_fail(c, at, "ValueError: Single '}' encountered in format string");
            break;
        }
        if (p[i] != '{') {
            size_t j = i;
            while (j < n && p[j] != '{' && p[j] != '}') j++;
            rc = jx_buf_put(c, &b, p + i, j - i);
            i = j;
            continue;
        }
        if (i + 1 < n && p[i + 1] == '{') {
            rc = jx_buf_putc(c, &b, '{');
            i += 2;
            continue;
        }
        /* a field up to the matching '}' (one nested level of {} in the spec) */
        size_t st = ++i, depth = 1;
        while (i < n && depth) {
            if (p[i] == '{') depth++;
            else if (p[i] == '}') depth--;
            if (depth) i++;
        }
        if (i >= n) {
            rc = jx_fail(c, at, "ValueError: expected '}' before end of string");
            break;
        }
        size_t en = i++, name_end = st;
        while (name_end < en && p[name_end] != '!' && p[name_end] != ':') {
            if (p[name_end] == '[')
                while (name_end < en && p[name_end] != ']') name_end++;
            name_end++;
        }
        if (name_end > en) name_end = en;
        char conv = 0;
        size_t spec_st = en;
        if (name_end < en && p[name_end] == '!') {
            if (name_end + 1 >= en) {
                rc = jx_fail(c, at, "ValueError: end of string while looking for conversion specifier");
                break;
            }
            conv = p[name_end + 1];
            spec_st = name_end + 2;
            if (spec_st < en && p[spec_st] != ':') {
                rc = jx_fail(c, at, "ValueError: expected ':' after conversion specifier");
                break;
            }
        } else {
            spec_st = name_end;
        }
        if (spec_st < en) spec_st++; /* skip ':' */
        jval v;
        if ((rc = field_value(c, at, p + st, name_end - st, args, kwargs, &auto_idx, &v)) < 0) break;
        /* nested fields in the spec */
        jbuf spec = {0};
        for (size_t q = spec_st; q < en && rc == 0; q++) {
            if (p[q] == '{') {
                size_t e = q + 1;
                while (e < en && p[e] != '}') e++;
                jval nv;
                rc = field_value(c, at, p + q + 1, e - q - 1, args, kwargs, &auto_idx, &nv);
                if (rc == 0) {
                    rc = jv_to_str(c, nv, &spec);
                    jv_dec(c, nv);
                }
                q = e;
            } else {
                rc = jx_buf_putc(c, &spec, p[q]);
            }
        }
        if (rc == 0 && conv) {
            jbuf cb = {0};
            if (conv == 's') rc = jv_to_str(c, v, &cb);
            else if (conv == 'r' || conv == 'a') rc = jv_repr(c, v, &cb);
            else rc = jx_fail(c, at, "ValueError: Unknown conversion specifier %c", conv);
            jv_dec(c, v);
            v = jv_none();
            if (rc == 0) rc = jv_str_buf(c, &cb, &v);
            else jx_buf_free(&cb);
        }
        if (rc == 0) rc = format_value(c, at, v, spec.v ? spec.v : "", spec.n, &b);
        jv_dec(c, v);
        jx_buf_free(&spec);
    }
    if (rc < 0) {
        jx_buf_free(&b);
        return -1;
    }
    return jv_str_buf(c, &b, out);
}

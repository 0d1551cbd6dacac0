/* Python/Jinja2 value semantics over jansson values (see chat_value.h).
 * jansson guarantees valid UTF-8 in strings, so decoding here trusts it. */
#include "text/chat_value.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"

/* ---- UTF-8 and case mapping ------------------------------------------- */

static void utf8_put(strbuf *out, uint32_t c) {
    char b[4];
    sb_add(out, b, utf8_cp_encode(c, b));
}

/* Latin Extended-A pairs capital/small as even/odd code points, except in
 * 0139..0148 and 0179..017E where the capital is odd. */
static int latin_ext_a_capital(uint32_t c) {
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return c & 1;
    return c >= 0x100 && c <= 0x177 && c != 0x130 && c != 0x138 && !(c & 1);
}

static uint32_t uc_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE) return c == 0xD7 ? c : c + 32;
    if (c == 0x178) return 0xFF;
    if (c >= 0x100 && c <= 0x17E) return latin_ext_a_capital(c) ? c + 1 : c;
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

/* Appends the upper case of c; only U+00DF (sharp s) grows, to "SS". */
static void uc_upper_put(strbuf *out, uint32_t c) {
    uint32_t u = c;
    if (c >= 'a' && c <= 'z') u = c - 32;
    else if (c == 0xDF) { sb_adds(out, "SS"); return; }
    else if (c == 0xB5) u = 0x39C;
    else if (c == 0xFF) u = 0x178;
    else if (c >= 0xE0 && c <= 0xFE && c != 0xF7) u = c - 32;
    else if (c >= 0x100 && c <= 0x17E && c != 0x131 && c != 0x138 && latin_ext_a_capital(c - 1))
        u = c - 1;
    else if (c == 0x3C2) u = 0x3A3;
    else if (c >= 0x3B1 && c <= 0x3C9) u = c - 32;
    else if (c >= 0x430 && c <= 0x44F) u = c - 32;
    else if (c >= 0x450 && c <= 0x45F) u = c - 80;
    utf8_put(out, u);
}

/* Python's str.isspace() set, which str.strip() removes. */
static int uc_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Approximates str.isprintable() (what repr() leaves unescaped): control,
 * format, separator (other than space), private-use and non-characters are
 * not printable. Unassigned code points are treated as printable. */
static int uc_printable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return 0;
    if (c == 0x1680 || c == 0x180E || (c >= 0x2000 && c <= 0x200F)) return 0;
    if ((c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F)) return 0;
    if (c == 0x3000 || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB)) return 0;
    if ((c >= 0xE000 && c <= 0xF8FF) || c >= 0xF0000) return 0;
    if ((c & 0xFFFE) == 0xFFFE || (c >= 0xFDD0 && c <= 0xFDEF)) return 0;
    return 1;
}

/* ---- str() and repr() --------------------------------------------------- */

/* Python repr(float): the shortest digits that read back to x, in fixed
 * notation when the decimal exponent is in [-4, 16), else as 1.5e-05. */
static void py_float(strbuf *out, double x) {
    if (isnan(x)) { sb_adds(out, "nan"); return; }
    if (isinf(x)) { sb_adds(out, x < 0 ? "-inf" : "inf"); return; }
    char buf[40];
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    const char *p = buf;
    if (*p == '-') { sb_addc(out, '-'); p++; }
    char dig[24];
    int nd = 0;
    for (; *p != 'e'; p++)
        if (*p != '.') dig[nd++] = *p;
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    int decpt = atoi(p + 1) + 1; /* x = 0.DIGITS * 10^decpt */
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            sb_adds(out, "0.");
            for (int i = 0; i < -decpt; i++) sb_addc(out, '0');
            sb_add(out, dig, (size_t)nd);
        } else if (decpt >= nd) {
            sb_add(out, dig, (size_t)nd);
            for (int i = nd; i < decpt; i++) sb_addc(out, '0');
            sb_adds(out, ".0");
        } else {
            sb_add(out, dig, (size_t)decpt);
            sb_addc(out, '.');
            sb_add(out, dig + decpt, (size_t)(nd - decpt));
        }
        return;
    }
    sb_addc(out, dig[0]);
    if (nd > 1) { sb_addc(out, '.'); sb_add(out, dig + 1, (size_t)(nd - 1)); }
    int e = decpt - 1;
    sb_printf(out, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
}

static void py_repr_char(strbuf *out, uint32_t c, char quote) {
    if (c == (uint32_t)quote || c == '\\') { sb_addc(out, '\\'); sb_addc(out, (char)c); }
    else if (c == '\t') sb_adds(out, "\\t");
    else if (c == '\n') sb_adds(out, "\\n");
    else if (c == '\r') sb_adds(out, "\\r");
    else if (uc_printable(c)) utf8_put(out, c);
    else if (c < 0x100) sb_printf(out, "\\x%02x", c);
    else if (c < 0x10000) sb_printf(out, "\\u%04x", c);
    else sb_printf(out, "\\U%08x", c);
}

static void py_repr_str(strbuf *out, const char *s, size_t n) {
    char quote = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    sb_addc(out, quote);
    for (size_t i = 0, adv; i < n; i += adv) py_repr_char(out, utf8_cp_decode(s + i, &adv), quote);
    sb_addc(out, quote);
}

static void py_repr(strbuf *out, const json_t *v);

static void py_repr_container(strbuf *out, const json_t *v) {
    if (json_is_array(v)) {
        sb_addc(out, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_adds(out, ", ");
            py_repr(out, json_array_get(v, i));
        }
        sb_addc(out, ']');
        return;
    }
    sb_addc(out, '{');
    int first = 1;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        if (!first) sb_adds(out, ", ");
        first = 0;
        py_repr_str(out, key, strlen(key));
        sb_adds(out, ": ");
        py_repr(out, val);
    }
    sb_addc(out, '}');
}

static void py_repr(strbuf *out, const json_t *v) {
    if (json_is_string(v)) py_repr_str(out, json_string_value(v), json_string_length(v));
    else cv_str(out, v);
}

void cv_str(strbuf *out, const json_t *v) {
    if (!v) return;
    switch (json_typeof(v)) {
    case JSON_STRING: sb_add(out, json_string_value(v), json_string_length(v)); break;
    case JSON_INTEGER: sb_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: py_float(out, json_real_value(v)); break;
    case JSON_TRUE: sb_adds(out, "True"); break;
    case JSON_FALSE: sb_adds(out, "False"); break;
    case JSON_NULL: sb_adds(out, "None"); break;
    default: py_repr_container(out, v); break;
    }
}

void cv_upper(strbuf *out, const json_t *v) {
    strbuf s = STRBUF_INIT;
    cv_str(&s, v);
    for (size_t i = 0, adv; i < s.len; i += adv) uc_upper_put(out, utf8_cp_decode(s.data + i, &adv));
    if (s.oom) out->oom = 1;
    sb_free(&s);
}

/* ---- truthiness, lookup, strip, equality ------------------------------- */

int cv_truthy(const json_t *v) {
    if (!v) return 0;
    switch (json_typeof(v)) {
    case JSON_STRING: return json_string_length(v) > 0;
    case JSON_INTEGER: return json_integer_value(v) != 0;
    case JSON_REAL: return json_real_value(v) != 0.0;
    case JSON_TRUE: return 1;
    case JSON_ARRAY: return json_array_size(v) > 0;
    case JSON_OBJECT: return json_object_size(v) > 0;
    default: return 0;
    }
}

json_t *cv_get(const json_t *obj, const char *key) {
    return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

void cv_strip(const char *s, size_t n, size_t *off, size_t *len) {
    size_t a = 0, b = n, adv;
    while (a < b && uc_space(utf8_cp_decode(s + a, &adv))) a += adv;
    while (b > a) {
        size_t k = b - 1; /* back up to the lead byte of the last code point */
        while (k > a && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
        if (!uc_space(utf8_cp_decode(s + k, &adv))) break;
        b = k;
    }
    *off = a;
    *len = b - a;
}

static int is_number(const json_t *v) { return json_is_number(v) || json_is_boolean(v); }

static double num_value(const json_t *v) {
    if (json_is_boolean(v)) return json_is_true(v); /* True == 1 in Python */
    return json_number_value(v);
}

static int equal_containers(const json_t *a, const json_t *b) {
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b)) return 0;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!cv_equal(json_array_get(a, i), json_array_get(b, i))) return 0;
        return 1;
    }
    if (json_object_size(a) != json_object_size(b)) return 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)a, key, val) {
        json_t *other = json_object_get(b, key);
        if (!other || !cv_equal(val, other)) return 0;
    }
    return 1;
}

int cv_equal(const json_t *a, const json_t *b) {
    if (!a || json_is_null(a)) return !b || json_is_null(b);
    if (!b || json_is_null(b)) return 0;
    if (is_number(a) && is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return num_value(a) == num_value(b);
    }
    if (json_typeof(a) != json_typeof(b)) return 0;
    if (json_is_string(a))
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    return equal_containers(a, b);
}

/* ---- dictsort, format_argument, iteration ------------------------------ */

typedef struct {
    const char *key;
    size_t pos; /* insertion order, the tie-break that makes the sort stable */
} key_pos;

/* Compares key.lower() code point by code point, as Python's sorted does. */
static int cmp_key_pos(const void *pa, const void *pb) {
    const key_pos *a = pa, *b = pb;
    const char *x = a->key, *y = b->key;
    while (*x && *y) {
        size_t ax, ay;
        uint32_t cx = uc_lower(utf8_cp_decode(x, &ax)), cy = uc_lower(utf8_cp_decode(y, &ay));
        if (cx != cy) return cx < cy ? -1 : 1;
        x += ax;
        y += ay;
    }
    if (*x || *y) return *x ? 1 : -1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

const char **cv_sorted_keys(const json_t *obj, size_t *n) {
    *n = 0;
    size_t count = json_is_object(obj) ? json_object_size(obj) : 0;
    if (!count) return NULL;
    key_pos *kp = malloc(count * sizeof *kp);
    const char **keys = malloc(count * sizeof *keys);
    if (!kp || !keys) { free(kp); free(keys); return NULL; }
    size_t i = 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val) {
        kp[i].key = key;
        kp[i].pos = i;
        i++;
    }
    qsort(kp, count, sizeof *kp, cmp_key_pos);
    for (i = 0; i < count; i++) keys[i] = kp[i].key;
    free(kp);
    *n = count;
    return keys;
}

static void format_mapping(strbuf *out, const json_t *v, int escape_keys) {
    size_t n;
    const char **keys = cv_sorted_keys(v, &n);
    if (!keys && json_object_size(v)) { out->oom = 1; return; }
    sb_addc(out, '{');
    for (size_t i = 0; i < n; i++) {
        if (i) sb_addc(out, ',');
        if (escape_keys) sb_adds(out, "<|\"|>");
        sb_adds(out, keys[i]);
        if (escape_keys) sb_adds(out, "<|\"|>");
        sb_addc(out, ':');
        cv_format_argument(out, json_object_get(v, keys[i]), escape_keys);
    }
    sb_addc(out, '}');
    free(keys);
}

void cv_format_argument(strbuf *out, const json_t *v, int escape_keys) {
    if (!v) return; /* never reached: every caller passes a present value */
    switch (json_typeof(v)) {
    case JSON_NULL: sb_adds(out, "null"); break;
    case JSON_STRING:
        sb_adds(out, "<|\"|>");
        cv_str(out, v);
        sb_adds(out, "<|\"|>");
        break;
    case JSON_TRUE: sb_adds(out, "true"); break;
    case JSON_FALSE: sb_adds(out, "false"); break;
    case JSON_OBJECT: format_mapping(out, v, escape_keys); break;
    case JSON_ARRAY:
        sb_addc(out, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) sb_addc(out, ',');
            cv_format_argument(out, json_array_get(v, i), escape_keys);
        }
        sb_addc(out, ']');
        break;
    default: cv_str(out, v); break;
    }
}

static void quoted(strbuf *out, const char *s, size_t n, int first) {
    if (!first) sb_addc(out, ',');
    sb_adds(out, "<|\"|>");
    sb_add(out, s, n);
    sb_adds(out, "<|\"|>");
}

int cv_quoted_items(strbuf *out, const json_t *v, const char *what, g4_err *err) {
    if (!v) return 0; /* iterating Undefined yields nothing */
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            strbuf s = STRBUF_INIT;
            cv_str(&s, json_array_get(v, i));
            quoted(out, s.data ? s.data : "", s.len, i == 0);
            sb_free(&s);
        }
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        for (size_t i = 0, adv; i < json_string_length(v); i += adv) {
            utf8_cp_decode(s + i, &adv);
            quoted(out, s + i, adv, i == 0);
        }
    } else if (json_is_object(v)) {
        int first = 1;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            quoted(out, key, strlen(key), first);
            first = 0;
        }
    } else {
        return g4_errorf(err, "%s: must be a list (the template iterates over it)", what);
    }
    return 0;
}

/* UTF-8 validation and repair (see utf8.h). */
#include "text/utf8.h"

#include <stdlib.h>
#include <string.h>

size_t utf8_next(const unsigned char *s, size_t n, size_t *bad) {
    unsigned b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b >= 0xE0 && b <= 0xEF) need = 2, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) need = 3, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else { *bad = 1; return 0; }
    for (size_t i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) { *bad = i; return 0; }
        lo = 0x80, hi = 0xBF;
    }
    return need + 1;
}

bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t bad;
    for (size_t i = 0; i < n;) {
        if (p[i] < 0x80) { i++; continue; }
        size_t k = utf8_next(p + i, n - i, &bad);
        if (!k) return false;
        i += k;
    }
    return true;
}

char *utf8_repair(const char *s, size_t n, size_t *out_len) {
    /* each bad byte grows to at most 3 bytes */
    char *out = malloc(n * 3 + 1);
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, bad;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_next(p + i, n - i, &bad);
        if (k) { memcpy(out + o, p + i, k); o += k; i += k; continue; }
        memcpy(out + o, UTF8_REPLACEMENT, 3);
        o += 3;
        i += bad;
    }
    out[o] = 0;
    *out_len = o;
    return out;
}

uint32_t utf8_cp_decode(const char *s, size_t *adv) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) return *adv = 1, u[0];
    if (u[0] < 0xE0) return *adv = 2, (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    if (u[0] < 0xF0) return *adv = 3, (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    *adv = 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 | (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

size_t utf8_cp_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12), out[1] = (char)(0x80 | (cp >> 6 & 0x3F)), out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18), out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F)), out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

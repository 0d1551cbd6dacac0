/* Open-addressing hash maps with linear probing (see hashmap.h). */
#include "text/hashmap.h"

#include <stdlib.h>
#include <string.h>

static size_t capacity_for(size_t max_items) {
    size_t cap = 16;
    while (cap < 2 * max_items) cap *= 2;
    return cap;
}

/* FNV-1a, then a final mix so the low bits (the slot index) depend on all bytes. */
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t k) {
    k *= 0x9E3779B97F4A7C15ull;
    return k ^ (k >> 31);
}

int hm_str_init(hm_str *m, size_t max_items) {
    size_t cap = capacity_for(max_items);
    m->slots = calloc(cap, sizeof *m->slots);
    m->mask = cap - 1;
    return m->slots ? 0 : -1;
}

void hm_str_free(hm_str *m) {
    free(m->slots);
    m->slots = NULL;
}

bool hm_str_put(hm_str *m, const char *key, uint32_t len, int32_t val) {
    for (size_t i = hash_bytes(key, len) & m->mask;; i = (i + 1) & m->mask) {
        hm_str_slot *s = &m->slots[i];
        if (!s->key) {
            *s = (hm_str_slot){key, len, val};
            return true;
        }
        if (s->len == len && !memcmp(s->key, key, len)) {
            s->val = val;
            return false;
        }
    }
}

int32_t hm_str_get(const hm_str *m, const char *key, size_t len) {
    for (size_t i = hash_bytes(key, len) & m->mask;; i = (i + 1) & m->mask) {
        const hm_str_slot *s = &m->slots[i];
        if (!s->key) return -1;
        if (s->len == len && !memcmp(s->key, key, len)) return s->val;
    }
}

int hm_u64_init(hm_u64 *m, size_t max_items) {
    size_t cap = capacity_for(max_items);
    m->slots = malloc(cap * sizeof *m->slots);
    m->mask = cap - 1;
    if (!m->slots) return -1;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = HM_EMPTY;
    return 0;
}

void hm_u64_free(hm_u64 *m) {
    free(m->slots);
    m->slots = NULL;
}

void hm_u64_put(hm_u64 *m, uint64_t key, uint64_t val) {
    for (size_t i = hash_u64(key) & m->mask;; i = (i + 1) & m->mask) {
        hm_u64_slot *s = &m->slots[i];
        if (s->key == HM_EMPTY || s->key == key) {
            *s = (hm_u64_slot){key, val};
            return;
        }
    }
}

bool hm_u64_get(const hm_u64 *m, uint64_t key, uint64_t *val) {
    for (size_t i = hash_u64(key) & m->mask;; i = (i + 1) & m->mask) {
        const hm_u64_slot *s = &m->slots[i];
        if (s->key == key) { *val = s->val; return true; }
        if (s->key == HM_EMPTY) return false;
    }
}

static int bits_for(uint64_t n) {
    int b = 1;
    while (((uint64_t)1 << b) < n) b++;
    return b;
}

int hm_pair_init(hm_pair *m, size_t max_items, uint32_t max_id, uint32_t max_rank) {
    size_t cap = capacity_for(max_items);
    m->id_bits = bits_for(max_id);
    m->rank_bits = bits_for(max_rank);
    /* the top bit stays clear, so no slot equals HM_EMPTY and no key matches
     * HM_EMPTY >> rank_bits */
    if (2 * m->id_bits + m->rank_bits > 63) return -1;
    m->shift = 64 - bits_for(cap);
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    memset(m->slots, 0xff, cap * sizeof *m->slots);
    return 0;
}

void hm_pair_free(hm_pair *m) {
    free(m->slots);
    m->slots = NULL;
}

void hm_pair_put(hm_pair *m, uint32_t a, uint32_t b, uint32_t rank) {
    uint64_t key = (uint64_t)a << m->id_bits | b;
    size_t mask = ((size_t)1 << (64 - m->shift)) - 1;
    for (size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);; i = (i + 1) & mask) {
        if (m->slots[i] == HM_EMPTY || m->slots[i] >> m->rank_bits == key) {
            m->slots[i] = key << m->rank_bits | rank;
            return;
        }
    }
}

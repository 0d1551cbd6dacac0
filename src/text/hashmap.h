/* Open-addressing hash maps for the tokenizer's hot lookups: piece -> id
 * (hm_str) and 64-bit key -> 64-bit value (hm_u64: BPE pair -> merge, trie
 * edges). Capacity is fixed at init (load factor <= 1/2); there is no delete. */
#ifndef G4_TEXT_HASHMAP_H
#define G4_TEXT_HASHMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *key; /* not owned: must outlive the map */
    uint32_t len;
    int32_t val;
} hm_str_slot;

typedef struct {
    hm_str_slot *slots;
    size_t mask;
} hm_str;

typedef struct {
    uint64_t key; /* HM_EMPTY marks a free slot */
    uint64_t val;
} hm_u64_slot;

typedef struct {
    hm_u64_slot *slots;
    size_t mask;
} hm_u64;

/* (id a, id b) -> rank, one 64-bit slot each (pair << rank_bits | rank), so
 * that BPE's hot lookups touch 8 bytes per probe and the table of a 262k
 * vocabulary's merges stays small (8 MB) enough to be mostly cached. */
typedef struct {
    uint64_t *slots; /* HM_EMPTY marks a free slot */
    int shift;       /* 64 - log2(capacity): the hash takes the top bits */
    int id_bits, rank_bits;
} hm_pair;

#define HM_EMPTY UINT64_MAX

/* Both inits return -1 if out of memory. */
int hm_str_init(hm_str *m, size_t max_items);
void hm_str_free(hm_str *m);
/* Inserts key -> val; if the key is there, overwrites and returns false. */
bool hm_str_put(hm_str *m, const char *key, uint32_t len, int32_t val);
/* The value for key, or -1. */
int32_t hm_str_get(const hm_str *m, const char *key, size_t len);

int hm_u64_init(hm_u64 *m, size_t max_items);
void hm_u64_free(hm_u64 *m);
/* key must not be HM_EMPTY; overwrites an existing key. */
void hm_u64_put(hm_u64 *m, uint64_t key, uint64_t val);
bool hm_u64_get(const hm_u64 *m, uint64_t key, uint64_t *val);

/* -1 if out of memory or if ids < max_id and ranks < max_rank do not fit in
 * 63 bits together. */
int hm_pair_init(hm_pair *m, size_t max_items, uint32_t max_id, uint32_t max_rank);
void hm_pair_free(hm_pair *m);
/* Overwrites the rank of an existing pair. */
void hm_pair_put(hm_pair *m, uint32_t a, uint32_t b, uint32_t rank);
/* The rank of (a, b), or -1. a and b must be below max_id. */
static inline int64_t hm_pair_get(const hm_pair *m, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << m->id_bits | b;
    size_t mask = ((size_t)1 << (64 - m->shift)) - 1;
    for (size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> m->shift);; i = (i + 1) & mask) {
        uint64_t s = m->slots[i];
        if (s >> m->rank_bits == key) return (int64_t)(s & (((uint64_t)1 << m->rank_bits) - 1));
        if (s == HM_EMPTY) return -1;
    }
}

#endif

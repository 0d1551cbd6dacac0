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

#endif

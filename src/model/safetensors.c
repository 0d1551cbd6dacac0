/* safetensors reader and writer (see safetensors.h). */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    int bits;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_BOOL] = {"BOOL", 8},       [ST_F4] = {"F4", 4},
    [ST_F6_E2M3] = {"F6_E2M3", 6}, [ST_F6_E3M2] = {"F6_E3M2", 6},
    [ST_U8] = {"U8", 8},           [ST_I8] = {"I8", 8},
    [ST_F8_E5M2] = {"F8_E5M2", 8}, [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_F8_E8M0] = {"F8_E8M0", 8}, [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ST_I16] = {"I16", 16},        [ST_U16] = {"U16", 16},
    [ST_F16] = {"F16", 16},        [ST_BF16] = {"BF16", 16},
    [ST_I32] = {"I32", 32},        [ST_U32] = {"U32", 32},
    [ST_F32] = {"F32", 32},        [ST_C64] = {"C64", 64},
    [ST_F64] = {"F64", 64},        [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},
};

const char *st_dtype_name(st_dtype dtype) {
    return (unsigned)dtype < ST_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

int st_dtype_bits(st_dtype dtype) { return dtype_info[dtype].bits; }

int st_dtype_parse(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (!strcmp(name, dtype_info[i].name)) {
            *out = (st_dtype)i;
            return 0;
        }
    }
    return -1;
}

uint64_t st_numel(const st_tensor *t) {
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (uint64_t)t->shape[i];
    return n;
}

uint64_t st_nbytes(const st_tensor *t) { return t->end - t->begin; }

/* ---------------------------------------------------------------- header */

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Reads a JSON integer in [0, 2^63) into *out. */
static int json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_shape(const json_t *shape, st_tensor *t, uint64_t *numel, const char *path,
                       g4_err *err) {
    if (!json_is_array(shape))
        return g4_errorf(err, "%s: tensor '%s': \"shape\" is not an array", path, t->name);
    if (json_array_size(shape) > ST_MAX_DIMS)
        return g4_errorf(err, "%s: tensor '%s': %zu dimensions (at most %d supported)", path,
                         t->name, json_array_size(shape), ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    *numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t d;
        if (json_u64(json_array_get(shape, i), &d))
            return g4_errorf(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", path,
                             t->name, i);
        if (d != 0 && *numel > UINT64_MAX / 16 / d)
            return g4_errorf(err, "%s: tensor '%s': shape overflows", path, t->name);
        t->shape[i] = (int64_t)d;
        *numel *= d;
    }
    return 0;
}

static int parse_offsets(const json_t *offsets, st_tensor *t, uint64_t data_size,
                         const char *path, g4_err *err) {
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 ||
        json_u64(json_array_get(offsets, 0), &t->begin) ||
        json_u64(json_array_get(offsets, 1), &t->end))
        return g4_errorf(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end]", path,
                         t->name);
    if (t->end < t->begin)
        return g4_errorf(err, "%s: tensor '%s': data_offsets end %llu < begin %llu", path,
                         t->name, (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end > data_size)
        return g4_errorf(err,
                         "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the "
                         "data (%llu bytes; file truncated?)",
                         path, t->name, (unsigned long long)t->begin,
                         (unsigned long long)t->end, (unsigned long long)data_size);
    return 0;
}

static int parse_entry(const char *name, const json_t *entry, uint64_t data_size,
                       const char *path, st_tensor *t, g4_err *err) {
    t->name = strdup(name);
    if (!json_is_object(entry))
        return g4_errorf(err, "%s: tensor '%s': entry is not an object", path, name);
    const json_t *dtype = json_object_get(entry, "dtype");
    if (!json_is_string(dtype))
        return g4_errorf(err, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (st_dtype_parse(json_string_value(dtype), &t->dtype))
        return g4_errorf(err, "%s: tensor '%s': unknown dtype \"%s\"", path, name,
                         json_string_value(dtype));
    uint64_t numel = 0;
    if (parse_shape(json_object_get(entry, "shape"), t, &numel, path, err)) return -1;
    if (parse_offsets(json_object_get(entry, "data_offsets"), t, data_size, path, err)) return -1;
    uint64_t bits = numel * (uint64_t)st_dtype_bits(t->dtype);
    if (bits % 8)
        return g4_errorf(err, "%s: tensor '%s': %llu elements of %s are not a whole number of bytes",
                         path, name, (unsigned long long)numel, st_dtype_name(t->dtype));
    if (bits / 8 != t->end - t->begin)
        return g4_errorf(err,
                         "%s: tensor '%s': shape x dtype is %llu bytes but data_offsets span %llu",
                         path, name, (unsigned long long)(bits / 8),
                         (unsigned long long)(t->end - t->begin));
    return 0;
}

/* No byte of the data buffer may belong to two tensors. */
static int check_overlaps(st_file *f, const char *path, g4_err *err) {
    if (f->n_tensors < 2) return 0;
    const st_tensor **by_begin = malloc(sizeof *by_begin * f->n_tensors);
    for (int i = 0; i < f->n_tensors; i++) by_begin[i] = &f->tensors[i];
    qsort(by_begin, f->n_tensors, sizeof *by_begin, cmp_tensor_begin);
    int rc = 0;
    uint64_t covered_to = 0;
    const st_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors && !rc; i++) {
        const st_tensor *t = by_begin[i];
        if (t->begin == t->end) continue; /* empty tensors occupy nothing */
        if (prev && t->begin < covered_to)
            rc = g4_errorf(err, "%s: tensors '%s' and '%s' overlap in the data buffer", path,
                           prev->name, t->name);
        covered_to = t->end;
        prev = t;
    }
    free(by_begin);
    return rc;
}

static void free_tensors(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

static int parse_entries(json_t *root, uint64_t data_size, const char *path, st_file *out,
                         g4_err *err) {
    size_t n = json_object_size(root);
    out->tensors = calloc(n ? n : 1, sizeof *out->tensors);
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(value))
                return g4_errorf(err, "%s: \"__metadata__\" is not an object", path);
            out->metadata_json = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS);
            continue;
        }
        st_tensor *t = &out->tensors[out->n_tensors++];
        if (parse_entry(key, value, data_size, path, t, err)) return -1;
        t->file_path = path;
    }
    qsort(out->tensors, out->n_tensors, sizeof *out->tensors, cmp_tensor_name);
    return check_overlaps(out, path, err);
}

int st_parse_header(const char *json, size_t len, uint64_t data_size, const char *path,
                    st_file *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!root)
        return g4_errorf(err, "%s: header is not valid JSON (%s, at byte %d)", path, jerr.text,
                         jerr.position);
    int rc = json_is_object(root) ? parse_entries(root, data_size, path, out, err)
                                  : g4_errorf(err, "%s: header is not a JSON object", path);
    json_decref(root);
    if (rc) {
        free_tensors(out);
        free(out->metadata_json);
        out->metadata_json = NULL;
    }
    return rc;
}

/* ---------------------------------------------------------------- files */

const st_tensor *st_find(const st_file *f, const char *name) {
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, f->n_tensors, sizeof key, cmp_tensor_name);
}

static int map_file(const char *path, void **map, size_t *size, g4_err *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return g4_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return g4_errorf(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    *size = (size_t)st.st_size;
    *map = NULL;
    if (*size > 0) {
        *map = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (*map == MAP_FAILED) {
            close(fd);
            return g4_errorf(err, "%s: cannot mmap: %s", path, strerror(errno));
        }
    }
    close(fd);
    return 0;
}

st_file *st_open(const char *path, g4_err *err) {
    void *map = NULL;
    size_t size = 0;
    if (map_file(path, &map, &size, err)) return NULL;
    st_file *f = NULL;
    uint64_t header_len = 0;
    if (size < 8) {
        g4_errorf(err, "%s: file is %zu bytes, too short for a safetensors header", path, size);
        goto fail;
    }
    memcpy(&header_len, map, 8); /* little-endian host assumed (x86-64, aarch64) */
    if (header_len > ST_MAX_HEADER_BYTES || header_len > size - 8) {
        g4_errorf(err, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                  (unsigned long long)header_len, size);
        goto fail;
    }
    f = calloc(1, sizeof *f);
    if (st_parse_header((const char *)map + 8, header_len, size - 8 - header_len, path, f, err))
        goto fail;
    f->path = strdup(path);
    f->map = map;
    f->map_size = size;
    f->data = (const uint8_t *)map + 8 + header_len;
    f->data_size = size - 8 - header_len;
    for (int i = 0; i < f->n_tensors; i++) {
        f->tensors[i].data = f->data + f->tensors[i].begin;
        f->tensors[i].file_path = f->path;
    }
    return f;
fail:
    free(f);
    if (map) munmap(map, size);
    return NULL;
}

void st_close(st_file *f) {
    if (!f) return;
    free_tensors(f);
    free(f->metadata_json);
    if (f->map) munmap(f->map, f->map_size);
    free(f->path);
    free(f);
}

void *st_tensor_make_writable(const st_tensor *t, g4_err *err) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t begin = (uintptr_t)t->data & ~(uintptr_t)(page - 1);
    uintptr_t end = (uintptr_t)t->data + st_nbytes(t);
    if (mprotect((void *)begin, end - begin, PROT_READ | PROT_WRITE)) {
        g4_errorf(err, "%s: tensor '%s': cannot make writable: %s", t->file_path, t->name, strerror(errno));
        return NULL;
    }
    return (void *)t->data;
}

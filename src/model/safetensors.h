/* safetensors: read (mmap) and write (sharded, with model.safetensors.index.json).
 *
 * File layout: 8-byte little-endian header length N, N bytes of JSON
 * {"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets": [b, e]}},
 * then the data buffer; offsets are relative to the start of the data buffer.
 * Every header is validated before any tensor is used: a malformed file gets an
 * error naming the file and the tensor, never a crash. */
#ifndef G4_MODEL_SAFETENSORS_H
#define G4_MODEL_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Every dtype the format defines (the reference Rust implementation's enum). */
typedef enum {
    ST_BOOL, ST_F4, ST_F6_E2M3, ST_F6_E3M2, ST_U8, ST_I8, ST_F8_E5M2, ST_F8_E4M3,
    ST_F8_E8M0, ST_F8_E4M3FNUZ, ST_F8_E5M2FNUZ, ST_I16, ST_U16, ST_F16, ST_BF16,
    ST_I32, ST_U32, ST_F32, ST_C64, ST_F64, ST_I64, ST_U64,
    ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype dtype);
int st_dtype_bits(st_dtype dtype);
/* Returns 0 and sets *out, or -1 if the name is not a safetensors dtype. */
int st_dtype_parse(const char *name, st_dtype *out);

#define ST_MAX_DIMS 8
/* Largest header the reference implementation accepts. */
#define ST_MAX_HEADER_BYTES 100000000ull

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;      /* byte range within the file's data buffer */
    const void *data;         /* points into the mapping; NULL for header-only parses */
    const char *file_path;    /* the file this tensor lives in (owned by st_file) */
} st_tensor;

typedef struct {
    char *path;
    void *map;                /* whole file, read-only (NULL if header-only) */
    size_t map_size;
    const uint8_t *data;      /* start of the data buffer */
    uint64_t data_size;
    st_tensor *tensors;       /* sorted by name */
    int n_tensors;
    char *metadata_json;      /* "__metadata__" re-serialized, or NULL */
} st_file;

uint64_t st_numel(const st_tensor *t);
uint64_t st_nbytes(const st_tensor *t);

/* Parses and validates a header against a data buffer of data_size bytes:
 * known dtype, shape x dtype == byte range, ranges inside the buffer and not
 * overlapping, no duplicate names. `path` only names the file in errors.
 * Fills out (tensor data pointers stay NULL). The fuzz target. */
int st_parse_header(const char *json, size_t len, uint64_t data_size, const char *path,
                    st_file *out, g4_err *err);

/* Maps and validates a whole file. */
st_file *st_open(const char *path, g4_err *err);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);

/* Files are mapped private and read-only; this makes one tensor's pages
 * writable (copy-on-write: the file never changes, only touched pages are
 * copied). Used to repair NaN bytes in FP8 weights in place. */
void *st_tensor_make_writable(const st_tensor *t, g4_err *err);

/* A checkpoint directory: model.safetensors, or the shards listed by
 * model.safetensors.index.json (every listed tensor must be in its shard). */
typedef struct {
    char *dir;
    st_file **files;
    int n_files;
    const st_tensor **tensors; /* all tensors of all files, sorted by name */
    int n_tensors;
} st_model;

st_model *st_model_open(const char *dir, g4_err *err);
void st_model_close(st_model *m);
const st_tensor *st_model_find(const st_model *m, const char *name);

/* Writer. Declare every tensor first, then st_writer_begin lays out shards
 * (files of at most max_shard_bytes, HF names model-0000i-of-0000n.safetensors,
 * or model.safetensors when one suffices) and writes the headers; tensors can
 * then be written in any order and from several threads. st_writer_finish
 * writes the index (when sharded) and closes the files. */
typedef struct st_writer st_writer;

st_writer *st_writer_create(const char *dir, g4_err *err);
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  g4_err *err);
int st_writer_begin(st_writer *w, uint64_t max_shard_bytes, g4_err *err);
int st_writer_write(st_writer *w, const char *name, const void *data, g4_err *err);
int st_writer_finish(st_writer *w, g4_err *err);
void st_writer_free(st_writer *w); /* also after errors; removes nothing */

#endif

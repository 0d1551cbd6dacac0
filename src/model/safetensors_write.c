/* safetensors writer: declare tensors, lay out shards, write data in any order
 * (pwrite, so several threads may write at once), then the index. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/safetensors.h"

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    int shard;
    uint64_t file_offset; /* absolute offset of the data in its shard file */
} wtensor;

struct st_writer {
    char *dir;
    wtensor *tensors;
    int n, cap;
    int n_shards;
    int *fds;
    char **shard_names;
};

/* mkdir -p */
static int make_dirs(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(path, 0755) && errno != EEXIST ? -1 : 0;
}

st_writer *st_writer_create(const char *dir, g4_err *err) {
    if (make_dirs(dir)) {
        g4_errorf(err, "%s: cannot create directory: %s", dir, strerror(errno));
        return NULL;
    }
    st_writer *w = calloc(1, sizeof *w);
    w->dir = strdup(dir);
    return w;
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  g4_err *err) {
    if (ndim < 0 || ndim > ST_MAX_DIMS) return g4_errorf(err, "tensor '%s': %d dimensions", name, ndim);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->tensors = realloc(w->tensors, sizeof *w->tensors * w->cap);
    }
    wtensor *t = &w->tensors[w->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        numel *= (uint64_t)shape[i];
    }
    t->nbytes = numel * (uint64_t)st_dtype_bits(dtype) / 8;
    return 0;
}

static char *shard_header(st_writer *w, int shard, uint64_t *padded_len) {
    json_t *root = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    uint64_t offset = 0;
    for (int i = 0; i < w->n; i++) {
        wtensor *t = &w->tensors[i];
        if (t->shard != shard) continue;
        json_t *entry = json_object(), *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(entry, "dtype", json_string(st_dtype_name(t->dtype)));
        json_object_set_new(entry, "shape", shape);
        json_object_set_new(entry, "data_offsets",
                            json_pack("[II]", (json_int_t)offset, (json_int_t)(offset + t->nbytes)));
        json_object_set_new(root, t->name, entry);
        t->file_offset = offset; /* made absolute once the header length is known */
        offset += t->nbytes;
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    /* pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does */
    size_t len = strlen(text), padded = (len + 7) / 8 * 8;
    text = realloc(text, padded + 1);
    memset(text + len, ' ', padded - len);
    text[padded] = 0;
    *padded_len = padded;
    return text;
}

static int assign_shards(st_writer *w, uint64_t max_shard_bytes) {
    uint64_t in_shard = 0;
    int shard = 0;
    for (int i = 0; i < w->n; i++) {
        if (in_shard > 0 && in_shard + w->tensors[i].nbytes > max_shard_bytes) {
            shard++;
            in_shard = 0;
        }
        w->tensors[i].shard = shard;
        in_shard += w->tensors[i].nbytes;
    }
    return shard + 1;
}

static int open_shard(st_writer *w, int s, g4_err *err) {
    char name[64], path[4096];
    if (w->n_shards == 1) snprintf(name, sizeof name, "model.safetensors");
    else snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, w->n_shards);
    w->shard_names[s] = strdup(name);
    snprintf(path, sizeof path, "%s/%s", w->dir, name);
    uint64_t header_len;
    char *header = shard_header(w, s, &header_len);
    uint64_t data_bytes = 0;
    for (int i = 0; i < w->n; i++) {
        if (w->tensors[i].shard != s) continue;
        w->tensors[i].file_offset += 8 + header_len;
        data_bytes += w->tensors[i].nbytes;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int rc = 0;
    if (fd < 0) rc = g4_errorf(err, "%s: cannot create: %s", path, strerror(errno));
    else if (pwrite(fd, &header_len, 8, 0) != 8 ||
             pwrite(fd, header, header_len, 8) != (ssize_t)header_len ||
             ftruncate(fd, (off_t)(8 + header_len + data_bytes)))
        rc = g4_errorf(err, "%s: cannot write header: %s", path, strerror(errno));
    w->fds[s] = fd;
    free(header);
    return rc;
}

int st_writer_begin(st_writer *w, uint64_t max_shard_bytes, g4_err *err) {
    w->n_shards = assign_shards(w, max_shard_bytes);
    w->fds = malloc(sizeof *w->fds * w->n_shards);
    w->shard_names = calloc(w->n_shards, sizeof *w->shard_names);
    for (int s = 0; s < w->n_shards; s++) w->fds[s] = -1;
    for (int s = 0; s < w->n_shards; s++)
        if (open_shard(w, s, err)) return -1;
    return 0;
}

int st_writer_write(st_writer *w, const char *name, const void *data, g4_err *err) {
    for (int i = 0; i < w->n; i++) {
        wtensor *t = &w->tensors[i];
        if (strcmp(t->name, name)) continue;
        const char *p = data;
        uint64_t done = 0;
        while (done < t->nbytes) {
            ssize_t k = pwrite(w->fds[t->shard], p + done, t->nbytes - done, (off_t)(t->file_offset + done));
            if (k <= 0)
                return g4_errorf(err, "%s/%s: writing tensor '%s': %s", w->dir, w->shard_names[t->shard],
                                 name, k < 0 ? strerror(errno) : "short write");
            done += (uint64_t)k;
        }
        return 0;
    }
    return g4_errorf(err, "tensor '%s' was not declared to the writer", name);
}

static int write_index(st_writer *w, g4_err *err) {
    json_t *root = json_object(), *map = json_object();
    uint64_t total = 0;
    for (int i = 0; i < w->n; i++) {
        json_object_set_new(map, w->tensors[i].name, json_string(w->shard_names[w->tensors[i].shard]));
        total += w->tensors[i].nbytes;
    }
    json_object_set_new(root, "metadata", json_pack("{sI}", "total_size", (json_int_t)total));
    json_object_set_new(root, "weight_map", map);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", w->dir);
    int rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    return rc ? g4_errorf(err, "%s: cannot write", path) : 0;
}

int st_writer_finish(st_writer *w, g4_err *err) {
    int rc = w->n_shards > 1 ? write_index(w, err) : 0;
    for (int s = 0; s < w->n_shards; s++) {
        if (w->fds[s] >= 0 && close(w->fds[s]) && !rc)
            rc = g4_errorf(err, "%s/%s: close failed: %s", w->dir, w->shard_names[s], strerror(errno));
        w->fds[s] = -1;
    }
    return rc;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int s = 0; s < w->n_shards; s++)
        if (w->fds && w->fds[s] >= 0) close(w->fds[s]);
    for (int i = 0; i < w->n; i++) free(w->tensors[i].name);
    for (int s = 0; s < w->n_shards && w->shard_names; s++) free(w->shard_names[s]);
    free(w->shard_names);
    free(w->fds);
    free(w->tensors);
    free(w->dir);
    free(w);
}

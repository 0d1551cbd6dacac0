/* A checkpoint directory: one model.safetensors, or shards named by
 * model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor: file}}). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/safetensors.h"

static int cmp_tensor_ptr_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int add_file(st_model *m, const char *file_name, g4_err *err) {
    for (int i = 0; i < m->n_files; i++) {
        const char *base = strrchr(m->files[i]->path, '/');
        if (!strcmp(base ? base + 1 : m->files[i]->path, file_name)) return 0;
    }
    if (strchr(file_name, '/') || !strcmp(file_name, "..") || !file_name[0])
        return g4_errorf(err, "%s/model.safetensors.index.json: bad shard file name \"%s\"", m->dir,
                         file_name);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", m->dir, file_name);
    st_file *f = st_open(path, err);
    if (!f) return -1;
    m->files = realloc(m->files, sizeof *m->files * (m->n_files + 1));
    m->files[m->n_files++] = f;
    return 0;
}

static const st_tensor *find_in_file(const st_model *m, const char *file_name, const char *name) {
    for (int i = 0; i < m->n_files; i++) {
        const char *base = strrchr(m->files[i]->path, '/');
        if (!strcmp(base ? base + 1 : m->files[i]->path, file_name)) return st_find(m->files[i], name);
    }
    return NULL;
}

/* Opens every shard the index names and checks each listed tensor is there. */
static int open_from_index(st_model *m, const char *index_path, g4_err *err) {
    json_error_t jerr;
    json_t *index = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!index) return g4_errorf(err, "%s: not valid JSON (%s, line %d)", index_path, jerr.text, jerr.line);
    json_t *map = json_object_get(index, "weight_map");
    int rc = 0;
    if (!json_is_object(map)) rc = g4_errorf(err, "%s: no \"weight_map\" object", index_path);
    const char *name;
    json_t *file;
    json_object_foreach(map, name, file) {
        if (rc) break;
        if (!json_is_string(file)) {
            rc = g4_errorf(err, "%s: weight_map[\"%s\"] is not a file name", index_path, name);
        } else if (!(rc = add_file(m, json_string_value(file), err)) &&
                   !find_in_file(m, json_string_value(file), name)) {
            rc = g4_errorf(err, "%s: tensor '%s' is listed in %s but that file does not contain it",
                           index_path, name, json_string_value(file));
        }
    }
    json_decref(index);
    return rc;
}

/* All tensors of all files in one sorted array; a name in two files is an error. */
static int build_name_index(st_model *m, g4_err *err) {
    int total = 0;
    for (int i = 0; i < m->n_files; i++) total += m->files[i]->n_tensors;
    m->tensors = malloc(sizeof *m->tensors * (total ? total : 1));
    for (int i = 0; i < m->n_files; i++)
        for (int j = 0; j < m->files[i]->n_tensors; j++) m->tensors[m->n_tensors++] = &m->files[i]->tensors[j];
    qsort(m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor_ptr_name);
    for (int i = 1; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i]->name, m->tensors[i - 1]->name))
            return g4_errorf(err, "%s: tensor '%s' appears in both %s and %s", m->dir, m->tensors[i]->name,
                             m->tensors[i - 1]->file_path, m->tensors[i]->file_path);
    return 0;
}

st_model *st_model_open(const char *dir, g4_err *err) {
    st_model *m = calloc(1, sizeof *m);
    m->dir = strdup(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    int rc;
    if (access(path, F_OK) == 0) {
        rc = open_from_index(m, path, err);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (access(path, F_OK) != 0)
            rc = g4_errorf(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
        else
            rc = add_file(m, "model.safetensors", err);
    }
    if (!rc) rc = build_name_index(m, err);
    if (rc) {
        st_model_close(m);
        return NULL;
    }
    return m;
}

void st_model_close(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) st_close(m->files[i]);
    free(m->files);
    free(m->tensors);
    free(m->dir);
    free(m);
}

const st_tensor *st_model_find(const st_model *m, const char *name) {
    st_tensor key = {.name = (char *)name};
    const st_tensor *kp = &key;
    const st_tensor **hit = bsearch(&kp, m->tensors, m->n_tensors, sizeof *m->tensors, cmp_tensor_ptr_name);
    return hit ? *hit : NULL;
}

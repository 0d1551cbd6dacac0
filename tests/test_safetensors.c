/* safetensors: writer -> reader round trips, and every malformed input gets
 * an error naming the file and tensor (never a crash). */
#include "test.h"
#include "model/safetensors.h"

#include <stdint.h>
#include <unistd.h>

static const char *dir;
__attribute__((constructor)) static void make_dir(void) { dir = t_tmp_dir("safetensors"); }

/* Writes 8-byte length + header + data bytes to dir/name. */
static void write_raw(const char *name, const char *header, uint64_t claimed_len, const void *data, size_t n) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(&claimed_len, 8, 1, f);
    fwrite(header, 1, strlen(header), f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static void write_file(const char *name, const char *header, size_t data_bytes) {
    unsigned char data[4096];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 7);
    write_raw(name, header, strlen(header), data, data_bytes);
}

/* Opens dir/name expecting failure; the message must contain each needle. */
static void expect_error(const char *name, const char *needle1, const char *needle2) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    g4_err err = {{0}};
    st_file *f = st_open(path, &err);
    CHECKF(f == NULL, "%s opened", name);
    st_close(f);
    CHECKF(strstr(err.msg, name) != NULL, "message does not name the file: %s", err.msg);
    if (needle1) CHECKF(strstr(err.msg, needle1) != NULL, "'%s' not in: %s", needle1, err.msg);
    if (needle2) CHECKF(strstr(err.msg, needle2) != NULL, "'%s' not in: %s", needle2, err.msg);
}

static void test_dtype_table(void) {
    CHECK(ST_DTYPE_COUNT == 22);
    for (int d = 0; d < ST_DTYPE_COUNT; d++) {
        st_dtype back;
        CHECK(st_dtype_parse(st_dtype_name(d), &back) == 0 && back == (st_dtype)d);
    }
    st_dtype x;
    CHECK(st_dtype_parse("F8_E4M3FN", &x) != 0);
    CHECK(st_dtype_bits(ST_F4) == 4 && st_dtype_bits(ST_F6_E2M3) == 6 && st_dtype_bits(ST_BF16) == 16);
}

static void test_roundtrip_every_dtype(void) {
    g4_err err;
    char out[600];
    snprintf(out, sizeof out, "%s/rt", dir);
    st_writer *w = st_writer_create(out, &err);
    REQUIRE(w);
    unsigned char payload[ST_DTYPE_COUNT][256];
    for (int d = 0; d < ST_DTYPE_COUNT; d++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", st_dtype_name(d));
        int64_t shape[2] = {4, 8}; /* 32 elements: whole bytes for 4- and 6-bit types */
        CHECK(st_writer_add(w, name, d, 2, shape, &err) == 0);
        for (int i = 0; i < 256; i++) payload[d][i] = (unsigned char)(d * 31 + i);
    }
    int64_t none[1] = {0};
    CHECK(st_writer_add(w, "scalar", ST_F32, 0, none, &err) == 0);
    CHECK(st_writer_add(w, "empty", ST_BF16, 1, none, &err) == 0);
    REQUIRE(st_writer_begin(w, 1ull << 30, &err) == 0);
    for (int d = 0; d < ST_DTYPE_COUNT; d++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", st_dtype_name(d));
        CHECK(st_writer_write(w, name, payload[d], &err) == 0);
    }
    float pi = 3.25f;
    CHECK(st_writer_write(w, "scalar", &pi, &err) == 0);
    CHECK(st_writer_write(w, "nope", &pi, &err) != 0);
    CHECK(st_writer_finish(w, &err) == 0);
    st_writer_free(w);

    st_model *m = st_model_open(out, &err);
    REQUIRE(m);
    CHECK(m->n_files == 1 && m->n_tensors == ST_DTYPE_COUNT + 2);
    for (int d = 0; d < ST_DTYPE_COUNT; d++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", st_dtype_name(d));
        const st_tensor *t = st_model_find(m, name);
        REQUIRE(t);
        CHECK(t->dtype == (st_dtype)d && t->ndim == 2 && t->shape[0] == 4 && t->shape[1] == 8);
        CHECK(st_nbytes(t) == 32u * st_dtype_bits(d) / 8);
        CHECK(memcmp(t->data, payload[d], st_nbytes(t)) == 0);
    }
    const st_tensor *s = st_model_find(m, "scalar");
    CHECK(s && s->ndim == 0 && st_numel(s) == 1 && *(const float *)s->data == 3.25f);
    const st_tensor *e = st_model_find(m, "empty");
    CHECK(e && st_numel(e) == 0);
    /* the data buffer starts 8-byte aligned, as the reference writer pads it */
    CHECK(((uintptr_t)m->files[0]->data - (uintptr_t)m->files[0]->map) % 8 == 0);
    st_model_close(m);
}

static void test_sharded_with_index(void) {
    g4_err err;
    char out[600];
    snprintf(out, sizeof out, "%s/sharded", dir);
    st_writer *w = st_writer_create(out, &err);
    REQUIRE(w);
    int64_t shape[1] = {1000};
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        st_writer_add(w, name, ST_F32, 1, shape, &err);
    }
    REQUIRE(st_writer_begin(w, 8500, &err) == 0); /* two tensors per shard */
    float v[1000];
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i);
        for (int j = 0; j < 1000; j++) v[j] = (float)(i * 1000 + j);
        CHECK(st_writer_write(w, name, v, &err) == 0);
    }
    CHECK(st_writer_finish(w, &err) == 0);
    st_writer_free(w);
    char path[700];
    snprintf(path, sizeof path, "%s/model-00003-of-00003.safetensors", out);
    CHECK(access(path, F_OK) == 0);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
    CHECK(access(path, F_OK) == 0);
    st_model *m = st_model_open(out, &err);
    REQUIRE(m);
    CHECK(m->n_files == 3 && m->n_tensors == 5);
    const st_tensor *t = st_model_find(m, "w4");
    CHECK(t && ((const float *)t->data)[999] == 4999.0f);
    st_model_close(m);

    /* an index naming a tensor its shard lacks */
    FILE *f = fopen(path, "w");
    fputs("{\"metadata\":{},\"weight_map\":{\"w0\":\"model-00001-of-00003.safetensors\","
          "\"ghost\":\"model-00001-of-00003.safetensors\"}}", f);
    fclose(f);
    g4_err e2 = {{0}};
    CHECK(st_model_open(out, &e2) == NULL);
    CHECK(strstr(e2.msg, "ghost") && strstr(e2.msg, "does not contain"));
    f = fopen(path, "w");
    fputs("{\"weight_map\":{\"w0\":\"../escape.safetensors\"}}", f);
    fclose(f);
    CHECK(st_model_open(out, &e2) == NULL && strstr(e2.msg, "bad shard file name"));
    f = fopen(path, "w");
    fputs("{\"weight_map\":{\"w0\":\"model-00009-of-00009.safetensors\"}}", f);
    fclose(f);
    CHECK(st_model_open(out, &e2) == NULL && strstr(e2.msg, "model-00009-of-00009"));
    f = fopen(path, "w");
    fputs("{\"weight_map\": [", f);
    fclose(f);
    CHECK(st_model_open(out, &e2) == NULL && strstr(e2.msg, "not valid JSON"));
}

static void test_malformed_files(void) {
    write_raw("short.safetensors", "", 0, NULL, 0);
    { /* fewer than 8 bytes */
        char path[600];
        snprintf(path, sizeof path, "%s/tiny.safetensors", dir);
        FILE *f = fopen(path, "wb");
        fwrite("abc", 1, 3, f);
        fclose(f);
    }
    expect_error("tiny.safetensors", "too short", NULL);
    write_raw("pastend.safetensors", "{}", 1000, NULL, 0);
    expect_error("pastend.safetensors", "past the end of the file", NULL);
    write_raw("huge.safetensors", "{}", UINT64_MAX - 3, NULL, 0);
    expect_error("huge.safetensors", "past the end", NULL);
    write_file("notjson.safetensors", "{\"a\": ", 0);
    expect_error("notjson.safetensors", "not valid JSON", NULL);
    write_file("array.safetensors", "[1,2]", 0);
    expect_error("array.safetensors", "not a JSON object", NULL);
    write_file("dtype.safetensors", "{\"w\":{\"dtype\":\"F9\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2);
    expect_error("dtype.safetensors", "'w'", "unknown dtype");
    write_file("size.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20);
    expect_error("size.safetensors", "'w'", "shape x dtype is 24 bytes");
    write_file("range.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]}}", 8);
    expect_error("range.safetensors", "'w'", "run past the end");
    write_file("overlap.safetensors",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[4,12]}}", 12);
    expect_error("overlap.safetensors", "'a'", "overlap");
    write_file("backwards.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,2]}}", 4);
    expect_error("backwards.safetensors", "'w'", "end 2 < begin 4");
    write_file("dup.safetensors",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    expect_error("dup.safetensors", "not valid JSON", "duplicate");
    write_file("negshape.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0);
    expect_error("negshape.safetensors", "'w'", "shape[0]");
    write_file("noshape.safetensors", "{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,0]}}", 0);
    expect_error("noshape.safetensors", "'w'", "shape");
    write_file("nooffsets.safetensors", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1);
    expect_error("nooffsets.safetensors", "'w'", "data_offsets");
    write_file("overflow.safetensors",
               "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8);
    expect_error("overflow.safetensors", "'w'", "overflow");
    write_file("f4odd.safetensors", "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2);
    expect_error("f4odd.safetensors", "'w'", "whole number of bytes");
    write_file("meta.safetensors", "{\"__metadata__\": 5}", 0);
    expect_error("meta.safetensors", "__metadata__", NULL);
    write_file("entry.safetensors", "{\"w\": \"F32\"}", 0);
    expect_error("entry.safetensors", "'w'", "not an object");
    write_file("badutf8.safetensors", "{\"w\xff\": {}}", 0);
    expect_error("badutf8.safetensors", "not valid JSON", NULL);
    g4_err err;
    CHECK(st_open("/nonexistent/x.safetensors", &err) == NULL && strstr(err.msg, "cannot open"));
    CHECK(st_model_open(dir, &err) == NULL && strstr(err.msg, "no model.safetensors"));
}

static void test_valid_edge_cases(void) {
    /* trailing-space padding, metadata, empty tensors sharing an offset */
    write_file("ok.safetensors",
               "{\"__metadata__\":{\"format\":\"pt\"},\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
               "\"e2\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}        ", 4);
    char path[600];
    snprintf(path, sizeof path, "%s/ok.safetensors", dir);
    g4_err err;
    st_file *f = st_open(path, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f) {
        CHECK(f->n_tensors == 3 && st_find(f, "a") && st_find(f, "e2") && !st_find(f, "zz"));
        CHECK(f->metadata_json && strstr(f->metadata_json, "\"format\""));
    }
    st_close(f);
}

TEST_MAIN("safetensors", TEST_CASE(test_dtype_table), TEST_CASE(test_roundtrip_every_dtype),
          TEST_CASE(test_sharded_with_index), TEST_CASE(test_malformed_files), TEST_CASE(test_valid_edge_cases))

/* libFuzzer target: the safetensors header parser on arbitrary bytes.
 * Input: 8 bytes of data-buffer size (little-endian), then the header text.
 * Run: make fuzz   (see fuzz/README.md). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 8) return 0;
    uint64_t data_size;
    memcpy(&data_size, data, 8);
    st_file f;
    g4_err err;
    if (st_parse_header((const char *)data + 8, size - 8, data_size, "fuzz", &f, &err) == 0) {
        for (int i = 0; i < f.n_tensors; i++) {
            /* every accepted tensor must lie inside the buffer */
            if (f.tensors[i].end > data_size || f.tensors[i].begin > f.tensors[i].end) abort();
            free(f.tensors[i].name);
        }
        free(f.tensors);
        free(f.metadata_json);
    }
    return 0;
}

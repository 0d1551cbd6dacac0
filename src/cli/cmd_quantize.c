/* g4 quantize --in BF16_DIR --out DIR [--calib max|mse] [--kv-cache fp8] */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/quantize_ckpt.h"

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *calib = "max", *kv = NULL, *v;
    int missing = 0;
    for (int i = 1; i < argc && !missing; i++) {
        if ((v = arg_value(&i, argc, argv, "--in", &missing))) in = v;
        else if ((v = arg_value(&i, argc, argv, "--out", &missing))) out = v;
        else if ((v = arg_value(&i, argc, argv, "--calib", &missing))) calib = v;
        else if ((v = arg_value(&i, argc, argv, "--kv-cache", &missing))) kv = v;
        else if (!missing) {
            fprintf(stderr, "g4 quantize: unknown option '%s'\n", argv[i]);
            missing = 1;
        }
    }
    if (missing || !in || !out || (strcmp(calib, "max") && strcmp(calib, "mse")) || (kv && strcmp(kv, "fp8"))) {
        fprintf(stderr, "usage: g4 quantize --in BF16_DIR --out DIR [--calib max|mse] [--kv-cache fp8]\n");
        return 2;
    }
    g4_quantize_opts opts = {.calib = strcmp(calib, "mse") ? G4_CALIB_MAX : G4_CALIB_MSE,
                             .kv_cache_fp8 = kv != NULL, .progress = true};
    g4_err err;
    if (g4_quantize_checkpoint(in, out, &opts, &err)) {
        fprintf(stderr, "g4 quantize: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* g4 synth --preset tiny|12b|assistant-12b|<config.json> --dtype bf16|fp8 --seed N --out DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/config.h"
#include "model/synth.h"
#include "util/file.h"

static int load_preset(const char *preset, g4_config *cfg, g4_err *err) {
    size_t n = strlen(preset);
    if (n < 5 || strcmp(preset + n - 5, ".json")) return g4_synth_preset(preset, cfg, err);
    char *text = g4_read_file(preset, NULL);
    if (!text) return g4_errorf(err, "%s: cannot read", preset);
    int rc = g4_config_parse(text, preset, cfg, err);
    free(text);
    if (!rc && cfg->quant != G4_QUANT_NONE) cfg->quant = G4_QUANT_NONE; /* --dtype decides */
    return rc;
}

int cmd_synth(int argc, char **argv) {
    const char *preset = NULL, *dtype = "bf16", *out = NULL, *v;
    unsigned long long seed = 0;
    int missing = 0;
    for (int i = 1; i < argc; i++) {
        if ((v = arg_value(&i, argc, argv, "--preset", &missing))) preset = v;
        else if ((v = arg_value(&i, argc, argv, "--dtype", &missing))) dtype = v;
        else if ((v = arg_value(&i, argc, argv, "--out", &missing))) out = v;
        else if ((v = arg_value(&i, argc, argv, "--seed", &missing))) seed = strtoull(v, NULL, 10);
        else if (!missing) {
            fprintf(stderr, "g4 synth: unknown option '%s'\n", argv[i]);
            missing = 1;
        }
        if (missing) break;
    }
    if (missing || !preset || !out || (strcmp(dtype, "bf16") && strcmp(dtype, "fp8"))) {
        fprintf(stderr, "usage: g4 synth --preset tiny|12b|assistant-12b|CONFIG.json --dtype bf16|fp8 "
                        "[--seed N] --out DIR\n");
        return 2;
    }
    g4_config cfg;
    g4_err err;
    if (load_preset(preset, &cfg, &err) ||
        g4_synth_write(&cfg, strcmp(dtype, "fp8") ? G4_SYNTH_BF16 : G4_SYNTH_FP8, seed, out, 1, &err)) {
        fprintf(stderr, "g4 synth: %s\n", err.msg);
        return 1;
    }
    return 0;
}

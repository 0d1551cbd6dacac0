/* g4: one binary, subcommands by name. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const g4_command commands[] = {
    /* one line per subcommand; keep alphabetical */
    {"bench", cmd_bench, "time prefill (TTFT) and decode (ITL) against the bandwidth floor"},
    {"generate", cmd_generate, "generate text (or token ids) from a prompt"},
    {"inspect", cmd_inspect, "describe a checkpoint: geometry, tensors, quantization, repaired NaN bytes"},
    {"parse-output", cmd_parse_output, "split raw model output into content, reasoning, tool calls"},
    {"quantize", cmd_quantize, "BF16 checkpoint -> fp8_pb_wo checkpoint (ModelOpt layout)"},
    {"synth", cmd_synth, "write a synthetic checkpoint with the real names, shapes and JSON"},
    {"template", cmd_template, "render OpenAI chat requests with the Gemma 4 chat template"},
    {"tokenize", cmd_tokenize, "text -> token ids (or back with --decode) with a tokenizer.json"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
    fprintf(out, "usage: g4 <command> [options]   (g4 <command> --help for more)\n\ncommands:\n");
    for (size_t i = 0; commands[i].name; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; commands[i].name; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "g4: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

/* The subcommands of the g4 binary. Each returns the process exit code:
 * 0 success, 1 runtime failure, 2 bad usage. */
#ifndef G4_CLI_COMMANDS_H
#define G4_CLI_COMMANDS_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
    const char *summary;
} g4_command;

/* one declaration per subcommand, each defined in src/cli/cmd_<name>.c */
int cmd_bench(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_parse_output(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

#endif

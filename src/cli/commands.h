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
int cmd_tokenize(int argc, char **argv);

#endif

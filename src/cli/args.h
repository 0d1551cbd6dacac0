/* Tiny option matching for the subcommands: `--name value` and `--name=value`. */
#ifndef G4_CLI_ARGS_H
#define G4_CLI_ARGS_H

#include <stdio.h>
#include <string.h>

/* If argv[*i] is `flag`, returns its value (argv[*i+1] or after '='),
 * advancing *i; sets *missing when the value is absent. Else NULL. */
static inline const char *arg_value(int *i, int argc, char **argv, const char *flag, int *missing) {
    size_t n = strlen(flag);
    if (strncmp(argv[*i], flag, n)) return NULL;
    if (argv[*i][n] == '=') return argv[*i] + n + 1;
    if (argv[*i][n] != 0) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "g4: %s needs a value\n", flag);
        *missing = 1;
        return NULL;
    }
    return argv[++*i];
}

#endif

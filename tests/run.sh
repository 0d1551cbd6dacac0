#!/usr/bin/env bash
# Runs each test executable given on the command line, then the script tests
# tests/t_*.sh (not with --no-scripts), and prints one summary line:
# "N passed, N failed".
set -u
passed=0; failed=0; broken=()
add_summary() { # parses "suite: N passed, N failed" from a log
    local line
    line=$(grep -E '^[A-Za-z0-9_.-]+: [0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1)
    if [ -z "$line" ]; then return 1; fi
    local p f
    p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line")
    f=$(sed -E 's/.*passed, ([0-9]+) failed/\1/' <<<"$line")
    passed=$((passed + p)); failed=$((failed + f))
}
scripts=(tests/t_*.sh)
if [ "${1:-}" = "--no-scripts" ]; then scripts=(); shift; fi
log=$(mktemp)
for t in "$@" "${scripts[@]}"; do
    [ -e "$t" ] || continue
    "$t" >"$log" 2>&1
    rc=$?
    cat "$log"
    if ! add_summary "$log"; then
        echo "$t: no summary line (exit $rc)"; failed=$((failed + 1)); broken+=("$t")
    elif [ $rc -ne 0 ] && ! grep -qE ' [1-9][0-9]* failed$' "$log"; then
        echo "$t: exit $rc with no failed test"; failed=$((failed + 1)); broken+=("$t")
    fi
done
rm -f "$log"
[ ${#broken[@]} -gt 0 ] && echo "broken: ${broken[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# g4 parse-output: raw model text on stdin -> {"content","reasoning","tool_calls"}.
set -u
G4=${G4:-build/g4}
passed=0; failed=0
check() { # name, expected, actual
    if [ "$2" == "$3" ]; then passed=$((passed + 1)); echo "ok   parse_output.$1"
    else failed=$((failed + 1)); echo "FAIL parse_output.$1"; echo "  want: $2"; echo "  got:  $3"; fi
}

out=$(printf '<|channel>thought\nHmm.<channel|>call:get_weather{city:<|"|>Oslo<|"|>,n:2}<tool_call|>' |
      $G4 parse-output --enable-thinking | tr -d ' \n')
check thinking_and_bare_call \
    '{"content":null,"reasoning":"Hmm.","tool_calls":[{"name":"get_weather","arguments":"{\"city\":\"Oslo\",\"n\":2}"}]}' "$out"

out=$(printf 'Hi!\n<turn|>' | $G4 parse-output | tr -d ' \n')
check plain_content '{"content":"Hi!","reasoning":null,"tool_calls":[]}' "$out"

out=$(printf '%s\n' '"<|tool_call>call:f(a=1)<tool_call|>"' '' '"<|tool_call>call:get_wea"' '"x <|\"|>y<|\"|>"' |
      $G4 parse-output --jsonl)
want='{"content":null,"reasoning":null,"tool_calls":[{"name":"f","arguments":"{\"a\":1}"}]}
{"content":"call:get_wea","reasoning":null,"tool_calls":[]}
{"content":"x \"y\"","reasoning":null,"tool_calls":[]}'
check jsonl "$want" "$out"

out=$(printf 'call:f{a:1}' | $G4 parse-output --no-tools | tr -d ' \n')
check no_tools '{"content":"call:f{a:1}","reasoning":null,"tool_calls":[]}' "$out"

echo '[1]' | $G4 parse-output --jsonl >/dev/null 2>&1; check jsonl_rejects_non_string 1 $?
$G4 parse-output --bogus </dev/null >/dev/null 2>&1; check bad_option_exit_2 2 $?

echo "parse_output: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env node
// Compares two JSONL files line by line (JSON values, compared as values).
//   node check.js NAME INPUTS EXPECTED GOT [--roundtrip]
// EXPECTED may be the INPUTS file itself: its {"hex": ...} lines then stand for
// the text node decodes them to (U+FFFD for invalid UTF-8). --roundtrip maps
// U+2581 in EXPECTED to a space: the decoder turns every "▁" into " ", so a
// literal "▁" in the input cannot come back (HF does the same).
// Prints "ok NAME (n lines)" or "FAIL NAME: k of n lines differ" with the first
// mismatches; exits 1 on failure.
'use strict';
const fs = require('fs');

const load = (p) => fs.readFileSync(p, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l));
const toText = (v) => (typeof v === 'string' || Array.isArray(v) ? v : Buffer.from(v.hex, 'hex').toString('utf8'));
const show = (v) => { const s = JSON.stringify(v); return s.length > 300 ? s.slice(0, 300) + '...' : s; };

function main() {
  const [name, inPath, expPath, gotPath, flag] = process.argv.slice(2);
  const inputs = load(inPath), got = load(gotPath);
  let exp = load(expPath).map(toText);
  if (flag === '--roundtrip') exp = exp.map((s) => s.replace(/\u2581/g, ' '));
  const bad = [];
  for (let i = 0; i < Math.max(exp.length, got.length); i++)
    if (JSON.stringify(exp[i]) !== JSON.stringify(got[i])) bad.push(i);
  if (!bad.length && exp.length === inputs.length) {
    console.log(`ok ${name} (${exp.length} lines)`);
    return;
  }
  console.log(`FAIL ${name}: ${bad.length} of ${exp.length} lines differ (${got.length} produced, ${inputs.length} inputs)`);
  for (const i of bad.slice(0, 3)) {
    console.log(`  line ${i + 1}: input    ${show(inputs[i])}`);
    console.log(`           expected ${show(exp[i])}`);
    console.log(`           got      ${show(got[i])}`);
  }
  process.exit(1);
}

main();

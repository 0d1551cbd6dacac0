#!/usr/bin/env node
// Derives a Gemma 4-style tokenizer.json from Gemma 3's by renaming the control
// tokens that Gemma 4 re-purposes (shared/docs/model.md §4.1): the same ids,
// new names, all marked special, in both model.vocab and added_tokens. Gemma 3's
// out-of-vocab <image_soft_token> (id 262144) is dropped, since Gemma 4's vocab
// is exactly 262144. Text pieces are left as they are (model.md §6.5: assumed
// same lineage, not diffed), so this is a test fixture, not Google's file.
// usage: node derive_gemma4_tokenizer.js gemma3/tokenizer.json gemma4/tokenizer.json
'use strict';
const fs = require('fs');

const RENAME = {
  46: '<|tool>', 47: '<tool|>', 48: '<|tool_call>', 49: '<tool_call|>',
  50: '<|tool_response>', 51: '<tool_response|>', 52: '<|"|>', 98: '<|think|>',
  100: '<|channel>', 101: '<channel|>', 105: '<|turn>', 106: '<turn|>',
  255999: '<|image>', 256000: '<|audio>', 258880: '<|image|>', 258881: '<|audio|>',
  258882: '<image|>', 258883: '<audio|>', 258884: '<|video|>',
};
const DROP_ID = 262144;

function fail(msg) { console.error('derive_gemma4_tokenizer: ' + msg); process.exit(1); }

function renameVocab(vocab) {
  const out = {};
  const names = new Set(Object.values(RENAME));
  for (const [piece, id] of Object.entries(vocab)) {
    if (id === DROP_ID) continue;
    if (names.has(piece) && RENAME[id] !== piece) fail(`new name ${piece} already used by id ${id}`);
    out[RENAME[id] !== undefined ? RENAME[id] : piece] = id;
  }
  for (const id of Object.keys(RENAME))
    if (!Object.values(vocab).includes(Number(id))) fail(`id ${id} not in vocab`);
  return out;
}

function renameAdded(added) {
  const out = [];
  const seen = new Set();
  for (const t of added) {
    if (t.id === DROP_ID) continue;
    if (RENAME[t.id] !== undefined) {
      out.push({ ...t, content: RENAME[t.id], special: true });
      seen.add(t.id);
    } else out.push(t);
  }
  // Every renamed id must be matched in text as a whole token, so it must be an added token.
  for (const id of Object.keys(RENAME).map(Number))
    if (!seen.has(id))
      out.push({ id, content: RENAME[id], single_word: false, lstrip: false, rstrip: false,
                 normalized: false, special: true });
  return out.sort((a, b) => a.id - b.id);
}

function checkMerges(merges, oldNames) {
  for (const m of merges) {
    const [a, b] = Array.isArray(m) ? m : m.split(' ');
    if (oldNames.has(a) || oldNames.has(b) || oldNames.has(a + b)) fail(`merge ${a} ${b} uses a renamed piece`);
  }
}

function main() {
  const [src, dst] = process.argv.slice(2);
  if (!src || !dst) fail('usage: derive_gemma4_tokenizer.js IN OUT');
  const tok = JSON.parse(fs.readFileSync(src, 'utf8'));
  const byId = new Map(Object.entries(tok.model.vocab).map(([p, id]) => [id, p]));
  checkMerges(tok.model.merges, new Set(Object.keys(RENAME).map((id) => byId.get(Number(id)))));
  tok.model.vocab = renameVocab(tok.model.vocab);
  tok.added_tokens = renameAdded(tok.added_tokens);
  fs.writeFileSync(dst, JSON.stringify(tok, null, 1));
}

main();

#!/usr/bin/env node
// Reference token ids and decoded text from HF's tokenizers (the Rust library
// through its napi binding). Each input line is a JSON string, or {"hex": ...}
// for raw bytes, which node decodes to a string with U+FFFD for invalid UTF-8
// (what any JS caller of the binding hands it).
//   node hf_ref.js TOKENIZER_JSON DIR SET...
// reads DIR/SET.in.jsonl, writes DIR/SET.hf_ids.jsonl (one JSON array of ids
// per line), DIR/SET.hf_text.jsonl (decode of those ids, special tokens kept)
// and DIR/SET.hf_skip.jsonl (skipSpecialTokens). Sets named *_bos encode with addSpecialTokens (Gemma's post-processor
// prepends <bos>); the others without, as a chat template that writes <bos>
// itself needs.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

function toText(v) {
  return typeof v === 'string' ? v : Buffer.from(v.hex, 'hex').toString('utf8');
}

async function refSet(tok, dir, set) {
  const lines = fs.readFileSync(`${dir}/${set}.in.jsonl`, 'utf8').split('\n').filter((l) => l.length);
  const texts = lines.map((l) => toText(JSON.parse(l)));
  const ids = [], decoded = [], skipped = [];
  const CHUNK = 1000;
  for (let i = 0; i < texts.length; i += CHUNK) {
    const enc = await tok.encodeBatch(texts.slice(i, i + CHUNK), { addSpecialTokens: set.endsWith('_bos') });
    const chunkIds = enc.map((e) => Array.from(e.getIds()));
    ids.push(...chunkIds);
    decoded.push(...(await tok.decodeBatch(chunkIds, false)));
    skipped.push(...(await tok.decodeBatch(chunkIds, true)));
  }
  fs.writeFileSync(`${dir}/${set}.hf_ids.jsonl`, ids.map((x) => JSON.stringify(x)).join('\n') + '\n');
  fs.writeFileSync(`${dir}/${set}.hf_text.jsonl`, decoded.map((x) => JSON.stringify(x)).join('\n') + '\n');
  fs.writeFileSync(`${dir}/${set}.hf_skip.jsonl`, skipped.map((x) => JSON.stringify(x)).join('\n') + '\n');
}

async function main() {
  const [tokPath, dir, ...sets] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  for (const set of sets) await refSet(tok, dir, set);
}

main().catch((e) => { console.error('hf_ref: ' + (e.stack || e)); process.exit(1); });

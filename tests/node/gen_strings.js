#!/usr/bin/env node
// Deterministic generator of tokenizer test strings, one JSON value per line:
//   node gen_strings.js valid [count] [seed]    JSON strings (valid UTF-8)
//   node gen_strings.js invalid [count] [seed]  {"hex": "..."}: byte strings with invalid UTF-8
// Strings mix scripts, emoji and ZWJ sequences, combining marks, control
// characters, whitespace runs, special-token spellings, long words, digits and
// code, since those are where tokenizers disagree.
'use strict';

function mulberry32(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let rnd = mulberry32(1);
const int = (lo, hi) => lo + Math.floor(rnd() * (hi - lo + 1)); // inclusive
const pick = (a) => a[Math.floor(rnd() * a.length)];
const times = (n, f) => Array.from({ length: n }, f).join('');

// [lo, hi] code point ranges; the astral CJK extension forces byte fallback.
const SCRIPTS = {
  latin: [[0x61, 0x7a], [0x41, 0x5a], [0xe0, 0xff], [0x100, 0x17f]],
  cjk: [[0x4e00, 0x9fff]], cjk_ext_b: [[0x20000, 0x2a6df]], kana: [[0x3041, 0x30ff]],
  hangul: [[0xac00, 0xd7a3]], arabic: [[0x0621, 0x064a], [0x0660, 0x0669]], hebrew: [[0x05d0, 0x05ea]],
  devanagari: [[0x0905, 0x0939], [0x093e, 0x094d]], thai: [[0x0e01, 0x0e3a], [0x0e40, 0x0e4e]],
  cyrillic: [[0x0410, 0x044f]], greek: [[0x0391, 0x03c9]], tamil: [[0x0b85, 0x0bb9]],
  georgian: [[0x10d0, 0x10fa]], armenian: [[0x0531, 0x0556]], ethiopic: [[0x1200, 0x135a]],
  symbols: [[0x2000, 0x2bff]], private_use: [[0xe000, 0xf8ff]], math: [[0x1d400, 0x1d7ff]],
  emoji: [[0x1f300, 0x1f5ff], [0x1f600, 0x1f64f], [0x1f900, 0x1f9ff]],
};
const ZWJ = ['👨‍👩‍👧‍👦', '🏳️‍🌈', '👩🏽‍💻', '🧑‍🤝‍🧑', '❤️‍🔥', '👁️‍🗨️', '🇯🇵', '🇫🇷🇩🇪', '✋🏿', '1️⃣', '©️', '\u200d', '\ufe0f'];
const SPECIAL = ['<start_of_turn>', '<end_of_turn>', '<|turn>', '<turn|>', '<bos>', '<eos>', '<pad>', '<unk>',
  '<mask>', '[multimodal]', '<|tool_call>', '<tool_call|>', '<|tool>', '<tool|>', '<|tool_response>',
  '<tool_response|>', '<|"|>', '<|think|>', '<|channel>', '<channel|>', '<|image>', '<|image|>', '<image|>',
  '<|audio>', '<|audio|>', '<|video|>', '<start_of_image>', '<end_of_image>', '<image_soft_token>',
  '<unused0>', '<unused40>', '<unused6241>', '<0x41>', '<0xFF>', '<table>', '</td>', '<h1>', '<code>',
  '▁', '▁▁', '▁▁▁▁', '<|tur', '<start_of', 'turn|>', '<<bos>>', '<|"|', '\t\t', '\n\n\n'];
const WORDS = ['the', 'of', 'and', 'tokenizer', 'Gemma', 'naïve', 'café', 'über', 'straße', 'don\'t', 'e.g.',
  'U.S.A.', 'http://example.com/a?b=c&d=e', 'foo_bar', 'camelCase', 'snake_case_name', 'ÆØÅ', 'ﬁ', 'Ⅻ'];
const CODE = ['int main(void) { return 0; }', 'def f(x):\n    return x ** 2\n', 'for (i = 0; i < n; i++) {',
  'const x = {"a": [1, 2, 3]};', '#include <stdio.h>', 'SELECT * FROM t WHERE id = 42;', '    \treturn;\n}',
  'fn main() -> Result<(), Box<dyn Error>> {', '$ ls -la | grep "\\.c$"', '<div class="x">&nbsp;</div>',
  'x = a[i] >> 3 & 0xff;', '/* comment */ // line', '```python\nprint("hi")\n```'];
const WS = [' ', '  ', '\n', '\t', '\r\n', '\r', '\u00a0', '\u3000', '\u2009', '\u200b', '\u000b', '\u000c', '\u2028'];

function charFrom(ranges) {
  const [lo, hi] = pick(ranges);
  return String.fromCodePoint(int(lo, hi));
}

const FRAGMENTS = [
  () => times(int(1, 12), () => charFrom(SCRIPTS[pick(Object.keys(SCRIPTS))])),
  () => { const s = pick(Object.keys(SCRIPTS)); return times(int(1, 30), () => charFrom(SCRIPTS[s])); },
  () => times(int(1, 4), () => pick(ZWJ)),
  () => charFrom(SCRIPTS.latin) + times(int(1, 4), () => String.fromCodePoint(int(0x300, 0x36f))),
  () => times(int(1, 5), () => String.fromCodePoint(pick([int(0, 0x1f), 0x7f, int(0x80, 0x9f)]))),
  () => times(int(1, 40), () => pick(WS)),
  () => pick([' ', '\n', '\t']).repeat(int(1, 80)),
  () => pick(SPECIAL),
  () => pick(SPECIAL) + pick(WORDS) + pick(SPECIAL),
  () => times(int(1, 8), () => pick(WORDS) + pick([' ', ' ', ' ', ', ', '. ', '\n', ''])),
  () => pick(['a', 'x', 'z', 'ab', 'abc', '哈', 'ñ', '-', '=', '0']).repeat(int(50, 600)),
  () => times(int(100, 1500), () => charFrom(SCRIPTS.latin)),
  () => times(int(1, 300), () => String(int(0, 9))),
  () => String(int(0, 1e9)) + pick(['.', ',', '/', ':', 'e-', '']) + String(int(0, 99999)),
  () => pick(CODE),
  () => times(int(1, 6), () => pick(CODE) + '\n'),
  () => String.fromCodePoint(pick([0xfffd, 0xfeff, 0xfffe, 0xffff, 0x10ffff, 0xe000, 0x1f3fb])),
  () => '',
];

function validString() {
  return times(int(1, 8), () => pick(FRAGMENTS)());
}

// Bytes: valid fragments with broken sequences spliced in.
const BAD = [[0x80], [0xbf], [0xc0, 0x80], [0xc1, 0xbf], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80], [0xf5], [0xff], [0xfe], [0xe4, 0xb8], [0xf0, 0x9f, 0x98], [0xc3],
  [0xe2, 0x82, 0x28], [0xf0, 0x28, 0x8c, 0xbc], [0xf8, 0x88, 0x80, 0x80, 0x80]];

function invalidBytes() {
  const parts = [];
  for (let i = int(1, 6); i > 0; i--) {
    parts.push(Buffer.from(pick(FRAGMENTS)(), 'utf8'));
    parts.push(Buffer.from(rnd() < 0.7 ? pick(BAD) : times(int(1, 6), () => String.fromCharCode(int(0x80, 0xff))), rnd() < 0.7 ? undefined : 'latin1'));
  }
  return { hex: Buffer.concat(parts).toString('hex') };
}

function main() {
  const [mode, count = mode === 'valid' ? '10000' : '1000', seed = '20240601'] = process.argv.slice(2);
  if (mode !== 'valid' && mode !== 'invalid') {
    console.error('usage: gen_strings.js valid|invalid [count] [seed]');
    process.exit(2);
  }
  rnd = mulberry32(Number(seed));
  const out = [];
  for (let i = 0; i < Number(count); i++) out.push(JSON.stringify(mode === 'valid' ? validString() : invalidBytes()));
  process.stdout.write(out.join('\n') + '\n');
}

main();

// Rewrites docs/configuration.md's settings and error tables from the code
// (test/docs.test.ts fails when they differ). Run after `npm run build`:
//   node scripts/readme-tables.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { OPTION_SPECS, showDuration } from '@warren/gateway';
import { ERROR_CODES } from '@warren/protocol';

const shown = (s) => {
  if (s.default === undefined) return s.defaultText;
  if (s.kind === 'duration') return `\`${showDuration(s.default)}\``;
  if (s.kind === 'bytes') return `\`${s.default % (1024 * 1024) === 0 ? `${s.default / 1024 / 1024}mb` : `${s.default / 1024}kb`}\``;
  return `\`${s.default}\``;
};
const config = OPTION_SPECS.map((s) => `| \`${s.flag}\` | \`${s.env}\` | ${shown(s)} | ${s.description} |`).join('\n');
const errors = Object.entries(ERROR_CODES).map(([code, v]) => `| \`${code}\` | ${v.status ?? '—'} | ${v.description} |`).join('\n');

const file = new URL('../docs/configuration.md', import.meta.url);
let text = readFileSync(file, 'utf8');
text = text.replace(/(\| Flag \| Variable \| Default \| Meaning \|\n\|---\|---\|---\|---\|\n)(\|.*\|\n)+/, (_, head) => `${head}${config}\n`);
text = text.replace(/(\| Code \| Status \| Meaning \|\n\|---\|---\|---\|\n)(\|.*\|\n)+/, (_, head) => `${head}${errors}\n`);
writeFileSync(file, text);

// Rewrites the settings and error tables of docs/configuration.md from the code
// (test/docs.test.ts fails when they differ). Run after `npm run build`:
//   node scripts/readme-tables.mjs
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OPTION_SPECS, showDuration } from '@warren/gateway';
import { ERROR_CODES } from '@warren/protocol';

/** The file that holds both tables. */
export const TABLES_FILE = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));

const shown = (s) => {
  if (s.default === undefined) return s.defaultText;
  if (s.kind === 'duration') return `\`${showDuration(s.default)}\``;
  if (s.kind === 'bytes') return `\`${s.default % (1024 * 1024) === 0 ? `${s.default / 1024 / 1024}mb` : `${s.default / 1024}kb`}\``;
  return `\`${s.default}\``;
};

const TABLES = [
  {
    name: 'settings table',
    head: /(\| Flag \| Variable \| Default \| Meaning \|\n\|---\|---\|---\|---\|\n)(\|.*\|\n)+/,
    rows: () => OPTION_SPECS.map((s) => `| \`${s.flag}\` | \`${s.env}\` | ${shown(s)} | ${s.description} |`).join('\n'),
  },
  {
    name: 'error table',
    head: /(\| Code \| Status \| Meaning \|\n\|---\|---\|---\|\n)(\|.*\|\n)+/,
    rows: () =>
      Object.entries(ERROR_CODES)
        .map(([code, v]) => `| \`${code}\` | ${v.status ?? '—'} | ${v.description} |`)
        .join('\n'),
  },
];

/** `text` with both tables rewritten from the code; throws when a table is missing, so a moved table is never skipped. */
export function withTables(text) {
  let out = text;
  for (const table of TABLES) {
    if (!table.head.test(out)) throw new Error(`no ${table.name} (its header row and at least one row) to rewrite`);
    out = out.replace(table.head, (_, head) => `${head}${table.rows()}\n`);
  }
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  writeFileSync(TABLES_FILE, withTables(readFileSync(TABLES_FILE, 'utf8')));
}

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  CLIENT_FRAMES,
  ClientFrameError,
  ERROR_CODES,
  parseClientFrame,
  type ErrorFrame,
  parseServerFrame,
  SERVER_FRAMES,
} from '@warren/protocol';
import { ROOT } from '../support/index.js';

const DOC = readFileSync(join(ROOT, 'docs', 'protocol.md'), 'utf8');

/** The text under `heading` up to the next heading of the same or a higher level. */
function section(text: string, heading: string): string {
  const level = heading.match(/^#+/)![0].length;
  const lines = text.split('\n');
  const start = lines.indexOf(heading);
  assert.notEqual(start, -1, `docs/protocol.md has "${heading}"`);
  const end = lines.findIndex((line, i) => i > start && /^#+ /.test(line) && line.match(/^#+/)![0].length <= level);
  return lines.slice(start + 1, end === -1 ? undefined : end).join('\n');
}

/** The first table of `text` whose header starts with `first`: one array of cells per row. */
function table(text: string, first: string): string[][] {
  const lines = text.split('\n');
  const header = lines.findIndex((line) => line.startsWith(`| ${first} |`));
  assert.notEqual(header, -1, `a table headed "${first}"`);
  const rows: string[][] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(
      line
        .slice(1, -1)
        .split(' | ')
        .map((cell) => cell.trim()),
    );
  }
  return rows;
}

/** A frame table as `{ type: { field: 'required' | 'optional' } }`. */
function frames(rows: string[][]): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const [type, fields] of rows) {
    const name = type!.match(/^`([a-z]+)`$/)?.[1];
    assert.ok(name !== undefined, `a frame type in backquotes: ${type}`);
    assert.ok(!(name in out), `${name} listed once`);
    out[name] = {};
    for (const field of fields!.split(', ')) {
      const m = field.match(/^`([A-Za-z]+)(\?)?`$/);
      assert.ok(m !== null, `${name}: a field in backquotes: ${field}`);
      out[name][m[1]!] = m[2] === '?' ? 'optional' : 'required';
    }
  }
  return out;
}

describe('docs/protocol.md, "## Frames"', () => {
  const frameDoc = section(DOC, '## Frames');

  it('lists every client frame type with its fields, and nothing else', () => {
    assert.deepEqual(frames(table(section(frameDoc, '### Client → gateway'), '`type`')), CLIENT_FRAMES);
  });

  it('lists every server frame type with its fields, and nothing else', () => {
    assert.deepEqual(frames(table(section(frameDoc, '### Gateway → client'), '`type`')), SERVER_FRAMES);
  });

  it('names only real error codes for refused client frames', () => {
    const codes = table(section(frameDoc, '### Client → gateway'), 'Code').map(([code]) => code!.replace(/`/g, ''));
    assert.deepEqual(codes, ['INVALID_FRAME', 'INVALID_CHANNEL', 'INVALID_PATTERN', 'INVALID_MESSAGE_ID', 'INVALID_REQUEST']);
    for (const code of codes) assert.ok(code in ERROR_CODES, code);
  });

  it('gives examples that parse as what they claim to be, and refusals the parser makes', () => {
    const lines = frameDoc.split('\n').filter((line) => /^[→←] /.test(line));
    assert.ok(lines.some((l) => l.startsWith('→')) && lines.some((l) => l.startsWith('←')));
    lines.forEach((line, i) => {
      const text = line.slice(2);
      if (line.startsWith('←')) {
        assert.deepEqual(parseServerFrame(text), JSON.parse(text), line);
        return;
      }
      const answer = lines[i + 1] === undefined ? undefined : (JSON.parse(lines[i + 1]!.slice(2)) as { type: string });
      if (answer?.type !== 'error') {
        assert.deepEqual(parseClientFrame(text), JSON.parse(text), line);
        return;
      }
      // A client frame answered with an error: the parser refuses it so.
      assert.throws(
        () => parseClientFrame(text),
        (err: unknown) => {
          assert.ok(err instanceof ClientFrameError);
          const frame: ErrorFrame = {
            type: 'error',
            ...(err.id === undefined ? {} : { id: err.id }),
            code: err.code,
            message: err.message,
            ...(err.channel === undefined ? {} : { channel: err.channel }),
          };
          assert.deepEqual(frame, answer, line);
          return true;
        },
      );
    });
  });
});

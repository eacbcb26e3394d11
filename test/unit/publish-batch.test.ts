import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Returns, WarrenError } from '@warren/protocol';
import { parseBatch } from '#gateway/publish-endpoint.js';

const limits = { maxMessageBytes: 100, batchMaxMessages: 3, batchMaxBytes: 1000 };
const lines = (...xs: string[]): Buffer => Buffer.from(xs.join('\n'));

function refuses(body: Buffer, code: string, message: RegExp): void {
  assert.throws(
    () => parseBatch(body, limits),
    (err: unknown) => err instanceof WarrenError && err.code === code && message.test(err.message),
  );
}

describe('publish batches', () => {
  it('reads one message a line: text, JSON, base64 bytes, overrides; blank lines and CRLF', () => {
    const entries = parseBatch(
      lines(
        '{"channel":"/a","data":"hi","id":"m-1","event":"greet"}',
        '',
        '{"channels":["/a","/b","/a"],"data":{"n":1}}\r',
        '{"channel":"/c","data":"AAEC","encoding":"base64","contentType":"image/x-test"}',
      ),
      limits,
    );
    assert.equal(entries.length, 3);
    assert.deepEqual(entries[0]!.channels, ['/a']);
    assert.equal(entries[0]!.message.body.toString(), 'hi');
    assert.equal(entries[0]!.message.contentType, 'text/plain; charset=utf-8');
    assert.equal(entries[0]!.message.id, 'm-1');
    assert.equal(entries[0]!.message.event, 'greet');
    assert.deepEqual(entries[1]!.channels, ['/a', '/b']);
    assert.equal(entries[1]!.message.body.toString(), '{"n":1}');
    assert.equal(entries[1]!.message.contentType, 'application/json');
    assert.deepEqual([...entries[2]!.message.body], [0, 1, 2]);
    assert.equal(entries[2]!.message.contentType, 'image/x-test');
  });

  it('names the line of what it refuses, counting blank lines', () => {
    refuses(lines('{"channel":"/a","data":1}', '', '{"channel":"/a"'), 'INVALID_BATCH', /^line 3: not JSON/);
    refuses(lines('"just a string"'), 'INVALID_BATCH', /^line 1: not a JSON object/);
    refuses(lines('{"channel":"/a","data":1,"extra":true}'), 'INVALID_BATCH', /^line 1: unknown field "extra"/);
    refuses(lines('{"data":1}'), 'INVALID_BATCH', /^line 1: give either/);
    refuses(lines('{"channels":"/a","data":1}'), 'INVALID_BATCH', /^line 1: "channel" is a string/);
    refuses(lines('{"channel":"/a","data":"A","encoding":"base64"}'), 'INVALID_BATCH', /^line 1: "data" is not base64/);
    refuses(lines('{"channel":"/a","data":5,"encoding":"base64"}'), 'INVALID_BATCH', /^line 1: "data" is not base64/);
    refuses(lines('{"channel":"a","data":1}'), 'INVALID_CHANNEL', /^line 1: /);
    refuses(lines('{"channel":"/a","data":1,"contentType":"not a type"}'), 'INVALID_CONTENT_TYPE', /^line 1: /);
    refuses(lines(`{"channel":"/a","data":"${'x'.repeat(101)}"}`), 'MESSAGE_TOO_LARGE', /^line 1: the message is 101 bytes/);
    refuses(lines('', ' '), 'INVALID_BATCH', /no message/);
    refuses(lines(...Array.from({ length: 4 }, () => '{"channel":"/a","data":1}')), 'BATCH_TOO_LARGE', /at most 3 messages/);
  });
});

describe('Returns', () => {
  it('matches a return to the next confirm of the same routing key and message id, once', () => {
    const returns = new Returns();
    assert.equal(returns.take('/a', 'm-1'), false);
    returns.add('/a', 'm-1');
    assert.equal(returns.take('/b', 'm-1'), false, 'another key');
    assert.equal(returns.take('/a', 'm-2'), false, 'another id');
    assert.equal(returns.take('/a', 'm-1'), true);
    assert.equal(returns.take('/a', 'm-1'), false, 'taken once');
    returns.add('/a', 'm-1');
    returns.add('/a', 'm-1');
    assert.equal(returns.take('/a', 'm-1'), true);
    assert.equal(returns.take('/a', 'm-1'), true);
    assert.equal(returns.size, 0);
    returns.add('/a', undefined);
    returns.clear();
    assert.equal(returns.size, 0);
  });
});

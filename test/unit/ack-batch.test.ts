// Acknowledgements batched per AMQP channel (packages/gateway/src/broker/ack-batch.ts):
// which frames go out, checked against a model of what RabbitMQ settles.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckBatch } from '#gateway/broker/ack-batch.js';

/** Records the frames, and settles like RabbitMQ: an ack of an unknown (already settled) tag is a channel error. */
function channel() {
  const outstanding = new Set<number>();
  const frames: string[] = [];
  const batch = new AckBatch({
    ack(tag, multiple) {
      frames.push(multiple ? `ack≤${tag}` : `ack ${tag}`);
      if (!outstanding.has(tag)) throw new Error(`PRECONDITION_FAILED - unknown delivery tag ${tag}`);
      if (!multiple) outstanding.delete(tag);
      else {
        for (const t of outstanding) if (t <= tag) outstanding.delete(t);
      }
    },
    nack(tag) {
      frames.push(`nack ${tag}`);
      if (!outstanding.has(tag)) throw new Error(`PRECONDITION_FAILED - unknown delivery tag ${tag}`);
      outstanding.delete(tag);
    },
  });
  let next = 1;
  const deliver = (n: number): number[] => {
    const tags: number[] = [];
    for (let i = 0; i < n; i++) {
      outstanding.add(next);
      batch.register(next);
      tags.push(next++);
    }
    return tags;
  };
  return { batch, frames, outstanding, deliver };
}

describe('AckBatch', () => {
  it('sends the acks of one turn over consecutive deliveries as one multiple ack', () => {
    const { batch, frames, outstanding, deliver } = channel();
    for (const tag of deliver(100)) assert.equal(batch.ack(tag), true, 'waits for the flush');
    assert.deepEqual(frames, [], 'nothing before the end of the turn');
    batch.flush();
    assert.deepEqual(frames, ['ack≤100']);
    assert.equal(outstanding.size, 0);
    assert.equal(batch.frames, 1);
  });

  it('never settles a delivery still open: acks past it go one by one, and the run waits for it', () => {
    const { batch, frames, outstanding, deliver } = channel();
    deliver(6);
    for (const tag of [1, 2, 4, 6]) batch.ack(tag);
    batch.flush();
    assert.deepEqual(frames, ['ack≤2', 'ack 4', 'ack 6'], 'delivery 3 is open: nothing covers it');
    assert.deepEqual([...outstanding].sort(), [3, 5]);
    batch.ack(3);
    batch.ack(5);
    batch.flush();
    assert.deepEqual(frames.slice(3), ['ack≤5'], '3 and 5 in one frame; 4 was settled already');
    assert.equal(outstanding.size, 0);
  });

  it('sends requeues at once and lets a later multiple ack pass over them', () => {
    const { batch, frames, outstanding, deliver } = channel();
    deliver(4);
    batch.nack(2);
    assert.deepEqual(frames, ['nack 2'], 'a requeue does not wait for the turn');
    for (const tag of [1, 3, 4]) batch.ack(tag);
    batch.flush();
    assert.deepEqual(frames, ['nack 2', 'ack≤4']);
    assert.equal(outstanding.size, 0);
  });

  it('sends a single ack for a run of one', () => {
    const { batch, frames, deliver } = channel();
    deliver(3);
    batch.ack(1);
    batch.flush();
    batch.ack(3);
    batch.flush();
    batch.ack(2);
    batch.flush();
    assert.deepEqual(frames, ['ack 1', 'ack 3', 'ack 2']);
  });

  it('stops batching on a channel whose tags are not consecutive', () => {
    const { batch, frames, outstanding, deliver } = channel();
    deliver(2);
    outstanding.add(3); // delivery 3 never reached the batch
    batch.register(4);
    outstanding.add(4);
    assert.equal(batch.ack(4), false, 'sent at once, on its own');
    assert.equal(batch.ack(1), false);
    assert.deepEqual(frames, ['ack 4', 'ack 1']);
    assert.ok(outstanding.has(3), 'the unknown delivery was not settled by a multiple ack');
  });

  it('keeps a long channel life bounded: settled deliveries are dropped', () => {
    const { batch, outstanding, deliver } = channel();
    for (let round = 0; round < 50; round++) {
      const tags = deliver(100);
      for (const tag of tags.slice(1)) batch.ack(tag);
      batch.flush();
      batch.ack(tags[0]!);
      batch.flush();
    }
    assert.equal(outstanding.size, 0);
    assert.ok((batch as unknown as { states: number[] }).states.length <= 1024 + 100, 'the state array was compacted');
  });
});

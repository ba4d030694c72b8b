/**
 * Goal: a listener that cannot keep up is cut off with an error event and disconnected, the
 * agent's memory for it stays bounded while it lags, and the other listeners of the same
 * subscription get every change, unaffected. Likewise for an update stream.
 *
 * Method: an in-process agent with `max_listener_lag = 50`. Two listeners on one subscription:
 * one reads everything, the other stops reading (its socket is paused, so the kernel buffers
 * fill and the agent's writes stop draining). Rounds of 30 changes of 16 KiB values each are
 * written and matched until the agent cuts the slow listener (lag over 50 changes). Throughout,
 * the agent's own buffers for listeners (`patina_subs_listener_buffered_bytes`) stay under a
 * bound independent of how much was written. Assertions are on metrics and events, not time.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { SUBS_STREAM_CHUNK_BYTES } from '../../src/config/defaults.ts'
import {
  expected,
  isObj,
  metric,
  openStream,
  openSubsApi,
  readUntil,
  StreamState,
  write,
  type SubsHarness,
} from './harness.ts'

const VALUE = 'x'.repeat(16 * 1024)
const ROUNDS_MAX = 200
/** What the agent may hold for one listener: a chunk in the stream, one in the socket buffer. */
const BUFFER_BOUND = 4 * SUBS_STREAM_CHUNK_BYTES

let h: SubsHarness

before(async () => {
  h = await openSubsApi({ subs: { max_listener_lag: 50 } })
  write(
    h,
    ...Array.from({ length: 10 }, (_, i) => `INSERT INTO t (id, v) VALUES (${i + 1}, 'start')`),
  )
})

after(async () => {
  await h.close()
})

describe('subs - slow listeners', () => {
  it('subs - a listener that stops reading is cut off; memory stays bounded; others get everything', async () => {
    const sql = 'SELECT id, v FROM t'
    const fast = await openStream(h.base, 'POST', '/v1/subscriptions', sql)
    const slow = await openStream(h.base, 'POST', '/v1/subscriptions', sql)
    const fastState = new StreamState()
    await readUntil(fast, fastState, 0)
    await readUntil(slow, new StreamState(), 0)
    slow.res.pause()

    let maxBuffered = 0
    let round = 0
    let counter = 0
    while ((await metric(h, 'patina_subs_listeners_cut_total', 'reason="slow"')) === undefined) {
      assert.ok(round++ < ROUNDS_MAX, `the slow listener was not cut after ${ROUNDS_MAX} rounds`)
      // Three transactions of ten changed rows each: 30 changes per round, under the cap.
      for (let i = 0; i < 3; i++) write(h, ['UPDATE t SET v = ? || id', [`${counter++}${VALUE}`]])
      await h.subs.flush()
      await readUntil(fast, fastState, h.subs.list()[0]?.changeId ?? 0)
      maxBuffered = Math.max(
        maxBuffered,
        (await metric(h, 'patina_subs_listener_buffered_bytes')) ?? 0,
      )
    }
    assert.ok(counter * 10 * VALUE.length > 4 * 1024 * 1024, 'more was written than sockets hold')
    assert.ok(
      maxBuffered <= BUFFER_BOUND,
      `agent-side buffers stayed bounded: ${maxBuffered} bytes`,
    )

    // The slow listener is disconnected (after the grace for its error event) and costs
    // nothing more: one listener left, the fast one, which keeps getting everything.
    const deadline = Date.now() + 5000
    while ((await metric(h, 'patina_subs_listeners', 'kind="subscription"')) !== 1) {
      assert.ok(Date.now() < deadline, 'the cut listener was released')
      await new Promise((r) => setTimeout(r, 20))
    }
    write(h, "UPDATE t SET v = 'after' WHERE id = 1")
    await h.subs.flush()
    await readUntil(fast, fastState, h.subs.list()[0]?.changeId ?? 0)
    assert.deepEqual(fastState.sorted(), expected(h, sql))
    assert.equal((await metric(h, 'patina_subs_listener_lag_changes')) ?? 0, 0)

    // The slow client, reading again, finds its connection closed by the agent; if the error
    // event made it into the socket before that, it is the last thing received.
    slow.res.resume()
    await slow.ended
    const last = slow.pending.at(-1) ?? null
    if (isObj(last) && typeof last.error === 'string') {
      assert.match(last.error, /fell behind by more than 50 changes.*resume with from=/)
    }
    fast.close()
  })

  it('subs - one change set larger than max_listener_lag does not cut a listener that reads', async () => {
    const sql = 'SELECT id FROM t WHERE id > 1000'
    const s = await openStream(h.base, 'POST', '/v1/subscriptions', sql)
    const state = new StreamState()
    await readUntil(s, state, 0)
    const cutBefore = (await metric(h, 'patina_subs_listeners_cut_total', 'reason="slow"')) ?? 0
    write(h, ...Array.from({ length: 200 }, (_, i) => `INSERT INTO t (id) VALUES (${1001 + i})`))
    await h.subs.flush()
    await readUntil(s, state, 200)
    write(h, 'DELETE FROM t WHERE id = 1001')
    await h.subs.flush()
    await readUntil(s, state, 201)
    assert.deepEqual(state.sorted(), expected(h, sql))
    assert.equal(
      (await metric(h, 'patina_subs_listeners_cut_total', 'reason="slow"')) ?? 0,
      cutBefore,
    )
    s.close()
  })

  it('subs - an update stream that stops reading is cut off; others are unaffected', async () => {
    const fast = await openStream(h.base, 'POST', '/v1/updates/u')
    const slow = await openStream(h.base, 'POST', '/v1/updates/u')
    slow.res.pause()
    // Long keys make long notifications: socket buffers fill in fewer rounds.
    const longKey = 'k'.repeat(16 * 1024)
    let round = 0
    while ((await metric(h, 'patina_subs_listeners', 'kind="updates"')) === 2) {
      assert.ok(round++ < ROUNDS_MAX, 'the slow update stream was not cut')
      write(
        h,
        ...Array.from({ length: 40 }, (_, i): [string, bigint[]] => [
          `INSERT INTO u (k, j) VALUES ('${round}-${i}-${longKey}', ?)`,
          [BigInt(i)],
        ]),
      )
      await h.subs.flush()
      for (let i = 0; i < 40; i++) assert.ok(isObj(await fast.next()))
      const queued = (await metric(h, 'patina_subs_updates_buffered_notifications')) ?? 0
      assert.ok(queued <= 50, `update stream queues stay under the cap: ${queued}`)
    }
    assert.ok(((await metric(h, 'patina_subs_listeners_cut_total', 'reason="slow"')) ?? 0) >= 2)
    slow.res.resume()
    await slow.ended
    write(h, "INSERT INTO u (k, j) VALUES ('last', 1)")
    await h.subs.flush()
    assert.deepEqual(await fast.next(), { notify: ['update', ['last', 1n]] })
    fast.close()
  })
})

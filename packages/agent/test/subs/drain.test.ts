/**
 * Goal: a listener whose connection stops draining leaves the live path without losing
 * anything: once it reads again it catches up from the subscription's log and gets every
 * change, in order, while the other listeners of the subscription keep getting live events.
 *
 * Method: an in-process agent with a high `max_listener_lag` (nobody is cut). Two listeners of
 * one subscription; one stops reading (its response is paused) while rounds of changes with
 * 16 KiB values are written, until the agent reports it behind (its writes stopped: the lag
 * gauge is above 0), and a few rounds more. The other reads to the head after every round.
 * Then the paused one reads again and must reach the last change id with contiguous ids and
 * the query's exact result.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import {
  expected,
  metric,
  openStream,
  openSubsApi,
  readUntil,
  StreamState,
  write,
  type SubsHarness,
} from './harness.ts'

const VALUE = 'y'.repeat(16 * 1024)
const ROUNDS_MAX = 200
/** Rounds written after the paused listener was seen behind. */
const ROUNDS_BEHIND = 5

let h: SubsHarness

before(async () => {
  h = await openSubsApi({ subs: { max_listener_lag: 100_000 } })
  write(h, ...Array.from({ length: 10 }, (_, i) => `INSERT INTO t (id, v) VALUES (${i + 1}, 's')`))
})

after(async () => {
  await h.close()
})

describe('subs - draining', () => {
  it('subs - a listener whose connection stops draining catches up from the log after drain', async () => {
    const sql = 'SELECT id, v FROM t'
    const live = await openStream(h.base, 'POST', '/v1/subscriptions', sql)
    const paused = await openStream(h.base, 'POST', '/v1/subscriptions', sql)
    const liveState = new StreamState()
    const pausedState = new StreamState()
    await readUntil(live, liveState, 0)
    await readUntil(paused, pausedState, 0)
    paused.res.pause()

    const lastChange = (): number => h.subs.list()[0]?.changeId ?? 0
    let round = 0
    let behind = -1
    let counter = 0
    while (behind < 0 || round < behind + ROUNDS_BEHIND) {
      assert.ok(round++ < ROUNDS_MAX, `the paused listener was not behind after ${ROUNDS_MAX}`)
      write(h, ['UPDATE t SET v = ? || id', [`${counter++}${VALUE}`]])
      await h.subs.flush()
      await readUntil(live, liveState, lastChange())
      if (behind < 0 && ((await metric(h, 'patina_subs_listener_lag_changes')) ?? 0) > 0) {
        behind = round
      }
    }
    assert.equal(await metric(h, 'patina_subs_listeners_cut_total', 'reason="slow"'), undefined)

    paused.res.resume()
    await readUntil(paused, pausedState, lastChange(), 20_000)
    assert.equal(pausedState.changeId, lastChange())
    assert.deepEqual(pausedState.sorted(), expected(h, sql))
    assert.deepEqual(liveState.sorted(), expected(h, sql))

    // Caught up, it is live again: the next change reaches it like the other.
    write(h, "UPDATE t SET v = 'last' WHERE id = 1")
    await h.subs.flush()
    await readUntil(paused, pausedState, lastChange())
    await readUntil(live, liveState, lastChange())
    assert.deepEqual(pausedState.sorted(), expected(h, sql))
    live.close()
    paused.close()
  })
})

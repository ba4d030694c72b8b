/**
 * Goal: a member that leaves goes from alive straight to left in every view, and stays there:
 * the leaver's own packets (whose header says "sender alive at this incarnation", the left
 * one) and its push-pull table never show it alive at its left incarnation first, packets it
 * sends after its leave gossip ran out of retransmits still say it left, and agents that stop
 * together (`patina dev --nodes 3`, then Ctrl-C) log no alive/left flapping.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { retransmitLimit } from '../../src/membership/defaults.ts'
import type { MemberInfo } from '../../src/membership/member.ts'
import { addrOf } from '../../src/sim/swim-cluster.ts'
import { formCluster } from '../sim/scenario.ts'
import { seeds, withSeed } from '../sim/seeds.ts'
import { flush, Harness, peer, SELF, update } from './harness.ts'

/** No gossip rounds, periodic push-pull or reconnects: only what a test does. */
const QUIET = { gossipIntervalMs: 0, pushPullIntervalMs: 0, reconnectIntervalMs: 0 } as const

function statesOf(changes: readonly MemberInfo[], actorId: string): string[] {
  return changes.filter((m) => m.actorId === actorId).map((m) => `${m.state}@${m.incarnation}`)
}

describe('membership - leave is final', () => {
  it('a packet from a leaver (header at its left incarnation, piggybacking left) is seen as left only', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const a = peer(1)
    h.know(a)
    const leaving = { ...a, incarnation: 1 }
    h.deliver(leaving, { type: 'gossip' }, [update(leaving, 'left')])
    assert.deepEqual(statesOf(h.changes, a.actorId), ['alive@0', 'left@1'])
    // Its later packets change nothing.
    h.deliver(leaving, { type: 'ping', seq: 9, target: SELF.actorId })
    assert.deepEqual(statesOf(h.changes, a.actorId), ['alive@0', 'left@1'])
    assert.equal(h.state(a), 'left')
  })

  it('a push-pull table from a leaver that lists itself left is seen as left only', async () => {
    const h = new Harness({ ...QUIET, bootstrap: ['10.0.0.1:7946'] })
    h.swim.start()
    const a = peer(1)
    h.know(a)
    const p = h.pushPulls[0]
    assert.ok(p)
    const leaving = { ...a, incarnation: 1 }
    h.answerPushPull(p, leaving, [update(leaving, 'left')])
    await flush()
    assert.deepEqual(statesOf(h.changes, a.actorId), ['alive@0', 'left@1'])
  })

  it('a leaver that is still answering says it left in every packet, after its gossip ran out too', () => {
    const h = new Harness({ pushPullIntervalMs: 0, reconnectIntervalMs: 0 })
    h.swim.start()
    const peers = [peer(1), peer(2)]
    h.knowResponsive(...peers)
    h.clock.advance(3000)
    void h.swim.leave()
    // More pings than the retransmit limit, during the linger time.
    const pings = retransmitLimit(4, 3) + 3
    for (let seq = 1; seq <= pings; seq++) {
      h.deliver(peers[seq % 2] as (typeof peers)[0], { type: 'ping', seq, target: SELF.actorId })
    }
    const acks = h.take().filter((s) => s.packet.body.type === 'ack')
    assert.equal(acks.length, pings)
    for (const ack of acks) {
      const own = ack.packet.updates.find((u) => u.actorId === SELF.actorId)
      assert.equal(own?.state, 'left', `ack to ${ack.to} at ${ack.atMs} ms says it left`)
      assert.equal(own.incarnation, ack.packet.sender.incarnation)
    }
    // A member that missed the leave gossip learns it from the first ack it gets.
    const last = acks.at(-1)
    assert.ok(last)
    const late = new Harness({ ...QUIET, actorId: 'ee'.repeat(16), addr: '10.0.0.254:7946' })
    late.swim.start()
    late.know({ ...last.packet.sender, incarnation: 0 })
    late.deliver(last.packet.sender, { type: 'ack', seq: 1 }, last.packet.updates)
    assert.deepEqual(statesOf(late.changes, SELF.actorId), ['alive@0', 'left@1'])
  })

  for (const seed of seeds(9400, 20, 200)) {
    it(`three members that leave at once see each other go alive -> left, no flapping (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 3
        const { sim, cluster } = await formCluster(seed, n)
        const from = cluster.changes.length
        const leaving = cluster.addrs().map((addr) => {
          const swim = cluster.swim(addr)
          assert.ok(swim !== null, 'running')
          return swim.leave()
        })
        await sim.runFor(2000)
        await Promise.all(leaving)
        for (let i = 0; i < n; i++) {
          const actor = cluster.actorOf(addrOf(i))
          for (let j = 0; j < n; j++) {
            const seen = cluster.changes
              .slice(from)
              .filter((e) => e.observer === addrOf(j) && e.member.actorId === actor)
              .map((e) => `${e.member.state}@${e.member.incarnation}`)
            assert.ok(
              seen.length <= 1 && seen.every((s) => s === 'left@1'),
              `${addrOf(j)} saw ${addrOf(i)}: ${seen.join(', ')}`,
            )
          }
        }
      })
    })
  }

  for (const seed of seeds(9500, 10, 100)) {
    it(`a leaver is never alive again in the view of the members that stay (seed ${seed})`, async () => {
      await withSeed(seed, async () => {
        const n = 5
        const { sim, cluster } = await formCluster(seed, n, { link: { loss: 0.05 } })
        const leaver = addrOf(1 + sim.random.int(n - 1))
        const actor = cluster.actorOf(leaver)
        const from = cluster.changes.length
        const swim = cluster.swim(leaver)
        assert.ok(swim !== null, 'running')
        const left = swim.leave()
        await sim.runFor(2000)
        await left
        cluster.host(leaver).crash()
        await sim.runFor(20_000)
        for (const a of cluster.live()) {
          const seen = cluster.changes
            .slice(from)
            .filter((e) => e.observer === a && e.member.actorId === actor)
            .map((e) => `${e.member.state}@${e.member.incarnation}`)
          assert.deepEqual(seen, ['left@1'], `${a} saw the leaver as ${seen.join(', ')}`)
        }
      })
    })
  }
})

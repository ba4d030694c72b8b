/**
 * Goal: each rule of the SWIM + Lifeguard state machine, one at a time, on a hand-driven clock
 * with fake peers whose packets the test writes: probes, indirect probes, nacks and local
 * health, suspicion timeouts, refutation, the buddy system, identity (epochs), cluster ids,
 * packet bounds, retransmit counts, join backoff, leave, push-pull merge and forgetting.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { encodePacket } from '../../src/membership/codec.ts'
import { REMOVE_DOWN_AFTER_MS, retransmitLimit } from '../../src/membership/defaults.ts'
import { suspicionBounds, suspicionTimeoutMs } from '../../src/membership/suspicion.ts'
import { CLUSTER, flush, Harness, peer, SELF, update, type Sent } from './harness.ts'

/** No gossip rounds, periodic push-pull or reconnects: only what a test does. */
const QUIET = { gossipIntervalMs: 0, pushPullIntervalMs: 0, reconnectIntervalMs: 0 } as const

function pings(sent: readonly Sent[]): (Sent & { packet: { body: { type: 'ping' } } })[] {
  return sent.filter((s) => s.packet.body.type === 'ping') as never
}

/** Advances until the Swim sends a ping (at most `maxMs`); returns it. */
function nextPing(h: Harness, maxMs = 20_000): { to: string; seq: number; sent: Sent } {
  for (let t = 0; t < maxMs; t++) {
    const found = pings(h.outbox)
    const first = found[0]
    if (first !== undefined) {
      h.outbox.splice(h.outbox.indexOf(first), 1)
      return { to: first.to, seq: first.packet.body.seq, sent: first }
    }
    h.clock.advance(1)
  }
  throw new Error('no ping')
}

describe('swim - probing', () => {
  it('answers a ping with an ack to the sender, with piggybacked updates', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const a = peer(1)
    h.deliver(a, { type: 'ping', seq: 77, target: SELF.actorId })
    const out = h.take()
    assert.equal(out.length, 1)
    const ack = out[0] as Sent
    assert.equal(ack.to, a.addr)
    assert.deepEqual(ack.packet.body, { type: 'ack', seq: 77 })
    assert.equal(ack.packet.sender.actorId, SELF.actorId)
    assert.ok(ack.packet.updates.some((u) => u.actorId === a.actorId && u.state === 'alive'))
  })

  it('does not answer a ping meant for another actor', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    h.deliver(peer(1), { type: 'ping', seq: 1, target: peer(2).actorId })
    assert.equal(pings(h.take()).length, 0)
    assert.equal(h.swim.stats().packetsDropped.notForUs, 1)
  })

  it('a directly acked probe records a smoothed RTT and sends no ping-req', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const a = peer(1)
    h.know(a)
    h.take()
    const ping = nextPing(h)
    assert.equal(ping.to, a.addr)
    h.clock.advance(30)
    h.deliver(a, { type: 'ack', seq: ping.seq })
    const rtt1 = h.clock.now() - ping.sent.atMs
    assert.equal(h.swim.member(a.actorId)?.rttMs, rtt1)
    h.clock.advance(1000)
    assert.ok(!h.outbox.some((s) => s.packet.body.type === 'ping-req'))
    const second = nextPing(h)
    h.clock.advance(10)
    h.deliver(a, { type: 'ack', seq: second.seq })
    const rtt2 = h.clock.now() - second.sent.atMs
    assert.equal(h.swim.member(a.actorId)?.rttMs, rtt1 + 0.125 * (rtt2 - rtt1))
    assert.equal(h.swim.stats().probesFailed, 0)
  })

  it('without an ack: ping-req to k alive helpers after the probe timeout; a relayed ack is a success', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const peers = [peer(1), peer(2), peer(3), peer(4), peer(5)]
    h.know(...peers)
    h.take()
    const ping = nextPing(h)
    h.clock.advance(499)
    assert.equal(h.take().length, 0)
    h.clock.advance(1)
    const reqs = h.take().filter((s) => s.packet.body.type === 'ping-req')
    assert.equal(reqs.length, 3)
    for (const r of reqs) {
      assert.notEqual(r.to, ping.to)
      assert.deepEqual(r.packet.body, {
        type: 'ping-req',
        seq: ping.seq,
        target: peers.find((p) => p.addr === ping.to)?.actorId,
        targetAddr: ping.to,
        nack: true,
      })
    }
    const helper = peers.find((p) => p.addr === (reqs[0] as Sent).to)
    assert.ok(helper)
    h.deliver(helper, { type: 'ack', seq: ping.seq })
    h.clock.advance(500)
    const s = h.swim.stats()
    assert.equal(s.probesFailed, 0)
    assert.equal(s.indirectProbesSent, 3)
    assert.equal(s.members.suspect, 0)
    // A relayed ack says nothing about the RTT to the target.
    assert.equal(h.swim.member(peers.find((p) => p.addr === ping.to)?.actorId ?? '')?.rttMs, null)
  })
})

describe('swim - Lifeguard local health', () => {
  it('a failed probe raises LHM by the missing nacks and makes the target suspect', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const peers = [peer(1), peer(2), peer(3), peer(4)]
    h.know(...peers)
    h.take()
    const ping = nextPing(h)
    h.clock.advance(500)
    const reqs = h.take().filter((s) => s.packet.body.type === 'ping-req')
    assert.equal(reqs.length, 3)
    const nacker = peers.find((p) => p.addr === (reqs[0] as Sent).to)
    assert.ok(nacker)
    h.deliver(nacker, { type: 'nack', seq: ping.seq })
    h.clock.advance(500)
    const s = h.swim.stats()
    assert.equal(s.probesFailed, 1)
    assert.equal(s.nacksReceived, 1)
    assert.equal(s.localHealth, 2, '3 nacks expected, 1 received')
    assert.equal(s.suspicionsRaised, 1)
    const target = peers.find((p) => p.addr === ping.to)
    assert.ok(target)
    assert.equal(h.state(target), 'suspect')
  })

  it('all nacks received: the target is suspect but local health does not move', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const peers = [peer(1), peer(2), peer(3), peer(4)]
    h.know(...peers)
    h.take()
    const ping = nextPing(h)
    h.clock.advance(500)
    for (const r of h.take().filter((s) => s.packet.body.type === 'ping-req')) {
      const helper = peers.find((p) => p.addr === r.to)
      assert.ok(helper)
      h.deliver(helper, { type: 'nack', seq: ping.seq })
    }
    h.clock.advance(500)
    assert.equal(h.swim.localHealth(), 0)
    assert.equal(h.swim.stats().members.suspect, 1)
  })

  it('with nacks off, helpers are not asked for nacks and a failed probe costs exactly 1', () => {
    const h = new Harness({ ...QUIET, nacks: false })
    h.swim.start()
    h.know(peer(1), peer(2), peer(3), peer(4))
    h.take()
    nextPing(h)
    h.clock.advance(500)
    const reqs = h.take().filter((s) => s.packet.body.type === 'ping-req')
    assert.equal(reqs.length, 3)
    for (const r of reqs) assert.equal((r.packet.body as { nack: boolean }).nack, false)
    h.clock.advance(500)
    assert.equal(h.swim.localHealth(), 1)
  })

  it('LHM scales the probe interval and the probe timeout; each acked probe lowers it by 1', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const silent = [peer(1), peer(2), peer(3), peer(4)]
    h.know(...silent)
    h.take()
    nextPing(h)
    h.clock.advance(1000) // fails, no nacks: LHM 3
    assert.equal(h.swim.localHealth(), 3)
    // The next probe went out at the same tick; it runs 4x longer: ping-reqs at 2000 ms.
    const second = nextPing(h, 1)
    h.take()
    h.clock.advance(1999 - (h.clock.now() - second.sent.atMs))
    assert.equal(h.take().filter((s) => s.packet.body.type === 'ping-req').length, 0)
    h.clock.advance(1)
    assert.ok(h.take().some((s) => s.packet.body.type === 'ping-req'))
    const target = silent.find((p) => p.addr === second.to)
    assert.ok(target)
    h.deliver(target, { type: 'ack', seq: second.seq })
    assert.equal(h.swim.localHealth(), 2)
    // The probe interval was fixed when the probe started: next ping at 4000 ms.
    h.clock.advance(3999 - (h.clock.now() - second.sent.atMs))
    assert.equal(pings(h.take()).length, 0)
    h.clock.advance(1)
    assert.equal(pings(h.take()).length, 1)
  })

  it('LHM never goes above localHealthMax', () => {
    const h = new Harness({ ...QUIET, localHealthMax: 4, probeIntervalMs: 100, probeTimeoutMs: 50 })
    h.swim.start()
    h.know(peer(1), peer(2), peer(3), peer(4), peer(5), peer(6))
    h.clock.advance(60_000)
    assert.equal(h.swim.localHealth(), 4)
  })
})

describe('swim - indirect probes for others', () => {
  it('relays the target ack to the requester', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const [b, c] = [peer(2), peer(3)]
    h.know(b, c)
    h.take()
    h.deliver(b, { type: 'ping-req', seq: 900, target: c.actorId, targetAddr: c.addr, nack: true })
    const ping = pings(h.take())[0]
    assert.ok(ping)
    assert.equal(ping.to, c.addr)
    h.deliver(c, { type: 'ack', seq: ping.packet.body.seq })
    const relayed = h.take()
    assert.equal(relayed.length, 1)
    const [first] = relayed
    assert.ok(first, 'relayed')
    assert.equal(first.to, b.addr)
    assert.deepEqual(first.packet.body, { type: 'ack', seq: 900 })
    h.clock.advance(600)
    assert.ok(!h.take().some((s) => s.packet.body.type === 'nack'))
  })

  it('sends a nack before the requester gives up when the target is silent (and only if asked)', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const [b, c] = [peer(2), peer(3)]
    h.know(b, c)
    h.take()
    h.deliver(b, { type: 'ping-req', seq: 901, target: c.actorId, targetAddr: c.addr, nack: true })
    h.deliver(b, { type: 'ping-req', seq: 902, target: c.actorId, targetAddr: c.addr, nack: false })
    h.take()
    // 80% of the requester's indirect window (1000 - 500 ms): 400 ms.
    h.clock.advance(399)
    assert.equal(h.take().filter((s) => s.packet.body.type === 'nack').length, 0)
    h.clock.advance(1)
    const nacks = h.take().filter((s) => s.packet.body.type === 'nack')
    assert.equal(nacks.length, 1)
    assert.deepEqual(nacks[0]?.packet.body, { type: 'nack', seq: 901 })
    assert.equal(h.swim.stats().nacksSent, 1)
  })
})

describe('swim - suspicion', () => {
  it('the timeout starts at max and shrinks with independent confirmations (memberlist formula)', () => {
    const h = new Harness({ ...QUIET, probeIntervalMs: 1000 })
    const [a, b, c, d, e] = [peer(1), peer(2), peer(3), peer(4), peer(5)]
    for (const p of [a, b, c, d, e]) h.autoAck.set(p.addr, p)
    h.swim.start()
    h.know(a, b, c, d, e)
    // n = 6: min 4 s, max 24 s, k = 2.
    const bounds = suspicionBounds(6, 4, 6, 1000)
    assert.deepEqual(bounds, { minMs: 4000, maxMs: 24_000, k: 2 })
    h.deliver(b, { type: 'gossip' }, [update(a, 'suspect', { accuser: b.actorId })])
    assert.equal(h.state(a), 'suspect')
    // a's pings: it is auto-acked, but an ack at the same incarnation does not refute.
    h.clock.advance(1000)
    h.deliver(c, { type: 'gossip' }, [update(a, 'suspect', { accuser: c.actorId })])
    // The same accuser again is no new confirmation.
    h.deliver(c, { type: 'gossip' }, [update(a, 'suspect', { accuser: c.actorId })])
    const after1 = suspicionTimeoutMs(bounds, 1)
    assert.equal(after1, 11_381)
    h.clock.advance(after1 - 1000 - 1)
    assert.equal(h.state(a), 'suspect')
    h.clock.advance(1)
    assert.equal(h.state(a), 'down')
    assert.equal(h.swim.stats().membersDeclaredDown, 1)
  })

  it('k confirmations bring it down to min (here already elapsed: down at once)', () => {
    const h = new Harness(QUIET)
    const [a, b, c, d, e] = [peer(1), peer(2), peer(3), peer(4), peer(5)]
    for (const p of [a, b, c, d, e]) h.autoAck.set(p.addr, p)
    h.swim.start()
    h.know(a, b, c, d, e)
    h.deliver(b, { type: 'gossip' }, [update(a, 'suspect', { accuser: b.actorId })])
    h.clock.advance(5000)
    h.deliver(c, { type: 'gossip' }, [update(a, 'suspect', { accuser: c.actorId })])
    assert.equal(h.state(a), 'suspect')
    h.deliver(d, { type: 'gossip' }, [update(a, 'suspect', { accuser: d.actorId })])
    h.clock.advance(0)
    assert.equal(h.state(a), 'down')
  })

  it('a refutation (alive at a higher incarnation) ends the suspicion; its timer does nothing', () => {
    const h = new Harness(QUIET)
    const [a, b] = [peer(1), peer(2)]
    h.autoAck.set(a.addr, a)
    h.autoAck.set(b.addr, b)
    h.swim.start()
    h.know(a, b)
    h.deliver(b, { type: 'gossip' }, [update(a, 'suspect', { accuser: b.actorId })])
    h.deliver(a, { type: 'gossip' }, [update({ ...a, incarnation: 1 }, 'alive')])
    assert.equal(h.state(a), 'alive')
    assert.equal(h.swim.member(a.actorId)?.incarnation, 1)
    assert.equal(h.swim.stats().suspicionsRefuted, 1)
    h.clock.advance(60_000)
    assert.equal(h.state(a), 'alive')
  })

  it('refutes a suspicion of itself: incarnation + 1 at once, LHM + 1, counted', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const a = peer(1)
    h.deliver(a, { type: 'ping', seq: 5, target: SELF.actorId }, [
      update({ ...SELF, incarnation: 0 }, 'suspect', { accuser: a.actorId }),
    ])
    const [ack] = h.take()
    assert.ok(ack)
    // The ack's header already carries the refutation, and so do its piggybacked updates.
    assert.equal(ack.packet.sender.incarnation, 1)
    assert.ok(
      ack.packet.updates.some(
        (u) => u.actorId === SELF.actorId && u.state === 'alive' && u.incarnation === 1,
      ),
    )
    const s = h.swim.stats()
    assert.equal(s.falseSuspicionRefutations, 1)
    assert.equal(s.localHealth, 1)
    assert.equal(s.incarnation, 1)
    // A suspicion of an older incarnation is stale: ignored.
    h.deliver(a, { type: 'gossip' }, [update({ ...SELF, incarnation: 0 }, 'suspect')])
    assert.equal(h.swim.stats().falseSuspicionRefutations, 1)
  })

  it('a push-pull peer reporting a member down only makes it suspect here', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const [a, b, c] = [peer(1), peer(2), peer(3)]
    h.know(a, c)
    const request = encodePacket({
      clusterId: CLUSTER,
      sender: b,
      body: { type: 'push-pull', join: false, members: [update(a, 'down'), update(c, 'alive')] },
      updates: [],
    })
    const reply = h.swim.handlePushPull(b.addr, request)
    assert.ok(reply)
    assert.equal(h.state(a), 'suspect')
    assert.equal(h.state(b), 'alive')
  })
})

describe('swim - buddy system', () => {
  for (const buddySystem of [true, false]) {
    it(`a ping to a member we suspect ${buddySystem ? 'carries' : 'does not carry'} the suspicion (buddySystem: ${buddySystem})`, () => {
      // retransmitMult 0: nothing is piggybacked from the queue, so only the buddy system can
      // put the suspicion on the ping.
      const h = new Harness({ ...QUIET, retransmitMult: 0, buddySystem })
      h.swim.start()
      const [a, b] = [peer(1), peer(2)]
      h.autoAck.set(b.addr, b)
      h.know(a, b)
      h.deliver(b, { type: 'gossip' }, [update(a, 'suspect', { accuser: b.actorId })])
      h.take()
      let ping = nextPing(h)
      if (ping.to !== a.addr) ping = nextPing(h)
      assert.equal(ping.to, a.addr)
      const carried = ping.sent.packet.updates.some(
        (u) => u.actorId === a.actorId && u.state === 'suspect',
      )
      assert.equal(carried, buddySystem)
    })
  }
})

describe('swim - identity and epochs', () => {
  it('a higher epoch replaces a member at once, whatever its state, and it is listed once', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const [a, b] = [peer(1), peer(2)]
    h.know(a, b)
    h.deliver(b, { type: 'gossip' }, [update({ ...a, incarnation: 3 }, 'down')])
    assert.equal(h.state(a), 'down')
    const restarted = { ...a, epoch: a.epoch + 10_000, incarnation: 0 }
    h.deliver(restarted, { type: 'gossip' })
    const m = h.swim.member(a.actorId)
    assert.equal(m?.state, 'alive')
    assert.equal(m.epoch, restarted.epoch)
    assert.equal(h.swim.members().filter((x) => x.actorId === a.actorId).length, 1)
    // Facts about the old life are now ignored.
    h.deliver(b, { type: 'gossip' }, [update({ ...a, incarnation: 9 }, 'suspect')])
    assert.equal(h.state(a), 'alive')
  })

  it('a member that hears it was declared down renews its identity: epoch + 1, incarnation 0', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const a = peer(1)
    h.deliver(a, { type: 'gossip' }, [update({ ...SELF, incarnation: 0 }, 'down')])
    const me = h.swim.identity()
    assert.equal(me.epoch, SELF.epoch + 1)
    assert.equal(me.incarnation, 0)
    assert.equal(me.state, 'alive')
    assert.equal(h.swim.stats().epochRenewals, 1)
  })

  it('tells a down member that still talks to us that it is down, at most once per interval', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const [a, b] = [peer(1), peer(2)]
    h.know(a, b)
    h.deliver(b, { type: 'gossip' }, [update(a, 'down')])
    h.take()
    h.deliver(a, { type: 'gossip' })
    h.deliver(a, { type: 'gossip' })
    const notices = h.take().filter((s) => s.to === a.addr)
    assert.equal(notices.length, 1)
    assert.ok(notices[0]?.packet.updates.some((u) => u.actorId === a.actorId && u.state === 'down'))
    h.clock.advance(1000)
    h.deliver(a, { type: 'gossip' })
    assert.equal(h.take().filter((s) => s.to === a.addr).length, 1)
    assert.equal(h.state(a), 'down')
  })
})

describe('swim - bad input', () => {
  it('drops and counts packets of another cluster, malformed and oversized packets', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const a = peer(1)
    const foreign = encodePacket({
      clusterId: CLUSTER + 1,
      sender: a,
      body: { type: 'ping', seq: 1, target: SELF.actorId },
      updates: [],
    })
    h.swim.receive(a.addr, foreign)
    h.swim.receive(a.addr, foreign.subarray(0, 10))
    const good = encodePacket({
      clusterId: CLUSTER,
      sender: a,
      body: { type: 'gossip' },
      updates: [],
    })
    h.swim.receive(a.addr, good.subarray(0, good.length - 1))
    h.swim.receive(a.addr, new Uint8Array(1401))
    h.swim.receive(a.addr, Uint8Array.of(9, 0, 7, 1))
    const drops = h.swim.stats().packetsDropped
    assert.equal(drops.wrongCluster, 2) // the header says so, even truncated
    assert.equal(drops.malformed, 1)
    assert.equal(drops.oversized, 1)
    assert.equal(drops.version, 1)
    assert.equal(h.take().length, 0)
    assert.equal(h.swim.member(a.actorId), null)
  })

  it('a push-pull from another cluster gets no answer', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    const bytes = encodePacket({
      clusterId: CLUSTER + 1,
      sender: peer(1),
      body: { type: 'push-pull', join: true, members: [] },
      updates: [],
    })
    assert.equal(h.swim.handlePushPull(peer(1).addr, bytes), null)
    assert.equal(h.swim.stats().packetsDropped.wrongCluster, 1)
  })
})

describe('swim - dissemination', () => {
  for (const maxPacketBytes of [1400, 600]) {
    it(`never builds a datagram above maxPacketBytes (${maxPacketBytes}), and fills it`, () => {
      const h = new Harness({ ...QUIET, maxPacketBytes })
      h.swim.start()
      const many = Array.from({ length: 300 }, (_, i) => update(peer(i + 1), 'alive'))
      for (let i = 0; i < many.length; i += 10) {
        h.deliver(peer(1), { type: 'gossip' }, many.slice(i, i + 10))
      }
      assert.equal(h.swim.stats().members.alive, 301)
      h.take()
      for (let i = 0; i < 50; i++)
        h.deliver(peer(3), { type: 'ping', seq: i, target: SELF.actorId })
      const sent = h.take()
      assert.equal(sent.length, 50)
      for (const s of sent) assert.ok(s.bytes.length <= maxPacketBytes, `${s.bytes.length} bytes`)
      const first = sent[0] as Sent
      assert.ok(first.bytes.length > maxPacketBytes - 60, 'the packet is nearly full')
    })
  }

  it('sends each update retransmitMult * ceil(log10(n + 1)) times, least-sent first', () => {
    const h = new Harness({ pushPullIntervalMs: 0, reconnectIntervalMs: 0 })
    h.swim.start()
    const peers = Array.from({ length: 9 }, (_, i) => peer(i + 1))
    h.knowResponsive(...peers)
    h.clock.advance(10_000)
    h.take()
    const z = peer(50)
    h.autoAck.set(z.addr, z)
    h.deliver(peers[0] as (typeof peers)[0], { type: 'gossip' }, [update(z, 'alive')])
    h.clock.advance(20_000)
    const carrying = h.take().filter((s) => s.packet.updates.some((u) => u.actorId === z.actorId))
    assert.equal(carrying.length, retransmitLimit(4, 11))
    assert.equal(carrying.length, 8)
  })
})

describe('swim - join, leave, forget', () => {
  it('retries the bootstrap addresses with doubling, capped, jittered waits while none answers', async () => {
    const h = new Harness({ ...QUIET, bootstrap: ['10.0.0.1:7946', SELF.addr] })
    h.swim.start()
    const waits: number[] = []
    for (let i = 0; i < 9; i++) {
      const p = h.pushPulls.at(-1)
      assert.ok(p)
      assert.equal(p.to, '10.0.0.1:7946', 'own address is never a bootstrap target')
      assert.equal(p.state.body.type, 'push-pull')
      p.reject(new Error('refused'))
      await flush()
      const before = h.pushPulls.length
      const from = h.clock.now()
      while (h.pushPulls.length === before) h.clock.advance(10)
      waits.push(h.clock.now() - from)
    }
    const expected = [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]
    waits.forEach((w, i) => {
      const cap = expected[i] as number
      assert.ok(w <= cap + 10 && w >= cap * 0.75 - 10, `wait ${i}: ${w} for ${cap}`)
    })
    // One answers: joined, no more attempts.
    const last = h.pushPulls.at(-1)
    assert.ok(last)
    const [a, b] = [peer(1), peer(2)]
    h.autoAck.set(a.addr, a)
    h.autoAck.set(b.addr, b)
    h.answerPushPull(last, a, [update(a, 'alive'), update(b, 'alive')])
    await flush()
    assert.equal(h.swim.stats().members.alive, 3)
    const count = h.pushPulls.length
    h.clock.advance(300_000)
    assert.equal(h.pushPulls.length, count)
    assert.equal(h.swim.stats().joinAttempts, 10)
  })

  it('a push-pull that never answers times out and counts as failed', async () => {
    const h = new Harness({ ...QUIET, bootstrap: ['10.0.0.1:7946'] })
    h.swim.start()
    const p = h.pushPulls[0]
    assert.ok(p)
    h.clock.advance(10_000)
    assert.ok(p.signal.aborted)
    await flush()
    assert.equal(h.swim.stats().pushPullsFailed, 1)
  })

  it('leave: marks itself left, gossips it at once, keeps answering a while, then stops', async () => {
    const h = new Harness({ pushPullIntervalMs: 0, reconnectIntervalMs: 0 })
    h.swim.start()
    const [a, b] = [peer(1), peer(2)]
    h.knowResponsive(a, b)
    h.clock.advance(5000)
    h.take()
    const left = h.swim.leave()
    const sent = h.take()
    assert.ok(sent.length >= 1)
    for (const s of sent) {
      assert.ok(s.packet.updates.some((u) => u.actorId === SELF.actorId && u.state === 'left'))
    }
    assert.equal(h.swim.identity().state, 'left')
    h.deliver(a, { type: 'ping', seq: 3, target: SELF.actorId })
    assert.equal(h.take().filter((s) => s.packet.body.type === 'ack').length, 1)
    h.clock.advance(1000)
    await left
    h.take()
    h.deliver(a, { type: 'ping', seq: 4, target: SELF.actorId })
    h.clock.advance(10_000)
    assert.equal(h.take().length, 0)
  })

  it(`forgets down members after removeDownAfterMs (${REMOVE_DOWN_AFTER_MS} ms)`, () => {
    const removed: string[] = []
    const h = new Harness({
      ...QUIET,
      onRemove: (m) => {
        removed.push(m.actorId)
      },
    })
    h.swim.start()
    const [a, b] = [peer(1), peer(2)]
    h.autoAck.set(b.addr, b)
    h.know(a, b)
    h.deliver(b, { type: 'gossip' }, [update(a, 'down')])
    h.clock.advance(REMOVE_DOWN_AFTER_MS - 60_000)
    assert.equal(h.state(a), 'down')
    h.clock.advance(120_000)
    assert.equal(h.swim.member(a.actorId), null)
    assert.deepEqual(removed, [a.actorId])
    assert.equal(h.state(b), 'alive')
  })

  it('members() lists self and others with state, incarnation, epoch and rtt', () => {
    const h = new Harness(QUIET)
    h.swim.start()
    h.know(peer(1))
    const list = h.swim.members()
    assert.equal(list.length, 2)
    const me = list.find((m) => m.actorId === SELF.actorId)
    assert.deepEqual(me, {
      actorId: SELF.actorId,
      addr: SELF.addr,
      state: 'alive',
      incarnation: 0,
      epoch: SELF.epoch,
      rttMs: null,
    })
  })
})

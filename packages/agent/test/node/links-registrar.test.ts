/**
 * Goal: the node's stream plumbing behaves as the node relies on: the registrar hands a
 * connection to the handler of its first frame's kind and closes the others (unknown kind, no
 * first frame in time); broadcast links connect on first use, send the kind first, keep frames
 * in order, drop (and count) what they cannot carry, reconnect after a peer restarts on the
 * injected clock, and close when idle.
 *
 * Method: two hosts on a seeded simulated network (sim/streams.ts), virtual time only.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { STREAM_FIRST_FRAME_TIMEOUT_MS } from '../../src/node/defaults.ts'
import { Registrar } from '../../src/node/registrar.ts'
import { PeerLinks } from '../../src/replication/peer-links.ts'
import { Sim, type HostContext } from '../../src/sim/sim.ts'
import type { FramedConnection } from '../../src/transport/stream.ts'

const A = '10.0.0.1:7946'
const B = '10.0.0.2:7946'

/** Each life's context, by address (a restart makes a new one). */
const contexts = new Map<string, HostContext>()

function contextOf(addr: string): HostContext {
  const ctx = contexts.get(addr)
  assert.ok(ctx !== undefined, `${addr} has a context`)
  return ctx
}

function host(sim: Sim, addr: string): HostContext {
  sim.addHost(addr, (ctx) => {
    contexts.set(addr, ctx)
    return {}
  })
  return contextOf(addr)
}

/** B listens through a registrar; every frame after the first of each kind-2 stream is kept. */
async function receiver(sim: Sim, ctx: HostContext) {
  const registrar = new Registrar(ctx.clock, STREAM_FIRST_FRAME_TIMEOUT_MS)
  const received: number[] = []
  const firsts: number[][] = []
  registrar.handle(2, (conn, first) => {
    firsts.push([...first])
    void (async () => {
      for await (const frame of conn.frames()) received.push(frame[0] ?? -1)
    })()
  })
  await ctx.streams.listen(ctx.addr, (conn) => {
    registrar.accept(conn)
  })
  await sim.runFor(1)
  return { registrar, received, firsts }
}

describe('node - registrar', () => {
  it('node - the handler of the first frame kind gets the connection; an unknown kind and a silent peer are closed', async () => {
    const sim = new Sim({ seed: 11 })
    const a = host(sim, A)
    const b = host(sim, B)
    const r = await receiver(sim, b)
    const connect = async (): Promise<FramedConnection> => {
      const p = a.streams.connect(B)
      await sim.runFor(10)
      return p
    }
    const known = await connect()
    await known.send(new Uint8Array([2, 42]))
    await known.send(new Uint8Array([7]))
    await sim.runFor(10)
    assert.deepEqual(r.firsts, [[2, 42]])
    assert.deepEqual(r.received, [7])

    const unknown = await connect()
    await unknown.send(new Uint8Array([9]))
    await sim.runFor(10)
    assert.equal(await settled(unknown.closed(), sim), 'settled', 'an unknown kind is closed')

    const silent = await connect()
    await sim.runFor(STREAM_FIRST_FRAME_TIMEOUT_MS - 100)
    assert.equal(await settled(silent.closed(), sim, 0), 'pending', 'not before the timeout')
    await sim.runFor(200)
    assert.equal(await settled(silent.closed(), sim), 'settled', 'closed after the timeout')
    assert.deepEqual(r.registrar.stats(), { accepted: 1, refused: 2 })
  })
})

async function settled(p: Promise<unknown>, sim: Sim, ms = 10): Promise<'settled' | 'pending'> {
  const state = { done: false }
  void p.then(() => {
    state.done = true
  })
  await sim.runFor(ms)
  return state.done ? 'settled' : 'pending'
}

describe('node - broadcast links', () => {
  it('node - a link sends the kind first and frames in order, reconnects after the peer restarts, and closes when idle', async () => {
    const sim = new Sim({ seed: 12 })
    const a = host(sim, A)
    let r = await receiver(sim, host(sim, B))
    const links = new PeerLinks(
      { transport: a.streams, clock: a.clock, random: a.random },
      { kind: 2, pendingMax: 3, pendingBytesMax: 1024, idleMs: 10_000 },
    )
    // While connecting, up to pendingMax frames wait; more are dropped.
    for (let i = 1; i <= 5; i++) links.send(B, new Uint8Array([i]))
    await sim.runFor(50)
    assert.deepEqual(r.firsts, [[2]])
    assert.deepEqual(r.received, [1, 2, 3])
    links.send(B, new Uint8Array([6]))
    await sim.runFor(50)
    assert.deepEqual(r.received, [1, 2, 3, 6])
    assert.equal(links.stats().framesDropped, 2)
    assert.equal(links.stats().links, 1)

    // B crashes and comes back: the link notices, backs off on A's clock and reconnects.
    sim.host(B).crash()
    await sim.runFor(50)
    links.send(B, new Uint8Array([7])) // lost: nobody listens
    sim.host(B).restart()
    r = await receiver(sim, contextOf(B))
    let delivered = false
    for (let i = 0; i < 200 && !delivered; i++) {
      links.send(B, new Uint8Array([100 + (i % 100)]))
      await sim.runFor(100)
      delivered = r.received.length > 0
    }
    assert.ok(delivered, 'the link reconnected to the restarted peer')
    assert.deepEqual(r.firsts, [[2]], 'a new connection starts with the kind again')

    // Nothing sent for idleMs: the link is closed.
    await sim.runFor(20_000)
    assert.equal(links.stats().links, 0)
    links.close()
  })
})

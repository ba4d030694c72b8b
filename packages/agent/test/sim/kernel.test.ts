/**
 * Goal: the simulator itself is exact and deterministic: events run in (time, insertion) order,
 * the network applies latency, loss, duplication, reordering and partitions as configured,
 * streams answer, refuse or time out, a paused host runs its overdue timers before its waiting
 * deliveries, a crashed host loses everything, and the same seed gives the same run bit for bit.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Scheduler } from '../../src/sim/scheduler.ts'
import { StreamError } from '../../src/sim/network.ts'
import { Sim, type HostContext, type HostHandlers } from '../../src/sim/sim.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

/** A host that records what it receives and answers requests with "re:<body>". */
class Recorder implements HostHandlers {
  readonly got: string[] = []
  readonly ctx: HostContext
  constructor(ctx: HostContext) {
    this.ctx = ctx
  }
  onDatagram(from: string, bytes: Uint8Array): void {
    this.got.push(`${this.ctx.clock.now()} ${from} ${dec.decode(bytes)}`)
  }
  onRequest(from: string, bytes: Uint8Array): Uint8Array | null {
    const body = dec.decode(bytes)
    if (body === 'close') return null
    return enc.encode(`re:${body}`)
  }
}

describe('sim - scheduler', () => {
  it('runs events by time, ties in insertion order; cancel works', async () => {
    const s = new Scheduler()
    const order: string[] = []
    s.at(10, () => order.push('a10'))
    s.at(5, () => order.push('b5'))
    s.at(10, () => order.push('c10'))
    const id = s.at(7, () => order.push('cancelled'))
    s.at(5, () => {
      order.push('d5')
      s.after(0, () => order.push('e5-nested'))
    })
    s.cancel(id)
    await s.runUntil(100)
    assert.deepEqual(order, ['b5', 'd5', 'e5-nested', 'a10', 'c10'])
    assert.equal(s.now(), 100)
  })

  it('a promise settled by an event continues at that virtual time', async () => {
    const sim = new Sim({ seed: 1, link: { latencyMs: 5, jitterMs: 0 } })
    sim.addHost('b:1', (ctx) => new Recorder(ctx))
    let seenAt = -1
    sim.addHost('a:1', (ctx) => {
      ctx.clock.setTimer(100, () => {
        void ctx.request('b:1', enc.encode('x')).then(() => {
          seenAt = ctx.clock.now()
        })
      })
      return new Recorder(ctx)
    })
    await sim.runFor(1000)
    assert.equal(seenAt, 110)
  })
})

describe('sim - network', () => {
  it('latency is base + jitter; loss and duplication happen at their rates', async () => {
    const sim = new Sim({
      seed: 2,
      link: { latencyMs: 10, jitterMs: 5, loss: 0.2, duplicate: 0.1 },
    })
    const b = sim.addHost('b:1', (ctx) => new Recorder(ctx)).instance
    sim.addHost('a:1', (ctx) => {
      for (let i = 0; i < 10_000; i++) {
        ctx.clock.setTimer(i, () => {
          ctx.send('b:1', enc.encode(String(i)))
        })
      }
      return new Recorder(ctx)
    })
    await sim.runFor(20_000)
    assert.ok(b, 'b runs')
    const stats = sim.network.stats
    assert.ok(Math.abs(stats.dropped.loss / 10_000 - 0.2) < 0.02, `loss ${stats.dropped.loss}`)
    const dup = stats.datagramsDuplicated / (10_000 - stats.dropped.loss)
    assert.ok(Math.abs(dup - 0.1) < 0.02, `dup ${dup}`)
    for (const line of b.got) {
      const [at, , body] = line.split(' ')
      const delay = Number(at) - Number(body)
      assert.ok(delay >= 10 && delay < 15, `delay ${delay}`)
    }
  })

  it('reordering: independent delays deliver out of order', async () => {
    const sim = new Sim({ seed: 3, link: { latencyMs: 1, jitterMs: 0, reorder: 0.5 } })
    const b = sim.addHost('b:1', (ctx) => new Recorder(ctx)).instance
    sim.addHost('a:1', (ctx) => {
      for (let i = 0; i < 100; i++) ctx.send('b:1', enc.encode(String(i)))
      return new Recorder(ctx)
    })
    await sim.runFor(1000)
    const bodies = (b?.got ?? []).map((l) => Number(l.split(' ')[2]))
    assert.equal(bodies.length, 100)
    assert.notDeepEqual(
      bodies,
      [...bodies].sort((x, y) => x - y),
    )
  })

  it('partitions drop both ways, one-way blocks one way, heal restores', async () => {
    const sim = new Sim({ seed: 4 })
    const hosts = ['a:1', 'b:1', 'c:1'].map((addr) => sim.addHost(addr, (ctx) => new Recorder(ctx)))
    const [a, b, c] = hosts.map((h) => h.instance as Recorder) as [Recorder, Recorder, Recorder]
    sim.network.partition(['a:1'], ['b:1'])
    sim.network.blockOneWay(['c:1'], ['a:1'])
    a.ctx.send('b:1', enc.encode('ab'))
    b.ctx.send('a:1', enc.encode('ba'))
    c.ctx.send('a:1', enc.encode('ca'))
    a.ctx.send('c:1', enc.encode('ac'))
    await sim.runFor(100)
    assert.equal(a.got.length + b.got.length, 0)
    assert.equal(c.got.length, 1)
    sim.network.heal()
    c.ctx.send('a:1', enc.encode('ca'))
    await sim.runFor(100)
    assert.equal(a.got.length, 1)
    assert.equal(sim.network.stats.dropped.partition, 3)
  })

  it('streams: answer, close, refuse, time out across a partition, abort', async () => {
    const sim = new Sim({ seed: 5, streamTimeoutMs: 3000 })
    const a = sim.addHost('a:1', (ctx) => new Recorder(ctx)).instance as Recorder
    sim.addHost('b:1', (ctx) => new Recorder(ctx))
    const results: string[] = []
    const record = (p: Promise<Uint8Array>, name: string): void => {
      p.then(
        (r) => results.push(`${name}:${dec.decode(r)}@${sim.now()}`),
        (e: unknown) => results.push(`${name}:${(e as StreamError).code}@${sim.now()}`),
      )
    }
    record(a.ctx.request('b:1', enc.encode('hi')), 'ok')
    record(a.ctx.request('b:1', enc.encode('close')), 'close')
    record(a.ctx.request('nobody:1', enc.encode('x')), 'refused')
    const controller = new AbortController()
    record(a.ctx.request('b:1', enc.encode('slow'), controller.signal), 'abort')
    controller.abort()
    await sim.runFor(100)
    sim.network.partition(['a:1'], ['b:1'])
    record(a.ctx.request('b:1', enc.encode('lost')), 'partition')
    await sim.runFor(5000)
    const names = results.map((r) => r.split('@')[0])
    assert.deepEqual(names.sort(), [
      'abort:EABORTED',
      'close:ECLOSED',
      'ok:re:hi',
      'partition:ETIMEDOUT',
      'refused:ECONNREFUSED',
    ])
    assert.ok(results.includes('partition:ETIMEDOUT@3100'), 'timed out at 3100')
  })
})

describe('sim - hosts', () => {
  it('pause: overdue timers run first on resume, then waiting deliveries, in order', async () => {
    const sim = new Sim({ seed: 6, link: { latencyMs: 1, jitterMs: 0 } })
    const log: string[] = []
    const b = sim.addHost('b:1', (ctx) => {
      // An overdue timer can still be cleared by one that runs before it.
      const cancelled = ctx.clock.setTimer(60, () => log.push('never'))
      ctx.clock.setTimer(50, () => {
        log.push(`timer50@${ctx.clock.now()}`)
        ctx.clock.clearTimer(cancelled)
      })
      ctx.clock.setTimer(80, () => log.push(`timer80@${ctx.clock.now()}`))
      ctx.clock.setTimer(200, () => log.push(`timer200@${ctx.clock.now()}`))
      return {
        onDatagram: (_from: string, bytes: Uint8Array) => {
          log.push(`recv ${dec.decode(bytes)}@${ctx.clock.now()}`)
        },
        onRequest: () => null,
      }
    })
    const a = sim.addHost('a:1', (ctx) => new Recorder(ctx)).instance as Recorder
    await sim.runFor(10)
    b.pause()
    a.ctx.send('b:1', enc.encode('one'))
    a.ctx.send('b:1', enc.encode('two'))
    await sim.runFor(90) // t = 100
    assert.deepEqual(log, [])
    b.resume()
    await sim.runFor(150)
    assert.deepEqual(log, [
      'timer50@100',
      'timer80@100',
      'recv one@100',
      'recv two@100',
      'timer200@200',
    ])
  })

  it('crash drops timers and deliveries; restart starts a new life with a new random stream', async () => {
    const sim = new Sim({ seed: 7 })
    const fired: string[] = []
    const draws: number[] = []
    const host = sim.addHost('b:1', (ctx) => {
      draws.push(ctx.random.nextU32())
      ctx.clock.setTimer(100, () => fired.push(`life${ctx.life}`))
      return new Recorder(ctx)
    })
    const a = sim.addHost('a:1', (ctx) => new Recorder(ctx)).instance as Recorder
    await sim.runFor(10)
    host.crash()
    assert.equal(host.status, 'crashed')
    a.ctx.send('b:1', enc.encode('lost'))
    await sim.runFor(200)
    assert.deepEqual(fired, [])
    assert.equal(sim.network.stats.dropped['no-endpoint'], 1)
    const second = host.restart()
    await sim.runFor(200)
    assert.deepEqual(fired, ['life1'])
    assert.equal(host.life, 2)
    assert.equal(second.got.length, 0)
    assert.notEqual(draws[0], draws[1])
  })

  it('same seed, same run: identical trace hashes; another seed differs', async () => {
    async function run(seed: number): Promise<string> {
      const sim = new Sim({ seed, link: { latencyMs: 2, jitterMs: 8, loss: 0.1, duplicate: 0.05 } })
      const addrs = Array.from({ length: 5 }, (_, i) => `h${i}:1`)
      for (const addr of addrs) {
        sim.addHost(addr, (ctx) => {
          const tick = (): void => {
            const to = addrs[ctx.random.int(addrs.length)] as string
            ctx.send(to, enc.encode(`${ctx.addr}->${to}@${ctx.clock.now()}`))
            if (ctx.random.float() < 0.2)
              void ctx.request(to, enc.encode('q')).catch(() => undefined)
            ctx.clock.setTimer(ctx.random.float() * 20, tick)
          }
          tick()
          return new Recorder(ctx)
        })
      }
      await sim.runFor(2000)
      sim.host('h1:1').pause()
      await sim.runFor(500)
      sim.host('h1:1').resume()
      sim.host('h2:1').crash()
      await sim.runFor(500)
      sim.host('h2:1').start()
      await sim.runFor(500)
      return sim.traceHash()
    }
    const first = await run(11)
    assert.equal(await run(11), first)
    assert.notEqual(await run(12), first)
  })
})

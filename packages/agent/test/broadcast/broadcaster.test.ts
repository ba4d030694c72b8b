/**
 * The broadcaster and the apply queue on a virtual clock: fanout without repeats, the byte-rate
 * cap, the queue caps and what they drop, the adaptive batch size, sync reservations.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ApplyQueue, type QueuedChunk } from '../../src/replication/apply-queue.ts'
import { Broadcaster, transmissionsFor, type Peer } from '../../src/broadcast/broadcaster.ts'
import { chunkBytes } from '../../src/wire/chunks.ts'
import type { Chunk } from '../../src/wire/messages.ts'
import { TokenBucket } from '../../src/runtime/token-bucket.ts'
import { SeededRandom } from '../../src/runtime/random.ts'
import { Scheduler, virtualClock } from '../../src/sim/scheduler.ts'

const peers = (n: number): Peer[] =>
  Array.from({ length: n }, (_, i) => ({ actorId: `p${i}`, addr: `10.0.0.${i}:1` }))

function setup(options: {
  peers: number
  rate?: number
  burst?: number
  queueMax?: number
  directMax?: number
}) {
  const s = new Scheduler()
  const clock = virtualClock(s)
  const sent: { at: number; addr: string; bytes: number }[] = []
  const bucket = new TokenBucket(options.rate ?? 1e12, options.burst ?? 1e12, () => s.now())
  const b = new Broadcaster(
    {
      clock,
      random: new SeededRandom(7),
      bucket,
      peers: () => peers(options.peers),
      send: (addr, bytes) => sent.push({ at: s.now(), addr, bytes: bytes.length }),
    },
    {
      directMax: options.directMax ?? 0,
      fanout: 3,
      maxTransmissions: 0,
      retransmitIntervalMs: 100,
      queueMax: options.queueMax ?? 1000,
      queueBytesMax: 1e9,
    },
  )
  return { s, b, sent, bucket }
}

async function run(s: Scheduler, ms: number): Promise<void> {
  await s.runFor(ms)
}

describe('broadcast - broadcaster', () => {
  it('sends a local change at once to fanout peers, then retransmits to others, never twice to one', async () => {
    const { s, b, sent } = setup({ peers: 20 })
    b.enqueue(new Uint8Array(100), false, ['p0'])
    assert.equal(sent.length, 3, 'first transmission goes out synchronously')
    assert.ok(sent.every((x) => x.at === 0))
    await run(s, 10_000)
    const tx = transmissionsFor(20)
    assert.equal(sent.length, 3 * tx)
    const addrs = sent.map((x) => x.addr)
    assert.equal(new Set(addrs).size, addrs.length, 'no peer gets it twice')
    assert.ok(!addrs.includes('10.0.0.0:1'), 'the peer it came from is excluded')
    assert.equal(b.stats().queued, 0)
  })

  it('in a small cluster, sends a local change to every peer at once and does not relay', async () => {
    const { s, b, sent } = setup({ peers: 9, directMax: 16 })
    b.enqueue(new Uint8Array(100))
    assert.equal(sent.length, 9, 'one message per peer, at once')
    b.enqueue(new Uint8Array(100), true, ['p1'])
    await run(s, 10_000)
    assert.equal(sent.length, 9, 'a received change is not passed on')
  })

  it('in a large cluster, passes a received change on once, to fanout peers', async () => {
    const { s, b, sent } = setup({ peers: 20, directMax: 16 })
    b.enqueue(new Uint8Array(100), true, ['p1'])
    await run(s, 10_000)
    assert.equal(sent.length, 3)
    assert.ok(!sent.some((x) => x.addr === '10.0.0.1:1'))
  })

  it('stops when every peer has it', async () => {
    const { s, b, sent } = setup({ peers: 2 })
    b.enqueue(new Uint8Array(10))
    await run(s, 10_000)
    assert.equal(sent.length, 2)
    assert.equal(b.stats().queued, 0)
  })

  it('never sends more than the byte-rate cap allows, and says so in its stats', async () => {
    // 10 kB/s with a 2 kB burst; 200 messages of 1 kB to 20 peers want far more.
    const { s, b, sent } = setup({ peers: 20, rate: 10_000, burst: 2_000 })
    for (let i = 0; i < 200; i++) b.enqueue(new Uint8Array(1000))
    await run(s, 30_000)
    for (let t = 0; t <= 30_000; t += 1000) {
      const bytes = sent
        .filter((x) => x.at >= t && x.at < t + 5000)
        .reduce((n, x) => n + x.bytes, 0)
      assert.ok(bytes <= 5 * 10_000 + 2_000 + 1000, `window at ${t}: ${bytes} bytes`)
    }
    assert.ok(b.stats().rateLimited > 0)
  })

  it('over its cap, drops the most-sent item first', async () => {
    const { s, b } = setup({ peers: 20, queueMax: 5 })
    b.enqueue(new Uint8Array(1)) // sent once, waiting to be retransmitted
    await run(s, 1)
    for (let i = 0; i < 5; i++) b.enqueue(new Uint8Array(2))
    assert.equal(b.stats().dropped, 1)
    assert.equal(b.stats().queued, 5)
    assert.equal(b.stats().queuedBytes, 5 * 2, 'the most-sent (the 1-byte one) went')
  })
})

function chunk(version: number, cells: number): Chunk {
  const origin = new Uint8Array(16).fill(1)
  return {
    kind: 'full',
    origin,
    version,
    seqs: [0, cells - 1],
    lastSeq: cells - 1,
    ts: 0,
    changes: Array.from({ length: cells }, (_, i) => ({
      table: 't',
      pk: new Uint8Array([1, 9, i & 0xff]),
      cid: 'v',
      val: 'x'.repeat(10),
      colVersion: 1,
      dbVersion: version,
      actorId: origin,
      cl: 1,
      seq: i,
    })),
  }
}

describe('broadcast - apply queue', () => {
  function queue(options: { bytesMax: number; cost?: () => number }) {
    const s = new Scheduler()
    const batches: QueuedChunk[][] = []
    let elapsed = 0
    const q = new ApplyQueue(
      {
        // apply() advances this clock by its cost: the queue times batches with clock.now()
        clock: { ...virtualClock(s), now: () => s.now() + elapsed },
        apply: (batch) => {
          batches.push([...batch])
          elapsed += options.cost?.() ?? 0
        },
      },
      {
        queueMax: 1000,
        queueBytesMax: options.bytesMax,
        batchMin: 10,
        batchMax: 4000,
        targetMs: 50,
      },
    )
    return { s, q, batches }
  }

  it('drops broadcasts over the byte cap and applies the rest in batches', async () => {
    const one = chunkBytes(chunk(1, 10))
    const { s, q, batches } = queue({ bytesMax: one * 3 })
    const offered = [1, 2, 3, 4, 5].map((v) => q.offer(chunk(v, 10), 'broadcast'))
    assert.deepStrictEqual(offered, [true, true, true, false, false])
    assert.equal(q.stats().dropped, 2)
    assert.ok(q.has('01010101010101010101010101010101:2:0-9'))
    await s.runFor(1)
    assert.equal(batches.length, 1, 'one batch: the three chunks together')
    assert.equal(q.stats().queued, 0)
  })

  it('sync waits for room for a whole answer; broadcasts cannot take the reserved room', async () => {
    const one = chunkBytes(chunk(1, 10))
    const { s, q } = queue({ bytesMax: one * 4 })
    q.offer(chunk(1, 10), 'broadcast')
    q.offer(chunk(2, 10), 'broadcast')
    const r = await q.reserve(one * 2)
    assert.equal(q.offer(chunk(3, 10), 'broadcast'), false, 'the room is reserved')
    let second = false
    const pending = q.reserve(one * 2).then((x) => {
      second = true
      return x
    })
    await Promise.resolve()
    assert.equal(second, false, 'no room for a second answer yet')
    q.offer(chunk(4, 10), 'sync')
    q.offer(chunk(5, 10), 'sync')
    r.release()
    assert.ok(q.stats().queuedBytes <= one * 4)
    await s.runFor(1) // applies everything queued; room for the second answer
    ;(await pending).release()
    assert.equal(second, true)
  })

  it('halves its batch when applying is slow and grows it when fast', async () => {
    let cost = 200
    const { s, q } = queue({ bytesMax: 1e9, cost: () => cost })
    const start = q.stats().batchSize
    for (let v = 1; v <= 50; v++) q.offer(chunk(v, 100), 'broadcast')
    await s.runFor(1)
    assert.ok(q.stats().batchSize < start, 'slow: smaller batches')
    cost = 0
    for (let v = 51; v <= 400; v++) q.offer(chunk(v, 100), 'broadcast')
    await s.runFor(1)
    assert.ok(q.stats().batchSize > start, 'fast and busy: larger batches')
  })
})

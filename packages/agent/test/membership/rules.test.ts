/**
 * Goal: the small pure parts of membership hold their documented rules: precedence between
 * facts about a member, the suspicion timeout formula, the retransmit and push-pull scaling, the
 * broadcast queue's order and limits, and the seeded PRNG's determinism and range.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { BroadcastQueue } from '../../src/membership/broadcast-queue.ts'
import { systemClock } from '../../src/runtime/clock.ts'
import { systemRandom } from '../../src/runtime/random.ts'
import { pushPullIntervalFor, retransmitLimit } from '../../src/membership/defaults.ts'
import { MEMBER_STATES, supersedes, type MemberState } from '../../src/membership/member.ts'
import { SeededRandom, shuffle } from '../../src/runtime/random.ts'
import { suspicionBounds, suspicionTimeoutMs } from '../../src/membership/suspicion.ts'

function fact(state: MemberState, incarnation: number, epoch = 1) {
  return { state, incarnation, epoch }
}

describe('membership rules - precedence', () => {
  it('follows SWIM §4.2 as foca implements it, with memberlist’s stale-down rule', () => {
    const cases: [MemberState, number, MemberState, number, boolean][] = [
      ['alive', 1, 'alive', 2, true],
      ['alive', 2, 'alive', 2, false],
      ['alive', 2, 'suspect', 2, true],
      ['alive', 2, 'suspect', 1, false],
      ['suspect', 2, 'suspect', 2, false],
      ['suspect', 2, 'suspect', 3, true],
      ['suspect', 2, 'alive', 2, false],
      ['suspect', 2, 'alive', 3, true],
      ['alive', 2, 'down', 2, true],
      ['alive', 3, 'down', 2, false],
      ['suspect', 2, 'down', 5, true],
      ['down', 2, 'alive', 9, false],
      ['down', 2, 'suspect', 9, false],
      ['down', 2, 'left', 0, true],
      ['left', 2, 'alive', 9, false],
      ['left', 2, 'down', 9, false],
      ['alive', 0, 'left', 0, true],
    ]
    for (const [cs, ci, us, ui, expected] of cases) {
      assert.equal(supersedes(fact(cs, ci), fact(us, ui)), expected, `${cs}(${ci}) <- ${us}(${ui})`)
    }
  })

  it('a higher epoch always wins, a lower one never does', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...MEMBER_STATES),
        fc.constantFrom(...MEMBER_STATES),
        fc.nat(100),
        fc.nat(100),
        (a, b, i, j) => {
          assert.equal(supersedes(fact(a, i, 1), fact(b, j, 2)), true)
          assert.equal(supersedes(fact(a, i, 2), fact(b, j, 1)), false)
        },
      ),
    )
  })

  it('never both ways: two facts cannot each replace the other', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...MEMBER_STATES),
        fc.constantFrom(...MEMBER_STATES),
        fc.nat(3),
        fc.nat(3),
        fc.nat(2),
        fc.nat(2),
        (a, b, i, j, e, f) => {
          const x = fact(a, i, e)
          const y = fact(b, j, f)
          assert.ok(!(supersedes(x, y) && supersedes(y, x)))
        },
      ),
    )
  })
})

describe('membership rules - formulas', () => {
  it('suspicion bounds: memberlist worked numbers', () => {
    // research/crdt-swim.md §4.3: n = 50 gives 6.8 s .. 40.8 s with LAN defaults.
    const b50 = suspicionBounds(50, 4, 6, 1000)
    assert.equal(b50.minMs, 6795)
    assert.equal(b50.maxMs, 40_770)
    assert.equal(b50.k, 2)
    assert.deepEqual(suspicionBounds(3, 4, 6, 1000), { minMs: 4000, maxMs: 24_000, k: 0 })
    assert.equal(suspicionTimeoutMs(suspicionBounds(3, 4, 6, 1000), 0), 4000)
  })

  it('suspicion timeout: max with no confirmation, min after k, never below min, decreasing', () => {
    const b = suspicionBounds(100, 4, 6, 1000)
    assert.equal(suspicionTimeoutMs(b, 0), b.maxMs)
    assert.equal(suspicionTimeoutMs(b, b.k), b.minMs)
    assert.equal(suspicionTimeoutMs(b, b.k + 5), b.minMs)
    for (let c = 1; c <= b.k; c++) {
      assert.ok(suspicionTimeoutMs(b, c) < suspicionTimeoutMs(b, c - 1))
    }
  })

  it('retransmit limit and push-pull scale match memberlist', () => {
    assert.equal(retransmitLimit(4, 9), 4)
    assert.equal(retransmitLimit(4, 10), 8)
    assert.equal(retransmitLimit(4, 50), 8)
    assert.equal(retransmitLimit(4, 1000), 16)
    assert.equal(pushPullIntervalFor(30_000, 32), 30_000)
    assert.equal(pushPullIntervalFor(30_000, 100), 90_000)
  })
})

describe('membership rules - broadcast queue', () => {
  function sink(capacity: number) {
    const added: Uint8Array[] = []
    let used = 0
    return {
      added,
      tryAdd(b: Uint8Array): boolean {
        if (used + b.length > capacity) return false
        used += b.length
        added.push(b)
        return true
      },
      remaining: () => capacity - used,
    }
  }
  const item = (tag: number): Uint8Array => new Uint8Array(40).fill(tag)

  it('sends least-sent first, drops items after `limit` sends, replaces by key', () => {
    const q = new BroadcastQueue()
    q.enqueue('a', item(1))
    q.enqueue('b', item(2))
    const s1 = sink(40)
    q.fill(s1, 3)
    assert.deepEqual(s1.added, [item(1)])
    const s2 = sink(40)
    q.fill(s2, 3)
    assert.deepEqual(s2.added, [item(2)], 'b has been sent fewer times')
    q.enqueue('a', item(3)) // a newer fact about a: starts from 0 sends
    assert.equal(q.transmits('a'), 0)
    const s3 = sink(1000)
    assert.equal(q.fill(s3, 3), 2)
    assert.deepEqual(s3.added, [item(3), item(2)])
    for (let i = 0; i < 5; i++) q.fill(sink(1000), 3)
    assert.equal(q.size, 0)
  })

  it('never puts one item twice in one fill, and skips the given key', () => {
    const q = new BroadcastQueue()
    for (let i = 0; i < 10; i++) q.enqueue(`k${i}`, item(i))
    const s = sink(100_000)
    q.fill(s, 5, 'k3')
    assert.equal(s.added.length, 9)
    assert.equal(new Set(s.added.map((b) => b[0])).size, 9)
    assert.equal(q.transmits('k3'), 0)
  })
})

describe('membership rules - seeded random', () => {
  it('same seed, same sequence; floats in [0, 1); ints in [0, n)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 1, max: 1000 }),
        (seed, n) => {
          const a = new SeededRandom(seed)
          const b = new SeededRandom(seed)
          for (let i = 0; i < 50; i++) {
            const x = a.float()
            assert.equal(x, b.float())
            assert.ok(x >= 0 && x < 1)
            const k = a.int(n)
            assert.equal(k, b.int(n))
            assert.ok(Number.isInteger(k) && k >= 0 && k < n)
          }
        },
      ),
    )
  })

  it('is xoshiro128**: the reference outputs for state (1, 2, 3, 4)', () => {
    const r = SeededRandom.fromWords(1, 2, 3, 4)
    const out = Array.from({ length: 8 }, () => r.nextU32())
    assert.deepEqual(
      out,
      [
        11_520, 0, 5_927_040, 70_819_200, 2_031_721_883, 1_637_235_492, 1_287_239_034,
        3_734_860_849,
      ],
    )
  })

  it('known first outputs (a change here changes every simulation)', () => {
    const r = new SeededRandom(1)
    assert.deepEqual([r.nextU32(), r.nextU32(), r.nextU32()], KNOWN_SEED_1)
  })

  it('is roughly uniform, and forks are independent of each other', () => {
    const r = new SeededRandom(7)
    const buckets = new Array<number>(10).fill(0)
    for (let i = 0; i < 100_000; i++) {
      const k = r.int(10)
      buckets[k] = (buckets[k] ?? 0) + 1
    }
    for (const c of buckets) assert.ok(c > 9_500 && c < 10_500, `bucket ${c}`)
    const f1 = r.fork()
    const f2 = r.fork()
    assert.notEqual(f1.nextU32(), f2.nextU32())
    const arr = shuffle([1, 2, 3, 4, 5, 6], new SeededRandom(3))
    assert.deepEqual([...arr].sort(), [1, 2, 3, 4, 5, 6])
  })
})

describe('membership rules - real components', () => {
  it('systemClock: monotonic now, timers fire once, cleared ones never', async () => {
    const clock = systemClock()
    const t0 = clock.now()
    const fired: string[] = []
    clock.setTimer(5, () => fired.push('a'))
    const b = clock.setTimer(5, () => fired.push('b'))
    clock.clearTimer(b)
    await new Promise((resolve) => setTimeout(resolve, 30))
    assert.deepEqual(fired, ['a'])
    assert.ok(clock.now() - t0 >= 5, 'time moved')
  })

  it('systemRandom: floats in [0, 1), two instances differ', () => {
    const a = systemRandom()
    const b = systemRandom()
    const xs = Array.from({ length: 100 }, () => a.float())
    for (const x of xs) assert.ok(x >= 0 && x < 1, `float ${x}`)
    assert.notDeepEqual(
      xs.slice(0, 4),
      Array.from({ length: 4 }, () => b.float()),
    )
  })
})

const KNOWN_SEED_1 = [393_288_148, 2_174_103_013, 3_814_759_091]

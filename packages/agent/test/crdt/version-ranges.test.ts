/**
 * Goal: the version bookkeeping (head plus gaps) always says exactly which versions of an origin
 * a replica holds, whatever order the ranges arrive in, and stays in its canonical form: gaps
 * sorted, disjoint, non-adjacent, below head.
 *
 * Method: fast-check generates sequences of inclusive ranges (overlapping, repeated, out of
 * order, far ahead of head). Each range goes to recordHeld and to a naive model, a Set of every
 * held version; after every step holds() must equal the model for each version from 0 to
 * beyond the maximum, head must be the model's maximum, the gaps must be exactly the missing
 * versions below head in canonical form, and recordHeld's "changed" must say whether the model
 * grew.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import {
  emptyOriginVersions,
  holds,
  missingCount,
  recordHeld,
  type OriginVersions,
  type VersionRange,
} from '../../src/crdt/version-ranges.ts'

const MAX_VERSION = 80

const rangeArb: fc.Arbitrary<VersionRange> = fc
  .tuple(fc.integer({ min: 1, max: MAX_VERSION }), fc.integer({ min: 0, max: 12 }))
  .map(([start, length]): VersionRange => [start, Math.min(MAX_VERSION, start + length)])

const rangesArb = fc.array(rangeArb, { minLength: 1, maxLength: 40 })

function checkAgainstModel(state: OriginVersions, model: ReadonlySet<number>): void {
  const max = model.size === 0 ? 0 : Math.max(...model)
  assert.equal(state.head, max, 'head is the highest version held')
  for (let v = 0; v <= max + 2; v++) {
    assert.equal(holds(state, v), model.has(v), `holds(${v})`)
  }
  // Canonical gaps: each inside 1..head-1, sorted, disjoint and not touching the next.
  let previousEnd = 0
  for (const [start, end] of state.gaps) {
    assert.ok(Number.isSafeInteger(start) && Number.isSafeInteger(end))
    assert.ok(start <= end, `gap [${start}, ${end}] is not empty`)
    assert.ok(start >= 1 && end < state.head, `gap [${start}, ${end}] lies below head`)
    assert.ok(start > previousEnd + 1 || previousEnd === 0, `gaps are sorted and non-adjacent`)
    assert.ok(start > previousEnd, 'gaps are disjoint')
    previousEnd = end
  }
  // And they are exactly the missing versions.
  const missing: number[] = []
  for (let v = 1; v <= max; v++) if (!model.has(v)) missing.push(v)
  const fromGaps = state.gaps.flatMap(([s, e]) =>
    Array.from({ length: e - s + 1 }, (_, i) => s + i),
  )
  assert.deepStrictEqual(fromGaps, missing)
  assert.equal(missingCount(state), missing.length)
}

describe('version-ranges - model', () => {
  it('version-ranges - recordHeld/holds agree with a set of held versions after every step', () => {
    fc.assert(
      fc.property(rangesArb, (ranges) => {
        const state = emptyOriginVersions()
        const model = new Set<number>()
        checkAgainstModel(state, model)
        for (const [start, end] of ranges) {
          const before = model.size
          for (let v = start; v <= end; v++) model.add(v)
          const changed = recordHeld(state, start, end)
          assert.equal(changed, model.size > before, `recordHeld(${start}, ${end}) changed`)
          checkAgainstModel(state, model)
        }
      }),
      { numRuns: 2_000 },
    )
  })

  it('version-ranges - single versions in any order end with no gap once all arrived', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }).chain((n) =>
          fc.shuffledSubarray(
            Array.from({ length: n }, (_, i) => i + 1),
            { minLength: n, maxLength: n },
          ),
        ),
        (order) => {
          const state = emptyOriginVersions()
          const model = new Set<number>()
          for (const v of order) {
            model.add(v)
            assert.equal(recordHeld(state, v, v), true)
            checkAgainstModel(state, model)
          }
          assert.deepStrictEqual(state.gaps, [])
          assert.equal(state.head, order.length)
        },
      ),
    )
  })
})

describe('version-ranges - examples', () => {
  it('version-ranges - a range beyond head + 1 opens a gap that later ranges split and close', () => {
    const state = emptyOriginVersions()
    assert.equal(recordHeld(state, 1, 2), true)
    assert.equal(recordHeld(state, 10, 10), true)
    assert.deepStrictEqual(state, { head: 10, gaps: [[3, 9]] })
    assert.equal(recordHeld(state, 5, 6), true)
    assert.deepStrictEqual(state.gaps, [
      [3, 4],
      [7, 9],
    ])
    assert.equal(recordHeld(state, 5, 5), false, 'already held')
    assert.equal(recordHeld(state, 2, 12), true)
    assert.deepStrictEqual(state, { head: 12, gaps: [] })
  })

  it('version-ranges - invalid ranges are refused', () => {
    const state = emptyOriginVersions()
    assert.throws(() => recordHeld(state, 0, 1))
    assert.throws(() => recordHeld(state, 3, 2))
    assert.throws(() => recordHeld(state, 1.5, 2))
    assert.throws(() => recordHeld(state, 1, Number.MAX_SAFE_INTEGER + 2))
    assert.deepStrictEqual(state, emptyOriginVersions())
  })
})

/**
 * What to ask a peer for: the versions it has (per origin, 1..head minus gaps) that this node
 * lacks and is not already getting. Pure.
 */
import type { VersionRange } from '../crdt/version-ranges.ts'
import type { Need, OriginHave } from '../wire/messages.ts'

export interface Mine {
  /** This node's head and gaps for an origin (head 0 when it has nothing of it). */
  versions(origin: Uint8Array): { head: number; gaps: readonly VersionRange[] }
  /** Versions of `origin` not to ask for (buffered, queued, or being fetched by another session). */
  skip(origin: Uint8Array): ReadonlySet<number>
  /** This node's own actor id: its own versions are never asked for. */
  readonly self: Uint8Array
}

/** `ranges` minus `cut`, both sorted and disjoint. */
export function subtractRanges(
  ranges: readonly VersionRange[],
  cut: readonly VersionRange[],
): VersionRange[] {
  const out: VersionRange[] = []
  for (const [s0, e0] of ranges) {
    let s = s0
    for (const [cs, ce] of cut) {
      if (ce < s || cs > e0) continue
      if (cs > s) out.push([s, cs - 1])
      s = Math.max(s, ce + 1)
      if (s > e0) break
    }
    if (s <= e0) out.push([s, e0])
  }
  return out
}

/** Sorted single versions as ranges. */
function asRanges(versions: Iterable<number>): VersionRange[] {
  const sorted = [...versions].sort((a, b) => a - b)
  const out: [number, number][] = []
  for (const v of sorted) {
    const last = out.at(-1)
    if (last !== undefined && last[1] + 1 >= v) last[1] = Math.max(last[1], v)
    else out.push([v, v])
  }
  return out
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/**
 * Needs, newest first within each origin, at most `maxVersions` versions in all (the rest is
 * asked for in a later round).
 */
export function computeNeeds(
  theirs: readonly OriginHave[],
  mine: Mine,
  maxVersions: number,
): Need[] {
  const out: Need[] = []
  let budget = maxVersions
  for (const have of theirs) {
    if (budget <= 0) break
    if (have.head < 1 || sameId(have.origin, mine.self)) continue
    const theirHaves = subtractRanges([[1, have.head]], have.gaps)
    const { head, gaps } = mine.versions(have.origin)
    const missing: VersionRange[] = [...gaps]
    if (have.head > head) missing.push([head + 1, have.head])
    let wanted = subtractRanges(missing, subtractRanges([[1, Number.MAX_SAFE_INTEGER]], theirHaves))
    const skip = mine.skip(have.origin)
    if (skip.size > 0) wanted = subtractRanges(wanted, asRanges(skip))
    for (let i = wanted.length - 1; i >= 0 && budget > 0; i--) {
      const [s, e] = wanted[i] as VersionRange
      const start = Math.max(s, e - budget + 1)
      out.push({ origin: have.origin, start, end: e, fromSeq: 0 })
      budget -= e - start + 1
    }
  }
  return out
}

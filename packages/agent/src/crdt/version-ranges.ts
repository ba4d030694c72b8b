/**
 * Which versions of one origin a replica holds: everything from 1 to `head` except `gaps`.
 * Pure; the replica persists it in the same SQLite transaction as the data it describes.
 */
import assert from 'node:assert/strict'

/** An inclusive range of versions. */
export type VersionRange = readonly [start: number, end: number]

export interface OriginVersions {
  /** Highest version held or known to exist (0 when nothing). */
  head: number
  /** Missing ranges below head, sorted, disjoint, non-adjacent. */
  gaps: VersionRange[]
}

export function emptyOriginVersions(): OriginVersions {
  return { head: 0, gaps: [] }
}

export function holds(state: OriginVersions, version: number): boolean {
  if (version < 1 || version > state.head) return false
  for (const [start, end] of state.gaps) {
    if (version < start) return true
    if (version <= end) return false
  }
  return true
}

/**
 * Records that versions `start..end` are now held. A range beyond `head + 1` opens a gap for
 * the versions in between. Returns true when anything changed.
 */
export function recordHeld(
  state: OriginVersions,
  start: number,
  end: number,
  trackGaps = true,
): boolean {
  assert.ok(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 1 && end >= start)
  let changed = false
  if (start > state.head + 1 && trackGaps) {
    state.gaps.push([state.head + 1, start - 1])
    changed = true
  }
  if (end > state.head) {
    state.head = end
    changed = true
  }
  // Remove [start, end] from the gaps.
  const next: VersionRange[] = []
  for (const [gs, ge] of state.gaps) {
    if (ge < start || gs > end) {
      next.push([gs, ge])
      continue
    }
    changed = true
    if (gs < start) next.push([gs, start - 1])
    if (ge > end) next.push([end + 1, ge])
  }
  state.gaps = next
  return changed
}

/** The number of versions below head that are missing. */
export function missingCount(state: OriginVersions): number {
  let n = 0
  for (const [s, e] of state.gaps) n += e - s + 1
  return n
}

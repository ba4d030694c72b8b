/**
 * One pull of anti-entropy between two replicas in the same process: every version `from`
 * holds and `to` lacks, as changesets ready for `to.apply()`. The networked sync builds on the
 * same two calls (`originStates`/`holds` to find needs, `changesFor` to serve them).
 */
import { PULL_CHANGESETS_MAX } from '../config/defaults.ts'
import type { FullChangeset } from './changes.ts'
import type { Replica } from './replica.ts'

export function missingChangesets(
  from: Replica,
  to: Replica,
  max = PULL_CHANGESETS_MAX,
): FullChangeset[] {
  const out: FullChangeset[] = []
  for (const origin of from.originStates()) {
    // Newest first: a replica that is behind gets fresh state soonest.
    for (let v = origin.head; v >= 1 && out.length < max; v--) {
      if (to.holds(origin.actorId, v)) continue
      const cs = from.changesFor(origin.actorId, v)
      if (cs !== null) out.push(cs)
    }
  }
  return out
}

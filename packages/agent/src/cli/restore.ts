/**
 * `patina restore PATH [--as-new-actor] [--json]`: installs a snapshot (crdt/snapshot.ts) as
 * the agent's database, with the agent stopped (online restore, with the agent running, is a
 * later step). The snapshot is verified first; a refused one leaves the data directory as it
 * was. Prints what the snapshot lacks relative to the old database, per origin.
 */
import { createConnection } from 'node:net'
import { Command } from 'commander'
import { restoreSnapshot, type RestoreReport } from '../crdt/snapshot.ts'
import type { VersionRange } from '../crdt/version-ranges.ts'
import { CliError, configFrom, globalOptions } from './common.ts'

const PROBE_MS = 2000

/** True when something accepts a connection on the admin socket: the agent runs. */
function agentRunning(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(path)
    const timer = setTimeout(() => {
      socket.destroy()
      resolve(true)
    }, PROBE_MS)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => {
      clearTimeout(timer)
      resolve(false)
    })
  })
}

const ranges = (r: readonly VersionRange[]): string =>
  r.map(([s, e]) => (s === e ? `${s}` : `${s}..${e}`)).join(', ')

function describe(report: RestoreReport): string[] {
  const lines = [
    `restored snapshot of ${report.manifest.createdAt} (${Object.keys(report.manifest.versions).length} origin(s)); ` +
      `actor id ${report.actorId}${report.newActor ? ' (new)' : ' (kept)'}`,
  ]
  if (report.lackingCount === 0) {
    lines.push('the snapshot holds every version the old database held')
    return lines
  }
  lines.push(
    `the snapshot lacks ${report.lackingCount} version(s) the old database held; ` +
      'these come back from peers if any peer holds them:',
  )
  for (const [origin, r] of Object.entries(report.lacking)) {
    const own = origin === report.actorId ? ' (this node)' : ''
    lines.push(`  ${origin}${own}: ${ranges(r)}`)
  }
  if (report.ownMissing.length > 0) {
    lines.push(
      `note: this node's own versions ${ranges(report.ownMissing)} are booked as gaps, but ` +
        "Patina's sync does not yet fetch a node's own versions back from peers; " +
        'restore with --as-new-actor to have them fetched as any other origin',
    )
  }
  return lines
}

export function restoreCommand(): Command {
  return new Command('restore')
    .description(
      "replace the agent's database with a snapshot from `patina backup` (the agent must be " +
        'stopped; online restore is a later step)',
    )
    .argument('<path>', 'the snapshot (gzipped or not)')
    .option('--as-new-actor', 'give this node a fresh actor id instead of keeping its own')
    .option('--json', 'print the report as one JSON object')
    .action(async (path: string, opts: { asNewActor?: boolean; json?: boolean }, cmd: Command) => {
      const config = configFrom(globalOptions(cmd))
      if (config === null) {
        throw new CliError(
          "patina restore needs the agent's config: patina restore -c config.toml PATH",
        )
      }
      if (await agentRunning(config.admin.path)) {
        throw new CliError(
          `the agent is running (its admin socket ${config.admin.path} answers): stop it, then ` +
            'restore (restoring into a running agent is not supported yet)',
        )
      }
      const report = await restoreSnapshot(path, config.db.path, {
        clusterId: config.gossip.clusterId,
        asNewActor: opts.asNewActor === true,
        schemaPaths: config.db.schemaPaths,
      })
      if (opts.json === true) {
        process.stdout.write(
          `${JSON.stringify({
            actor_id: report.actorId,
            new_actor: report.newActor,
            snapshot: { created_at: report.manifest.createdAt, versions: report.manifest.versions },
            lacking: report.lacking,
            lacking_count: report.lackingCount,
            own_missing: report.ownMissing,
          })}\n`,
        )
        return
      }
      process.stdout.write(`${describe(report).join('\n')}\n`)
    })
}

/**
 * `patina backup PATH [--compress] [--json]`: an online snapshot of the agent's database
 * (crdt/snapshot.ts), taken while the agent keeps writing. Progress on stderr when it is a
 * terminal (one line rewritten with \r), or JSON lines on stdout with `--json`: one per step
 * and a final summary (bytes, pages, duration, versions per origin).
 */
import { Command } from 'commander'
import { createSnapshot, type BackupProgress } from '../crdt/snapshot.ts'
import { CliError, configFrom, globalOptions } from './common.ts'

interface BackupOptions {
  compress?: boolean
  json?: boolean
}

function progressLine(p: BackupProgress): string {
  const pct = p.totalPages === 0 ? 100 : Math.floor((100 * p.copiedPages) / p.totalPages)
  const width = 30
  const done = Math.round((width * pct) / 100)
  return `\rbackup [${'#'.repeat(done)}${'.'.repeat(width - done)}] ${pct}% ${p.copiedPages}/${p.totalPages} pages`
}

export function backupCommand(): Command {
  return new Command('backup')
    .description(
      "write an online, consistent snapshot of the agent's database to PATH (no node identity " +
        'inside; restore it on any node of the cluster with `patina restore`)',
    )
    .argument('<path>', 'where to write the snapshot')
    .option('--compress', 'gzip the snapshot (restore tells by its first bytes)')
    .option('--json', 'print JSON lines: one per progress step, then a summary')
    .action(async (path: string, opts: BackupOptions, cmd: Command) => {
      const config = configFrom(globalOptions(cmd))
      if (config === null) {
        throw new CliError(
          "patina backup needs the agent's config: patina backup -c config.toml PATH",
        )
      }
      const tty = opts.json !== true && process.stderr.isTTY
      const summary = await createSnapshot(config.db.path, path, {
        clusterId: config.gossip.clusterId,
        compress: opts.compress === true,
        onProgress: (p) => {
          if (opts.json === true) {
            process.stdout.write(
              `${JSON.stringify({ type: 'progress', pages: p.copiedPages, total_pages: p.totalPages })}\n`,
            )
          } else if (tty) {
            process.stderr.write(progressLine(p))
          }
        },
      })
      if (tty) process.stderr.write('\n')
      if (opts.json === true) {
        process.stdout.write(
          `${JSON.stringify({
            type: 'summary',
            path: summary.path,
            bytes: summary.bytes,
            pages: summary.pages,
            duration_ms: Math.round(summary.durationMs),
            compressed: summary.compressed,
            versions: summary.versions,
          })}\n`,
        )
        return
      }
      const origins = Object.keys(summary.versions).length
      process.stdout.write(
        `snapshot written to ${summary.path}: ${summary.bytes} bytes, ${summary.pages} pages, ` +
          `${origins} origin(s), ${Math.round(summary.durationMs)} ms\n`,
      )
    })
}

/**
 * `patina check -c config.toml [--full]`: checks the agent's database file without starting an
 * agent (read-only, so it works while the agent runs and while it is stopped): SQLite's
 * `PRAGMA quick_check` (`--full`: `integrity_check`), then Patina's own inspection (every
 * trigger and internal table the way Patina left them, crdt/integrity.ts). Prints each problem
 * on its own line and exits 1 when there is any; otherwise one summary line and exit 0.
 */
import { existsSync } from 'node:fs'
import { Command } from 'commander'
import { inspect, RECOVERY } from '../crdt/integrity.ts'
import { openDb } from '../store/open-db.ts'
import { CliError, configFrom, globalOptions } from './common.ts'

export interface CheckReport {
  /** What is wrong, in words; empty when the file is sound. */
  readonly problems: readonly string[]
  /** Things worth knowing that are not problems (e.g. written by an older Patina). */
  readonly notes: readonly string[]
  /** One line: what was checked. */
  readonly summary: string
}

/** Checks the database at `path` on a read-only connection. */
export function checkDatabase(path: string, options: { full?: boolean } = {}): CheckReport {
  if (!existsSync(path)) throw new CliError(`no database at ${path} (db.path of the config)`)
  const pragma = options.full === true ? 'integrity_check' : 'quick_check'
  const db = openDb(path, { readonly: true })
  try {
    const problems: string[] = []
    const notes: string[] = []
    const sqlite = db.prepare(`PRAGMA ${pragma}`).pluck().all().map(String)
    if (!(sqlite.length === 1 && sqlite[0] === 'ok')) {
      for (const line of sqlite) problems.push(`SQLite ${pragma}: ${line}`)
    }
    // One read transaction: a schema change the running agent commits meanwhile is seen whole.
    const found = db.transaction(() => inspect(db))()
    problems.push(...found.problems)
    if (found.problems.length === 0 && found.unrecorded) {
      notes.push(
        'written by an older Patina: the agent records its triggers at its next start ' +
          '(their presence was checked, their exact text cannot be)',
      )
    } else if (found.problems.length === 0 && found.install.length > 0) {
      notes.push(
        `${found.install.length} trigger(s) will be regenerated at the next start ` +
          '(written by an older Patina)',
      )
    }
    const summary =
      `${path}: SQLite ${pragma} ok, ${found.tables} replicated table(s), ` +
      `${found.triggers} trigger(s) as Patina left them`
    return { problems, notes, summary }
  } finally {
    db.close()
  }
}

export function checkCommand(): Command {
  return new Command('check')
    .description(
      "check the agent's database file (SQLite quick_check and Patina's triggers and tables) " +
        'without starting an agent; exit 1 when a problem is found',
    )
    .option('--full', 'run PRAGMA integrity_check instead of quick_check (slower, reads indexes)')
    .action((opts: { full?: boolean }, cmd: Command) => {
      const config = configFrom(globalOptions(cmd))
      if (config === null) {
        throw new CliError("patina check needs the agent's config: patina check -c config.toml")
      }
      const report = checkDatabase(config.db.path, { full: opts.full === true })
      for (const note of report.notes) process.stdout.write(`note: ${note}\n`)
      if (report.problems.length === 0) {
        process.stdout.write(`ok: ${report.summary}\n`)
        return
      }
      for (const problem of report.problems) process.stdout.write(`problem: ${problem}\n`)
      process.stdout.write(
        `patina check: ${report.problems.length} problem(s) in ${config.db.path}. ${RECOVERY}\n`,
      )
      process.exitCode = 1
    })
}

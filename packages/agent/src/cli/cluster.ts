/**
 * `patina cluster members [--json]`: the members the agent knows (GET /v1/members), itself
 * included, as an aligned table (or the JSON array as the API returns it).
 */
import type { JsonValue } from '@patina/client'
import { writeJson } from '@patina/protocol'
import { Command } from 'commander'
import { CliError, globalOptions } from './common.ts'
import { withClient } from './http.ts'

const COLUMNS = ['actor_id', 'addr', 'state', 'incarnation', 'rtt_ms'] as const

function cell(v: JsonValue | undefined): string {
  if (v === undefined || v === null) return '-'
  if (typeof v === 'bigint') return v.toString()
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(2)
  if (typeof v === 'string') return v
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x))
}

/** Formats rows as columns padded to their widest cell, a dashed rule under the header. */
export function formatTable(columns: readonly string[], rows: readonly string[][]): string[] {
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(columns), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)]
}

function membersCommand(): Command {
  return new Command('members')
    .description('list the members the agent knows, itself included')
    .option('--json', 'print the JSON array as the API returns it')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const g = globalOptions(cmd)
      const members: JsonValue = await withClient(g, '/v1/members', (client) =>
        client.getJson('/v1/members'),
      )
      if (opts.json === true) {
        process.stdout.write(`${writeJson(members)}\n`)
        return
      }
      if (!Array.isArray(members)) throw new CliError('unexpected answer from /v1/members')
      const rows = members.map((m) => {
        const o = typeof m === 'object' && m !== null && !Array.isArray(m) ? m : {}
        return COLUMNS.map((c) => cell(o[c]))
      })
      const counts = new Map<string, number>()
      for (const r of rows) counts.set(r[2] ?? '', (counts.get(r[2] ?? '') ?? 0) + 1)
      const summary = [...counts].map(([state, n]) => `${n} ${state}`).join(', ')
      const out = [
        ...formatTable(COLUMNS, rows),
        `(${rows.length} member${rows.length === 1 ? '' : 's'}${summary === '' ? '' : `: ${summary}`})`,
      ]
      process.stdout.write(`${out.join('\n')}\n`)
    })
}

export function clusterCommand(): Command {
  return new Command('cluster')
    .description('look at the cluster as the agent sees it')
    .addCommand(membersCommand())
}

/**
 * `patina query SQL [--param v ...] [--columns] [--json]`: runs a read query through the API
 * and prints the rows as a table (default) or as JSON lines.
 */
import { encodeValue, type SqlValue } from '@patina/protocol'
import { Command } from 'commander'
import { CliError, globalOptions } from './common.ts'
import { parseParam, withClient } from './http.ts'

const collect = (value: string, previous: string[]): string[] => [...previous, value]

function cell(v: SqlValue): string {
  if (v === null) return 'NULL'
  if (typeof v === 'string') return v
  return encodeValue(v)
}

/** One row as a JSON object, values typed (`1` INTEGER, `1.0` REAL); a repeated name: the last. */
function rowObject(columns: readonly string[], values: readonly SqlValue[]): string {
  const byName = new Map<string, SqlValue>()
  columns.forEach((c, i) => byName.set(c, values[i] ?? null))
  const parts = [...byName].map(([c, v]) => `${JSON.stringify(c)}:${encodeValue(v)}`)
  return `{${parts.join(',')}}`
}

export function queryCommand(): Command {
  return new Command('query')
    .description('run a read query and print its rows')
    .argument('<sql>', 'the query')
    .option(
      '-p, --param <value>',
      'a positional parameter (repeatable; JSON literal or text)',
      collect,
      [],
    )
    .option('--columns', 'print the column names first (with --json: a {"columns": [...]} line)')
    .option('--json', 'print one JSON object per row instead of a table')
    .action(
      async (
        sql: string,
        opts: { param: string[]; columns?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const g = globalOptions(cmd)
        let columns: readonly string[] = []
        const table: string[][] = []
        const out = (line: string): void => {
          process.stdout.write(`${line}\n`)
        }
        await withClient(g, '/v1/queries', async (client) => {
          const stream = await client.events({
            route: 'query',
            statement: [sql, opts.param.map(parseParam)],
          })
          for await (const event of stream) {
            if (event.type === 'columns') {
              columns = event.columns
              if (opts.json === true && opts.columns === true) out(JSON.stringify({ columns }))
            } else if (event.type === 'row') {
              if (opts.json === true) out(rowObject(columns, event.cells))
              else table.push(event.cells.map(cell))
            } else if (event.type === 'error') {
              throw new CliError(event.error)
            }
          }
        })
        if (opts.json === true) return
        const widths = columns.map((c, i) =>
          Math.max(c.length, ...table.map((r) => (r[i] ?? '').length)),
        )
        const line = (cells: readonly string[]): string =>
          cells
            .map((c, i) => c.padEnd(widths[i] ?? 0))
            .join('  ')
            .trimEnd()
        out(line(columns))
        out(widths.map((w) => '-'.repeat(w)).join('  '))
        for (const r of table) out(line(r))
        out(`(${table.length} row${table.length === 1 ? '' : 's'})`)
      },
    )
}

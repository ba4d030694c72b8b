/**
 * `patina query SQL [--param v ...] [--columns] [--json]`: runs a read query through the API
 * and prints the rows as a table (default) or as JSON lines.
 */
import { Command } from 'commander'
import { encodeValue, writeTyped, type JsonValue } from '../api/json.ts'
import { apiBaseUrl, bearerHeaders, CliError, globalOptions } from './common.ts'
import { ndjson, parseParam, postJson } from './http.ts'

const collect = (value: string, previous: string[]): string[] => [...previous, value]

function cell(v: JsonValue): string {
  if (v === null) return 'NULL'
  if (typeof v === 'string') return v
  if (typeof v === 'bigint' || typeof v === 'number') return encodeValue(v)
  return JSON.stringify(v)
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
        const res = await postJson(
          `${apiBaseUrl(g)}/v1/queries`,
          [sql, opts.param.map(parseParam)],
          bearerHeaders(g),
        )
        let columns: string[] = []
        const table: string[][] = []
        const out = (line: string): void => {
          process.stdout.write(`${line}\n`)
        }
        for await (const event of ndjson(res)) {
          if (typeof event !== 'object' || event === null || Array.isArray(event)) continue
          if (Array.isArray(event.columns)) {
            columns = event.columns.map(String)
            if (opts.json === true && opts.columns === true) out(JSON.stringify({ columns }))
          } else if (Array.isArray(event.row)) {
            const values = (event.row[1] ?? []) as JsonValue[]
            if (opts.json === true) {
              out(writeTyped(Object.fromEntries(columns.map((c, i) => [c, values[i] ?? null]))))
            } else {
              table.push(values.map(cell))
            }
          } else if (typeof event.error === 'string') {
            throw new CliError(event.error)
          }
        }
        if (opts.json === true) return
        const widths = columns.map((c, i) =>
          Math.max(c.length, ...table.map((r) => (r[i] ?? '').length)),
        )
        const line = (cells: string[]): string =>
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

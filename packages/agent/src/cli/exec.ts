/**
 * `patina exec SQL [--param v ...]`: runs one statement as a transaction through the API.
 */
import { Command } from 'commander'
import { parseJson } from '../api/json.ts'
import { apiBaseUrl, bearerHeaders, globalOptions } from './common.ts'
import { parseParam, postJson } from './http.ts'

const collect = (value: string, previous: string[]): string[] => [...previous, value]

export function execCommand(): Command {
  return new Command('exec')
    .description('run a write statement as one transaction')
    .argument('<sql>', 'the statement')
    .option(
      '-p, --param <value>',
      'a positional parameter (repeatable; JSON literal or text)',
      collect,
      [],
    )
    .action(async (sql: string, opts: { param: string[] }, cmd: Command) => {
      const g = globalOptions(cmd)
      const params = opts.param.map(parseParam)
      const res = await postJson(
        `${apiBaseUrl(g)}/v1/transactions`,
        [[sql, params]],
        bearerHeaders(g),
      )
      const body = parseJson(await res.text()) as {
        results: { rows_affected: bigint }[]
        version: bigint | null
      }
      const rows = body.results.reduce((n, r) => n + Number(r.rows_affected), 0)
      process.stdout.write(
        `${rows} row${rows === 1 ? '' : 's'} affected, version ${body.version === null ? 'none (nothing changed)' : body.version.toString()}\n`,
      )
    })
}

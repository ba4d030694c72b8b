/**
 * `patina exec SQL [--param v ...]`: runs one statement as a transaction through the API.
 */
import { Command } from 'commander'
import { globalOptions } from './common.ts'
import { parseParam, withClient } from './http.ts'

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
      const result = await withClient(g, '/v1/transactions', (client) =>
        client.transaction([[sql, params]]),
      )
      const rows = result.results.reduce((n, r) => n + r.rowsAffected, 0)
      process.stdout.write(
        `${rows} row${rows === 1 ? '' : 's'} affected, version ${result.version === null ? 'none (nothing changed)' : String(result.version)}\n`,
      )
    })
}

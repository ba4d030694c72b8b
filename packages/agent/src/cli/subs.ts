/**
 * `patina subs SQL [-p value ...] [--from N] [--skip-rows]`: subscribes to a query and prints
 * each event as it comes, one JSON line per event, exactly as the agent sends them
 * (`columns`, `row`, `eoq`, then `change`), until interrupted. `--id ID` re-attaches to an
 * existing subscription instead. An `error` event is printed, then the command exits 1.
 *
 * `patina subs list [--json]`: the agent's live subscriptions (GET /v1/subscriptions).
 */
import type { EventsStream, JsonValue } from '@patina/client'
import { encodeEvent, writeJson } from '@patina/protocol'
import { Command } from 'commander'
import { formatTable } from './cluster.ts'
import { CliError, globalOptions } from './common.ts'
import { parseParam, withClient } from './http.ts'

const collect = (value: string, previous: string[]): string[] => [...previous, value]

function changeId(text: string): string {
  if (!/^\d+$/.test(text))
    throw new CliError(`--from must be a change id (a whole number), not "${text}"`)
  return text
}

/**
 * Prints the events as they arrive, each line as the agent wrote it (decoding is exact, so
 * encoding again gives the same bytes); throws on an error event or when the stream ends.
 */
async function printEvents(stream: EventsStream): Promise<never> {
  if (stream.id !== null) process.stderr.write(`patina: subscription ${stream.id}\n`)
  for await (const event of stream) {
    process.stdout.write(encodeEvent(event))
    if (event.type === 'error') throw new CliError(event.error)
  }
  throw new CliError('the agent ended the stream')
}

function listCommand(): Command {
  return new Command('list')
    .description('list the live subscriptions of the agent')
    .option('--json', 'print the JSON array as the API returns it')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const g = globalOptions(cmd)
      const subs: JsonValue = await withClient(g, '/v1/subscriptions', (client) =>
        client.getJson('/v1/subscriptions'),
      )
      if (opts.json === true) {
        process.stdout.write(`${writeJson(subs)}\n`)
        return
      }
      if (!Array.isArray(subs)) throw new CliError('unexpected answer from /v1/subscriptions')
      const columns = ['id', 'mode', 'listeners', 'change_id', 'rows', 'created', 'sql'] as const
      const rows = subs.map((s) => {
        const o = typeof s === 'object' && s !== null && !Array.isArray(s) ? s : {}
        return columns.map((c) => {
          const v = o[c]
          if (typeof v === 'string') return v
          if (typeof v === 'bigint' || typeof v === 'number') return String(v)
          return v === undefined ? '' : JSON.stringify(v)
        })
      })
      const out = [
        ...formatTable(columns, rows),
        `(${rows.length} subscription${rows.length === 1 ? '' : 's'})`,
      ]
      process.stdout.write(`${out.join('\n')}\n`)
    })
}

export function subsCommand(): Command {
  return new Command('subs')
    .description('subscribe to a query and print its events as they come (or: subs list)')
    .argument('[sql]', 'the query to subscribe to')
    .option(
      '-p, --param <value>',
      'a positional parameter (repeatable; JSON literal or text)',
      collect,
      [],
    )
    .option('--from <change_id>', 'resume: only the changes after this change id', changeId)
    .option('--id <id>', 're-attach to the subscription with this id instead of giving SQL')
    .option('--skip-rows', 'do not send the current rows (columns and eoq only)')
    .addCommand(listCommand())
    .action(
      async (
        sql: string | undefined,
        opts: { param: string[]; from?: string; id?: string; skipRows?: boolean },
        cmd: Command,
      ) => {
        const g = globalOptions(cmd)
        const at = {
          ...(opts.from === undefined ? {} : { from: Number(opts.from) }),
          ...(opts.skipRows === true ? { skipRows: true } : {}),
        }
        if (opts.id !== undefined) {
          if (sql !== undefined) throw new CliError('give either SQL or --id, not both')
          const id = opts.id
          await withClient(g, `/v1/subscriptions/${encodeURIComponent(id)}`, async (client) =>
            printEvents(await client.events({ route: 'attach', id, ...at })),
          )
        } else {
          if (sql === undefined)
            throw new CliError('give the SQL to subscribe to (or --id, or list)')
          const statement = [sql, opts.param.map(parseParam)] as const
          await withClient(g, '/v1/subscriptions', async (client) =>
            printEvents(await client.events({ route: 'subscribe', statement, ...at })),
          )
        }
      },
    )
}

/**
 * `patina subs SQL [-p value ...] [--from N] [--skip-rows]`: subscribes to a query and prints
 * each event as it comes, one JSON line per event, exactly as the agent sends them
 * (`columns`, `row`, `eoq`, then `change`), until interrupted. `--id ID` re-attaches to an
 * existing subscription instead. An `error` event is printed, then the command exits 1.
 *
 * `patina subs list [--json]`: the agent's live subscriptions (GET /v1/subscriptions).
 */
import { Command } from 'commander'
import { parseJson, type JsonValue } from '../api/json.ts'
import { formatTable } from './cluster.ts'
import { apiBaseUrl, bearerHeaders, CliError, globalOptions } from './common.ts'
import { getJson, parseParam, postJson } from './http.ts'

const collect = (value: string, previous: string[]): string[] => [...previous, value]

function changeId(text: string): string {
  if (!/^\d+$/.test(text))
    throw new CliError(`--from must be a change id (a whole number), not "${text}"`)
  return text
}

/** Prints the body's lines as they arrive; throws on an error event or when it ends. */
async function printEvents(res: Response): Promise<never> {
  const id = res.headers.get('corro-query-id')
  if (id !== null) process.stderr.write(`patina: subscription ${id}\n`)
  if (res.body === null) throw new CliError('the agent sent no stream')
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true })
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (line.trim() === '') continue
      process.stdout.write(`${line}\n`)
      let event: JsonValue
      try {
        event = parseJson(line)
      } catch {
        throw new CliError(`the agent sent a line that is not JSON: ${line}`)
      }
      if (typeof event === 'object' && event !== null && !Array.isArray(event)) {
        if (typeof event.error === 'string') throw new CliError(event.error)
      }
    }
  }
  throw new CliError('the agent ended the stream')
}

function listCommand(): Command {
  return new Command('list')
    .description('list the live subscriptions of the agent')
    .option('--json', 'print the JSON array as the API returns it')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const g = globalOptions(cmd)
      const text = await (
        await getJson(`${apiBaseUrl(g)}/v1/subscriptions`, bearerHeaders(g))
      ).text()
      if (opts.json === true) {
        process.stdout.write(`${text.trimEnd()}\n`)
        return
      }
      const subs = parseJson(text)
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
        const query = new URLSearchParams()
        if (opts.from !== undefined) query.set('from', opts.from)
        if (opts.skipRows === true) query.set('skip_rows', 'true')
        const qs = query.size > 0 ? `?${query.toString()}` : ''
        let res: Response
        if (opts.id !== undefined) {
          if (sql !== undefined) throw new CliError('give either SQL or --id, not both')
          res = await getJson(
            `${apiBaseUrl(g)}/v1/subscriptions/${encodeURIComponent(opts.id)}${qs}`,
            bearerHeaders(g),
          )
        } else {
          if (sql === undefined)
            throw new CliError('give the SQL to subscribe to (or --id, or list)')
          res = await postJson(
            `${apiBaseUrl(g)}/v1/subscriptions${qs}`,
            [sql, opts.param.map(parseParam)],
            bearerHeaders(g),
          )
        }
        await printEvents(res)
      },
    )
}

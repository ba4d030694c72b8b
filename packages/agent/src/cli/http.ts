/**
 * The CLI's calls to the agent: a @patina/client for the API address and token of the command
 * line, one attempt per call (a person is waiting), no time limit, integers kept exact, and
 * its errors turned into one readable line.
 */
import {
  ConnectionError,
  createClient,
  PatinaHttpError,
  real,
  type JsonValue,
  type ParamValue,
  type PatinaClient,
} from '@patina/client'
import { parseJson } from '@patina/protocol'
import { apiBaseUrl, bearerToken, CliError, type GlobalOptions } from './common.ts'

/** A client of the agent the options name. */
export function cliClient(g: GlobalOptions): PatinaClient {
  const token = bearerToken(g)
  return createClient({
    url: apiBaseUrl(g),
    ...(token === null ? {} : { token }),
    integers: 'bigint',
    timeoutMs: 0,
    retry: { attempts: 1 },
  })
}

/** Runs `fn` with a client, closed afterwards; the client's errors become one-line CliErrors. */
export async function withClient<T>(
  g: GlobalOptions,
  path: string,
  fn: (client: PatinaClient) => Promise<T>,
): Promise<T> {
  const client = cliClient(g)
  try {
    return await fn(client)
  } catch (err) {
    throw cliError(err, `${apiBaseUrl(g)}${path}`)
  } finally {
    await client.close()
  }
}

function cliError(err: unknown, url: string): unknown {
  if (err instanceof PatinaHttpError) return new CliError(`${err.status}: ${err.message}`)
  if (err instanceof ConnectionError && err.failures.length > 0) {
    const failure = err.failures[0]?.error
    const cause = (failure?.cause as { message?: unknown } | undefined)?.message
    const why = typeof cause === 'string' ? cause : (failure?.message ?? err.message)
    return new CliError(`cannot reach the agent at ${url}: ${why}`)
  }
  return err
}

/** `--param` values: JSON literals (numbers, null, true/false, "quoted text") or plain text. */
export function parseParam(text: string): ParamValue {
  if (/^(-?\d+(\.\d+)?([eE][-+]?\d+)?|null|true|false|".*")$/s.test(text)) {
    let v: JsonValue
    try {
      v = parseJson(text, 'bigint')
    } catch {
      return text
    }
    // A number with a fraction or an exponent is a REAL: `1.0` binds as 1.0, not as 1.
    if (typeof v === 'number') return real(v)
    if (v === null || typeof v === 'bigint' || typeof v === 'string' || typeof v === 'boolean') {
      return v
    }
  }
  return text
}

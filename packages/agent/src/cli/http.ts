/**
 * The CLI's HTTP calls to the agent, with errors turned into one readable line.
 */
import { parseJson, writeTyped, type JsonValue } from '../api/json.ts'
import { CliError } from './common.ts'

export async function postJson(
  url: string,
  body: JsonValue,
  headers: Record<string, string>,
): Promise<Response> {
  return request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: writeTyped(body),
  })
}

export async function getJson(url: string, headers: Record<string, string>): Promise<Response> {
  return request(url, { method: 'GET', headers: { accept: 'application/json', ...headers } })
}

async function request(url: string, init: RequestInit): Promise<Response> {
  let res: Response
  try {
    res = await fetch(url, init)
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message
    throw new CliError(`cannot reach the agent at ${url}: ${cause ?? (err as Error).message}`)
  }
  if (!res.ok) {
    const text = await res.text()
    let message = text
    try {
      const parsed = parseJson(text)
      if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
        const e = parsed.error
        if (typeof e === 'string') message = e
      }
    } catch {
      // Not JSON: show the body as it came.
    }
    throw new CliError(`${res.status}: ${message}`)
  }
  return res
}

/** Reads an NDJSON body line by line, values parsed with exact integers. */
export async function* ndjson(res: Response): AsyncGenerator<JsonValue> {
  if (res.body === null) return
  const decoder = new TextDecoder()
  let buffer = ''
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true })
    let nl: number
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (line.trim() !== '') yield parseJson(line)
    }
  }
  if (buffer.trim() !== '') yield parseJson(buffer)
}

/** `--param` values: JSON literals (numbers, null, true/false, "quoted text") or plain text. */
export function parseParam(text: string): JsonValue {
  if (/^(-?\d+(\.\d+)?([eE][-+]?\d+)?|null|true|false|".*")$/s.test(text)) {
    try {
      return parseJson(text)
    } catch {
      return text
    }
  }
  return text
}

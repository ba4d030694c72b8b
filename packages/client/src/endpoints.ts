/**
 * The agents a client talks to, and which to try next. Load spreads by round robin from a
 * random start (so many clients with the same list do not all begin with the first agent); an
 * agent that just failed is passed over for a cooldown while others are up. Only timestamps are
 * kept: no timer runs in the background.
 */

export interface Endpoint {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:8080`. */
  readonly url: string
  /** Consecutive failures; 0 once it answers. */
  failures: number
  /** performance.now() until which it is passed over while another agent is up. */
  downUntil: number
}

export interface DownPolicy {
  readonly baseMs: number
  readonly maxMs: number
}

/** Parses and normalises agent URLs; throws TypeError naming a bad one. */
export function normaliseUrls(urls: readonly string[]): string[] {
  if (urls.length === 0)
    throw new TypeError('createClient: give at least one agent URL (urls or url)')
  const out: string[] = []
  for (const raw of urls) {
    let u: URL
    try {
      u = new URL(raw)
    } catch (err) {
      throw new TypeError(
        `createClient: "${raw}" is not a URL (expected e.g. http://127.0.0.1:8080)`,
        {
          cause: err,
        },
      )
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new TypeError(`createClient: "${raw}" must be an http:// or https:// URL`)
    }
    if (u.search !== '' || u.hash !== '') {
      throw new TypeError(`createClient: "${raw}" must not have a query or a fragment`)
    }
    const url = `${u.origin}${u.pathname.replace(/\/+$/, '')}`
    if (!out.includes(url)) out.push(url)
  }
  return out
}

export class EndpointPool {
  readonly endpoints: readonly Endpoint[]
  readonly #policy: DownPolicy
  #cursor: number

  constructor(urls: readonly string[], policy: DownPolicy) {
    this.endpoints = urls.map((url) => ({ url, failures: 0, downUntil: 0 }))
    this.#policy = policy
    this.#cursor = Math.floor(Math.random() * this.endpoints.length)
  }

  /**
   * The order to try agents in for one call: round robin from the cursor (which advances by
   * one per call), agents that are up first, then those cooling down, soonest back first.
   */
  order(): Endpoint[] {
    const n = this.endpoints.length
    const start = this.#cursor
    this.#cursor = (this.#cursor + 1) % n
    const rotated: Endpoint[] = []
    for (let i = 0; i < n; i++) {
      const e = this.endpoints[(start + i) % n]
      if (e !== undefined) rotated.push(e)
    }
    const now = performance.now()
    const up = rotated.filter((e) => e.downUntil <= now)
    const down = rotated.filter((e) => e.downUntil > now).sort((a, b) => a.downUntil - b.downUntil)
    return [...up, ...down]
  }

  /** The endpoint for `url` (one given to the client, or a new one for a pinned agent). */
  find(url: string): Endpoint | undefined {
    return this.endpoints.find((e) => e.url === url)
  }

  /** The agent failed: pass it over for `retryAfterMs`, or a backoff that grows per failure. */
  markDown(e: Endpoint, retryAfterMs: number | null): void {
    e.failures++
    const backoff = Math.min(this.#policy.maxMs, this.#policy.baseMs * 2 ** (e.failures - 1))
    const ms = retryAfterMs ?? backoff * (0.5 + Math.random() / 2)
    e.downUntil = performance.now() + ms
  }

  /** The agent answered. */
  markUp(e: Endpoint): void {
    e.failures = 0
    e.downUntil = 0
  }
}

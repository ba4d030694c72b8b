/**
 * The event-loop delay of every benchmark agent, for every benchmark that runs real agents:
 * one helper, used by the launcher (agents.ts `startAgent` calls `watchAgent`) and by run.ts
 * (`beginEventLoopWatch` around each benchmark), so no benchmark file has to do anything.
 *
 * Each agent's /metrics is sampled every SAMPLE_INTERVAL_MS while it runs, and once more when
 * it is stopped through its handle (not when killed: a kill is often what is being timed).
 * The agent's `patina_event_loop_delay_seconds` covers its last complete 10 s window (the
 * current one until one completes), so sampling more often than the window and keeping the
 * largest value covers a phase of any length; a benchmark's figure is the largest p99 (and
 * max) any of its agents showed while it ran, from start-up to stop, and the stalls they
 * counted (`patina_event_loop_stalls_total`, blocks over 200 ms).
 *
 * The agents' `event loop stalled` log lines (stdout, `[log] format = "json"`) are kept too,
 * with the job the agent named (`activity`), so a benchmark over the goal says what blocked.
 *
 * Start-up (opening the files, the schema, spawning readers) blocks the loop before any load
 * comes, and the first window would count it: samples taken within STARTUP_WINDOW_MS of an
 * agent's start are left out, unless the agent has no later one (a short benchmark), and
 * then the figure says it includes start-up.
 */
import type { Agent } from './agents.ts'
import type { SummaryLine } from './common.ts'

/** The goal: event-loop delay p99 under this under every benchmark. */
export const EVENT_LOOP_P99_GOAL_MS = 20
/** How often a running agent is sampled (its window is 10 s). */
const SAMPLE_INTERVAL_MS = 2000
const SCRAPE_TIMEOUT_MS = 3000
/** The agent's window (10 s) and a margin: a sample later than this no longer sees start-up. */
const STARTUP_WINDOW_MS = 11_000
/** Stall lines kept in a benchmark's report. */
const STALLS_KEPT = 20

/** Wall-clock ms (`Date.now()`): load-generator processes send theirs to run.ts's. */
interface Sample {
  readonly atMs: number
  readonly p99Ms: number
  readonly maxMs: number
  readonly stalls: number
}

export interface Watched {
  readonly name: string
  readonly startedMs: number
  readonly samples: Sample[]
}

const watched: Watched[] = []

/** One `event loop stalled` line of an agent. */
export interface Stall {
  readonly agent: string
  readonly atMs: number
  /** Since the agent's process was started: a stall in its first seconds is its start-up. */
  readonly sinceStartMs: number
  readonly stalledMs: number
  /** The job the agent said was running (`activity.run` label), if any. */
  readonly activity: string | null
}

const stalls: Stall[] = []

/** A reader of an agent's stdout that keeps its stall lines (lines may span chunks). */
export function stallScanner(agent: string): (chunk: string) => void {
  let partial = ''
  const startedMs = Date.now()
  return (chunk) => {
    const lines = (partial + chunk).split('\n')
    partial = (lines.pop() ?? '').slice(-64 * 1024)
    for (const line of lines) {
      if (!line.includes('event loop stalled')) continue
      try {
        const entry = JSON.parse(line) as { stalled_ms?: number; activity?: string }
        stalls.push({
          agent,
          atMs: Date.now(),
          sinceStartMs: Date.now() - startedMs,
          stalledMs: entry.stalled_ms ?? 0,
          activity: entry.activity ?? null,
        })
      } catch {
        // Not JSON (a pretty log): the stalls counter still counts it.
      }
    }
  }
}

async function sample(api: string): Promise<Sample | null> {
  try {
    const res = await fetch(`${api}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) })
    if (res.status !== 200) return null
    const text = await res.text()
    const value = (prefix: string): number | null => {
      const line = text.split('\n').find((l) => l.startsWith(prefix))
      return line === undefined ? null : Number(line.slice(line.lastIndexOf(' ') + 1))
    }
    const p99 = value('patina_event_loop_delay_seconds{quantile="0.99"} ')
    const max = value('patina_event_loop_delay_seconds{quantile="max"} ')
    if (p99 === null || max === null) return null
    return {
      atMs: Date.now(),
      p99Ms: p99 * 1000,
      maxMs: max * 1000,
      stalls: value('patina_event_loop_stalls_total ') ?? 0,
    }
  } catch {
    // Stopping, or too busy to answer in time: the next sample will tell.
    return null
  }
}

/**
 * What this process sampled, for a load-generator process (http.ts `clientMain`) to hand to
 * the benchmark process, which `adoptWatched`s it.
 */
export function watchedHere(): { watched: readonly Watched[]; stalls: readonly Stall[] } {
  return { watched, stalls }
}

export function adoptWatched(from: {
  watched: readonly Watched[]
  stalls: readonly Stall[]
}): void {
  for (const w of from.watched) {
    watched.push({ name: w.name, startedMs: w.startedMs, samples: [...w.samples] })
  }
  stalls.push(...from.stalls)
}

/** The line a load-generator process prints last: its result and what it sampled. */
export function clientOutput(result: unknown): string {
  return JSON.stringify({ result, eventLoop: watchedHere() })
}

/** The result in a load generator's last line; the agents it sampled join this process's. */
export function clientResult(line: string): unknown {
  const { result, eventLoop } = JSON.parse(line) as {
    result: unknown
    eventLoop: ReturnType<typeof watchedHere>
  }
  adoptWatched(eventLoop)
  return result
}

/**
 * Samples `agent` until it exits; returns its `stop` wrapped to take a last sample first.
 * Timers are unref()ed: watching never keeps the benchmark process alive.
 */
export function watchAgent(agent: Agent): Agent {
  const w: Watched = { name: agent.name, startedMs: Date.now(), samples: [] }
  watched.push(w)
  let inFlight = false
  const take = async (): Promise<void> => {
    if (inFlight || !agent.running()) return
    inFlight = true
    const s = await sample(agent.api)
    inFlight = false
    if (s !== null) w.samples.push(s)
  }
  const timer = setInterval(() => {
    if (!agent.running()) {
      clearInterval(timer)
      return
    }
    void take()
  }, SAMPLE_INTERVAL_MS)
  timer.unref()
  return {
    ...agent,
    stop: async () => {
      clearInterval(timer)
      await take()
      await agent.stop()
    },
    kill: async () => {
      clearInterval(timer)
      await agent.kill()
    },
  }
}

export interface AgentEventLoop {
  readonly agent: string
  readonly samples: number
  /** Only samples whose window includes the agent's start-up were taken. */
  readonly includesStartup: boolean
  readonly p99MaxMs: number
  readonly maxMs: number
  readonly stalls: number
}

export interface EventLoopReport {
  /** Largest p99 of any agent during the benchmark, ms (null: no agent was sampled). */
  readonly p99Ms: number | null
  readonly maxMs: number | null
  readonly stalls: number
  readonly goalMs: number
  readonly met: boolean | null
  /**
   * No agent ran a whole window past its start-up: the figures include it. Otherwise they are
   * those of the agents that did (each agent's own figures are in `agents`).
   */
  readonly includesStartup: boolean
  /** The agents' stall log lines during the benchmark, longest first (at most STALLS_KEPT). */
  readonly stallLog: readonly Stall[]
  /** Stalled ms by what was running (`(unnamed)`: no job had said). */
  readonly stallsByActivity: Readonly<Record<string, { count: number; longestMs: number }>>
  readonly agents: readonly AgentEventLoop[]
}

/**
 * Marks the start of a benchmark; `end()` reports what the agents sampled since (their last
 * sample is taken when stopped; agents started before the mark count from the mark).
 */
export function beginEventLoopWatch(): { end(): EventLoopReport } {
  const from = watched.length
  const startMs = Date.now()
  const known = watched.slice(0, from).map((w) => w.samples.length)
  return {
    end() {
      const agents: AgentEventLoop[] = []
      watched.forEach((w, i) => {
        const all = i < from ? w.samples.slice(known[i]) : w.samples
        if (all.length === 0 || (all.at(-1)?.atMs ?? 0) < startMs) return
        const first = i < from ? w.samples[(known[i] ?? 1) - 1] : undefined
        const last = all.at(-1) as Sample
        const steady = all.filter((s) => s.atMs - w.startedMs >= STARTUP_WINDOW_MS)
        const samples = steady.length > 0 ? steady : all
        agents.push({
          agent: w.name,
          samples: samples.length,
          includesStartup: steady.length === 0,
          p99MaxMs: Math.max(...samples.map((s) => s.p99Ms)),
          maxMs: Math.max(...samples.map((s) => s.maxMs)),
          stalls: last.stalls - (first?.stalls ?? 0),
        })
      })
      const during = stalls.filter((s) => s.atMs >= startMs)
      const byActivity: Record<string, { count: number; longestMs: number }> = {}
      for (const s of during) {
        const key = s.activity ?? '(unnamed)'
        const entry = (byActivity[key] ??= { count: 0, longestMs: 0 })
        entry.count++
        entry.longestMs = Math.max(entry.longestMs, s.stalledMs)
      }
      // Agents that ran a whole window past their start-up tell; the others only if none did.
      const steady = agents.filter((a) => !a.includesStartup)
      const counted = steady.length > 0 ? steady : agents
      const p99Ms = counted.length === 0 ? null : Math.max(...counted.map((a) => a.p99MaxMs))
      return {
        p99Ms,
        maxMs: counted.length === 0 ? null : Math.max(...counted.map((a) => a.maxMs)),
        stalls: agents.reduce((n, a) => n + a.stalls, 0),
        goalMs: EVENT_LOOP_P99_GOAL_MS,
        met: p99Ms === null ? null : p99Ms < EVENT_LOOP_P99_GOAL_MS,
        includesStartup: steady.length === 0 && agents.length > 0,
        stallLog: during.sort((a, b) => b.stalledMs - a.stalledMs).slice(0, STALLS_KEPT),
        stallsByActivity: byActivity,
        agents,
      }
    },
  }
}

/** The report as one output line, or null when the benchmark ran no agent. */
export function eventLoopLine(r: EventLoopReport): string | null {
  if (r.p99Ms === null) return null
  return (
    `agents' event-loop delay: p99 ${r.p99Ms.toFixed(1)} ms (goal < ${r.goalMs} ms: ` +
    `${r.met === true ? 'met' : 'NOT met'}), max ${(r.maxMs ?? 0).toFixed(0)} ms, ` +
    `stalls > 200 ms: ${r.stalls} (${r.agents.length} agents, largest of each agent's samples` +
    `${r.includesStartup ? '; incl. start-up: no agent ran a whole 10 s window after it' : ''})` +
    stallCauses(r)
  )
}

function stallCauses(r: EventLoopReport): string {
  const causes = Object.entries(r.stallsByActivity)
    .sort((a, b) => b[1].longestMs - a[1].longestMs)
    .map(([label, s]) => `${label} ${s.count}x, longest ${s.longestMs} ms`)
  return causes.length === 0 ? '' : `\n  stalls logged by the agents: ${causes.join('; ')}`
}

/** The report as a summary line, or null when the benchmark ran no agent. */
export function eventLoopSummary(r: EventLoopReport): SummaryLine | null {
  if (r.p99Ms === null) return null
  return {
    metric: "agents' event-loop delay p99 (max)",
    value:
      `${r.p99Ms.toFixed(1)} ms (${(r.maxMs ?? 0).toFixed(0)} ms)` +
      (r.includesStartup ? ', incl. start-up' : ''),
    goal: `< ${r.goalMs} ms`,
    met: r.met === true,
  }
}

/**
 * A network that can be partitioned, for the partition benchmark: Linux network namespaces made
 * by this benchmark (root and iproute2 needed), each agent in its own, all on one machine.
 *
 * ```
 *   hub namespace:  brA ── jA ══ jB ── brB     (data network 198.18.0.0/24: gossip)
 *                    │                  │
 *                  agents of side A   agents of side B
 *                  brM 198.18.1.1             (management network 198.18.1.0/24: the HTTP
 *                   └── every agent             API, reached by the driver in the hub)
 * ```
 *
 * Side A's agents hang off bridge brA, side B's off brB, and the veth pair jA/jB joins the two
 * bridges: `cut()` sets jA down, so frames between the sides are silently lost (a partition,
 * not a refusal: no RST, no ICMP), while each side still talks within itself and the driver
 * still reaches every agent's API over the management bridge. `heal()` sets jA up again.
 * Addresses are from 198.18.0.0/15, the block RFC 2544 sets aside for benchmarks; they exist
 * only inside these namespaces. Namespaces are named `pb<pid>-...` so that a later run removes
 * the ones an interrupted run left (its PID gone).
 */
import { spawn, spawnSync } from 'node:child_process'
import { clientResult } from './event-loop.ts'

const PREFIX = 'pb'
const DATA_NET = '198.18.0'
const MGMT_NET = '198.18.1'
const HOST_OFFSET = 10

function ip(args: readonly string[]): { ok: boolean; out: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 10_000 })
  return { ok: r.status === 0, out: `${r.stdout}${r.stderr}`.trim() }
}

function must(args: readonly string[]): void {
  const r = ip(args)
  if (!r.ok) throw new Error(`ip ${args.join(' ')}: ${r.out}`)
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Removes namespaces of earlier runs whose process is gone. */
function removeStale(): void {
  const list = ip(['netns', 'list'])
  if (!list.ok) return
  for (const line of list.out.split('\n')) {
    const name = line.split(' ')[0] ?? ''
    const m = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)
    if (m === null || isAlive(Number(m[1]))) continue
    ip(['netns', 'del', name])
  }
}

/** Null when namespaces work here; otherwise why not. */
export function netnsUnavailable(): string | null {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'not root'
  const probe = `${PREFIX}${process.pid}-probe`
  const add = ip(['netns', 'add', probe])
  if (!add.ok) return `ip netns add failed: ${add.out}`
  const veth = ip(['-n', probe, 'link', 'add', 'p0', 'type', 'veth', 'peer', 'name', 'p1'])
  const bridge = ip(['-n', probe, 'link', 'add', 'b0', 'type', 'bridge'])
  ip(['netns', 'del', probe])
  if (!veth.ok) return `veth pairs not available: ${veth.out}`
  if (!bridge.ok) return `bridges not available: ${bridge.out}`
  return null
}

export interface NetLayout {
  readonly hub: string
  /** Per agent: its namespace, gossip (data) address and API (management) address. */
  readonly agents: readonly {
    readonly netns: string
    readonly data: string
    readonly mgmt: string
  }[]
  /** The management address of the hub (where the driver runs). */
  readonly hubMgmt: string
}

export class PartitionNet {
  readonly layout: NetLayout
  private readonly names: string[] = []

  /** Builds the namespaces; `side(i)` puts agent i on side A (0) or B (1). */
  constructor(count: number, side: (i: number) => 0 | 1) {
    removeStale()
    const base = `${PREFIX}${process.pid}-${Date.now() % 100_000}`
    const hub = `${base}-hub`
    try {
      this.add(hub)
      must(['-n', hub, 'link', 'set', 'lo', 'up'])
      for (const br of ['brA', 'brB', 'brM']) {
        must(['-n', hub, 'link', 'add', br, 'type', 'bridge'])
        must(['-n', hub, 'link', 'set', br, 'up'])
      }
      must(['-n', hub, 'addr', 'add', `${MGMT_NET}.1/24`, 'dev', 'brM'])
      must(['-n', hub, 'link', 'add', 'jA', 'type', 'veth', 'peer', 'name', 'jB'])
      must(['-n', hub, 'link', 'set', 'jA', 'master', 'brA', 'up'])
      must(['-n', hub, 'link', 'set', 'jB', 'master', 'brB', 'up'])
      const agents: { netns: string; data: string; mgmt: string }[] = []
      for (let i = 0; i < count; i++) {
        const ns = `${base}-a${i + 1}`
        this.add(ns)
        const host = HOST_OFFSET + i
        const br = side(i) === 0 ? 'brA' : 'brB'
        must([
          'link',
          'add',
          `d${i}`,
          'netns',
          hub,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          ns,
        ])
        must([
          'link',
          'add',
          `m${i}`,
          'netns',
          hub,
          'type',
          'veth',
          'peer',
          'name',
          'eth1',
          'netns',
          ns,
        ])
        must(['-n', hub, 'link', 'set', `d${i}`, 'master', br, 'up'])
        must(['-n', hub, 'link', 'set', `m${i}`, 'master', 'brM', 'up'])
        must(['-n', ns, 'link', 'set', 'lo', 'up'])
        must(['-n', ns, 'addr', 'add', `${DATA_NET}.${host}/24`, 'dev', 'eth0'])
        must(['-n', ns, 'addr', 'add', `${MGMT_NET}.${host}/24`, 'dev', 'eth1'])
        must(['-n', ns, 'link', 'set', 'eth0', 'up'])
        must(['-n', ns, 'link', 'set', 'eth1', 'up'])
        agents.push({ netns: ns, data: `${DATA_NET}.${host}`, mgmt: `${MGMT_NET}.${host}` })
      }
      this.layout = { hub, agents, hubMgmt: `${MGMT_NET}.1` }
    } catch (err) {
      this.destroy()
      throw err
    }
  }

  private add(name: string): void {
    must(['netns', 'add', name])
    this.names.push(name)
  }

  /**
   * Deletes the namespaces. Any process still inside one (an agent its driver could not stop)
   * was started by this run: it is SIGKILLed by its PID first.
   */
  destroy(): void {
    for (const name of this.names.reverse()) {
      const pids = ip(['netns', 'pids', name])
      for (const pid of pids.ok ? pids.out.split(/\s+/).filter((p) => p !== '') : []) {
        try {
          process.kill(Number(pid), 'SIGKILL')
        } catch {
          // Exited between the listing and the kill: nothing left to stop.
        }
      }
      ip(['netns', 'del', name])
    }
    this.names.length = 0
  }
}

/** Cuts the link between the two sides (run from anywhere: `ip -n <hub>`). */
export function cut(hub: string): void {
  must(['-n', hub, 'link', 'set', 'jA', 'down'])
}

export function heal(hub: string): void {
  must(['-n', hub, 'link', 'set', 'jA', 'up'])
}

/**
 * Runs `node <execArgv> <file> --bench-client <job>` inside namespace `ns` (`ip netns exec`
 * execs node in place: the child's PID is node's) and resolves the JSON it prints last; its
 * progress lines (stderr) go straight to the terminal. `onPid` gets the PID at once.
 */
export function runInNetns(
  ns: string,
  file: string,
  job: unknown,
  onPid: (pid: number) => void,
): Promise<unknown> {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      ...process.execArgv,
      file,
      '--bench-client',
      JSON.stringify(job),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  if (child.pid !== undefined) onPid(child.pid)
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
  })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`driver in ${ns} failed (${String(code ?? signal)})`))
        return
      }
      const last = out.trimEnd().split('\n').at(-1) ?? ''
      try {
        // clientMain's line: the result, and the event-loop samples of the agents it ran.
        resolve(clientResult(last))
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)))
      }
    })
  })
}

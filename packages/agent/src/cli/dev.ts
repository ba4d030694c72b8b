/**
 * `patina dev [--nodes N]`: agents on embedded defaults, for trying Patina from a fresh clone:
 * the example schema shipped in the package, data under `.patina/dev/`, everything on
 * 127.0.0.1. With `--nodes N` (N > 1) the N agents run in this process, each with its own data
 * directory (`.patina/dev/node-<i>`), API port (`--port` + i - 1) and gossip port
 * (`--gossip-port` + i - 1; 0: any free port for both), the 2nd..Nth joining through the first.
 */
import { resolve } from 'node:path'
import { PORT_MAX } from '../config/defaults.ts'
import { fileURLToPath } from 'node:url'
import { Command } from 'commander'
import { parseConfig, type Config } from '../config/load-config.ts'
import { createLogger } from '../log.ts'
import { startAgent, type Agent } from '../main.ts'
import { runAgentUntilSignal, waitForSignal } from './agent.ts'
import { CliError } from './common.ts'

const EXAMPLE_SCHEMA = fileURLToPath(new URL('../../schema/example.sql', import.meta.url))
const NODES_MAX = 16

function devConfig(dir: string, apiPort: number, gossipPort: number, bootstrap: string[]): Config {
  const toml = [
    '[db]',
    `path = ${JSON.stringify(resolve(dir, 'state.db'))}`,
    `schema_paths = [${JSON.stringify(EXAMPLE_SCHEMA)}]`,
    '[api]',
    `addr = "127.0.0.1:${apiPort}"`,
    '[gossip]',
    `addr = "127.0.0.1:${gossipPort}"`,
    `bootstrap = ${JSON.stringify(bootstrap)}`,
    '[log]',
    'format = "plaintext"',
  ].join('\n')
  return parseConfig(toml, dir, 'patina dev').config
}

function port(text: string, option: string): number {
  const n = Number(text)
  if (!Number.isInteger(n) || n < 0 || n > PORT_MAX) {
    throw new CliError(`${option} must be a port number (0..65535), not ${text}`)
  }
  return n
}

export function devCommand(): Command {
  return new Command('dev')
    .description('run agents on embedded defaults (example schema, data in .patina/dev)')
    .option('--dir <path>', 'data directory', '.patina/dev')
    .option('--port <port>', 'API port of the first node on 127.0.0.1 (0: any free port)', '8080')
    .option('--gossip-port <port>', 'gossip port of the first node (0: any free port)', '8787')
    .option('--nodes <n>', `agents to run in this process, 1..${NODES_MAX}`, '1')
    .action(async (opts: { dir: string; port: string; gossipPort: string; nodes: string }) => {
      const dir = resolve(opts.dir)
      const apiPort = port(opts.port, '--port')
      const gossipPort = port(opts.gossipPort, '--gossip-port')
      const nodes = Number(opts.nodes)
      if (!Number.isInteger(nodes) || nodes < 1 || nodes > NODES_MAX) {
        throw new CliError(`--nodes must be an integer from 1 to ${NODES_MAX}, not ${opts.nodes}`)
      }
      if (nodes === 1) {
        await runAgentUntilSignal(devConfig(dir, apiPort, gossipPort, []), [])
        return
      }
      const plus = (base: number, i: number): number => (base === 0 ? 0 : base + i)
      const agents: Agent[] = []
      const root = createLogger({ format: 'plaintext', colors: false })
      try {
        for (let i = 0; i < nodes; i++) {
          const name = `node-${i + 1}`
          const bootstrap = agents[0] === undefined ? [] : [agents[0].node.addr]
          const config = devConfig(
            resolve(dir, name),
            plus(apiPort, i),
            plus(gossipPort, i),
            bootstrap,
          )
          const agent = await startAgent(config, root.child({ node: name }))
          agents.push(agent)
          for (const url of agent.apiUrls) {
            process.stdout.write(`patina dev: ${name} API at ${url} (gossip ${agent.node.addr})\n`)
          }
        }
      } catch (err) {
        await Promise.all(agents.map((a) => a.stop()))
        throw err
      }
      await waitForSignal(root)
      await Promise.all(agents.map((a) => a.stop()))
      root.info('agents stopped')
    })
}

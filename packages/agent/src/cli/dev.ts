/**
 * `patina dev`: an agent on embedded defaults, for trying Patina from a fresh clone: the
 * example schema shipped in the package, data under `.patina/dev/`, the API on 127.0.0.1.
 */
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command } from 'commander'
import { parseConfig } from '../config/load-config.ts'
import { runAgentUntilSignal } from './agent.ts'

const EXAMPLE_SCHEMA = fileURLToPath(new URL('../../schema/example.sql', import.meta.url))

export function devCommand(): Command {
  return new Command('dev')
    .description('run an agent on embedded defaults (example schema, data in .patina/dev)')
    .option('--dir <path>', 'data directory', '.patina/dev')
    .option('--port <port>', 'API port on 127.0.0.1 (0: any free port)', '8080')
    .action(async (opts: { dir: string; port: string }) => {
      const dir = resolve(opts.dir)
      const toml = [
        '[db]',
        `path = ${JSON.stringify(resolve(dir, 'state.db'))}`,
        `schema_paths = [${JSON.stringify(EXAMPLE_SCHEMA)}]`,
        '[api]',
        `addr = "127.0.0.1:${Number(opts.port)}"`,
        '[log]',
        'format = "plaintext"',
      ].join('\n')
      const { config } = parseConfig(toml, dir, 'patina dev')
      await runAgentUntilSignal(config, [])
    })
}

/**
 * `patina reload`: asks the running agent (through its admin socket) to re-read its schema
 * files and apply what changed.
 */
import { Command } from 'commander'
import { adminRequest } from '../admin/admin-server.ts'
import { CliError, configFrom, globalOptions } from './common.ts'

export function reloadCommand(): Command {
  return new Command('reload')
    .description("re-read the running agent's schema files and apply what changed")
    .action(async (_opts: unknown, cmd: Command) => {
      const config = configFrom(globalOptions(cmd))
      if (config === null)
        throw new CliError("patina reload needs the agent's config: patina reload -c config.toml")
      const reply = await adminRequest(config.admin.path, { cmd: 'reload' })
      if (reply.ok !== true) throw new CliError(`reload failed: ${String(reply.error)}`)
      const changes = Object.entries(reply).filter(([k]) => k !== 'ok')
      process.stdout.write(`schema reloaded: ${JSON.stringify(Object.fromEntries(changes))}\n`)
    })
}

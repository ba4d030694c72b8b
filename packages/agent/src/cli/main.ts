/**
 * The `patina` command line. One file per command; this file only wires them. `-c/--config`
 * belongs to the root command, so it works before or after the subcommand.
 */
import { Command } from 'commander'
import { PATINA_VERSION } from '../version.ts'
import { agentCommand } from './agent.ts'
import { backupCommand } from './backup.ts'
import { checkCommand } from './check.ts'
import { clusterCommand } from './cluster.ts'
import { devCommand } from './dev.ts'
import { execCommand } from './exec.ts'
import { queryCommand } from './query.ts'
import { reloadCommand } from './reload.ts'
import { restoreCommand } from './restore.ts'
import { subsCommand } from './subs.ts'

const program = new Command('patina')
  .description('Patina: SQLite replicated to every host, merged with CRDTs.')
  .version(PATINA_VERSION, '-V, --version', 'print the version')
  .option('-c, --config <file>', 'the agent config file (TOML)')
  .option(
    '--api <url>',
    "the agent's API base URL (default: from the config, else http://127.0.0.1:8080)",
  )
  .showHelpAfterError()

for (const command of [
  agentCommand(),
  devCommand(),
  execCommand(),
  queryCommand(),
  subsCommand(),
  clusterCommand(),
  reloadCommand(),
  checkCommand(),
  backupCommand(),
  restoreCommand(),
]) {
  program.addCommand(command)
}

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`patina: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})

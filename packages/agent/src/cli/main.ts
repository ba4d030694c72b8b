/**
 * The `patina` command line. One file per command; this file only wires them.
 */
import { Command } from 'commander'
import { PATINA_VERSION } from '../version.ts'
import { demoCommand } from './demo.ts'

const program = new Command('patina')
  .description('Patina: SQLite replicated to every host, merged with CRDTs.')
  .version(PATINA_VERSION, '-V, --version', 'print the version')
  .showHelpAfterError()

program.addCommand(demoCommand())

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`patina: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})

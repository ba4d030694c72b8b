/**
 * `patina agent`: runs the agent in this process (no forking wrapper, so signals and the PID
 * mean what they say) until SIGTERM or SIGINT, then shuts down cleanly.
 */
import { Command } from 'commander'
import type { Logger } from 'pino'
import { loadConfig, type ConfigWarning } from '../config/load-config.ts'
import { createLogger } from '../log.ts'
import { startAgent } from '../main.ts'
import { CliError, globalOptions } from './common.ts'

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the Patina agent with the given config file')
    .action(async (_opts: unknown, cmd: Command) => {
      const opts = globalOptions(cmd)
      if (opts.config === undefined) {
        throw new CliError('patina agent needs a config file: patina agent -c config.toml')
      }
      const { config, unimplemented, warnings } = loadConfig(opts.config)
      await runAgentUntilSignal(config, unimplemented, warnings)
    })
}

export async function runAgentUntilSignal(
  config: Parameters<typeof startAgent>[0],
  unimplemented: readonly string[],
  warnings: readonly ConfigWarning[] = [],
): Promise<void> {
  const logger = createLogger(config.log)
  if (unimplemented.length > 0) {
    logger.warn(
      { keys: unimplemented },
      `config keys accepted but not implemented yet: ${unimplemented.join(', ')}`,
    )
  }
  for (const { key, message } of warnings) logger.warn({ key }, message)
  const agent = await startAgent(config, logger)
  for (const url of agent.apiUrls) process.stdout.write(`patina agent: API at ${url}\n`)
  await waitForSignal(logger)
  await agent.stop()
  logger.info('agent stopped')
}

/**
 * Resolves on the first SIGTERM or SIGINT. Later ones are ignored (the shutdown they would
 * interrupt is bounded by the shutdown grace): one Ctrl-C under `npm start` arrives twice, from
 * the terminal (to the whole process group) and forwarded by npm to its child, this process.
 * The listeners stay, so the second one does not kill the process halfway through its stop.
 */
export function waitForSignal(logger: Logger): Promise<void> {
  return new Promise<void>((resolve) => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.debug({ signal }, 'already shutting down')
        return
      }
      stopping = true
      logger.info({ signal }, 'shutting down')
      resolve()
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}

/**
 * The agent's root logger: pino, JSON lines on stdout (or plaintext lines when `[log] format =
 * "plaintext"`). Components take `logger.child({ subsystem })`.
 */
import { pino, type Logger } from 'pino'
import type { Config } from './config/load-config.ts'

export function createLogger(config: Config['log'], level = 'info'): Logger {
  if (config.format === 'json') return pino({ level, base: { pid: process.pid } })
  // Plaintext: one readable line per event, without pulling in a pretty-printer dependency.
  return pino(
    { level, base: null, timestamp: pino.stdTimeFunctions.isoTime },
    {
      write(line: string) {
        const { time, level: lvl, msg, ...fields } = JSON.parse(line) as Record<string, unknown>
        const rest = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : ''
        process.stdout.write(
          `${String(time)} ${pino.levels.labels[Number(lvl)] ?? String(lvl)} ${String(msg)}${rest}\n`,
        )
      },
    },
  )
}

/**
 * What every command shares: the `-c/--config` option (given before or after the command), the
 * API address taken from that config, and one-line errors with a non-zero exit code.
 */
import type { Command } from 'commander'
import { DEFAULT_API_ADDR } from '../config/defaults.ts'
import { loadConfig, type Config } from '../config/load-config.ts'

export interface GlobalOptions {
  config?: string
  api?: string
}

/** Options of the root command merged with the subcommand's own. */
export function globalOptions(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>()
}

export function configFrom(opts: GlobalOptions): Config | null {
  return opts.config === undefined ? null : loadConfig(opts.config).config
}

/** Base URL of the agent's API: --api, else the config's first [api] addr, else the default. */
export function apiBaseUrl(opts: GlobalOptions): string {
  if (opts.api !== undefined) return opts.api.replace(/\/+$/, '')
  const config = configFrom(opts)
  const addr = config?.api.addrs[0] ?? DEFAULT_API_ADDR
  return `http://${addr.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:')}`
}

/** The config's `[api.authz] bearer-token`, or null. */
export function bearerToken(opts: GlobalOptions): string | null {
  return configFrom(opts)?.api.bearerToken ?? null
}

export class CliError extends Error {
  override readonly name = 'CliError'
}

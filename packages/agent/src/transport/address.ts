import { isIPv4, isIPv6 } from 'node:net'
import { TransportError } from './errors.ts'

/** A parsed "host:port". `family` is 4 or 6 for IP literals, 0 for a name that needs DNS. */
export interface HostPort {
  readonly host: string
  readonly port: number
  readonly family: 0 | 4 | 6
}

const PORT_MAX = 65_535
/** RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens. */
const HOST_NAME =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i

/**
 * Parses "host:port" ("127.0.0.1:8787", "node-1.internal:8787", "[::1]:8787"). Throws
 * TransportError BAD_ADDRESS for anything else, including an IPv6 literal without brackets and,
 * unless `portZero` is set (binding), port 0.
 */
export function parseAddr(addr: string, options: { portZero?: boolean } = {}): HostPort {
  let host: string
  let portText: string
  if (addr.startsWith('[')) {
    const close = addr.indexOf(']')
    host = addr.slice(1, close)
    if (close < 0 || addr[close + 1] !== ':' || !isIPv6(host)) throw badAddress(addr)
    portText = addr.slice(close + 2)
  } else {
    const colon = addr.lastIndexOf(':')
    if (colon < 0 || addr.indexOf(':') !== colon) throw badAddress(addr)
    host = addr.slice(0, colon)
    portText = addr.slice(colon + 1)
    if (!isIPv4(host) && !HOST_NAME.test(host)) throw badAddress(addr)
  }
  if (!/^\d{1,5}$/.test(portText)) throw badAddress(addr)
  const port = Number(portText)
  if (port > PORT_MAX || (port === 0 && options.portZero !== true)) throw badAddress(addr)
  const family = isIPv6(host) ? 6 : isIPv4(host) ? 4 : 0
  return { host, port, family }
}

/** "host:port", with brackets around an IPv6 host. */
export function formatAddr(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** The address with its host lowercased, for use as a map key. */
export function normalizeAddr(addr: string, options: { portZero?: boolean } = {}): string {
  const { host, port } = parseAddr(addr, options)
  return formatAddr(host.toLowerCase(), port)
}

function badAddress(addr: string): TransportError {
  return new TransportError('BAD_ADDRESS', `bad address ${JSON.stringify(addr)}: want host:port`)
}

/**
 * Goal: UdpTransport (node:dgram on loopback) meets the DatagramTransport contract, works over
 * IPv6 where the host has ::1, counts names that do not resolve, and caps its send queue.
 *
 * Method: the shared cases (datagram-cases.ts) on 127.0.0.1 and ::1, plus UDP-only cases.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { UdpTransport } from '../../src/transport/datagram.ts'
import { isTransportError } from '../../src/transport/errors.ts'
import { datagramCases } from './datagram-cases.ts'
import { realHarness, waitFor } from './harness.ts'

datagramCases(realHarness())

/** Whether this host can bind UDP on ::1 (containers often have no IPv6). */
async function hasIpv6(): Promise<boolean> {
  try {
    const probe = await UdpTransport.bind('[::1]:0')
    await probe.close()
    return true
  } catch {
    // No ::1 here: the IPv6 case is skipped, not failed.
    return false
  }
}

describe('datagram (udp only)', () => {
  it('transport - udp over IPv6 loopback, addresses in brackets', async (t) => {
    if (!(await hasIpv6())) {
      t.skip('no IPv6 loopback')
      return
    }
    const a = await UdpTransport.bind('[::1]:0')
    const b = await UdpTransport.bind('[::1]:0')
    t.after(() => Promise.all([a.close(), b.close()]))
    assert.match(a.localAddr, /^\[::1\]:\d+$/)
    const got: string[] = []
    b.onMessage((from) => got.push(from))
    a.send(b.localAddr, new Uint8Array([1]))
    a.send('127.0.0.1:9', new Uint8Array([1])) // the other family
    await waitFor(() => got.length === 1, 'the packet')
    assert.deepEqual(got, [a.localAddr])
    assert.equal(a.stats().dropped.bad_address, 1)
  })

  it('transport - udp resolves names, and counts one that does not resolve', async (t) => {
    const a = await UdpTransport.bind('127.0.0.1:0')
    const b = await UdpTransport.bind('127.0.0.1:0')
    t.after(() => Promise.all([a.close(), b.close()]))
    let got = 0
    b.onMessage(() => (got += 1))
    const port = b.localAddr.split(':')[1] ?? ''
    a.send(`localhost:${port}`, new Uint8Array([1]))
    a.send('no-such-host.invalid:9', new Uint8Array([1]))
    await waitFor(() => a.stats().dropped.bad_address === 1, 'the unresolved name counted', 10_000)
    await waitFor(() => got === 1, 'the packet sent by name')
  })

  it('transport - udp drops sends beyond its send queue cap, counted', async (t) => {
    const a = await UdpTransport.bind('127.0.0.1:0', { sendQueueBytesMax: 0 })
    t.after(() => a.close())
    a.send('127.0.0.1:9', new Uint8Array(10))
    assert.equal(a.stats().dropped.send_queue_full, 1)
    assert.equal(a.stats().packetsSent, 0)
  })

  it('transport - udp bind failures are typed', async (t) => {
    const a = await UdpTransport.bind('127.0.0.1:0')
    t.after(() => a.close())
    const inUse = await UdpTransport.bind(a.localAddr).catch((e: unknown) => e)
    assert.ok(isTransportError(inUse, 'BIND_FAILED'))
    const bad = await UdpTransport.bind('127.0.0.1').catch((e: unknown) => e)
    assert.ok(isTransportError(bad, 'BAD_ADDRESS'))
  })
})

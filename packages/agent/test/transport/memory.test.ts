/**
 * Goal: the in-memory twins pass the same behavioural cases as the socket transports, and the
 * `drop` predicate loses datagrams and stalls connects as a partition would.
 *
 * Method: the shared cases (datagram-, stream- and reconnect-cases.ts) on a MemoryNetwork,
 * plus memory-only cases.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isTransportError } from '../../src/transport/errors.ts'
import { MemoryNetwork } from '../../src/transport/memory.ts'
import { datagramCases } from './datagram-cases.ts'
import { memoryHarness, waitFor } from './harness.ts'
import { reconnectCases } from './reconnect-cases.ts'
import { streamCases } from './stream-cases.ts'

datagramCases(memoryHarness())
streamCases(memoryHarness())
reconnectCases(memoryHarness())

describe('memory only', () => {
  it('transport - memory drop() loses datagrams between the chosen addresses only', async () => {
    const cut = new Set(['10.0.0.1:1>10.0.0.2:1'])
    const net = new MemoryNetwork({ drop: (from, to) => cut.has(`${from}>${to}`) })
    const a = net.datagram('10.0.0.1:1')
    const b = net.datagram('10.0.0.2:1')
    const atA: number[] = []
    const atB: number[] = []
    a.onMessage((_from, bytes) => atA.push(bytes[0] ?? -1))
    b.onMessage((_from, bytes) => atB.push(bytes[0] ?? -1))
    a.send(b.localAddr, new Uint8Array([1]))
    b.send(a.localAddr, new Uint8Array([2]))
    cut.clear()
    a.send(b.localAddr, new Uint8Array([3]))
    await waitFor(() => atA.length === 1 && atB.length === 1, 'the delivered packets')
    assert.deepEqual(atA, [2])
    assert.deepEqual(atB, [3])
    await Promise.all([a.close(), b.close()])
  })

  it('transport - memory drop() makes a connect time out', async () => {
    const net = new MemoryNetwork({ drop: (from) => from.startsWith('10.0.0.9:') })
    const listener = await net.stream('10.0.0.1').listen('10.0.0.1:80', () => undefined)
    const cut = net.stream('10.0.0.9', { connectTimeoutMs: 50 })
    const error = await cut.connect('10.0.0.1:80').catch((e: unknown) => e)
    assert.ok(isTransportError(error, 'CONNECT_TIMEOUT'))
    const ok = await net.stream('10.0.0.2').connect('10.0.0.1:80')
    ok.close()
    await listener.close()
  })

  it('transport - memory datagram bind conflicts and port 0', () => {
    const net = new MemoryNetwork()
    const a = net.datagram('10.0.0.1:7946')
    assert.equal(a.localAddr, '10.0.0.1:7946')
    assert.throws(
      () => net.datagram('10.0.0.1:7946'),
      (e) => isTransportError(e, 'BIND_FAILED'),
    )
    const b = net.datagram('[fd00::1]:0')
    assert.match(b.localAddr, /^\[fd00::1\]:\d+$/)
    void a.close()
    void b.close()
  })
})

// Independent js-libp2p peer for the Weft interop tests.
//
// Modes (see README.md):
//   node peer.mjs listen [--port N] [--host IP] [--seed S] [--psk FILE] [--muxer-inline on|off] [--deadline-s N]
//                        [--reserve <relay multiaddr>/p2p/<relay id>]
//   node peer.mjs relay [--relay-limits default|off] [--max-reservations N] [--port N] [--host IP] [--seed S] [--deadline-s N]
//   node peer.mjs dial <multiaddr> <action> [action options] [--seed S] [--psk FILE] [--muxer-inline on|off]
//        actions: identify | ping [--count N] [--reuse-stream] | echo --bytes N [--optimistic]
//                 | perf --upload N --download M | sink --bytes N
//        <multiaddr> may be a circuit address: <relay>/p2p/<relay id>/p2p-circuit/p2p/<target id>
//   node peer.mjs sink-bench [--bytes N] [--runs K] [--proto sink|perf-up|perf-down|echo] [--in-process]
//   listen also takes: [--mdns [--mdns-service NAME] [--mdns-interval-ms N]]
//                      [--dht server|client [--dht-protocol P] [--bootstrap ADDR[,ADDR...]]]
//   node peer.mjs mdns-bench [--runs N] [--gap-ms G] [--host IP] [--mdns-service NAME]   (inside a netns only)
//   node peer.mjs dht3 [--host IP] [--seed S] [--dht-protocol P] [--deadline-s N]    three js DHT servers in one process
//   node peer.mjs dht put KEY VALUE | get KEY | provide KEY | find-providers KEY | find-peer PEERID
//        --bootstrap ADDR[,ADDR...] [--dht-mode client|server] [--dht-protocol P] [--seed S]   one-shot DHT operation
//
// Every machine-readable line on stdout starts with an upper-case keyword
// followed by one space and either a multiaddr, a number or one line of JSON.
// Diagnostics go to stderr.
import './polyfill-node20.mjs'

import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { fstatSync, readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { generateKeyPair, generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { echo } from '@libp2p/echo'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'

const ECHO_PROTOCOL = '/echo/1.0.0'
const PERF_PROTOCOL = '/perf/1.0.0'
const SINK_PROTOCOL = '/weft-sink/1.0.0'
const PING_PROTOCOL = '/ipfs/ping/1.0.0'
const PING_LENGTH = 32
const WRITE_BLOCK = 64 * 1024
const PATTERN_MOD = 251
const MAX_STREAMS_PER_PROTOCOL = 256
const DEFAULT_DEADLINE_S = 300
const IDENTIFY_WAIT_MS = 10_000
const RESERVE_WAIT_MS = 20_000
const DEFAULT_MAX_RESERVATIONS = 64
const CIRCUIT = '/p2p-circuit'
const STOP_GRACE_MS = 2_000
const DHT_PROTOCOL = '/ipfs/kad/1.0.0'
const DHT_NAMESPACE = 'weft'
const DHT_TABLE_WAIT_MS = 15_000
const MIB = 1024 * 1024

// ---------------------------------------------------------------- output

function emit (keyword, value) {
  let text
  if (value === undefined) {
    text = keyword
  } else if (typeof value === 'string' || typeof value === 'number') {
    text = `${keyword} ${value}`
  } else {
    text = `${keyword} ${JSON.stringify(value, (_k, v) => typeof v === 'bigint' ? v.toString() : v)}`
  }
  process.stdout.write(text + '\n')
}

function log (...args) {
  process.stderr.write(`[peer.mjs ${process.pid}] ${args.join(' ')}\n`)
}

function errorText (err) {
  const name = err?.name ?? 'Error'
  const message = String(err?.message ?? err).replace(/\s+/g, ' ')
  return `${name}: ${message}`
}

const hex = (bytes) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
const now = () => performance.now()
const round = (x, digits = 3) => Number(x.toFixed(digits))

// ---------------------------------------------------------------- args

function parseArgs (argv) {
  const positional = []
  const flags = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a.startsWith('--')) {
      const eq = a.indexOf('=')
      if (eq > 0) {
        flags[a.slice(2, eq)] = a.slice(eq + 1)
      } else {
        const next = argv[i + 1]
        if (next === undefined || next.startsWith('--')) {
          flags[a.slice(2)] = true
        } else {
          flags[a.slice(2)] = next
          i++
        }
      }
    } else {
      positional.push(a)
    }
  }
  return { positional, flags }
}

function intFlag (flags, name, def) {
  const v = flags[name]
  if (v === undefined || v === true) {
    if (def === undefined) throw new Error(`--${name} <number> is required`)
    return def
  }
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${v}`)
  return n
}

// ---------------------------------------------------------------- node factory

async function privateKeyFor (seed) {
  if (seed == null || seed === true) return generateKeyPair('Ed25519')
  const digest = createHash('sha256').update(String(seed), 'utf8').digest()
  return generateKeyPairFromSeed('Ed25519', new Uint8Array(digest))
}

// --muxer-inline off: send an empty stream_muxers list in the Noise payload AND
// ignore whatever the remote offers, so the muxer is always negotiated with
// multistream-select afterwards. (Plain js with an empty list would still adopt
// the remote's list; see README.)
function noiseFor (muxerInline) {
  if (muxerInline) return noise()
  const inner = noise({ extensions: { streamMuxers: [] } })
  return (components) => {
    const n = inner(components)
    const secureInbound = n.secureInbound.bind(n)
    const secureOutbound = n.secureOutbound.bind(n)
    n.secureInbound = async (c, o) => ({ ...(await secureInbound(c, o)), streamMuxer: undefined })
    n.secureOutbound = async (c, o) => ({ ...(await secureOutbound(c, o)), streamMuxer: undefined })
    return n
  }
}

// relayClient: add the circuit relay v2 transport (dial /p2p-circuit addresses,
// accept relayed connections, listen on relays in extraListen).
// relayServer: 'default' | 'off' runs a circuit relay v2 server (hop) with js's
// default limits (2 min, 128 KiB) or with none.
async function makeNode ({
  listen, host = '127.0.0.1', port = 0, seed, pskFile, muxerInline = true, streamTimeoutMs,
  relayClient = false, relayServer, maxReservations = DEFAULT_MAX_RESERVATIONS, extraListen = [], announce = false,
  mdnsInit, dhtInit, autoStart = true
}) {
  const privateKey = await privateKeyFor(seed)
  const init = {
    privateKey,
    // started below, once the handlers and event listeners are in place
    start: false,
    addresses: { listen: [...(listen ? [`/ip4/${host}/tcp/${port}`] : []), ...extraListen] },
    transports: [tcp()],
    connectionEncrypters: [noiseFor(muxerInline)],
    streamMuxers: [yamux()],
    connectionManager: {
      // tests open many connections quickly from one host
      inboundConnectionThreshold: 10_000,
      maxIncomingPendingConnections: 256
    },
    services: {
      // identify is run explicitly on connection:open (see watchIdentify) so
      // failures can be reported; behaviour on the wire is the same as the default
      identify: identify({ runOnConnectionOpen: false }),
      ping: ping({ maxInboundStreams: MAX_STREAMS_PER_PROTOCOL, maxOutboundStreams: MAX_STREAMS_PER_PROTOCOL }),
      echo: echo({
        timeout: streamTimeoutMs,
        maxInboundStreams: MAX_STREAMS_PER_PROTOCOL,
        maxOutboundStreams: MAX_STREAMS_PER_PROTOCOL,
        // also serve relayed connections that carry a relay's limits
        runOnLimitedConnection: true
      })
    }
  }
  if (mdnsInit != null) init.peerDiscovery = [mdns(mdnsInit)]
  if (dhtInit != null) init.services.dht = dhtService(dhtInit)
  if (relayClient) init.transports.push(circuitRelayTransport())
  if (relayServer != null) {
    init.services.relay = circuitRelayServer({
      reservations: relayServer === 'off'
        ? { applyDefaultLimit: false, maxReservations }
        : { maxReservations }
    })
  }
  if (pskFile != null && pskFile !== true) {
    init.connectionProtector = preSharedKey({ psk: new Uint8Array(readFileSync(pskFile)) })
  }
  const node = await createLibp2p(init)
  const handlerOptions = {
    maxInboundStreams: MAX_STREAMS_PER_PROTOCOL,
    maxOutboundStreams: MAX_STREAMS_PER_PROTOCOL,
    runOnLimitedConnection: true
  }
  await node.handle(PERF_PROTOCOL, (stream, connection) => {
    perfServe(stream, connection).catch((err) => {
      emit('PERF_ERROR', { peer: connection.remotePeer.toString(), error: errorText(err) })
      stream.abort(err)
    })
  }, handlerOptions)
  await node.handle(SINK_PROTOCOL, (stream, connection) => {
    sinkServe(stream, connection).catch((err) => {
      emit('SINK_ERROR', { peer: connection.remotePeer.toString(), error: errorText(err) })
      stream.abort(err)
    })
  }, handlerOptions)
  watchIdentify(node)
  // PEER_ID comes first, before anything start() does (dialling a relay to reserve)
  if (announce) emit('PEER_ID', node.peerId.toString())
  if (autoStart) await node.start()
  return node
}

// A relayed connection's limits as js tracks them (null when unlimited):
// bytes = data budget left (js counts both directions and the handshakes),
// seconds = time left. js computes seconds from the Limit.duration it received
// read as SECONDS (so a js relay's 120000 shows as ~120000). The getters are
// not enumerable, hence the explicit copy.
function limitsJson (limits) {
  if (limits == null) return null
  return {
    bytes: limits.bytes != null ? Number(limits.bytes) : null,
    seconds: limits.seconds != null ? Number(limits.seconds) : null
  }
}

function connectionInfo (conn) {
  return {
    id: conn.id,
    remotePeer: conn.remotePeer.toString(),
    remoteAddr: conn.remoteAddr.toString(),
    direction: conn.direction,
    encryption: conn.encryption ?? null,
    multiplexer: conn.multiplexer ?? null,
    relayed: conn.remoteAddr.toString().includes(CIRCUIT),
    limits: limitsJson(conn.limits)
  }
}

// Prints RELAY_MSG {proto:"hop"|"stop",type,status,limit} for every relay
// message that may carry a Limit, with the numbers exactly as decoded from the
// wire: hop STATUS (answers to RESERVE and CONNECT, read by clients) and stop
// CONNECT (read by the relayed-to peer). limit is {duration,data} or null.
// It wraps the decoders of @libp2p/circuit-relay-v2's own protobuf module (the
// same module instance the transport uses), so nothing else changes.
async function watchRelayMessages () {
  const pbUrl = new URL('./node_modules/@libp2p/circuit-relay-v2/dist/src/pb/index.js', import.meta.url)
  const { HopMessage, StopMessage } = await import(pbUrl.href)
  const wrap = (ns, proto, wanted) => {
    const decode = ns.decode
    ns.decode = (buf, opts) => {
      const m = decode(buf, opts)
      if (m?.type === wanted) {
        emit('RELAY_MSG', {
          proto,
          type: m.type,
          status: m.status ?? null,
          limit: m.limit == null
            ? null
            : { duration: m.limit.duration ?? null, data: m.limit.data != null ? Number(m.limit.data) : null }
        })
      }
      return m
    }
  }
  wrap(HopMessage, 'hop', 'STATUS')
  wrap(StopMessage, 'stop', 'CONNECT')
}

function identifyJson (result) {
  return {
    peerId: result.peerId.toString(),
    agentVersion: result.agentVersion ?? null,
    protocolVersion: result.protocolVersion ?? null,
    protocols: result.protocols ?? [],
    listenAddrs: (result.listenAddrs ?? []).map(a => a.toString()),
    observedAddr: result.observedAddr?.toString() ?? null,
    publicKey: result.publicKey != null ? hex(result.publicKey) : null,
    signedPeerRecord: result.signedPeerRecord != null
      ? { seq: result.signedPeerRecord.seq, addresses: result.signedPeerRecord.addresses.map(a => a.toString()) }
      : null,
    remoteAddr: result.connection?.remoteAddr?.toString() ?? null
  }
}

// Runs identify on every new connection (as js does by default) and prints
// IDENTIFY for the answer; identify-push messages are printed as IDENTIFY_PUSH.
function watchIdentify (node) {
  const explicit = new Set()
  const waiters = new Map()
  const settled = new Map()
  node.identifyWaiters = waiters
  node.identifySettled = settled
  node.addEventListener('peer:identify', (evt) => {
    if (explicit.has(evt.detail.connection?.id)) return
    emit('IDENTIFY_PUSH', identifyJson(evt.detail))
  })
  node.addEventListener('connection:open', (evt) => {
    const conn = evt.detail
    emit('CONNECTION_OPEN', connectionInfo(conn))
    explicit.add(conn.id)
    node.services.identify.identify(conn)
      .then((result) => {
        emit('IDENTIFY', identifyJson(result))
        settled.set(conn.remotePeer.toString(), { result })
        waiters.get(conn.remotePeer.toString())?.resolve(result)
      })
      .catch((err) => {
        emit('IDENTIFY_ERROR', { peer: conn.remotePeer.toString(), error: errorText(err) })
        settled.set(conn.remotePeer.toString(), { error: err })
        waiters.get(conn.remotePeer.toString())?.reject(err)
      })
      .finally(() => { explicit.delete(conn.id) })
  })
  node.addEventListener('connection:close', (evt) => {
    emit('CONNECTION_CLOSE', connectionInfo(evt.detail))
  })
}

function identifyWaiter (node, peerIdString) {
  const done = node.identifySettled.get(peerIdString)
  if (done != null) return done.error != null ? Promise.reject(done.error) : Promise.resolve(done.result)
  const w = Promise.withResolvers()
  node.identifyWaiters.set(peerIdString, w)
  return w.promise
}

// ---------------------------------------------------------------- stream helpers

// Calls onChunk(Uint8Array) for every received chunk, in order, and resolves
// once the remote closed its write side and all data was delivered. Rejects if
// the stream is reset or aborted.
function consume (stream, onChunk) {
  return new Promise((resolve, reject) => {
    let done = false
    const finish = (err) => {
      if (done) return
      done = true
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('end', onEnd)
      stream.removeEventListener('close', onClose)
      if (err != null) reject(err)
      else resolve()
    }
    const onMessage = (evt) => {
      try {
        const d = evt.data
        if (d instanceof Uint8Array) onChunk(d)
        else for (const b of d) onChunk(b)
      } catch (err) {
        stream.abort(err)
        finish(err)
      }
    }
    const onEnd = () => finish()
    const onClose = (evt) => {
      if (evt.error != null) finish(evt.error)
      else if (stream.readBufferLength === 0) finish()
      // otherwise 'end' follows once the buffer is delivered
    }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('end', onEnd)
    stream.addEventListener('close', onClose)
    if (stream.readableEnded) finish()
  })
}

// Sequential reader for request/response protocols (ping on one stream).
class ExactReader {
  constructor (stream) {
    this.chunks = []
    this.length = 0
    this.waiter = null
    this.ended = false
    this.error = null
    this.done = consume(stream, (b) => {
      this.chunks.push(b)
      this.length += b.byteLength
      this.wake()
    }).then(() => { this.ended = true; this.wake() }, (err) => { this.ended = true; this.error = err; this.wake() })
  }

  wake () {
    const w = this.waiter
    this.waiter = null
    w?.()
  }

  async read (n) {
    while (this.length < n) {
      if (this.ended) throw this.error ?? new Error(`unexpected EOF: wanted ${n} bytes, have ${this.length}`)
      await new Promise((resolve) => { this.waiter = resolve })
    }
    const out = new Uint8Array(n)
    let off = 0
    while (off < n) {
      const head = this.chunks[0]
      const take = Math.min(head.byteLength, n - off)
      out.set(head.subarray(0, take), off)
      off += take
      if (take === head.byteLength) this.chunks.shift()
      else this.chunks[0] = head.subarray(take)
    }
    this.length -= n
    return out
  }
}

async function sendAll (stream, chunkSource) {
  for (const chunk of chunkSource) {
    if (!stream.send(chunk)) {
      await stream.onDrain()
    }
  }
}

// Pattern byte i is i % 251. PATTERN holds enough bytes that any window of
// WRITE_BLOCK bytes starting at offset (pos % 251) fits.
const PATTERN = (() => {
  const len = PATTERN_MOD * (Math.ceil(WRITE_BLOCK / PATTERN_MOD) + 1)
  const p = Buffer.alloc(len)
  for (let i = 0; i < len; i++) p[i] = i % PATTERN_MOD
  return p
})()

function * patternChunks (total) {
  let pos = 0
  while (pos < total) {
    const n = Math.min(WRITE_BLOCK, total - pos)
    const start = pos % PATTERN_MOD
    yield PATTERN.subarray(start, start + n)
    pos += n
  }
}

const ZERO_BLOCK = new Uint8Array(WRITE_BLOCK)

function * zeroChunks (total) {
  let left = total
  while (left > 0) {
    const n = Math.min(WRITE_BLOCK, left)
    yield ZERO_BLOCK.subarray(0, n)
    left -= n
  }
}

function u64be (n) {
  const b = new Uint8Array(8)
  new DataView(b.buffer).setBigUint64(0, BigInt(n), false)
  return b
}

// ---------------------------------------------------------------- servers

// /perf/1.0.0 server (libp2p perf spec): read a big-endian uint64 N, drain
// everything until the remote closes its write side, then send N bytes and
// close. Writing never starts before the upload ended.
async function perfServe (stream, connection) {
  const header = new Uint8Array(8)
  let headerHave = 0
  let uploaded = 0
  const t0 = now()
  await consume(stream, (b) => {
    let off = 0
    if (headerHave < 8) {
      const take = Math.min(8 - headerHave, b.byteLength)
      header.set(b.subarray(0, take), headerHave)
      headerHave += take
      off = take
    }
    uploaded += b.byteLength - off
  })
  if (headerHave < 8) throw new Error(`perf: stream ended after ${headerHave} header bytes`)
  const toSend = new DataView(header.buffer).getBigUint64(0, false)
  if (toSend > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`perf: download size ${toSend} too large`)
  const t1 = now()
  await sendAll(stream, zeroChunks(Number(toSend)))
  await stream.close()
  emit('PERF_DONE', {
    peer: connection.remotePeer.toString(),
    uploadBytes: uploaded,
    downloadBytes: Number(toSend),
    uploadSeconds: round((t1 - t0) / 1000, 6),
    downloadSeconds: round((now() - t1) / 1000, 6)
  })
}

// /weft-sink/1.0.0 server: count bytes until the remote closes its write side,
// then answer with the count as a big-endian uint64 and close.
async function sinkServe (stream, connection) {
  let bytes = 0
  let first = null
  await consume(stream, (b) => {
    if (first === null) first = now()
    bytes += b.byteLength
  })
  const seconds = first === null ? 0 : (now() - first) / 1000
  stream.send(u64be(bytes))
  await stream.close()
  emit('SINK_DONE', { peer: connection.remotePeer.toString(), bytes, seconds: round(seconds, 6) })
}

// ---------------------------------------------------------------- clients

async function pingAction (node, conn, flags) {
  const count = intFlag(flags, 'count', 5)
  const rtts = []
  if (flags['reuse-stream'] === true) {
    // several pings on ONE stream, timed with a high-resolution clock
    const stream = await conn.newStream(PING_PROTOCOL, { runOnLimitedConnection: true })
    const reader = new ExactReader(stream)
    for (let i = 0; i < count; i++) {
      const data = new Uint8Array(randomBytes(PING_LENGTH))
      const t = now()
      stream.send(data)
      const back = await reader.read(PING_LENGTH)
      const rtt = now() - t
      if (!Buffer.from(back).equals(Buffer.from(data))) throw new Error(`ping ${i}: wrong payload echoed`)
      rtts.push(round(rtt))
      emit('PING', round(rtt))
    }
    await stream.close()
    await reader.done
  } else {
    // the real @libp2p/ping client: one new stream per ping, 32 bytes, then
    // half-close; the value is whole milliseconds (Date.now based)
    for (let i = 0; i < count; i++) {
      const rtt = await node.services.ping.ping(conn.remotePeer)
      rtts.push(rtt)
      emit('PING', rtt)
    }
  }
  const sum = rtts.reduce((a, b) => a + b, 0)
  emit('RESULT', {
    count,
    reuseStream: flags['reuse-stream'] === true,
    rttsMs: rtts,
    minMs: Math.min(...rtts),
    avgMs: round(sum / rtts.length),
    maxMs: Math.max(...rtts)
  })
}

async function echoAction (conn, flags) {
  const total = intFlag(flags, 'bytes')
  const stream = await conn.newStream(ECHO_PROTOCOL, { negotiateFully: flags.optimistic !== true, runOnLimitedConnection: true })
  let received = 0
  let mismatchAt = -1
  const t0 = now()
  const reading = consume(stream, (b) => {
    if (received + b.byteLength > total) throw new Error(`echo: received more than ${total} bytes`)
    if (mismatchAt < 0) {
      const start = received % PATTERN_MOD
      // compare in windows of at most WRITE_BLOCK bytes
      for (let off = 0; off < b.byteLength; off += WRITE_BLOCK) {
        const len = Math.min(WRITE_BLOCK, b.byteLength - off)
        const s = (start + off) % PATTERN_MOD
        const got = Buffer.from(b.buffer, b.byteOffset + off, len)
        if (!got.equals(PATTERN.subarray(s, s + len))) {
          for (let i = 0; i < len; i++) {
            if (got[i] !== (received + off + i) % PATTERN_MOD) { mismatchAt = received + off + i; break }
          }
          break
        }
      }
    }
    received += b.byteLength
  })
  await sendAll(stream, patternChunks(total))
  await stream.close()
  const tSent = now()
  await reading
  const seconds = (now() - t0) / 1000
  if (received !== total) throw new Error(`echo: received ${received} of ${total} bytes before EOF`)
  if (mismatchAt >= 0) throw new Error(`echo: content mismatch at byte ${mismatchAt}`)
  emit('RESULT', {
    bytes: total,
    seconds: round(seconds, 6),
    sendSeconds: round((tSent - t0) / 1000, 6),
    mibPerSec: seconds > 0 ? round(total / MIB / seconds) : null,
    ok: true,
    relayed: conn.remoteAddr.toString().includes(CIRCUIT),
    limits: limitsJson(conn.limits)
  })
}

// /perf/1.0.0 client. uploadSeconds runs from the first header byte until the
// first download byte arrives (or EOF when --download 0): the server only starts
// sending after it saw our EOF, so this includes the server draining our upload.
async function perfRun (conn, upload, download) {
  const stream = await conn.newStream(PERF_PROTOCOL, { runOnLimitedConnection: true })
  let received = 0
  let firstByte = null
  const t0 = now()
  const reading = consume(stream, (b) => {
    if (firstByte === null) firstByte = now()
    received += b.byteLength
  })
  stream.send(u64be(download))
  await sendAll(stream, zeroChunks(upload))
  await stream.close()
  await reading
  const tEnd = now()
  if (received !== download) throw new Error(`perf: expected ${download} bytes, received ${received}`)
  const tMid = firstByte ?? tEnd
  return {
    uploadBytes: upload,
    uploadSeconds: round((tMid - t0) / 1000, 6),
    downloadBytes: received,
    downloadSeconds: round((tEnd - tMid) / 1000, 6)
  }
}

async function sinkRun (conn, total) {
  const stream = await conn.newStream(SINK_PROTOCOL, { runOnLimitedConnection: true })
  const reader = new ExactReader(stream)
  const t0 = now()
  await sendAll(stream, zeroChunks(total))
  await stream.close()
  const reply = await reader.read(8)
  const seconds = (now() - t0) / 1000
  await reader.done
  const counted = Number(new DataView(reply.buffer).getBigUint64(0, false))
  if (counted !== total) throw new Error(`sink: remote counted ${counted} of ${total} bytes`)
  return { bytes: total, seconds: round(seconds, 6), mibPerSec: seconds > 0 ? round(total / MIB / seconds) : null }
}

// ---------------------------------------------------------------- lifecycle

async function stopNode (node) {
  await Promise.race([
    node.stop().catch(() => {}),
    new Promise((resolve) => setTimeout(resolve, STOP_GRACE_MS).unref())
  ])
}

function deadlineMs (flags) {
  return intFlag(flags, 'deadline-s', DEFAULT_DEADLINE_S) * 1000
}

function muxerInlineFlag (flags) {
  const v = flags['muxer-inline'] ?? 'on'
  if (v !== 'on' && v !== 'off') throw new Error('--muxer-inline must be on or off')
  return v === 'on'
}

// Only a pipe or socket on stdin is watched: the parent closes it (or dies) to
// stop us. A TTY or /dev/null on stdin is ignored.
function watchStdin (onClose) {
  let st
  try { st = fstatSync(0) } catch { return }
  if (!st.isFIFO() && !st.isSocket()) return
  process.stdin.on('end', onClose)
  process.stdin.on('close', onClose)
  process.stdin.on('error', onClose)
  process.stdin.resume()
}

function relayLimitsFlag (flags) {
  const v = flags['relay-limits'] ?? 'default'
  if (v !== 'default' && v !== 'off') throw new Error('--relay-limits must be default or off')
  return v
}

// --reserve <relay>/p2p/<relay id>: the relay to listen on.
function reserveFlag (flags) {
  const v = flags.reserve
  if (v === undefined) return null
  if (v === true) throw new Error('--reserve <relay multiaddr with /p2p/<id>> is required')
  const ma = multiaddr(String(v))
  if (ma.getComponents().findLast(c => c.name === 'p2p') == null) throw new Error('--reserve needs a relay address ending in /p2p/<relay id>')
  if (String(v).includes(CIRCUIT)) throw new Error('--reserve takes the relay address, without /p2p-circuit')
  return ma
}

const isCircuit = (a) => a.toString().includes(CIRCUIT)

// Resolves with our circuit addresses once a reservation made them appear
// (js-libp2p's start() normally waits for the reservation already).
function circuitAddrs (node) {
  const now = node.getMultiaddrs().filter(isCircuit)
  if (now.length > 0) return Promise.resolve(now)
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      node.removeEventListener('self:peer:update', onUpdate)
      reject(new Error(`no circuit address within ${RESERVE_WAIT_MS / 1000} s (reservation failed?)`))
    }, RESERVE_WAIT_MS)
    const onUpdate = () => {
      const addrs = node.getMultiaddrs().filter(isCircuit)
      if (addrs.length === 0) return
      clearTimeout(timer)
      node.removeEventListener('self:peer:update', onUpdate)
      resolve(addrs)
    }
    node.addEventListener('self:peer:update', onUpdate)
  })
}

// ---------------------------------------------------------------- discovery: mDNS and kad-dht

// The kad-dht service as the interop tests use it: every address is kept in
// answers (the default mapper drops private ones, and the tests run on
// loopback or in a lab of private addresses), /weft/ records are accepted
// as opaque values (first wins, like Weft's), and queries do not wait for a
// first self-query.
function dhtService ({ mode = 'server', protocol = DHT_PROTOCOL }) {
  return kadDHT({
    protocol,
    clientMode: mode === 'client',
    peerInfoMapper: passthroughMapper,
    validators: { [DHT_NAMESPACE]: async () => {} },
    selectors: { [DHT_NAMESPACE]: () => 0 },
    allowQueryWithZeroPeers: true
  })
}

function mdnsFlags (flags) {
  if (flags.mdns === undefined) return undefined
  const init = {}
  if (flags['mdns-service'] !== undefined) init.serviceTag = String(flags['mdns-service'])
  if (flags['mdns-interval-ms'] !== undefined) init.interval = intFlag(flags, 'mdns-interval-ms')
  return init
}

function dhtFlags (flags, fallbackMode) {
  const mode = flags.dht ?? flags['dht-mode'] ?? fallbackMode
  if (mode === undefined) return undefined
  if (mode !== 'server' && mode !== 'client') throw new Error('--dht must be server or client')
  return { mode, protocol: flags['dht-protocol'] === undefined ? DHT_PROTOCOL : String(flags['dht-protocol']) }
}

function bootstrapFlag (flags) {
  if (flags.bootstrap === undefined) return []
  if (flags.bootstrap === true) throw new Error('--bootstrap ADDR[,ADDR...] needs a value')
  return String(flags.bootstrap).split(',').filter(x => x.length > 0).map(a => multiaddr(a))
}

// Prints MDNS_DISCOVERED {peerId, addrs} (and for DHT nodes DISCOVERED) for every peer:discovery event.
function watchDiscovery (node, keyword) {
  node.addEventListener('peer:discovery', (evt) => {
    emit(keyword, { peerId: evt.detail.id.toString(), addrs: (evt.detail.multiaddrs ?? []).map(a => a.toString()) })
  })
}

// Waits until the DHT routing table holds at least `count` peers.
async function waitTable (node, count, ms = DHT_TABLE_WAIT_MS) {
  const until = now() + ms
  while (node.services.dht.routingTable.size < count) {
    if (now() > until) throw new Error(`the DHT routing table has ${node.services.dht.routingTable.size} peers, wanted ${count}, after ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

// A provider key from the command line: a CID, or any other text standing for
// the CID v1 raw of its sha2-256 (as EdgeMesh's rendezvous string does).
async function contentKey (text) {
  try { return CID.parse(text) } catch {}
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(text)))
}

// A record key from the command line: /NS/NAME as given, or NAME for /weft/NAME.
function recordKey (text) {
  return new TextEncoder().encode(text.startsWith('/') ? text : `/${DHT_NAMESPACE}/${text}`)
}

const peerJson = (p) => ({ peerId: p.id.toString(), addrs: (p.multiaddrs ?? []).map(a => a.toString()) })

// mdns-bench: time from starting a node with mDNS to its first peer:discovery
// (a responder must already run on the LAN). Each run is a fresh node; runs are
// --gap-ms apart. Prints RESULT {runs, msMedian, msMin, msMax, ms:[...]}.
async function mdnsBenchMode (flags) {
  const runs = intFlag(flags, 'runs', 10)
  const gap = intFlag(flags, 'gap-ms', 1500)
  const host = flags.host === undefined ? '127.0.0.1' : String(flags.host)
  const ms = []
  for (let i = 0; i < runs; i++) {
    const node = await makeNode({ listen: true, host, mdnsInit: mdnsFlags({ ...flags, mdns: true }), autoStart: false })
    const first = new Promise((resolve) => node.addEventListener('peer:discovery', resolve, { once: true }))
    const t0 = now()
    await node.start()
    await Promise.race([first, new Promise((resolve, reject) => setTimeout(() => reject(new Error('no discovery within 30 s')), 30_000).unref())])
    ms.push(round(now() - t0))
    await stopNode(node)
    await new Promise((resolve) => setTimeout(resolve, gap))
  }
  const sorted = [...ms].sort((a, b) => a - b)
  emit('RESULT', { runs, msMedian: sorted[Math.floor((sorted.length - 1) / 2)], msMin: sorted[0], msMax: sorted[sorted.length - 1], ms })
}

// dht3: three js kad-dht servers in one process, connected to each other (and
// to --bootstrap peers). Prints DHT_NODE <addr>/p2p/<id> for each, then READY.
async function dht3Mode (flags) {
  const dl = deadlineMs(flags)
  const dht = dhtFlags(flags, 'server')
  const host = flags.host === undefined ? '127.0.0.1' : String(flags.host)
  const seed = flags.seed === undefined ? undefined : String(flags.seed)
  const nodes = []
  for (let i = 0; i < 3; i++) {
    nodes.push(await makeNode({ listen: true, host, seed: seed === undefined ? undefined : `${seed}-${i}`, dhtInit: dht, streamTimeoutMs: dl }))
  }
  const shutdown = async (reason, code = 0) => {
    emit('STOPPING', reason)
    await Promise.all(nodes.map(stopNode))
    process.exit(code)
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
  watchStdin(() => { shutdown('stdin closed') })
  setTimeout(() => { shutdown('deadline') }, dl)
  for (const n of nodes.slice(1)) await n.dial(nodes[0].getMultiaddrs()[0])
  await nodes[2].dial(nodes[1].getMultiaddrs()[0])
  for (const n of nodes) for (const b of bootstrapFlag(flags)) await n.dial(b)
  for (const n of nodes) await waitTable(n, 2)
  for (const n of nodes) emit('DHT_NODE', n.getMultiaddrs()[0].toString())
  emit('READY', { peers: nodes.map(n => n.peerId.toString()), tables: nodes.map(n => n.services.dht.routingTable.size) })
}

// dht OP ...: one js kad-dht node (client mode unless --dht-mode server) joins
// through --bootstrap, runs one operation and prints DHT_RESULT {json}.
async function dhtOpMode (positional, flags) {
  const [op, arg, value] = positional
  const want = { put: 2, get: 1, provide: 1, 'find-providers': 1, 'find-peer': 1 }[op]
  if (want === undefined || positional.length !== want + 1) throw new Error('usage: dht put KEY VALUE | get KEY | provide KEY | find-providers KEY | find-peer PEERID --bootstrap ADDR')
  const bootstrap = bootstrapFlag(flags)
  if (bootstrap.length === 0) throw new Error('--bootstrap ADDR[,ADDR...] is required')
  const node = await makeNode({ listen: true, host: flags.host === undefined ? '127.0.0.1' : String(flags.host), seed: flags.seed, dhtInit: dhtFlags(flags, 'client') })
  const timer = setTimeout(() => { emit('ERROR', 'DeadlineError: dht operation took too long'); process.exit(1) }, deadlineMs(flags))
  try {
    for (const b of bootstrap) await node.dial(b)
    await waitTable(node, 1)
    const dht = node.services.dht
    const t0 = now()
    let result
    switch (op) {
      case 'put': {
        let responses = 0
        for await (const ev of dht.put(recordKey(arg), new TextEncoder().encode(value))) if (ev.name === 'PEER_RESPONSE') responses++
        result = { op, stored: responses }
        break
      }
      case 'get': {
        let found
        for await (const ev of dht.get(recordKey(arg))) if (ev.name === 'VALUE' && found === undefined) found = { value: new TextDecoder().decode(ev.value), from: ev.from.toString() }
        if (found === undefined) throw new Error(`no value for ${arg}`)
        result = { op, ...found }
        break
      }
      case 'provide': {
        const cid = await contentKey(arg)
        let sent = 0
        for await (const ev of dht.provide(cid)) if (ev.name === 'PEER_RESPONSE' && ev.messageName === 'ADD_PROVIDER') sent++
        result = { op, cid: cid.toString(), sent }
        break
      }
      case 'find-providers': {
        const cid = await contentKey(arg)
        const providers = new Map()
        for await (const ev of dht.findProviders(cid)) if (ev.name === 'PROVIDER') for (const p of ev.providers) providers.set(p.id.toString(), peerJson(p))
        result = { op, cid: cid.toString(), providers: [...providers.values()] }
        break
      }
      case 'find-peer': {
        let found
        for await (const ev of dht.findPeer(peerIdFromString(arg))) if (ev.name === 'FINAL_PEER' && found === undefined) found = peerJson(ev.peer)
        if (found === undefined) throw new Error(`peer ${arg} not found`)
        result = { op, ...found }
        break
      }
    }
    emit('DHT_RESULT', { ...result, ms: round(now() - t0), table: dht.routingTable.size })
  } finally {
    clearTimeout(timer)
    await stopNode(node)
  }
}

// listen, and relay (role === 'relay'): a relay is a listener that also runs
// the circuit relay v2 server.
async function listenMode (flags, role = 'listen') {
  const dl = deadlineMs(flags)
  const relay = role === 'relay'
  const reserve = relay ? null : reserveFlag(flags)
  if (reserve != null) await watchRelayMessages()
  const node = await makeNode({
    listen: true,
    host: flags.host === undefined ? '127.0.0.1' : String(flags.host),
    port: intFlag(flags, 'port', 0),
    seed: flags.seed,
    pskFile: flags.psk,
    muxerInline: muxerInlineFlag(flags),
    streamTimeoutMs: dl,
    relayClient: reserve != null,
    relayServer: relay ? relayLimitsFlag(flags) : undefined,
    maxReservations: intFlag(flags, 'max-reservations', DEFAULT_MAX_RESERVATIONS),
    extraListen: reserve != null ? [reserve.encapsulate(CIRCUIT).toString()] : [],
    announce: true,
    mdnsInit: mdnsFlags(flags),
    dhtInit: dhtFlags(flags)
  })
  if (flags.mdns !== undefined) watchDiscovery(node, 'MDNS_DISCOVERED')
  else if (node.services.dht != null) watchDiscovery(node, 'DISCOVERED')
  for (const b of bootstrapFlag(flags)) await node.dial(b)
  let stopping = false
  const shutdown = async (reason, code = 0) => {
    if (stopping) return
    stopping = true
    emit('STOPPING', reason)
    await stopNode(node)
    process.exit(code)
  }
  process.on('SIGTERM', () => { shutdown('SIGTERM') })
  process.on('SIGINT', () => { shutdown('SIGINT') })
  watchStdin(() => { shutdown('stdin closed') })
  setTimeout(() => { shutdown('deadline') }, dl)

  const circuits = reserve != null ? (await circuitAddrs(node)).map(a => a.toString()) : []
  const addrs = node.getMultiaddrs().map(a => a.toString())
  for (const a of addrs) if (!isCircuit(a)) emit('LISTEN', a)
  for (const a of circuits) emit('CIRCUIT', a)
  emit('READY', { peerId: node.peerId.toString(), addrs, protocols: node.getProtocols(), relay: relay ? relayLimitsFlag(flags) : null })
}

async function withDialNode (flags, fn, relayClient = false) {
  const dl = deadlineMs(flags)
  const timer = setTimeout(() => {
    emit('ERROR', `DeadlineError: no result after ${dl / 1000} s`)
    process.exit(1)
  }, dl)
  if (relayClient) await watchRelayMessages()
  const node = await makeNode({
    listen: false,
    seed: flags.seed,
    pskFile: flags.psk,
    muxerInline: muxerInlineFlag(flags),
    streamTimeoutMs: dl,
    relayClient,
    announce: true
  })
  try {
    await fn(node)
  } finally {
    clearTimeout(timer)
    await stopNode(node)
  }
}

async function dialMode (positional, flags) {
  const [target, action] = positional
  if (target == null || action == null) throw new Error('usage: dial <multiaddr> <identify|ping|echo|perf|sink> [options]')
  if (!['identify', 'ping', 'echo', 'perf', 'sink'].includes(action)) throw new Error(`unknown action ${action}`)
  const ma = multiaddr(target)
  const targetPeer = ma.getComponents().findLast(c => c.name === 'p2p')?.value
  await withDialNode(flags, async (node) => {
    const identified = targetPeer != null ? identifyWaiter(node, targetPeer) : null
    identified?.catch(() => {})
    const t = now()
    let conn
    try {
      conn = await node.dial(ma)
    } catch (err) {
      emit('DIAL_ERROR', { ms: round(now() - t), error: errorText(err) })
      throw err
    }
    emit('CONNECTED', { ...connectionInfo(conn), ms: round(now() - t) })
    switch (action) {
      case 'identify': {
        const waiter = identified ?? identifyWaiter(node, conn.remotePeer.toString())
        const result = await Promise.race([
          waiter,
          new Promise((_resolve, reject) => setTimeout(() => reject(new Error('no identify answer within 10 s')), IDENTIFY_WAIT_MS).unref())
        ])
        emit('SELF_OBSERVED', result.observedAddr?.toString() ?? 'none')
        emit('RESULT', identifyJson(result))
        break
      }
      case 'ping':
        await pingAction(node, conn, flags)
        break
      case 'echo':
        await echoAction(conn, flags)
        break
      case 'perf': {
        const r = await perfRun(conn, intFlag(flags, 'upload', 0), intFlag(flags, 'download', 0))
        emit('RESULT', r)
        break
      }
      case 'sink':
        emit('RESULT', await sinkRun(conn, intFlag(flags, 'bytes')))
        break
      default:
        throw new Error(`unknown action ${action}`)
    }
  }, isCircuit(ma))
}

// js<->js throughput baseline over TCP+Noise+yamux on loopback. By default the
// listener is a second node process (this script in listen mode); with
// --in-process both nodes share this process.
async function sinkBenchMode (flags) {
  const total = intFlag(flags, 'bytes', 256 * MIB)
  const runs = intFlag(flags, 'runs', 3)
  const proto = flags.proto === undefined ? 'sink' : String(flags.proto)
  if (!['sink', 'perf-up', 'perf-down', 'echo'].includes(proto)) throw new Error('--proto must be sink, perf-up, perf-down or echo')
  const dl = deadlineMs(flags)
  let child = null
  let listener = null
  let target
  if (flags['in-process'] === true) {
    listener = await makeNode({ listen: true, seed: 'bench-listener', streamTimeoutMs: dl })
    target = listener.getMultiaddrs()[0]
  } else {
    const script = fileURLToPath(import.meta.url)
    child = spawn(process.execPath, [script, 'listen', '--seed', 'bench-listener', '--deadline-s', String(dl / 1000)], {
      stdio: ['pipe', 'pipe', 'inherit']
    })
    const lines = createInterface({ input: child.stdout })
    target = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('listener did not start within 20 s')), 20_000)
      child.once('exit', (code) => reject(new Error(`listener exited early with code ${code}`)))
      lines.on('line', (line) => {
        if (line.startsWith('LISTEN ')) { clearTimeout(timer); resolve(multiaddr(line.slice(7))) }
      })
    })
  }
  try {
    await withDialNode(flags, async (node) => {
      const conn = await node.dial(target)
      const results = []
      for (let i = 0; i < runs; i++) {
        let r
        if (proto === 'sink') {
          r = await sinkRun(conn, total)
        } else if (proto === 'perf-up' || proto === 'perf-down') {
          const p = await perfRun(conn, proto === 'perf-up' ? total : 0, proto === 'perf-down' ? total : 0)
          const seconds = proto === 'perf-up' ? p.uploadSeconds : p.downloadSeconds
          r = { bytes: total, seconds, mibPerSec: seconds > 0 ? round(total / MIB / seconds) : null }
        } else {
          r = await echoBench(conn, total)
        }
        r = { proto, run: i + 1, processes: flags['in-process'] === true ? 1 : 2, ...r }
        results.push(r)
        emit('RESULT', r)
      }
      const rates = results.map(r => r.mibPerSec).sort((a, b) => a - b)
      emit('SUMMARY', { proto, bytes: total, runs, medianMibPerSec: rates[Math.floor(rates.length / 2)], minMibPerSec: rates[0], maxMibPerSec: rates[rates.length - 1] })
    })
  } finally {
    if (listener != null) await stopNode(listener)
    if (child != null) {
      child.stdin.end()
      child.kill('SIGTERM')
    }
  }
}

async function echoBench (conn, total) {
  const stream = await conn.newStream(ECHO_PROTOCOL)
  let received = 0
  const t0 = now()
  const reading = consume(stream, (b) => { received += b.byteLength })
  await sendAll(stream, zeroChunks(total))
  await stream.close()
  await reading
  const seconds = (now() - t0) / 1000
  if (received !== total) throw new Error(`echo: received ${received} of ${total}`)
  return { bytes: total, seconds: round(seconds, 6), mibPerSec: round(total / MIB / seconds) }
}

// ---------------------------------------------------------------- main

async function main () {
  const { positional, flags } = parseArgs(process.argv.slice(2))
  const mode = positional.shift()
  switch (mode) {
    case 'listen':
      await listenMode(flags)
      return // keeps running until stopped
    case 'relay':
      await listenMode(flags, 'relay')
      return // keeps running until stopped
    case 'dial':
      await dialMode(positional, flags)
      break
    case 'sink-bench':
      await sinkBenchMode(flags)
      break
    case 'dht3':
      await dht3Mode(flags)
      return // keeps running until stopped
    case 'dht':
      await dhtOpMode(positional, flags)
      break
    case 'mdns-bench':
      await mdnsBenchMode(flags)
      break
    default:
      throw new Error('usage: peer.mjs listen|relay|dial|sink-bench|dht3|dht|mdns-bench ... (see README.md)')
  }
  process.exit(0)
}

main().catch((err) => {
  emit('ERROR', errorText(err))
  log(err?.stack ?? String(err))
  process.exit(1)
})

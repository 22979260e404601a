// A JavaScript P2PT 1.6.2 peer for the benchmarks: `node p2pt-peer.mjs JS_DIR`.
//
// JS_DIR is the npm package holding p2pt, bittorrent-tracker and @roamhq/wrtc (the interop tests'
// tests/interop/js). The peer speaks the benchmark workers' protocol: one JSON command a line on
// stdin, {id, cmd, args}; one JSON answer a line on stdout, {id, ok, value} or {id, ok, error}.
// Times are CLOCK_MONOTONIC milliseconds (process.hrtime), comparable with Python's
// time.monotonic() on the same machine; durations are seconds.
//
// Commands:
//   p2pt.join {urls, identifier, serve}  new P2PT, start(); answers once a tracker answered, with
//                                        t_start_ms (taken right before start()). With serve,
//                                        every message is answered with itself (an echo).
//   p2pt.wait_peer {timeout}             waits for the first peerconnect: {t_connect_ms}
//   p2pt.echo {size}                     sends a string of size characters to that peer and waits
//                                        for the reply: seconds
//   p2pt.echo_file {path}                the same with a file's bytes as a latin-1 string (one
//                                        character a byte; P2PT sends text): {seconds, bytes}
//   p2pt.leave                           destroy()
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { pathToFileURL } from 'node:url'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'

const jsDir = process.argv[2]
if (!jsDir) {
  console.error('usage: node p2pt-peer.mjs JS_DIR')
  process.exit(2)
}
const require = createRequire(jsDir + '/package.json')
const { default: P2PT } = await import(pathToFileURL(require.resolve('p2pt')).href)

const nowMs = () => Number(process.hrtime.bigint()) / 1e6

let p2pt = null
let firstPeer = null
let connected = null

function withTimeout (promise, seconds, what) {
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} within ${seconds} s`)), seconds * 1000)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function leave () {
  if (p2pt) p2pt.destroy()
  p2pt = null
  firstPeer = null
  connected = null
}

const commands = {
  async join ({ urls, identifier, serve = false, timeout = 30 }) {
    leave()
    const instance = p2pt = new P2PT(urls, identifier)
    connected = new Promise(resolve => {
      instance.on('peerconnect', peer => {
        if (!firstPeer) {
          firstPeer = peer
          resolve(nowMs())
        }
      })
    })
    if (serve) instance.on('msg', (peer, msg) => peer.respond(msg))
    const tracker = new Promise(resolve => instance.once('trackerconnect', resolve))
    const tStart = nowMs()
    instance.start()
    await withTimeout(tracker, timeout, 'tracker answer')
    return { t_start_ms: tStart, peer_id: instance._peerId }
  },

  async wait_peer ({ timeout = 30 }) {
    if (!connected) throw new Error('p2pt.join first')
    return { t_connect_ms: await withTimeout(connected, timeout, 'peer') }
  },

  async echo ({ size, timeout = 60 }) {
    // Printable characters: P2PT sends strings, and JSON-escapes nothing of these.
    const msg = randomBytes(Math.ceil(size * 3 / 4) + 3).toString('base64').slice(0, size)
    return await timedEcho(msg, timeout)
  },

  async echo_file ({ path, timeout = 300 }) {
    const bytes = await readFile(path)
    return { seconds: await timedEcho(bytes.toString('latin1'), timeout), bytes: bytes.length }
  },

  async leave () {
    leave()
    return null
  }
}

async function timedEcho (msg, timeout) {
  if (!firstPeer) throw new Error('no peer')
  const start = process.hrtime.bigint()
  const [, reply] = await withTimeout(p2pt.send(firstPeer, msg), timeout, 'echo')
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  if (reply !== msg) throw new Error('the echo came back different')
  return seconds
}

function answer (reply) {
  process.stdout.write(JSON.stringify(reply) + '\n')
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
lines.on('line', line => {
  let request
  try {
    request = JSON.parse(line)
  } catch (error) {
    console.error('bad command line:', line)
    return
  }
  const { id, cmd, args = {} } = request
  const name = String(cmd).replace(/^p2pt\./, '')
  Promise.resolve()
    .then(() => {
      if (!Object.prototype.hasOwnProperty.call(commands, name)) throw new Error('no command ' + cmd)
      return commands[name](args)
    })
    .then(
      value => answer({ id, ok: true, value: value === undefined ? null : value }),
      error => answer({ id, ok: false, error: String((error && error.stack) || error) })
    )
})
// stdin closed: the orchestrator is done with this peer. The WebRTC stack keeps native handles
// alive, so leave explicitly.
lines.on('close', () => {
  leave()
  setTimeout(() => process.exit(0), 200)
})

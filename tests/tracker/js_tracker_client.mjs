// Drives bittorrent-tracker's own client (the one JavaScript P2PT uses) against a tracker, and
// prints what it sees as JSON lines on stdout for the Python test to check.
//
//   node js_tracker_client.mjs NODE_MODULES URL basic INFO_HASH OTHER_INFO_HASH
//     announce (no offers), scrape one and two swarms, announce `stopped`
//   node js_tracker_client.mjs NODE_MODULES URL signal INFO_HASH
//     two clients on separate sockets: B's offer reaches A, A's answer reaches B
//
// NODE_MODULES is given explicitly because ES modules do not honour NODE_PATH.

import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { randomBytes } from 'node:crypto'

const [nodeModules, url, mode, ...rest] = process.argv.slice(2)
const { default: Client } = await import(
  pathToFileURL(path.join(nodeModules, 'bittorrent-tracker', 'index.js')).href
)

function emit (obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function next (emitter, name) {
  return new Promise(resolve => emitter.once(name, (...args) => resolve(args)))
}

function watch (client, side) {
  client.on('warning', err => emit({ event: 'warning', side, message: err.message }))
  client.on('error', err => emit({ event: 'error', side, message: err.message }))
}

function scrape (infoHash) {
  return new Promise((resolve, reject) => {
    Client.scrape({ announce: url, infoHash }, (err, data) => (err ? reject(err) : resolve(data)))
  })
}

function counts (data) {
  return { complete: data.complete, incomplete: data.incomplete, downloaded: data.downloaded }
}

async function basic (infoHash, otherInfoHash) {
  const peerId = randomBytes(20)
  emit({ event: 'peer_id', peer_id: peerId.toString('hex') })
  const client = new Client({ infoHash, peerId, announce: [url], port: 6881 })
  watch(client, 'client')

  // numwant 0: the client generates no offers, so no WebRTC is involved.
  client.start({ numwant: 0 })
  const [update] = await next(client, 'update')
  emit({ event: 'update', complete: update.complete, incomplete: update.incomplete, interval: update.interval })

  const one = await scrape(infoHash)
  emit({ event: 'scrape', info_hash: one.infoHash, ...counts(one) })
  const two = await scrape([infoHash, otherInfoHash])
  for (const key of Object.keys(two).sort()) {
    emit({ event: 'scrape', info_hash: key, ...counts(two[key]) })
  }

  client.stop()
  const [stopped] = await next(client, 'update')
  emit({ event: 'stopped', complete: stopped.complete, incomplete: stopped.incomplete })
  client.destroy(() => {
    emit({ event: 'done' })
    process.exit(0)
  })
}

async function signal (infoHash) {
  // No ICE candidates at all ('relay' without TURN servers): the offers and answers are real
  // SDP, but no packet leaves the process; only signalling through the tracker is exercised.
  const rtcConfig = { iceServers: [], iceTransportPolicy: 'relay' }
  const make = (side, query) => {
    const peerId = randomBytes(20)
    emit({ event: 'peer_id', side, peer_id: peerId.toString('hex') })
    // Distinct URLs, so the two clients do not share the pooled socket.
    const client = new Client({ infoHash, peerId, announce: [`${url}/?${query}`], port: 6881, rtcConfig })
    watch(client, side)
    return client
  }
  const a = make('a', 'a')
  a.start({ numwant: 2 })
  await next(a, 'update')
  const b = make('b', 'b')
  const offered = next(a, 'peer') // A gets B's offer (the peer is created from it)
  const answered = next(b, 'peer') // B gets A's answer to it
  b.start({ numwant: 2 })
  const [fromB] = await offered
  emit({ event: 'offer_received', side: 'a', from: fromB.id })
  const [fromA] = await answered
  emit({ event: 'answer_received', side: 'b', from: fromA.id })
  a.destroy()
  b.destroy()
  emit({ event: 'done' })
  process.exit(0)
}

try {
  if (mode === 'basic') await basic(rest[0], rest[1])
  else if (mode === 'signal') await signal(rest[0])
  else throw new Error(`unknown mode ${mode}`)
} catch (err) {
  emit({ event: 'error', message: String(err && err.stack) })
  process.exit(1)
}

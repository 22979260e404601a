// The npm WebTorrent tracker (bittorrent-tracker's Server), WebSocket only:
// `node tracker.mjs [HOST] [PORT]`; port 0 picks a free port. When it listens it prints its
// announce URL as the first line of stdout. It stops when stdin closes (dropping its peers' sockets),
// so that it cannot outlive the test that started it.
import { Server } from 'bittorrent-tracker'

const [host = '127.0.0.1', port = '0'] = process.argv.slice(2)
const server = new Server({ udp: false, http: false, ws: true, stats: false })

server.on('error', error => {
  console.error('tracker error:', error.message)
  process.exit(1)
})
server.on('warning', error => console.error('tracker warning:', error.message))
server.on('listening', () => {
  const url = new URL('ws://' + (host.includes(':') ? `[${host}]` : host))
  url.port = String(server.ws.address().port)
  console.log(url.href.replace(/\/$/, ''))
})

// Exit at once: server.close() would wait for every connected peer to hang up first.
process.stdin.on('end', () => process.exit(0))
process.stdin.resume()
server.listen(Number(port), host)

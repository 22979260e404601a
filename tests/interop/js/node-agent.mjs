// Runs agent.js in node: `node node-agent.mjs ws://127.0.0.1:PORT/control`.
// P2PT's node build takes its WebRTC stack from @roamhq/wrtc; node 20 has no global WebSocket,
// so the control connection uses `ws`.
import P2PT from 'p2pt'
import WebSocket from 'ws'
import './agent.js'

const controlUrl = process.argv[2]
if (!controlUrl) {
  console.error('usage: node node-agent.mjs CONTROL_URL')
  process.exit(2)
}
await globalThis.runP2PTAgent({ P2PT, WebSocket, controlUrl, runtime: 'node' })
// The WebRTC stack keeps native handles alive: leave explicitly once the test lets go.
process.exit(0)

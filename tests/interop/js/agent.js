/**
 * A remote-controlled P2PT peer.
 *
 * One script for every runtime: node imports it for its side effect (see node-agent.mjs), a page
 * loads it with a <script> tag (see agent.html). It defines `globalThis.runP2PTAgent`, which
 * connects to a control WebSocket served by the Python tests, runs the JSON commands it receives
 * on a real P2PT instance and reports P2PT's events back as JSON, one object per text frame.
 *
 * Commands: {cmd, ref, ...args}. Each is answered by {event: "result", ref, value} or
 * {event: "error", ref, message}.
 *   start {announce_urls, identifier}   -> value {peer_id}
 *   send {peer_id, msg}                 -> value null; later {event: "reply", ref, peer_id, msg, handle}
 *                                          (or {event: "error", ref, message} if sending failed)
 *   respond {handle, msg}               -> value null; later a "reply" like send's, if one comes
 *   add_tracker {url}, remove_tracker {url}, request_more_peers, destroy -> value null
 *   tracker_stats                       -> value {connected, total}
 *   peers                               -> value [{peer_id, channels}]
 * Events: hello {runtime, user_agent}, peerconnect {peer_id}, peerclose {peer_id},
 *   msg {handle, peer_id, msg}, trackerconnect {announce, stats}, trackerwarning {message, stats},
 *   log {level, text}, error {message} (without ref: an uncaught error in the agent).
 *
 * A handle names one respond function: pass it to `respond` to answer that message or reply.
 * Messages are JSON values, exactly as P2PT delivers them (strings, or objects sent with o:1).
 */
(function (root) {
  'use strict'

  function describe (value) {
    if (value instanceof Error) return value.stack || String(value)
    if (typeof value === 'string') return value
    try {
      return JSON.stringify(value)
    } catch (e) {
      return String(value)
    }
  }

  function runAgent ({ P2PT, WebSocket, controlUrl, runtime }) {
    return new Promise(resolve => {
      const control = new WebSocket(controlUrl)
      let p2pt = null
      let nextHandle = 1
      // handle -> respond function; a handle stays valid for as long as the agent lives
      const responders = new Map()

      function report (event) {
        if (control.readyState === 1) control.send(JSON.stringify(event))
      }

      function remember (respondFn) {
        const handle = nextHandle++
        responders.set(handle, respondFn)
        return handle
      }

      // A reply (what send's and respond's promises resolve to) comes with a peer whose `respond`
      // P2PT set for that reply, but P2PT resets `peer.respond` on every incoming frame, and
      // another frame may arrive before the promise callback runs. A reply always answers the
      // message id it was waited for, so the agent builds its respond function from that id with
      // P2PT's own `_peerRespond`, which is what P2PT had set. To know the id behind a respond
      // function, every respond function P2PT makes is tagged with it.
      function tagRespondIds (instance) {
        const peerRespond = instance._peerRespond
        instance._peerRespond = function (peer, msgID) {
          const respondFn = peerRespond.call(this, peer, msgID)
          respondFn.msgID = msgID
          return respondFn
        }
      }

      function reportReply (instance, ref, id, promise) {
        promise.then(
          ([peer, msg]) => {
            const handle = remember(instance._peerRespond(peer, id))
            report({ event: 'reply', ref, peer_id: peer.id, msg, handle })
          },
          error => report({ event: 'error', ref, message: describe(error) })
        )
      }

      function requireP2PT () {
        if (!p2pt) throw new Error('P2PT is not started')
        return p2pt
      }

      function channelTo (peerId) {
        const channels = Object.values(requireP2PT().peers[peerId] || {})
        if (channels.length === 0) throw new Error('no connected peer ' + peerId)
        return channels.find(channel => channel.connected) || channels[0]
      }

      const commands = {
        async start ({ announce_urls: announceUrls, identifier }) {
          if (p2pt) throw new Error('P2PT is already started')
          p2pt = new P2PT(announceUrls, identifier)
          tagRespondIds(p2pt)
          p2pt.on('peerconnect', peer => report({ event: 'peerconnect', peer_id: peer.id }))
          p2pt.on('peerclose', peer => report({ event: 'peerclose', peer_id: peer.id }))
          p2pt.on('msg', (peer, msg) => {
            report({ event: 'msg', handle: remember(peer.respond), peer_id: peer.id, msg })
          })
          p2pt.on('trackerconnect', (tracker, stats) => {
            report({ event: 'trackerconnect', announce: tracker ? tracker.announceUrl : null, stats })
          })
          p2pt.on('trackerwarning', (error, stats) => {
            report({ event: 'trackerwarning', message: String((error && error.message) || error), stats })
          })
          await p2pt.start()
          return { peer_id: p2pt._peerId }
        },

        send ({ peer_id: peerId, msg, ref }) {
          const instance = requireP2PT()
          const peer = channelTo(peerId)
          // A new message's id, picked as P2PT picks one (100000-199999) but never one that still
          // waits for a reply (P2PT's own pick can collide with those, and the later message then
          // takes the earlier one's place): send() registers it in responseWaiting at once.
          const waiting = instance.responseWaiting[peerId] || {}
          let id
          do id = Math.floor(Math.random() * 100000 + 100000); while (String(id) in waiting)
          const promise = instance.send(peer, msg, id)
          if (!(String(id) in (instance.responseWaiting[peerId] || {}))) {
            throw new Error('P2PT did not register the message')
          }
          reportReply(instance, ref, id, promise)
          return null
        },

        respond ({ handle, msg, ref }) {
          const respondFn = responders.get(handle)
          if (!respondFn) throw new Error('unknown handle ' + handle)
          reportReply(requireP2PT(), ref, respondFn.msgID, respondFn(msg))
          return null
        },

        add_tracker ({ url }) {
          requireP2PT().addTracker(url)
          return null
        },

        remove_tracker ({ url }) {
          requireP2PT().removeTracker(url)
          return null
        },

        async request_more_peers () {
          await requireP2PT().requestMorePeers()
          return null
        },

        tracker_stats () {
          return requireP2PT().getTrackerStats()
        },

        peers () {
          return Object.entries(requireP2PT().peers).map(([peerId, channels]) => (
            { peer_id: peerId, channels: Object.keys(channels).length }
          ))
        },

        destroy () {
          requireP2PT().destroy()
          p2pt = null
          return null
        }
      }

      function run (command) {
        const { cmd, ref } = command
        Promise.resolve()
          .then(() => {
            if (!Object.prototype.hasOwnProperty.call(commands, cmd)) throw new Error('unknown command ' + cmd)
            return commands[cmd](command)
          })
          .then(
            value => report({ event: 'result', ref, value: value === undefined ? null : value }),
            error => report({ event: 'error', ref, message: describe(error) })
          )
      }

      // Everything the runtime or P2PT prints (P2PT logs malformed frames with console.log) reaches
      // the test as a log event.
      for (const level of ['log', 'info', 'warn', 'error']) {
        const original = console[level].bind(console)
        console[level] = (...args) => {
          original(...args)
          report({ event: 'log', level, text: args.map(describe).join(' ') })
        }
      }
      const reportUncaught = error => report({ event: 'error', message: describe(error) })
      if (typeof process === 'object' && typeof process.on === 'function') {
        process.on('uncaughtException', reportUncaught)
        process.on('unhandledRejection', reportUncaught)
      } else if (typeof root.addEventListener === 'function') {
        root.addEventListener('error', event => reportUncaught(event.error || event.message))
        root.addEventListener('unhandledrejection', event => reportUncaught(event.reason))
      }

      control.onopen = () => {
        const userAgent = typeof navigator === 'object' ? navigator.userAgent : 'node ' + process.version
        report({ event: 'hello', runtime, user_agent: userAgent })
      }
      control.onmessage = event => {
        let command
        try {
          command = JSON.parse(String(event.data))
        } catch (error) {
          reportUncaught(error)
          return
        }
        run(command)
      }
      control.onerror = () => {} // the close event follows and ends the agent
      control.onclose = () => {
        if (p2pt) {
          try {
            p2pt.destroy()
          } catch (e) {}
        }
        resolve()
      }
    })
  }

  root.runP2PTAgent = runAgent
})(globalThis)

// simple-peer imports its WebRTC classes from 'webrtc-polyfill'; in node this stand-in takes them
// from @roamhq/wrtc instead, the same stack P2PT's own node build uses.
import wrtc from '@roamhq/wrtc'

export const { RTCPeerConnection, RTCSessionDescription, RTCIceCandidate } = wrtc
export default wrtc

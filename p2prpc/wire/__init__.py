"""Pure codecs for the protocols p2prpc speaks: no asyncio, no sockets, no WebRTC.

Everything here turns values into wire text and wire text back into values, with every limit taken
as a parameter, so that it can be tested exhaustively and fuzzed without a network.
"""

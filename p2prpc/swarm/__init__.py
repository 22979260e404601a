"""The swarm layer, built around connections: a connection owns its transport link and what its
handshake proved; a peer is the set of its connections that proved the same key; offers and
answers, whichever path carries them (a tracker, a neighbour relaying), live in one pool.
"""

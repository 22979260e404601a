"""How far a connection attempt got, and when it failed, why and what to do about it.

A connection to a peer is made in stages: our offer is made and sent (or theirs is received and
our answer sent), the answer is received, ICE checks candidate pairs, one pair works (ICE
connected), DTLS and SCTP open the data channel, and p2prpc's handshake admits the peer. An
attempt that ends before it counts says which stage it reached (:class:`Stage`) and why it ended
(:class:`Failure`); :class:`Unreachable` turns that into one sentence with advice, for the log,
the ``peerunreachable`` event, :meth:`P2PT.connectivity <p2prpc.p2pt.P2PT.connectivity>` and the
details of a call that found no peer. Pure: nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from ..transport import IceServerError

__all__ = ["Failure", "IceServerError", "Stage", "Unreachable", "summarize"]


class Stage(enum.Enum):
    """The furthest stage a connection attempt reached, in order."""

    NEW = "new"
    OFFER_SENT = "offer sent"
    ANSWER_SENT = "offer received, answer sent"
    ANSWER_RECEIVED = "answer received"
    ICE_CHECKING = "ICE checking"
    ICE_CONNECTED = "ICE connected"
    OPEN = "data channel open"


class Failure(enum.Enum):
    """Why a connection attempt ended before it counted."""

    #: ICE checked every candidate pair (or ran out of time) and none worked.
    ICE_FAILED = "ICE found no working candidate pair"
    #: ICE connected, but the data channel never opened (DTLS or SCTP failed).
    DTLS_FAILED = "DTLS failed after ICE connected"
    #: The data channel opened, but the handshake refused the peer (secret or identity).
    HANDSHAKE_REFUSED = "the handshake refused the peer"
    #: The connection did not open within its connect timeout.
    TIMED_OUT = "timed out"


@dataclass(frozen=True)
class Unreachable:
    """One peer found and not connected to: the stage its last attempt reached, why it ended,
    what the ICE servers did, and what the swarm's ICE configuration was (``turn``: a TURN
    server was configured; ``stun``: a STUN server was); ``relays``: the neighbours a circuit to
    the peer is tried through, if any (:mod:`p2prpc.circuit`)."""

    peer_id: str
    stage: Stage
    failure: Failure
    ice_errors: tuple[IceServerError, ...] = ()
    turn: bool = False
    stun: bool = False
    detail: str = ""
    #: Neighbours that relay and are connected to the peer: a circuit through one is tried.
    relays: tuple[str, ...] = ()
    #: Which description carried no ICE candidate at all: ``"ours"``, ``"theirs"``, ``"both"``
    #: (``""``: each carried some, or it is not known).
    no_candidates: str = ""

    @property
    def reason(self) -> str:
        """Why, without the advice: what the TURN servers did first (refused our credentials,
        their host does not resolve, no answer), when they did not all do their part."""
        if self.ice_errors and (
            self.failure is Failure.ICE_FAILED or any(e.code == 401 for e in self.ice_errors)
        ):
            told = sorted(self.ice_errors, key=_weight)
            text = f"{'; '.join(str(e) for e in told)}; {self.failure.value}"
        else:
            text = self.failure.value
            if self.failure is Failure.ICE_FAILED and self.no_candidates:
                whose = {"ours": "our", "theirs": "the peer's", "both": "either"}
                text += (
                    f" (no ICE candidate in {whose[self.no_candidates]} description: none on"
                    " the addresses there; on loopback, candidates are offered only where"
                    " host_addresses names it)"
                )
            elif self.failure is Failure.ICE_FAILED and not self.turn:
                if self.stun:
                    text += " (both behind NATs that map per destination?)"
                else:
                    text += " (host candidates only: different networks cannot meet)"
            elif self.failure is Failure.TIMED_OUT:
                text += f" at stage {self.stage.value}"
        if self.detail:
            text += f": {self.detail}"
        return text

    @property
    def advice(self) -> str:
        """What to do about it ("" when there is nothing to suggest)."""
        if any(e.code == 401 for e in self.ice_errors):
            return "check its credentials"
        if self.failure is Failure.ICE_FAILED:
            if self.no_candidates and not self.turn:
                advice = "peers on one machine: give both host_addresses=['127.0.0.1']"
                if self.no_candidates == "theirs":
                    advice += " (a peer limited to relayed candidates needs a TURN server)"
                return advice
            if self.relays:
                names = ", ".join(r[:8] for r in self.relays)
                return (
                    f"reaching it through relay {names}"
                    if len(self.relays) == 1
                    else (f"reaching it through one of the relays {names}")
                )
            if not self.turn:
                return "add a TURN server"
            if any(e.unresolved for e in self.ice_errors):
                return "check the TURN server's URL (its host name)"
            if any(e.code is None for e in self.ice_errors):
                return "check the TURN server's URL, and that the server runs and is reachable"
            if self.ice_errors:
                return "check the TURN server"
            return "check that the TURN server relays between peers"
        if self.failure is Failure.HANDSHAKE_REFUSED:
            return "check the swarm secret and the allowed peers"
        return ""

    def __str__(self) -> str:
        advice = self.advice
        return f"{self.reason}: {advice}" if advice else self.reason


def _weight(error: IceServerError) -> int:
    """The order a reason names what servers did in: refusals of our credentials, hosts that do
    not resolve, no answers, other refusals."""
    if error.code == 401:
        return 0
    if error.unresolved:
        return 1
    return 2 if error.code is None else 3


def summarize(unreachable: Sequence[Unreachable]) -> str:
    """One sentence for peers found and not reachable: "1 peer found, not reachable: ..."."""
    if not unreachable:
        return ""
    reasons: dict[str, list[str]] = {}
    for u in unreachable:
        reasons.setdefault(str(u), []).append(u.peer_id[:8])
    count = len(unreachable)
    noun = "peer" if count == 1 else "peers"
    if len(reasons) == 1:
        return f"{count} {noun} found, not reachable: {next(iter(reasons))}"
    parts = "; ".join(f"{', '.join(ids)}: {why}" for why, ids in reasons.items())
    return f"{count} {noun} found, not reachable: {parts}"

"""An attempt's reason and advice name what the TURN servers did, most telling first."""

from __future__ import annotations

from p2prpc.swarm.attempt import Failure, IceServerError, Stage, Unreachable

URL = "turn:turn.example:3478?transport=udp"
DEAD = IceServerError(URL, None, "nothing within 2.0 s")
UNRESOLVED = IceServerError("turn:nowhere.example:3478?transport=udp", None, "gaierror", True)
REFUSED = IceServerError(URL, 401, "Unauthorized")
QUOTA = IceServerError(URL, 486, "Allocation Quota Reached")


def failed(*errors: IceServerError, failure: Failure = Failure.ICE_FAILED) -> Unreachable:
    return Unreachable("ab" * 20, Stage.ICE_CHECKING, failure, errors, turn=True)


def test_a_turn_server_that_did_not_answer_is_named_with_what_to_check() -> None:
    why = failed(DEAD)
    assert why.reason == (
        f"no answer from TURN server {URL} (nothing within 2.0 s);"
        " ICE found no working candidate pair"
    )
    assert why.advice == "check the TURN server's URL, and that the server runs and is reachable"


def test_a_turn_host_that_does_not_resolve_is_named_with_what_to_check() -> None:
    why = failed(DEAD, UNRESOLVED)
    assert why.reason.startswith(
        "the host of TURN server turn:nowhere.example:3478?transport=udp does not resolve"
        f" (gaierror); no answer from TURN server {URL}"
    )
    assert why.advice == "check the TURN server's URL (its host name)"


def test_refused_credentials_come_first_and_other_refusals_last() -> None:
    why = failed(QUOTA, DEAD, REFUSED)
    assert why.reason.startswith(f"TURN server {URL} refused our credentials (401 Unauthorized)")
    assert why.reason.index("no answer") < why.reason.index("refused the allocation (486")
    assert why.advice == "check its credentials"
    assert failed(QUOTA).advice == "check the TURN server"
    timed_out = failed(REFUSED, failure=Failure.TIMED_OUT)
    assert timed_out.reason.endswith("; timed out") and timed_out.advice == "check its credentials"


def test_a_turn_server_that_answered_leaves_the_relaying_to_check() -> None:
    why = failed()
    assert why.reason == "ICE found no working candidate pair"
    assert why.advice == "check that the TURN server relays between peers"


def test_a_description_without_candidates_is_named_with_the_one_machine_advice() -> None:
    for whose, said in (("ours", "our"), ("theirs", "the peer's"), ("both", "either")):
        reason = Unreachable("p" * 40, Stage.ICE_CHECKING, Failure.ICE_FAILED, no_candidates=whose)
        assert f"no ICE candidate in {said} description" in reason.reason
        assert reason.advice.startswith(
            "peers on one machine: give both host_addresses=['127.0.0.1']"
        )
        assert ("needs a TURN server" in reason.advice) is (whose == "theirs")
    # With candidates on both sides, the reason is the one it was.
    plain = Unreachable("p" * 40, Stage.ICE_CHECKING, Failure.ICE_FAILED)
    assert "no ICE candidate" not in plain.reason and plain.advice == "add a TURN server"

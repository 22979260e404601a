"""Choosing the transport: by name, through P2PRPC_TRANSPORT, and what a missing wrtc says."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from p2prpc.p2pt import P2PT
from p2prpc.transport import TRANSPORT_ENV, TransportUnavailable, choose_transport
from p2prpc.transport.aiortc import AIORTC

HAVE_WRTC = importlib.util.find_spec("webrtc") is not None
needs_wrtc = pytest.mark.skipif(not HAVE_WRTC, reason="wrtc is not installed (p2prpc[native])")


def test_aiortc_is_the_default_and_the_environment_names_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert choose_transport() is AIORTC
    assert choose_transport("aiortc") is AIORTC
    monkeypatch.setenv(TRANSPORT_ENV, "")
    assert choose_transport() is AIORTC
    monkeypatch.setenv(TRANSPORT_ENV, "grpc")
    with pytest.raises(ValueError, match=f"'grpc' \\(from {TRANSPORT_ENV}\\)"):
        choose_transport()
    with pytest.raises(ValueError, match="aiortc, libwebrtc, auto"):
        choose_transport("webrtc")


@needs_wrtc
def test_libwebrtc_and_auto_take_wrtc_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from p2prpc.transport.wrtc import LIBWEBRTC

    assert choose_transport("libwebrtc") is LIBWEBRTC
    assert choose_transport("auto") is LIBWEBRTC
    monkeypatch.setenv(TRANSPORT_ENV, "libwebrtc")
    assert choose_transport() is LIBWEBRTC


@needs_wrtc
@pytest.mark.asyncio
async def test_p2pt_takes_its_transport_by_name_from_the_environment_or_as_an_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from p2prpc.transport.wrtc import LIBWEBRTC

    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert P2PT([], "x").transport is AIORTC
    assert P2PT([], "x", transport="libwebrtc").transport is LIBWEBRTC
    assert P2PT([], "x", transport=AIORTC).transport is AIORTC
    monkeypatch.setenv(TRANSPORT_ENV, "auto")
    assert P2PT([], "x").transport is LIBWEBRTC
    assert P2PT([], "x", transport="aiortc").transport is AIORTC  # the argument wins
    with pytest.raises(ValueError, match="transport must be one of"):
        P2PT([], "x", transport="chrome")


def test_without_wrtc_libwebrtc_says_how_to_install_it_and_auto_takes_aiortc() -> None:
    """In a fresh interpreter where ``webrtc`` cannot be imported (as without the package)."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["webrtc"] = None  # an import of it raises ImportError
        from p2prpc.transport import TransportUnavailable, choose_transport
        from p2prpc.p2pt import P2PT
        assert choose_transport("auto").name == "aiortc"
        for make in (choose_transport, lambda name: P2PT([], "x", transport=name)):
            try:
                make("libwebrtc")
            except TransportUnavailable as error:
                assert isinstance(error, ImportError)
                print(error)
            else:
                raise AssertionError("no error")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("pip install p2prpc[native]" in line for line in lines)
    assert issubclass(TransportUnavailable, ImportError)

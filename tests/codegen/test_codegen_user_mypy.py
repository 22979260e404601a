"""What ``p2prpc gen`` writes for a user's protos passes ``mypy --strict`` as it is: no mypy
configuration beyond ``strict``, in a directory of the user's own.

``user/shop/`` holds protos as an application writes them: maps (of scalars, messages, enums,
well-known types), nested messages and enums, a oneof, an optional field, well-known types, every
call shape, a topic, and a second file importing the first.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from codegen_support import ROOT

from p2prpc.codegen.pyi import complete_pyi

USER = Path(__file__).resolve().parent / "user"
ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*)$")


def test_what_gen_writes_for_a_user_passes_mypy_strict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = (tmp_path / "out").resolve()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    protos = sorted(p.relative_to(USER).as_posix() for p in USER.rglob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "p2prpc", "gen", "-I", ".", "-o", str(out), *protos],
        cwd=USER,
        env=env,
        check=True,
    )
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.py*"))
    assert written == [
        "shop/inventory_p2prpc.py",
        "shop/inventory_pb2.py",
        "shop/inventory_pb2.pyi",
        "shop/orders_p2prpc.py",
        "shop/orders_pb2.py",
        "shop/orders_pb2.pyi",
    ]
    usage = out / "use_shop.py"
    usage.write_text(
        "from shop import inventory_p2prpc, inventory_pb2, orders_p2prpc, orders_pb2\n"
        "import p2prpc.rpc\n\n\n"
        "async def use(channel: p2prpc.rpc.Channel) -> str:\n"
        "    stub = inventory_p2prpc.InventoryStub(channel)\n"
        "    item = await stub.Get(inventory_pb2.Query(sku='a'))\n"
        "    order = orders_pb2.Order(lines={'a': item}, kind=inventory_pb2.Item.Kind.KIND_FOOD)\n"
        "    price = inventory_pb2.Item.Price(cents=1)\n"
        "    copy = inventory_pb2.Item(price={'cents': 2}, stock={'x': 1}, history=[price])\n"
        "    watch = stub.Watch(inventory_pb2.Query())\n"
        "    while isinstance(got := await watch.read(), inventory_pb2.Item):\n"
        "        copy.tags.append(got.sku)\n"
        "    await orders_p2prpc.OrdersStub(channel).Place(order)\n"
        "    return order.lines['a'].sku + copy.sku\n",
        encoding="utf-8",
    )
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n", encoding="utf-8")
    from mypy import api

    # The usage imports every generated module, so mypy checks them all. p2prpc is found from
    # the project's root (an editable install is invisible to mypy from
    # outside it); errors in its own modules are `make lint`'s to find, under its own config.
    monkeypatch.setenv("MYPYPATH", str(ROOT))
    monkeypatch.chdir(out)
    cache = ROOT / ".mypy_cache" / "codegen-user"
    stdout, stderr, _ = api.run(
        ["--config-file", str(config), "--cache-dir", str(cache), "use_shop.py"]
    )
    errors = [
        line
        for line in stdout.splitlines()
        if (match := ERROR.match(line)) and (out / match["path"]).resolve().is_relative_to(out)
    ]
    assert "error:" in stdout or "Success" in stdout, stdout + stderr
    assert errors == [], stdout


def test_complete_pyi_gives_bare_mappings_arguments_and_drops_module_classvars() -> None:
    text = (
        "from collections.abc import Mapping as _Mapping\n"
        "from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union\n"
        "\n"
        "TOPIC_FIELD_NUMBER: _ClassVar[int]\n"
        "class A(_message.Message):\n"
        "    X_FIELD_NUMBER: _ClassVar[int]\n"
        "    def __init__(self, b: _Optional[_Union[B, _Mapping]] = ..., "
        "m: _Optional[_Mapping[str, int]] = ...) -> None: ...\n"
    )
    assert complete_pyi(text).splitlines() == [
        "from collections.abc import Mapping as _Mapping",
        "from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union",
        "from typing import Any as _Any",
        "",
        "TOPIC_FIELD_NUMBER: int",
        "class A(_message.Message):",
        "    X_FIELD_NUMBER: _ClassVar[int]",
        "    def __init__(self, b: _Optional[_Union[B, _Mapping[str, _Any]]] = ..., "
        "m: _Optional[_Mapping[str, int]] = ...) -> None: ...",
    ]
    plain = "from typing import ClassVar as _ClassVar\nclass A:\n    X: _ClassVar[int]\n"
    assert complete_pyi(plain) == plain

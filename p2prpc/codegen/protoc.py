"""Run protoc (the one ``grpcio-tools`` bundles) with protobuf's Python generators and our plugin.

One call writes, for each ``.proto``, protoc's ``_pb2.py`` (the messages), its ``_pb2.pyi`` (their
types, which the typed stubs need; completed so that ``mypy --strict`` accepts them, see
:mod:`p2prpc.codegen.pyi`) and the plugin's ``_p2prpc.py`` (stubs, servicers, topics).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from .pyi import complete_pyi

PLUGIN_NAME = "protoc-gen-p2prpc"


def generate(proto_files: Sequence[str], *, include: Sequence[str], out: str) -> int:
    """Compile ``proto_files`` into ``out``; return protoc's exit status (0 on success).

    ``include`` lists the import roots (protoc's ``--proto_path``), and each file must lie under
    one of them: its path below that root names the generated modules (``protos/foo/bar.proto``
    with ``include=["protos"]`` gives ``foo/bar_pb2.py``, imported as ``foo.bar_pb2``). p2prpc's
    options (``p2prpc/options.proto``) and protobuf's well-known types (``google/protobuf/*.proto``)
    are always importable, after the given roots. protoc reports problems on stderr.
    """
    # Imported here: protoc is a large extension module the plugin itself never needs.
    from grpc_tools import protoc  # type: ignore[import-untyped]

    os.makedirs(out, exist_ok=True)
    with _plugin_executable() as plugin:
        argv = [
            "protoc",
            *(f"--proto_path={path}" for path in include),
            f"--proto_path={options_include()}",
            f"--proto_path={well_known_include()}",
            f"--plugin={PLUGIN_NAME}={plugin}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--p2prpc_out={out}",
            *proto_files,
        ]
        status: int = protoc.main(argv)
    if status == 0:
        for stub in _stubs_written(proto_files, include, out):
            text = stub.read_text(encoding="utf-8")
            completed = complete_pyi(text)
            if completed != text:
                stub.write_text(completed, encoding="utf-8")
    return status


def _stubs_written(proto_files: Sequence[str], include: Sequence[str], out: str) -> list[Path]:
    """The ``_pb2.pyi`` files protoc wrote for ``proto_files``: each file's name below the import
    root it lies under (or the name itself, for a name given relative to a root), as protoc names
    the module (``-`` read as ``_``)."""
    stubs: list[Path] = []
    roots = [Path(root).resolve() for root in include]
    for given in proto_files:
        path = Path(given)
        name = path.as_posix()
        if path.exists():
            resolved = path.resolve()
            for root in roots:
                if resolved.is_relative_to(root):
                    name = resolved.relative_to(root).as_posix()
                    break
        stub = Path(out) / (name.removesuffix(".proto").replace("-", "_") + "_pb2.pyi")
        if stub.is_file():
            stubs.append(stub)
    return stubs


def options_include() -> str:
    """The directory of p2prpc's own ``.proto`` files, shipped in the package.

    It holds ``p2prpc/options.proto``, which a ``.proto`` imports to declare topics; its Python
    module is :mod:`p2prpc.options_pb2`, which is where protoc's output for that file imports it.
    """
    return str(resources.files("p2prpc") / "proto")


def well_known_include() -> str:
    """The directory of protobuf's own ``.proto`` files (``google/protobuf/empty.proto``...)."""
    return str(resources.files("grpc_tools") / "_proto")


def installed_plugin() -> str | None:
    """The ``protoc-gen-p2prpc`` entry point installed beside this interpreter, if there is one."""
    scripts = Path(sys.executable).parent
    for name in (PLUGIN_NAME, f"{PLUGIN_NAME}.exe"):
        if (scripts / name).is_file():
            return str(scripts / name)
    return None


@contextmanager
def _plugin_executable() -> Iterator[str]:
    """The path of an executable that runs the plugin with this interpreter.

    That is the installed entry point when there is one, else a throwaway script that runs
    :func:`p2prpc.codegen.plugin.main` from this process's p2prpc (so that the plugin also runs
    from a source checkout that was never installed).
    """
    installed = installed_plugin()
    if installed is not None:
        yield installed
        return
    with tempfile.TemporaryDirectory(prefix="p2prpc-plugin-") as directory:
        script = Path(directory) / PLUGIN_NAME
        root = Path(__file__).resolve().parents[2]
        script.write_text(
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(root)!r})\n"
            "from p2prpc.codegen.plugin import main\n"
            "main()\n",
            encoding="utf-8",
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        yield str(script)

"""Code generation from ``.proto`` files: the ``protoc-gen-p2prpc`` plugin and a protoc driver.

:func:`render` is the plugin itself, a pure function from protoc's ``CodeGeneratorRequest`` to its
``CodeGeneratorResponse``; :func:`generate` runs protoc (the one bundled with ``grpcio-tools``)
with protobuf's Python generators and this plugin, as ``p2prpc gen`` and ``make gen`` do.
"""

from p2prpc.codegen.plugin import render
from p2prpc.codegen.protoc import generate

__all__ = ["generate", "render"]

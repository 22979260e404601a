"""``.proto`` text from reflected descriptors: the file's comments above what they describe, and
custom options such as a topic's, for every kind of element."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.descriptor_pb2 import FileDescriptorSet

from p2prpc.codegen.protoc import options_include, well_known_include
from p2prpc.services.describe import Reflected, proto_text

PROTO = """\
syntax = "proto3";
package zoo;
import "p2prpc/options.proto";

// An animal.
message Animal {
  option (p2prpc.topic) = {name: "animals"};
  // What it is called.
  string name = 1;
  // Where it lives.
  oneof home {
    // A cage number.
    int32 cage = 2;
    string pond = 3;
  }
  // Its kind.
  message Kind {
    // Legs, counted.
    int32 legs = 1;
  }
  // How it feels.
  enum Mood {
    // Nobody knows.
    MOOD_UNSPECIFIED = 0;
    MOOD_CALM = 1;
  }
}

// The keeper.
service Keeper {
  // Feeds one.
  rpc Feed(Animal) returns (Animal);
}
"""


def reflected(tmp_path: Path) -> Reflected:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    (tmp_path / "zoo.proto").write_text(PROTO, encoding="utf-8")
    target = tmp_path / "set.binpb"
    assert (
        protoc.main(
            [
                "protoc",
                f"--proto_path={tmp_path}",
                f"--proto_path={options_include()}",
                f"--proto_path={well_known_include()}",
                f"--descriptor_set_out={target}",
                "--include_imports",
                "--include_source_info",
                str(tmp_path / "zoo.proto"),
            ]
        )
        == 0
    )
    return Reflected(FileDescriptorSet.FromString(target.read_bytes()).file)


def test_comments_and_options_are_shown_where_they_belong(tmp_path: Path) -> None:
    found = reflected(tmp_path)
    animal = found.find("zoo.Animal")
    assert animal is not None
    assert proto_text(animal, found.comments).splitlines() == [
        "// zoo.Animal is a message (from zoo.proto)",
        "// An animal.",
        "message Animal {",
        '  option (p2prpc.topic) = {name: "animals"};',
        "  // What it is called.",
        "  string name = 1;",
        "  // Where it lives.",
        "  oneof home {",
        "    // A cage number.",
        "    int32 cage = 2;",
        "    string pond = 3;",
        "  }",
        "  // Its kind.",
        "  message Kind {",
        "    // Legs, counted.",
        "    int32 legs = 1;",
        "  }",
        "  // How it feels.",
        "  enum Mood {",
        "    // Nobody knows.",
        "    MOOD_UNSPECIFIED = 0;",
        "    MOOD_CALM = 1;",
        "  }",
        "}",
    ]
    keeper = found.find("zoo.Keeper")
    assert keeper is not None
    assert proto_text(keeper, found.comments).splitlines() == [
        "// zoo.Keeper is a service (from zoo.proto)",
        "// The keeper.",
        "service Keeper {",
        "  // Feeds one.",
        "  rpc Feed(.zoo.Animal) returns (.zoo.Animal);",
        "}",
    ]
    assert proto_text(keeper) == proto_text(keeper, {})  # without comments: none shown

"""``python -m p2prpc``: the same as the ``p2prpc`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m vallum.redteam ...`: the red-team command on its own, with the options of `vallum redteam`."""

from __future__ import annotations

import argparse
import sys

from vallum.errors import VallumError
from vallum.redteam.cli import configure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vallum.redteam", description=__doc__)
    configure(parser)
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except VallumError as exc:
        print(f"vallum redteam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vallum redteam: interrupted; run again with the same options to resume", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

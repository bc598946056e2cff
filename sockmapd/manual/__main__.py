"""python -m sockmapd.manual [ROOT]: regenerate the man pages and completion scripts."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

from sockmapd.manual import regenerate


def main(argv: list[str]) -> int:
    """Write the generated files under ROOT (default: the current directory)."""
    root = Path(argv[0]) if argv else Path()
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    for path in regenerate(root, today):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Allow ``python -m sockmapd``."""

from sockmapd.cli import main

raise SystemExit(main())

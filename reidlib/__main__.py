"""``python -m reidlib``: the command line."""

from reidlib.cli import main

raise SystemExit(main())

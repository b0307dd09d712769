"""``python -m skasync`` entry point (same as the ``skasync`` console script)."""

from skasync._cli import main

raise SystemExit(main())

"""``python -m relearn`` is the ``relearn`` command."""

from relearn.cli import main

raise SystemExit(main())

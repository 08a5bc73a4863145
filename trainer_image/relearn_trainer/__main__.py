"""``python -m relearn_trainer``: the trainer image's entry point."""

from relearn_trainer.cli import main

raise SystemExit(main())

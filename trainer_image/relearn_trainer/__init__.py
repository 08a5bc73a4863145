"""relearn_trainer: what runs inside the trainer image — data assembly, LoRA
training, evaluation, publishing, and the reference model server.

Imports here stay light: torch and friends are imported by the commands that
need them, so ``import relearn_trainer`` works without the ``trainer`` extra.
"""

__version__ = "0.1.0"

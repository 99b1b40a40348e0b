"""Package-wide settings, as ``scanpy.settings``: how much samsvae tells you while it works.

>>> import samsvae
>>> samsvae.settings.verbosity = 1  # warnings only: no progress bars
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

#: 0: errors only; 1: warnings; 2: progress bars (the default); 3: the same, and bars in logs.
VERBOSITY_LEVELS = (0, 1, 2, 3)


@dataclass
class Settings:
    """``verbosity`` (0-3, see :data:`VERBOSITY_LEVELS`) decides where progress bars are drawn.

    At 2, a bar is drawn only where someone watches it: a terminal or a Jupyter notebook. In a
    log file or CI output a bar would write thousands of carriage-return lines, so none is drawn
    unless ``verbosity`` is 3.
    """

    verbosity: int = 2

    def __setattr__(self, name: str, value: object) -> None:
        if name == "verbosity" and value not in VERBOSITY_LEVELS:
            msg = f"verbosity={value!r} must be one of {VERBOSITY_LEVELS} (2 shows progress)."
            raise ValueError(msg)
        super().__setattr__(name, value)

    def show_progress(self, requested: bool = True) -> bool:
        """Whether to draw a progress bar that the caller ``requested``."""
        if not requested or self.verbosity < 2:
            return False
        return self.verbosity >= 3 or _watched()


def _watched() -> bool:
    """A terminal on stderr, or a Jupyter kernel (whose stderr is not a terminal)."""
    stream = sys.stderr
    interactive = stream is not None and hasattr(stream, "isatty") and stream.isatty()
    return interactive or "ipykernel" in sys.modules


settings = Settings()

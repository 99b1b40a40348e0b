"""Progress bars are drawn only where someone watches them, and verbosity turns them off."""

from __future__ import annotations

import io
import sys

import pytest

from samsvae.settings import Settings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("verbosity", "terminal", "requested", "shown"),
    [
        (2, True, True, True),
        (2, False, True, False),  # a log file or CI: no carriage-return lines
        (2, True, False, False),  # the caller asked for none
        (1, True, True, False),
        (3, False, True, True),
    ],
)
def test_progress_is_shown_on_a_terminal_at_the_default_verbosity(
    monkeypatch: pytest.MonkeyPatch, verbosity: int, terminal: bool, requested: bool, shown: bool
) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal() if terminal else io.StringIO())
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    settings = Settings(verbosity=verbosity)
    assert settings.show_progress(requested) is shown


def test_an_unknown_verbosity_is_refused_with_the_levels() -> None:
    with pytest.raises(ValueError, match=r"verbosity=5 must be one of \(0, 1, 2, 3\)"):
        Settings().verbosity = 5

"""Build-time settings of the tutorial gallery (sphinx-gallery), importable by name so that
Sphinx can cache the configuration."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def tutorial_arguments(gallery_conf: dict[str, Any], script_vars: dict[str, Any]) -> list[str]:
    """Command line of a tutorial at build time: tiny sizes, figures in a scratch folder."""
    del gallery_conf
    name = Path(script_vars["src_file"]).stem
    return ["--small", "--out", str(Path(tempfile.gettempdir()) / "samsvae-tutorials" / name)]

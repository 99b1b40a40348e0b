"""The run report opens in a real browser (headless Chromium) with every image loaded."""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import Result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Runs once the page has loaded: records how many <img> elements decoded to a real image.
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0);
  document.body.setAttribute("data-images", images.length + "/" + loaded.length);
});
</script></body>"""


def loaded_images(report: Path, tmp_path: Path) -> tuple[int, int]:
    """Open a copy of ``report`` in headless Chromium; return (images, images loaded)."""
    page = tmp_path / "checked_report.html"
    page.write_text(report.read_text().replace("</body>", IMAGE_CHECK), encoding="utf-8")
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    marker = 'data-images="'
    assert marker in dom, f"the page did not finish loading:\n{dom[:500]}"
    total, loaded = dom.split(marker, 1)[1].split('"', 1)[0].split("/")
    return int(total), int(loaded)


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (apt-get install chromium); cannot render the report",
)


@needs_chromium
def test_quickstart_report_shows_every_image(
    quickstart_run: tuple[Path, Result], tmp_path: Path
) -> None:
    out, result = quickstart_run
    assert result.exit_code == 0, result.output
    total, loaded = loaded_images(out / "report.html", tmp_path)
    assert total >= 6
    assert loaded == total


@needs_chromium
def test_the_image_check_notices_a_broken_image(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><img alt='broken' src='data:image/png;base64,AAAA'>"
        "</body></html>",
        encoding="utf-8",
    )
    assert loaded_images(page, tmp_path) == (1, 0)

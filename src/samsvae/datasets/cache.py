"""Download-once cache for the published datasets, with SHA-256 checks.

Files live in ``$SAMSVAE_DATA_DIR`` (default ``$XDG_CACHE_HOME/samsvae`` or ``~/.cache/samsvae``).
The checksums of the published files were not known when this module was written, so
:data:`REGISTRY` holds ``sha256=None`` for them: the first download (or the first use of a file
put there by hand) records its hash next to the file (``<file>.sha256``), and every later use
verifies the cached file against it. Put a known hash into a registry entry and downloads and
cached files are checked against that instead.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
from tqdm.auto import tqdm

from samsvae.settings import settings

CACHE_ENV = "SAMSVAE_DATA_DIR"
_CHUNK_BYTES = 1 << 20
_TIMEOUT_S = 60  # seconds without data before a download fails


@dataclass(frozen=True)
class RemoteFile:
    """A published file: where to fetch it, its cache file name and (if known) its SHA-256."""

    filename: str
    url: str
    sha256: str | None = None


REGISTRY: dict[str, RemoteFile] = {
    # The SAMS-VAE authors' filtered K562 CRISPRi subset of Replogle et al. (2022).
    "replogle2022_k562": RemoteFile(
        "replogle2022_k562.h5ad",
        "https://insitro-research-2023-sams-vae.s3.amazonaws.com/data/replogle.h5ad",
    ),
    # The sc-pert "Norman processed" file of Norman et al. (2019), figshare file 34027562.
    "norman2019": RemoteFile("norman2019.h5ad", "https://ndownloader.figshare.com/files/34027562"),
}


def cache_directory() -> Path:
    """The directory that holds downloaded datasets.

    Returns
    -------
    ``$SAMSVAE_DATA_DIR`` if set, else ``samsvae`` under ``$XDG_CACHE_HOME`` (or ``~/.cache``).
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "samsvae"


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB chunks.

    Parameters
    ----------
    path
        The file to hash.

    Returns
    -------
    The 64-character lowercase hex digest.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str) -> Path:
    """Path of the cached file of dataset ``name``, downloading it on first use.

    Parameters
    ----------
    name
        A key of :data:`REGISTRY`.

    Returns
    -------
    Path of the verified file in :func:`cache_directory`.

    Raises
    ------
    KeyError
        ``name`` is not in the registry.
    ConnectionError
        The file is not cached and cannot be downloaded; the message says where to put it.
    ValueError
        The downloaded or cached file does not match the known or recorded SHA-256.
    """
    if name not in REGISTRY:
        msg = f"name={name!r} is not a registered dataset; known: {sorted(REGISTRY)}."
        raise KeyError(msg)
    remote = REGISTRY[name]
    target = cache_directory() / remote.filename
    recorded = target.with_name(target.name + ".sha256")
    downloaded = not target.is_file()
    if downloaded:
        _download(remote, target)  # checks a known hash itself
    expected = remote.sha256 or (recorded.read_text().strip() if recorded.is_file() else None)
    if expected is None:  # first use of a file whose hash is unknown: record it
        recorded.write_text(sha256_of(target) + "\n")
    elif not downloaded and sha256_of(target) != expected:
        msg = (
            f"The cached file {target} does not match its SHA-256 {expected}; it is damaged or "
            f"was replaced. Delete it (and {recorded.name}) to download it again."
        )
        raise ValueError(msg)
    return target


def _download(remote: RemoteFile, target: Path) -> None:
    """Stream ``remote.url`` into a temporary file, check its hash, then move it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with (
            urllib.request.urlopen(remote.url, timeout=_TIMEOUT_S) as response,
            partial.open("wb") as out,
            tqdm(
                total=int(response.headers.get("Content-Length") or 0) or None,
                unit="B",
                unit_scale=True,
                desc=f"Downloading {target.name}",
                disable=not settings.show_progress(),  # a terminal or notebook only
            ) as progress,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                progress.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        msg = (
            f"Could not download {remote.url} ({error}). If this machine is offline, download "
            f"the file elsewhere and put it at {target} (the cache directory is set by "
            f"${CACHE_ENV}), or pass its location as path=."
        )
        raise ConnectionError(msg) from error
    if remote.sha256 is not None and (found := sha256_of(partial)) != remote.sha256:
        partial.unlink()
        msg = (
            f"The file downloaded from {remote.url} has SHA-256 {found}, expected "
            f"{remote.sha256}; it was not kept. Retry, or check the registry entry."
        )
        raise ValueError(msg)
    partial.replace(target)


def read_dataset(name: str, path: str | Path | None) -> ad.AnnData:
    """Read the h5ad file at ``path``, or the cached download of dataset ``name``."""
    if path is None:
        return ad.read_h5ad(fetch(name))
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"path={str(path)!r} is not a file; pass the h5ad file of {name}, or path=None."
        raise FileNotFoundError(msg)
    return ad.read_h5ad(path)

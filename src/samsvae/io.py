"""Save and load models without pickle: safetensors weights + a JSON description, checked on load.

A model directory holds ``model.safetensors`` and ``model.json``. The JSON carries a format
version, the model class, its configuration, the perturbation and gene vocabularies, the training
history and the SHA-256 of the weight file; ``load`` refuses a directory whose files do not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"


class ModelFileError(ValueError):
    """A model directory is missing, incomplete, tampered with or of another model."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    """Write via ``write(temporary_path)``, fsync, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(
    directory: str | Path,
    *,
    model_class: str,
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Write ``state_dict`` and ``metadata`` (JSON-ready) into ``directory``."""
    directory = Path(directory)
    if (directory / METADATA_FILE).exists() and not overwrite:
        msg = f"{directory} already holds a model; pass overwrite=True to replace it."
        raise FileExistsError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    _atomic_write(directory / WEIGHTS_FILE, lambda p: save_file(tensors, str(p)))
    record = {
        "format_version": FORMAT_VERSION,
        "model_class": model_class,
        "weights_sha256": _sha256(directory / WEIGHTS_FILE),
        **metadata,
    }
    text = json.dumps(record, indent=2)
    _atomic_write(directory / METADATA_FILE, lambda p: p.write_text(text))
    return directory


def read_model(
    directory: str | Path, *, model_class: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return ``(metadata, state_dict)`` after checking every file; never unpickles."""
    directory = Path(directory)
    weights, meta_path = directory / WEIGHTS_FILE, directory / METADATA_FILE
    for path in (meta_path, weights):
        if not path.is_file():
            msg = f"{directory} is not a samsvae model directory: {path.name} is missing."
            raise ModelFileError(msg)
    try:
        metadata = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        msg = f"{meta_path} is not valid JSON ({error}); the model directory is damaged."
        raise ModelFileError(msg) from None
    if not isinstance(metadata, dict) or metadata.get("format_version") != FORMAT_VERSION:
        msg = (
            f"{meta_path} has format_version {metadata.get('format_version')!r} "
            f"but this samsvae reads version {FORMAT_VERSION}."
        )
        raise ModelFileError(msg)
    if metadata.get("model_class") != model_class:
        msg = (
            f"{directory} holds a {metadata.get('model_class')!r} model; "
            f"load it with samsvae.{metadata.get('model_class')}.load, not {model_class}.load."
        )
        raise ModelFileError(msg)
    if _sha256(weights) != metadata.get("weights_sha256"):
        msg = (
            f"{weights} does not match the hash recorded in {METADATA_FILE}: the weights were "
            "modified, truncated or replaced. Refusing to load."
        )
        raise ModelFileError(msg)
    try:
        state_dict = load_file(str(weights))
    except (SafetensorError, OSError) as error:
        msg = f"{weights} is not a readable safetensors file ({error})."
        raise ModelFileError(msg) from None
    return metadata, state_dict


def check_state_dict(
    module: torch.nn.Module, state_dict: dict[str, torch.Tensor], directory: str | Path
) -> None:
    """Keys and shapes of ``state_dict`` match ``module``; raise ModelFileError otherwise."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    if expected == found:
        return
    missing = sorted(set(expected) - set(found))[:5]
    unexpected = sorted(set(found) - set(expected))[:5]
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])[:5]
    msg = (
        f"The weights in {directory} do not fit the configuration in {METADATA_FILE} "
        f"(missing {missing}, unexpected {unexpected}, wrong shape {wrong})."
    )
    raise ModelFileError(msg)

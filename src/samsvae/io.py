"""Save and load models without pickle: safetensors weights + a JSON description, checked on load.

A model directory holds ``model.safetensors`` and ``model.json``. The JSON carries a format
version, the model class, its configuration, the perturbation and gene vocabularies, the training
history and the SHA-256 of the weight file; ``load`` refuses a directory whose files do not match.

A training checkpoint directory holds ``checkpoint.json`` and the tensor file it names: any
nested state (weights, optimiser moments, RNG states, loop counters, callback records) is split
into its tensors, stored with safetensors, and the rest, stored as JSON (see ``save_checkpoint``).
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
CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_FORMAT_VERSION = 1
# Markers of the values JSON cannot hold directly; see _split_tensors.
_TENSOR, _TUPLE, _ITEMS = "__tensor__", "__tuple__", "__items__"


class ModelFileError(ValueError):
    """A model or checkpoint directory is missing, incomplete, tampered with or of another run."""


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
        _fsync_directory(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; other systems cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    metadata = _read_record(meta_path, format_version=FORMAT_VERSION)
    if metadata.get("model_class") != model_class:
        msg = (
            f"{directory} holds a {metadata.get('model_class')!r} model; "
            f"load it with samsvae.{metadata.get('model_class')}.load, not {model_class}.load."
        )
        raise ModelFileError(msg)
    _check_hash(weights, metadata.get("weights_sha256"), recorded_in=meta_path)
    return metadata, _load_tensors(weights)


def _read_record(path: Path, *, format_version: int) -> dict[str, Any]:
    """The JSON object in ``path``, of the given format version."""
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        msg = f"{path} is not valid JSON ({error}); the directory is damaged."
        raise ModelFileError(msg) from None
    if not isinstance(record, dict):
        msg = f"{path} does not hold a JSON object; the directory is damaged."
        raise ModelFileError(msg)
    if record.get("format_version") != format_version:
        msg = (
            f"{path} has format_version {record.get('format_version')!r} "
            f"but this samsvae reads version {format_version}."
        )
        raise ModelFileError(msg)
    return record


def _check_hash(path: Path, expected: object, *, recorded_in: Path) -> None:
    if _sha256(path) != expected:
        msg = (
            f"{path} does not match the hash recorded in {recorded_in.name}: it was "
            "modified, truncated or replaced. Refusing to load it."
        )
        raise ModelFileError(msg)


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        msg = f"{path} is not a readable safetensors file ({error})."
        raise ModelFileError(msg) from None


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


# --- training checkpoints ---------------------------------------------------------------------
def save_checkpoint(directory: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` as the checkpoint of ``directory``, replacing the previous one atomically.

    Tensors go to a new ``checkpoint-<n>.safetensors``; then ``checkpoint.json`` (the rest of
    ``state``, the tensor file's name and SHA-256, and a SHA-256 of the record itself) is renamed
    over the old one. That rename is the commit: a writer killed at any point leaves the previous
    checkpoint complete. Tensor and temporary files the new record does not name are deleted
    afterwards.
    Returns the path of ``checkpoint.json``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / CHECKPOINT_FILE
    tensors: dict[str, torch.Tensor] = {}
    body = _split_tensors(state, "", tensors)
    sequence = _checkpoint_sequence(manifest) + 1
    tensor_file = f"checkpoint-{sequence}.safetensors"
    _atomic_write(directory / tensor_file, lambda p: save_file(tensors, str(p)))
    record = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "sequence": sequence,
        "tensor_file": tensor_file,
        "tensor_sha256": _sha256(directory / tensor_file),
        "state": body,
    }
    text = json.dumps({**record, "record_sha256": _record_sha256(record)}, indent=1)
    _atomic_write(manifest, lambda p: p.write_text(text))
    # Older tensor files, and temporary files of a writer that was killed, are no longer needed.
    for stale in [*directory.glob("checkpoint-*.safetensors"), *directory.glob(".checkpoint*")]:
        if stale.name != tensor_file:
            stale.unlink(missing_ok=True)
    return manifest


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a committed checkpoint (complete or not)."""
    return (Path(directory) / CHECKPOINT_FILE).is_file()


def read_checkpoint(directory: str | Path) -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint`, after checking both hashes; never unpickles."""
    directory = Path(directory)
    manifest = directory / CHECKPOINT_FILE
    if not manifest.is_file():
        msg = f"{directory} holds no training checkpoint: {CHECKPOINT_FILE} is missing."
        raise ModelFileError(msg)
    record = _read_record(manifest, format_version=CHECKPOINT_FORMAT_VERSION)
    claimed = record.pop("record_sha256", None)
    tensor_path = directory / str(record.get("tensor_file"))
    if claimed != _record_sha256(record) or not tensor_path.is_file():
        msg = f"{manifest} was modified or its tensor file is missing. Refusing to resume from it."
        raise ModelFileError(msg)
    _check_hash(tensor_path, record["tensor_sha256"], recorded_in=manifest)
    return _join_tensors(record["state"], _load_tensors(tensor_path))


def _checkpoint_sequence(manifest: Path) -> int:
    """Number of the committed checkpoint (0 when none or unreadable)."""
    try:
        return int(json.loads(manifest.read_text())["sequence"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _record_sha256(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _split_tensors(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-ready copy of ``value``; each tensor moves to ``tensors[key path]``.

    Dicts with string keys stay JSON objects; other dicts (an optimiser's parameter-indexed
    state) become ``{"__items__": [[key, value], ...]}`` and tuples ``{"__tuple__": [...]}``.
    """
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().clone()
        return {_TENSOR: key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _split_tensors(v, f"{key}/{k}", tensors) for k, v in value.items()}
        return {_ITEMS: [[k, _split_tensors(v, f"{key}/{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        items = [_split_tensors(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
        return items if isinstance(value, list) else {_TUPLE: items}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    msg = f"Cannot store a {type(value).__name__} in a checkpoint (at {key!r})."
    raise TypeError(msg)


def _join_tensors(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`_split_tensors`."""
    if isinstance(value, list):
        return [_join_tensors(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {_TENSOR}:
        return tensors[value[_TENSOR]]
    if set(value) == {_TUPLE}:
        return tuple(_join_tensors(v, tensors) for v in value[_TUPLE])
    if set(value) == {_ITEMS}:
        return {k: _join_tensors(v, tensors) for k, v in value[_ITEMS]}
    return {k: _join_tensors(v, tensors) for k, v in value.items()}

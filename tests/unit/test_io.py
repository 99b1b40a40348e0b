"""Training checkpoint files: exact round trip, atomic replacement, refusal of damaged files."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

import pytest
import torch

from samsvae import io
from samsvae.io import ModelFileError

if TYPE_CHECKING:
    from pathlib import Path


def _state(step: float) -> dict:
    """Nested state like a Lightning checkpoint: int-keyed optimiser state, tuples, inf, bytes."""
    return {
        "optimizer_states": [
            {
                "state": {0: {"step": torch.tensor(step), "exp_avg": torch.randn(3, 2)}},
                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}],
            }
        ],
        "best": math.inf,
        "best_state": None,
        "rng": torch.get_rng_state(),
        "loops": {"fit_loop": {"epoch": 3, "is_last_batch": True, "name": "x"}},
    }


def _assert_same(a: object, b: object) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor)
        assert a.dtype == b.dtype
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert type(a) is type(b)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def test_checkpoint_round_trip_restores_every_value_and_type(tmp_path: Path) -> None:
    state = _state(3.0)
    io.save_checkpoint(tmp_path, state)
    _assert_same(io.read_checkpoint(tmp_path), state)


def test_a_new_checkpoint_replaces_the_old_and_its_tensor_file(tmp_path: Path) -> None:
    io.save_checkpoint(tmp_path, _state(1.0))
    (tmp_path / ".checkpoint.json.leftover").write_text("from a killed writer")
    io.save_checkpoint(tmp_path, _state(2.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-2.safetensors",
        "checkpoint.json",
    ]
    assert io.read_checkpoint(tmp_path)["optimizer_states"][0]["state"][0]["step"] == 2.0


def test_objects_json_cannot_hold_are_refused_when_saving(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="Cannot store a set in a checkpoint"):
        io.save_checkpoint(tmp_path, {"names": {"a"}})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip_tensor_byte", "modified, truncated or replaced"),
        ("truncate_tensors", "modified, truncated or replaced"),
        ("delete_tensors", "tensor file is missing"),
        ("edit_json_value", "was modified"),
        ("truncate_json", "not valid JSON"),
        ("delete_json", "holds no training checkpoint"),
    ],
)
def test_damaged_checkpoints_are_refused(tmp_path: Path, damage: str, message: str) -> None:
    io.save_checkpoint(tmp_path, _state(1.0))
    tensors, manifest = tmp_path / "checkpoint-1.safetensors", tmp_path / "checkpoint.json"
    if damage == "flip_tensor_byte":
        data = bytearray(tensors.read_bytes())
        data[-1] ^= 0xFF
        tensors.write_bytes(bytes(data))
    elif damage == "truncate_tensors":
        tensors.write_bytes(tensors.read_bytes()[:-10])
    elif damage == "delete_tensors":
        tensors.unlink()
    elif damage == "edit_json_value":
        record = json.loads(manifest.read_text())
        record["state"]["loops"]["fit_loop"]["epoch"] = 4
        manifest.write_text(json.dumps(record))
    elif damage == "truncate_json":
        manifest.write_text(manifest.read_text()[:100])
    else:
        manifest.unlink()
    with pytest.raises(ModelFileError, match=message):
        io.read_checkpoint(tmp_path)

"""Save/load round trip and refusal of damaged or foreign model directories."""

from __future__ import annotations

import json
import pickle  # noqa: TID251 - only to write a malicious file that load must refuse
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

import samsvae
from samsvae.io import ModelFileError


@pytest.fixture
def saved(tiny_model: samsvae.SAMSVAE, tmp_path: Path) -> tuple[samsvae.SAMSVAE, Path]:
    tiny_model.train(max_epochs=2, batch_size=64, progress_bar=False)
    return tiny_model, tiny_model.save(tmp_path / "model")


def test_load_restores_weights_vocabularies_and_predictions(saved, tiny_adata) -> None:
    model, directory = saved
    loaded = samsvae.SAMSVAE.load(directory)
    assert loaded.design == model.design
    assert loaded.config == model.config
    for key, value in model.module.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[key], value, rtol=0, atol=0)
    np.testing.assert_array_equal(
        loaded.average_treatment_effects(["P0+P2"], n_samples=50).X,
        model.average_treatment_effects(["P0+P2"], n_samples=50).X,
    )
    assert len(loaded.history) == len(model.history)
    with_data = samsvae.SAMSVAE.load(directory, adata=tiny_adata)
    assert np.isfinite(with_data.iwelbo(n_particles=5))


def test_save_refuses_to_overwrite_unless_asked(saved) -> None:
    model, directory = saved
    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(directory)
    model.save(directory, overwrite=True)


def test_load_refuses_modified_weights(saved) -> None:
    _, directory = saved
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the hash"):
        samsvae.SAMSVAE.load(directory)


def test_load_refuses_truncated_weights(saved) -> None:
    _, directory = saved
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelFileError):
        samsvae.SAMSVAE.load(directory)


def test_load_refuses_a_pickle_in_place_of_the_weights_without_running_it(
    saved, tmp_path: Path
) -> None:
    _, directory = saved
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (directory / "model.safetensors").write_bytes(pickle.dumps(Payload()))
    meta = json.loads((directory / "model.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(
        (directory / "model.safetensors").read_bytes()
    ).hexdigest()
    (directory / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="not a readable safetensors"):
        samsvae.SAMSVAE.load(directory)
    assert not marker.exists()


def test_load_refuses_mismatched_configuration(saved) -> None:
    _, directory = saved
    meta = json.loads((directory / "model.json").read_text())
    meta["config"]["n_hidden"] = 32
    (directory / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="do not fit the configuration"):
        samsvae.SAMSVAE.load(directory)


def test_load_refuses_missing_files_unknown_keys_and_other_formats(saved, tmp_path) -> None:
    _, directory = saved
    with pytest.raises(ModelFileError, match=r"model\.json is missing"):
        samsvae.SAMSVAE.load(tmp_path / "nowhere")
    meta = json.loads((directory / "model.json").read_text())
    meta["config"]["surprise"] = 1
    (directory / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="surprise"):
        samsvae.SAMSVAE.load(directory)
    meta["format_version"] = 99
    (directory / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="format_version 99"):
        samsvae.SAMSVAE.load(directory)
    (directory / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        samsvae.SAMSVAE.load(directory)


def test_load_with_data_of_other_genes_is_refused(saved, tiny_adata: ad.AnnData) -> None:
    _, directory = saved
    with pytest.raises(ValueError, match="genes do not match"):
        samsvae.SAMSVAE.load(directory, adata=tiny_adata[:, ::-1].copy())

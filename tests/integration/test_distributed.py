"""Data-parallel training on CPU (gloo, 2 processes) equals one process with the same batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import samsvae
from samsvae.data.streaming import read_backed

sys.path.insert(0, str(Path(__file__).parent))
from ddp_train import MODEL, train

from conftest import TINY

WORKER = Path(__file__).with_name("ddp_train.py")


def _ddp_parameters(out: Path, *args: str) -> dict[str, torch.Tensor]:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(WORKER), str(out), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, env=env, timeout=300, capture_output=True, text=True)
    if result.returncode:  # show why the workers failed, not only that they did
        pytest.fail(f"torch.distributed.run exited {result.returncode}:\n{result.stderr[-4000:]}")
    return load_file(out)


@pytest.mark.parametrize("storage", ["memory", "backed"])
def test_two_process_ddp_matches_one_process_with_the_same_global_batches(
    tmp_path: Path, storage: str
) -> None:
    adata = samsvae.datasets.simulate(**TINY, seed=0)
    args: tuple[str, ...] = ()
    if storage == "backed":
        adata.write_h5ad(tmp_path / "tiny.h5ad")
        adata = read_backed(tmp_path / "tiny.h5ad")
        args = ("--backed", str(tmp_path / "tiny.h5ad"))
    single = train(adata, accelerator="cpu", devices=1).module.state_dict()
    ddp = _ddp_parameters(tmp_path / "ddp.safetensors", *args)
    moved = max(
        float((single[k] - v).abs().max())
        for k, v in samsvae.SAMSVAE(adata, **MODEL).module.state_dict().items()
        if k.startswith(("encoder", "decoder", "guide"))
    )
    assert moved > 1e-4  # training moved the weights well beyond the tolerance
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-5, atol=1e-6, msg=name)

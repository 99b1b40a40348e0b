"""Property-based checks: random malformed input either works or raises a documented error."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import samsvae

DOCUMENTED = (ValueError, TypeError)  # a missing key raises MissingKeyError, a ValueError


def _assert_raised_by_samsvae(error: BaseException) -> None:
    """The error names its problem and was raised by our validation, not deep in a library."""
    assert str(error)
    traceback = error.__traceback__
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    assert "/samsvae/" in traceback.tb_frame.f_code.co_filename, traceback.tb_frame.f_code


labels = st.sampled_from(["control", "A", "B", "A+B", "B+C", "ctrl", "", " + ", "A++B", None])
values = st.sampled_from([0.0, 1.0, 3.0, 2.5, -1.0, np.nan, np.inf])


@st.composite
def anndatas(draw: st.DrawFn) -> ad.AnnData:
    n_obs = draw(st.integers(0, 6))
    n_vars = draw(st.integers(0, 4))
    matrix = np.array(
        draw(st.lists(values, min_size=n_obs * n_vars, max_size=n_obs * n_vars)), dtype=np.float32
    ).reshape(n_obs, n_vars)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_obs)])
    if draw(st.booleans()):
        obs["perturbation"] = draw(st.lists(labels, min_size=n_obs, max_size=n_obs))
    x = sp.csr_matrix(matrix) if draw(st.booleans()) else matrix
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_vars)]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    adata=anndatas(),
    control=st.sampled_from(["control", "ctrl", "missing"]),
    likelihood=st.sampled_from(["nb", "normal"]),
)
def test_setup_and_model_construction_succeed_or_raise_documented_errors(
    adata: ad.AnnData, control: str, likelihood: str
) -> None:
    before = adata.copy()
    try:
        samsvae.SAMSVAE.setup_anndata(adata, control=control)
        samsvae.SAMSVAE(adata, n_latent=2, n_hidden=4, likelihood=likelihood)  # type: ignore[arg-type]
    except DOCUMENTED as error:
        _assert_raised_by_samsvae(error)
    x_before = before.X.toarray() if sp.issparse(before.X) else before.X
    x_after = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    np.testing.assert_array_equal(x_after, x_before)  # the data is never modified


@pytest.fixture(scope="module")
def trained(request: pytest.FixtureRequest) -> samsvae.SAMSVAE:
    adata = samsvae.datasets.simulate(
        n_perturbations=4,
        n_combinations=2,
        n_genes=8,
        n_cells_per_perturbation=10,
        n_cells_per_combination=10,
        n_control_cells=20,
        seed=1,
    )
    samsvae.SAMSVAE.setup_anndata(adata)
    model = samsvae.SAMSVAE(adata, n_latent=2, n_hidden=8)
    model.train(max_epochs=1, progress_bar=False)
    return model


names = st.sampled_from(["P0", "P1", "P3", "P9", "control", "p0", "", "P0+P1", "P0+P9", "+"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(requests=st.lists(names, min_size=0, max_size=3), n_samples=st.integers(0, 3))
def test_predict_succeeds_or_raises_documented_errors(
    trained: samsvae.SAMSVAE, requests: list[str], n_samples: int
) -> None:
    try:
        result = trained.predict(requests, n_samples=n_samples)
    except DOCUMENTED as error:
        _assert_raised_by_samsvae(error)
        return
    assert result.shape == (len(requests) * n_samples, 8)
    assert np.all(np.isfinite(result.X))

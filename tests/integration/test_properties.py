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


#: Each public method of a fitted model with cheap valid keywords, and the arguments to spoil.
PUBLIC_CALLS = {
    "get_latent_representation": ({"n_samples": 2}, ["latent", "n_samples", "batch_size", "seed"]),
    "predict": ({"perturbations": ["P0"], "n_samples": 2}, ["n_samples", "library_size", "seed"]),
    "average_treatment_effects": (
        {"perturbations": ["P0"], "n_samples": 4, "progress_bar": False},
        ["method", "estimator", "n_samples", "target_standard_error", "library_size", "seed"],
    ),
    "treatment_effect_intervals": (
        {"perturbations": ["P0"], "n_global_samples": 3, "n_samples_per_global": 2},
        [
            "level",
            "method",
            "estimator",
            "n_global_samples",
            "n_samples_per_global",
            "library_size",
            "seed",
        ],
    ),
    "iwelbo": ({"n_particles": 2, "progress_bar": False}, ["n_particles", "batch_size", "seed"]),
    "get_global_posterior": ({"n_samples": 10}, ["level", "n_samples", "seed"]),
    "get_perturbation_similarity": ({"n_samples": 10}, ["metric", "n_samples", "seed"]),
    "get_perturbation_clusters": ({"n_clusters": 2}, ["n_clusters", "metric", "seed"]),
    "get_latent_programs": ({"n_samples": 10}, ["rotation", "n_samples", "seed"]),
    "get_latent_gene_effects": ({}, ["step", "n_top", "rotation"]),
    "gene_set_enrichment": (
        {"gene_sets": {"first": ["gene0", "gene1"]}, "n_clusters": 2},
        ["of", "n_clusters", "n_top"],
    ),
    "genetic_interactions": ({"n_samples": 4}, ["source", "method", "n_samples", "level", "seed"]),
}
#: Out-of-range and ill-typed values (no huge counts: a valid one would only be slow).
BAD_VALUES = [0, -1, 0.5, 1.5, -0.0, np.nan, np.inf, -np.inf, "x", "", None, True, [], {}, 2**70]


@st.composite
def spoiled_calls(draw: st.DrawFn) -> tuple[str, dict]:
    method = draw(st.sampled_from(sorted(PUBLIC_CALLS)))
    keywords, arguments = PUBLIC_CALLS[method]
    argument = draw(st.sampled_from(arguments))
    return method, {**keywords, argument: draw(st.sampled_from(BAD_VALUES))}


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(call=spoiled_calls())
def test_public_methods_refuse_bad_arguments_with_their_own_errors(
    trained: samsvae.SAMSVAE, call: tuple[str, dict]
) -> None:
    method, keywords = call
    try:
        getattr(trained, method)(**keywords)
    except DOCUMENTED as error:
        _assert_raised_by_samsvae(error)


@pytest.mark.parametrize(
    ("method", "keywords", "message"),
    [
        ("predict", {"n_samples": -1}, "n_samples=-1 must be an integer >= 1"),
        ("average_treatment_effects", {"library_size": np.inf}, "library_size=inf must be 'data'"),
        ("iwelbo", {"batch_size": 0}, "batch_size=0 must be an integer >= 1"),
        ("genetic_interactions", {"level": 1.5}, "level=1.5 must be a number strictly between"),
        ("get_latent_representation", {"seed": "x"}, "seed='x' must be None or an integer"),
    ],
)
def test_a_bad_argument_is_named_with_what_it_accepts(
    trained: samsvae.SAMSVAE, method: str, keywords: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        getattr(trained, method)(**{**PUBLIC_CALLS[method][0], **keywords})


TRAIN_ARGUMENTS = [
    "max_epochs",
    "batch_size",
    "lr",
    "train_size",
    "seed",
    "mask_refinement",
    "global_lr",
    "weight_decay",
    "gradient_clip_val",
    "early_stopping_patience",
    "restart_on_divergence",
]


@settings(max_examples=30, deadline=None)
@given(argument=st.sampled_from(TRAIN_ARGUMENTS), value=st.sampled_from(BAD_VALUES))
def test_train_refuses_bad_arguments_with_its_own_errors(argument: str, value: object) -> None:
    adata = samsvae.datasets.simulate(
        n_perturbations=2,
        n_combinations=0,
        n_genes=4,
        n_cells_per_perturbation=6,
        n_control_cells=6,
        seed=0,
    )
    samsvae.SAMSVAE.setup_anndata(adata)
    model = samsvae.SAMSVAE(adata, n_latent=2, n_hidden=4)
    try:
        model.train(**{"max_epochs": 1, "progress_bar": False, argument: value})
    except DOCUMENTED as error:
        _assert_raised_by_samsvae(error)

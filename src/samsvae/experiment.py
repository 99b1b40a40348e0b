"""Config-file experiments: one YAML file names the data, preprocessing, task, model and training.

::

    dataset: {name: norman2019, path: norman.h5ad}   # or simulate / replogle2022_k562 / h5ad
    preprocess: {min_counts: 500, n_top_genes: 2000}  # optional: samsvae.data.preprocess
    task: {name: norman_ood, seed: 0, fraction: 0.5}  # samsvae.data.make_split
    setup: {}                                         # optional: setup_anndata options
    model: {name: SAMSVAE, n_latent: 100}             # the model class and its options
    train: {max_epochs: 100, lr: 0.001}               # model.train options
    evaluate: {iwelbo_particles: 100}                 # optional

Each section's keys are the keyword arguments of the function it configures, checked before
anything runs. ``samsvae train CONFIG.yaml`` writes the config, ``split.json``, the model and
``metrics.json`` into the run folder.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import yaml

from samsvae import datasets
from samsvae.data import TASKS, Split, make_split, preprocess
from samsvae.workflows import MODEL_CLASSES

if TYPE_CHECKING:
    from collections.abc import Callable


def _read_h5ad(path: str | Path) -> ad.AnnData:
    return ad.read_h5ad(path)


SECTIONS = ("dataset", "preprocess", "task", "setup", "model", "train", "evaluate")
REQUIRED = ("dataset", "task", "model")
DATASETS: dict[str, Callable[..., ad.AnnData]] = {
    "simulate": datasets.simulate,
    "norman2019": datasets.norman2019,
    "replogle2022_k562": datasets.replogle2022_k562,
    "h5ad": _read_h5ad,
}
SPLIT_OPTIONS = ("train_indices", "validation_indices")  # set by the task, not the config


def read_config(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and check an experiment YAML file.

    Parameters
    ----------
    path
        The YAML file (sections in the module docstring).

    Returns
    -------
    The sections, each a dict (absent optional sections are empty).

    Raises
    ------
    ValueError
        The file is not a mapping, names an unknown section or option, or lacks a required
        section or name.
    """
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        msg = f"{path} must hold a YAML mapping with sections {SECTIONS}."
        raise ValueError(msg)
    unknown = sorted(set(config) - set(SECTIONS))
    missing = [s for s in REQUIRED if s not in config]
    if unknown or missing:
        msg = f"{path}: unknown sections {unknown}, missing sections {missing}; see {SECTIONS}."
        raise ValueError(msg)
    sections = {name: dict(config.get(name) or {}) for name in SECTIONS}
    for name in ("dataset", "task", "model"):
        if "name" not in sections[name]:
            msg = f"{path}: section {name!r} needs a 'name'."
            raise ValueError(msg)
    if isinstance(sections["dataset"].get("path"), str):  # relative to the config file
        sections["dataset"]["path"] = str(Path(path).parent / sections["dataset"]["path"])
    loader = _choice(sections["dataset"]["name"], DATASETS, "dataset.name")
    task = _choice(sections["task"]["name"], TASKS, "task.name")
    model_class = _choice(sections["model"]["name"], MODEL_CLASSES, "model.name")
    _check_options(loader, _without_name(sections["dataset"]), "dataset")
    _check_options(task, _without_name(sections["task"]), "task")
    _check_options(preprocess, sections["preprocess"], "preprocess")
    _check_options(model_class.__init__, _without_name(sections["model"]), "model")
    _check_options(model_class.train, sections["train"], "train", exclude=SPLIT_OPTIONS)
    _check_options(model_class.setup_anndata, sections["setup"], "setup")
    return sections


def run_experiment(config_path: str | Path, out: str | Path) -> dict[str, Any]:
    """Run the experiment of a YAML file and write its run folder.

    Parameters
    ----------
    config_path
        The experiment file (see :func:`read_config`).
    out
        The run folder; created if needed.

    Returns
    -------
    The metrics written to ``out/metrics.json``: cell counts of the split, the final training
    and validation losses, and the mean test IWELBO per cell when the task has test cells.
    Also writes ``out/config.yaml``, ``out/split.json`` and ``out/model/``.
    """
    config = read_config(config_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    adata = DATASETS[config["dataset"]["name"]](**_without_name(config["dataset"]))
    if config["preprocess"]:
        adata = preprocess(adata, **config["preprocess"])
    task = config["task"]
    split = make_split(adata, task["name"], **_without_name(task))
    split.save(out / "split.json")
    model = _train(adata, split, config)
    model.save(out / "model", overwrite=True)
    metrics = _metrics(model, adata, split, config["evaluate"])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def _train(adata: ad.AnnData, split: Split, config: dict[str, dict[str, Any]]) -> Any:
    model_class = MODEL_CLASSES[config["model"]["name"]]
    setup = {**_label_options(split), **config["setup"]}
    model_class.setup_anndata(adata, **setup)
    model = model_class(adata, **_without_name(config["model"]))
    model.train(train_indices=split.train, validation_indices=split.validation, **config["train"])
    return model


def _metrics(
    model: Any, adata: ad.AnnData, split: Split, options: dict[str, Any]
) -> dict[str, Any]:
    history = model.history
    metrics: dict[str, Any] = {
        "task": split.task,
        "n_train": len(split.train),
        "n_validation": len(split.validation),
        "n_test": len(split.test),
    }
    for column in ("train_loss", "val_loss"):
        if history is not None and column in history and history[column].notna().any():
            metrics[f"final_{column}"] = float(history[column].dropna().iloc[-1])
    if len(split.test):
        n_particles = int(options.get("iwelbo_particles", 100))
        metrics["test_iwelbo"] = model.iwelbo(adata[split.test], n_particles=n_particles)
    return metrics


def _label_options(split: Split) -> dict[str, Any]:
    """setup_anndata options recorded by the task (labels key, control, delimiter, encoding)."""
    keys = ("perturbation_key", "control", "combination_delimiter", "dosage_encoding")
    return {key: split.parameters[key] for key in keys if key in split.parameters}


def _without_name(section: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in section.items() if key != "name"}


def _choice(name: str, options: dict[str, Any], where: str) -> Any:
    if name not in options:
        msg = f"{where}={name!r} is not known; choose one of {sorted(options)}."
        raise ValueError(msg)
    return options[name]


def _check_options(
    function: Callable[..., Any],
    options: dict[str, Any],
    where: str,
    *,
    exclude: tuple[str, ...] = (),
) -> None:
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    known = [name for name in parameters if name not in ("self", "adata", "cls", *exclude)]
    unknown = sorted(set(options) - set(known))
    if unknown:
        msg = f"{where}: unknown options {unknown}; the options are {known}."
        raise ValueError(msg)

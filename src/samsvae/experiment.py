"""Config-file experiments: one YAML file names the data, preprocessing, task, model and training.

::

    dataset: {name: norman2019, path: norman.h5ad}   # or simulate / replogle2022_k562 / h5ad
    preprocess: {min_counts: 500, n_top_genes: 2000}  # optional: samsvae.data.preprocess
    task: {name: norman_ood, seed: 0, fraction: 0.5}  # samsvae.data.make_split
    setup: {}                                         # optional: setup_anndata options
    model: {name: SAMSVAE, n_latent: 100}             # the model class and its options
    train: {max_epochs: 100, lr: 0.001}               # model.train options
    evaluate: {iwelbo_particles: 100}                 # optional
    grid:                                             # optional: one run per point
      model: [{name: SAMSVAE}, {name: CPAVAE}]        #   a section: merged into the base one
      train.seed: [0, 1, 2]                           #   section.option: replaces the value
    sweep:                                            # optional: samsvae sweep's search space
      model.mask_prior: {type: categorical, choices: [0.1, 0.01]}
      train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}

Each section's keys are the keyword arguments of the function it configures, checked before
anything runs (every grid point, and the sweep's bounds and choices): names against the
function's signature, values against its type annotations with pydantic (strict: a string is not
a number, a number not a choice), then the model's and training's ranges. ``grid`` is a mapping
(its product) or a list of mappings (the union of their products). ``samsvae train CONFIG.yaml``
writes the config, ``split.json``, the model and ``metrics.json`` into the run folder, one
folder per grid point.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import itertools
import json
import re
import sys
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pydantic
import yaml

from samsvae import datasets
from samsvae.config import TrainConfig
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


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check an experiment YAML file.

    Parameters
    ----------
    path
        The YAML file (sections in the module docstring).

    Returns
    -------
    The sections, each a dict (absent optional sections are empty); ``"grid"`` is a list of
    mappings and ``"sweep"`` a mapping (both empty when absent).

    Raises
    ------
    ValueError
        The file is not a mapping, names an unknown section or option, lacks a required section
        or name, or has a malformed grid or sweep.
    """
    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict):
        msg = f"{path} must hold a YAML mapping with sections {SECTIONS}."
        raise ValueError(msg)
    unknown = sorted(set(config) - {*SECTIONS, "grid", "sweep"})
    missing = [s for s in REQUIRED if s not in config and not config.get("grid")]
    if unknown or missing:
        msg = f"{path}: unknown sections {unknown}, missing sections {missing}; see {SECTIONS}."
        raise ValueError(msg)
    sections: dict[str, Any] = {name: dict(config.get(name) or {}) for name in SECTIONS}
    if isinstance(sections["dataset"].get("path"), str):  # relative to the config file
        sections["dataset"]["path"] = str(Path(path).parent / sections["dataset"]["path"])
    grid = config.get("grid") or []
    sections["grid"] = [grid] if isinstance(grid, dict) else grid
    sections["sweep"] = dict(config.get("sweep") or {})
    points = expand_grid(sections, where=str(path))
    for point in points.values():
        for values in _sweep_corners(sections["sweep"], where=str(path)):
            check_config(with_values(point, values), where=str(path))
    return sections


def check_config(config: dict[str, Any], *, where: str = "config") -> None:
    """Check one experiment (no grid): names, option names and the model's and training's values.

    Raises
    ------
    ValueError
        A section lacks its name, or names an unknown choice or option, or a value is out of
        range for the model or training configuration.
    """
    for name in ("dataset", "task", "model"):
        if "name" not in config[name]:
            msg = f"{where}: section {name!r} needs a 'name'."
            raise ValueError(msg)
    loader = _choice(config["dataset"]["name"], DATASETS, "dataset.name")
    task = _choice(config["task"]["name"], TASKS, "task.name")
    model_class = _choice(config["model"]["name"], MODEL_CLASSES, "model.name")
    _check_options(loader, _without_name(config["dataset"]), "dataset")
    _check_options(task, _without_name(config["task"]), "task")
    _check_options(preprocess, config["preprocess"], "preprocess")
    _check_options(model_class.__init__, _without_name(config["model"]), "model")
    _check_options(
        model_class.train,
        config["train"],
        "train",
        exclude=SPLIT_OPTIONS,
        keywords_from=TrainConfig,
    )
    _check_options(model_class.setup_anndata, config["setup"], "setup")
    model_class.config_cls(**_without_name(config["model"]))  # range checks, without data
    train_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    TrainConfig(**{k: v for k, v in config["train"].items() if k in train_fields})


def expand_grid(config: dict[str, Any], *, where: str = "config") -> dict[str, dict[str, Any]]:
    """The experiments of a config's grid, by run name (one experiment, ``""``, without a grid).

    A grid key ``section.option`` replaces that option; a key ``section`` merges a mapping into
    the section. Names join the point's values, e.g. ``SAMSVAE_correlated-fraction=0.5-seed=0``.
    Every experiment is checked with :func:`check_config`; the ``grid`` entry is dropped.
    """
    base = {key: value for key, value in config.items() if key != "grid"}
    products = config.get("grid") or [{}]
    points: dict[str, dict[str, Any]] = {}
    for product in products:
        if not isinstance(product, dict) or not all(
            isinstance(values, list) and values for values in product.values()
        ):
            msg = f"{where}: grid entries map keys to non-empty lists of values; got {product!r}."
            raise ValueError(msg)
        for combination in itertools.product(*product.values()):
            values = dict(zip(product, combination, strict=True))
            point = with_values(base, values)
            check_config(point, where=where)
            name = "-".join(_label(key, value) for key, value in values.items())
            if name in points and points[name] != point:
                msg = f"{where}: two different grid points are both named {name!r}."
                raise ValueError(msg)
            points[name] = point
    return points


def with_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with ``section.option`` values replaced and ``section`` merged."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in config.items()}
    for key, value in values.items():
        section, _, option = key.partition(".")
        if section not in SECTIONS or (not option and not isinstance(value, dict)):
            msg = (
                f"{key!r} must be 'section.option', or a section with mappings as values, "
                f"with a section of {SECTIONS}."
            )
            raise ValueError(msg)
        out[section] = {**out[section], **({option: value} if option else value)}
    return out


def _label(key: str, value: Any) -> str:
    if isinstance(value, dict):
        text = "_".join(str(v) for v in value.values())
    else:
        text = f"{key.rpartition('.')[2]}={value}"
    return re.sub(r"[^A-Za-z0-9._=+]", "_", text)


SWEEP_TYPES = {
    "categorical": ({"choices"}, set()),
    "float": ({"low", "high"}, {"log", "step"}),
    "int": ({"low", "high"}, {"log", "step"}),
}


def _sweep_corners(sweep: dict[str, Any], *, where: str) -> list[dict[str, Any]]:
    """Check the sweep's specs; return configs' values at every choice and bound of each."""
    corners: list[dict[str, Any]] = [{}]
    for key, spec in sweep.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind not in SWEEP_TYPES:
            msg = f"{where}: sweep.{key} needs a 'type' of {sorted(SWEEP_TYPES)}; got {spec!r}."
            raise ValueError(msg)
        required, optional = SWEEP_TYPES[kind]
        given = set(spec) - {"type"}
        if not required <= given or given - required - optional:
            msg = (
                f"{where}: sweep.{key} of type {kind!r} takes {sorted(required)} and optionally "
                f"{sorted(optional)}; got {sorted(given)}."
            )
            raise ValueError(msg)
        values = spec["choices"] if kind == "categorical" else [spec["low"], spec["high"]]
        if kind != "categorical" and not spec["low"] < spec["high"]:
            msg = f"{where}: sweep.{key} needs low < high; got {spec['low']}, {spec['high']}."
            raise ValueError(msg)
        if not isinstance(values, list) or not values:
            msg = f"{where}: sweep.{key}.choices must be a non-empty list; got {values!r}."
            raise ValueError(msg)
        corners += [{**corners[0], key: value} for value in values]
    return corners


def run_experiment(config_path: str | Path, out: str | Path) -> dict[str, dict[str, Any]]:
    """Run the experiments of a YAML file and write their run folders.

    Parameters
    ----------
    config_path
        The experiment file (see :func:`read_config`).
    out
        The run folder, created if needed; with a grid, one subfolder per point, named as in
        :func:`expand_grid`.

    Returns
    -------
    The metrics of each run (see :func:`run_config`), by grid point name (``""`` without grid).
    """
    points = expand_grid(read_config(config_path), where=str(config_path))
    return {name: run_config(config, Path(out) / name) for name, config in points.items()}


def run_config(config: dict[str, Any], out: str | Path) -> dict[str, Any]:
    """Run one checked experiment (no grid) and write its run folder.

    Returns
    -------
    The metrics written to ``out/metrics.json``: cell counts of the split, the final training
    and validation losses, and the mean predictive IWELBO per cell of the validation and of the
    test cells (when the split has some). Also writes ``out/config.yaml``, ``out/split.json``
    and ``out/model/``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = {name: config[name] for name in SECTIONS}
    (out / "config.yaml").write_text(yaml.safe_dump(sections, sort_keys=False))
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


def _train(adata: ad.AnnData, split: Split, config: dict[str, Any]) -> Any:
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
    n_particles = int(options.get("iwelbo_particles", 100))
    for part, rows in (("validation", split.validation), ("test", split.test)):
        if len(rows):
            metrics[f"{part}_iwelbo"] = model.iwelbo(adata[rows], n_particles=n_particles)
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
    keywords_from: type | None = None,
) -> None:
    """Refuse an option ``function`` does not take, or a value that does not fit its annotation.

    ``keywords_from`` names the dataclass whose fields ``function`` takes through ``**options``.
    """
    parameters = inspect.signature(function).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    if takes_any and keywords_from is None:
        return
    annotations = {
        **(typing.get_type_hints(keywords_from) if keywords_from is not None else {}),
        **_annotations(function),
    }
    named = [p for p in parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    known = [
        name
        for name in dict.fromkeys([*(p.name for p in named), *annotations])
        if name not in ("self", "adata", "cls", *exclude)
    ]
    unknown = sorted(set(options) - set(known))
    if unknown:
        msg = f"{where}: unknown options {unknown}; the options are {known}."
        raise ValueError(msg)
    for name, value in options.items():
        if name in annotations:
            _check_type(annotations[name], value, f"{where}.{name}")


_NAMESPACE = {
    **{name: getattr(collections.abc, name) for name in collections.abc.__all__},
    **{name: getattr(typing, name) for name in ("Any", "Literal")},
    "Path": Path,
    "np": np,
    "ad": ad,
}
_STRICT = pydantic.ConfigDict(arbitrary_types_allowed=True)


def _annotations(function: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations of ``function``'s parameters (those that do not resolve are left out:
    they only name types used under TYPE_CHECKING, never config values)."""
    module = vars(sys.modules[function.__module__])
    resolved = {}
    for name, parameter in inspect.signature(function).parameters.items():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            try:
                # Our own functions' annotation strings (as typing.get_type_hints evaluates them).
                annotation = eval(annotation, {**_NAMESPACE, **module})
            except (NameError, AttributeError, TypeError):
                continue
        if annotation is not inspect.Parameter.empty:
            resolved[name] = annotation
    return resolved


def _check_type(annotation: Any, value: Any, where: str) -> None:
    try:
        pydantic.TypeAdapter(annotation, config=_STRICT).validate_python(value, strict=True)
    except pydantic.ValidationError as error:
        detail = error.errors()[0]["msg"]
        msg = f"{where}={value!r} does not fit its type {annotation}: {detail}."
        raise ValueError(msg) from None
    except pydantic.PydanticSchemaGenerationError:
        return  # a type pydantic cannot describe: the configured function checks the value

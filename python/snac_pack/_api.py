"""The public functions and classes of :mod:`snac_pack`, thin over the Rust
engine in :mod:`snac_pack._native`: configs and arrays go in, results come
back as NumPy arrays, pandas DataFrames and Optuna studies."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _native
from ._progress import Progress

SnacError = _native.SnacError

ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, Any], None]
PathLike = Union[str, "os.PathLike[str]"]

LOCAL_DIR = "local_search_combined"
LOCAL_LOG = "combined_qat_pruning_log.csv"


class Interrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or a kernel interrupt. Completed trials are
    kept in the study; running the same call again resumes it.
    ``results`` holds what the run left behind."""

    def __init__(self, results: "Results") -> None:
        self.results = results
        super().__init__(
            f"stopped: {results.completed} completed trials are kept in {results.results_dir}; "
            "run the same call again to resume"
        )


def cli(args: Sequence[str]) -> int:
    """Runs the ``snac`` command line in this process (``cli(["data", "fetch",
    "mnist"])``) and returns its exit status."""
    return _native.cli(["snac", *map(str, args)])


def example_config() -> str:
    """The embedded example config (``snac example-config``): a starting point."""
    return _native.example_config()


# ----------------------------------------------------------------------------
# Configs and datasets


def _config_args(config: ConfigLike) -> Dict[str, Any]:
    """How the engine should read ``config``: a file, YAML text, or the
    embedded example (``None``)."""
    if config is None:
        return {}
    if isinstance(config, Mapping):
        # JSON is YAML: the engine reads it with the same checks and messages.
        return {"config_text": json.dumps(dict(config), indent=2), "source": "<config dict>"}
    if isinstance(config, os.PathLike):
        return {"config_path": os.fspath(config)}
    if isinstance(config, str):
        if "\n" not in config and (os.path.exists(config) or re.search(r"\.ya?ml$", config)):
            return {"config_path": config}
        return {"config_text": config, "source": "<config string>"}
    raise TypeError(
        f"config is a {type(config).__name__}; accepted: a path, a YAML string, a dict, or None for the "
        "embedded example"
    )


def _array_data(
    x_train: Any, y_train: Any, x_val: Any, y_val: Any
) -> Optional[Dict[str, Any]]:
    """The four arrays as the engine takes them, checked with messages that
    name the argument."""
    given = {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}
    if all(v is None for v in given.values()):
        return None
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise SnacError(
            f"{', '.join(missing)} missing: a dataset from arrays needs x_train, y_train, x_val and y_val "
            "(samples first; labels as class indices 0..C-1)"
        )
    xs, ys = {}, {}
    for split in ("train", "val"):
        x = np.asarray(given[f"x_{split}"])
        y = np.asarray(given[f"y_{split}"])
        if x.ndim < 2:
            raise SnacError(
                f"x_{split} has shape {x.shape}; accepted: (samples, features), (samples, height, width) "
                "or (samples, height, width, channels)"
            )
        if not np.issubdtype(x.dtype, np.number):
            raise SnacError(f"x_{split} has dtype {x.dtype}; accepted: numbers")
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            where = np.argwhere(bad)[0]
            raise SnacError(
                f"x_{split}{[int(i) for i in where]} is {x[tuple(where)]} ({int(bad.sum())} non-finite values in all); "
                "accepted: finite values (fill or drop the missing ones first)"
            )
        if y.ndim == 2 and y.shape[1] > 1:
            y = y.argmax(axis=1)  # one-hot labels
        y = y.reshape(-1)
        if len(y) != len(x):
            raise SnacError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)} labels")
        if not np.issubdtype(y.dtype, np.number) or (y != np.round(y)).any() or (y < 0).any():
            raise SnacError(
                f"y_{split} must hold class indices (integers 0..C-1) or one-hot rows; got dtype {y.dtype}, "
                f"values such as {y[:5].tolist()}"
            )
        xs[split], ys[split] = x, y.astype(np.uint32)
    if xs["train"].shape[1:] != xs["val"].shape[1:]:
        raise SnacError(
            f"x_train samples have shape {xs['train'].shape[1:]} but x_val samples {xs['val'].shape[1:]}"
        )
    classes = int(max(ys["train"].max(initial=0), ys["val"].max(initial=0))) + 1
    return {
        "sample_shape": list(xs["train"].shape[1:]),
        "num_classes": max(classes, 2),
        "x_train": xs["train"].tobytes(),
        "y_train": ys["train"].astype("<u4").tobytes(),
        "x_val": xs["val"].tobytes(),
        "y_val": ys["val"].astype("<u4").tobytes(),
    }


def _stage(
    stages: str,
    config: ConfigLike,
    *,
    progress: bool,
    x_train: Any = None,
    y_train: Any = None,
    x_val: Any = None,
    y_val: Any = None,
    arch: Optional[PathLike] = None,
    **overrides: Any,
) -> "Results":
    known = {"trials", "epochs", "seed", "workers", "results_dir", "storage", "study", "timeout", "timeout_hard"}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(
            f"unknown keyword argument(s) {sorted(unknown)}; accepted: {sorted(known)} and x_train, y_train, "
            "x_val, y_val, progress"
        )
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    if "results_dir" in kwargs:
        kwargs["results_dir"] = os.fspath(kwargs["results_dir"])
    for key in ("timeout", "timeout_hard"):
        if key in kwargs:
            kwargs[key] = str(kwargs[key])  # seconds, or "45m", "1h30m", as --timeout takes
    data = _array_data(x_train, y_train, x_val, y_val)
    display = Progress(show=progress)
    text = _native.run_experiment(
        stages,
        display,
        data=data,
        arch=None if arch is None else os.fspath(arch),
        **_config_args(config),
        **kwargs,
    )
    outcome = json.loads(text)
    results = Results(
        outcome["results_dir"],
        storage=outcome["storage_url"],
        study=outcome["study_name"],
        outcome=outcome,
        messages=display.messages,
    )
    if outcome.get("interrupted_by_user"):
        raise Interrupted(results)
    return results


def run(
    config: ConfigLike = None,
    *,
    trials: Optional[int] = None,
    epochs: Optional[int] = None,
    seed: Optional[int] = None,
    workers: Optional[int] = None,
    results_dir: Optional[PathLike] = None,
    storage: Optional[str] = None,
    study: Optional[str] = None,
    timeout: Union[float, str, None] = None,
    timeout_hard: Union[float, str, None] = None,
    x_train: Any = None,
    y_train: Any = None,
    x_val: Any = None,
    y_val: Any = None,
    progress: bool = True,
) -> "Results":
    """Runs every stage the config asks for (``snac run``): the global
    search, then, when the config has ``local_search``, QAT and pruning of
    the best model and the hls4ml hand-off.

    Args:
        config: a path to a YAML file, a YAML string, a dict with the same
            keys, or None for the embedded digits example.
        trials, epochs, seed, workers, results_dir, storage, study: the
            command line's overrides (``--trials`` ...). ``storage`` is a URL
            (``sqlite:///study.db``, ``postgresql://...``, ``journal:///path.log``)
            shared by workers.
        timeout, timeout_hard: the global search's time budget (``--timeout``):
            seconds or ``"45m"``, ``"1h30m"``; no new trial starts after it,
            and running ones are cancelled at the hard limit.
        x_train, y_train, x_val, y_val: a dataset as arrays instead of the
            config's ``dataset`` (samples first, channels last; labels as
            class indices or one-hot rows).
        progress: show a progress bar and messages (warnings always show).

    Returns:
        Results: the study, CSVs, best model and local-search models.

    Raises:
        SnacError: a bad config or dataset, with file, key path and accepted values.
        Interrupted: Ctrl-C or a kernel interrupt; completed trials are kept.
    """
    return _stage(
        "all", config, progress=progress, trials=trials, epochs=epochs, seed=seed, workers=workers,
        results_dir=results_dir, storage=storage, study=study, timeout=timeout, timeout_hard=timeout_hard,
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
    )


def search(
    config: ConfigLike = None,
    *,
    trials: Optional[int] = None,
    epochs: Optional[int] = None,
    seed: Optional[int] = None,
    workers: Optional[int] = None,
    results_dir: Optional[PathLike] = None,
    storage: Optional[str] = None,
    study: Optional[str] = None,
    timeout: Union[float, str, None] = None,
    timeout_hard: Union[float, str, None] = None,
    x_train: Any = None,
    y_train: Any = None,
    x_val: Any = None,
    y_val: Any = None,
    progress: bool = True,
) -> "Results":
    """Runs the global architecture search only (``snac search``); the
    arguments are :func:`run`'s."""
    return _stage(
        "search", config, progress=progress, trials=trials, epochs=epochs, seed=seed, workers=workers,
        results_dir=results_dir, storage=storage, study=study, timeout=timeout, timeout_hard=timeout_hard,
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
    )


def local(
    config: ConfigLike = None,
    *,
    arch: Optional[PathLike] = None,
    epochs: Optional[int] = None,
    seed: Optional[int] = None,
    results_dir: Optional[PathLike] = None,
    x_train: Any = None,
    y_train: Any = None,
    x_val: Any = None,
    y_val: Any = None,
    progress: bool = True,
) -> "Results":
    """Runs the local search (``snac local``): QAT at each precision pair
    plus iterative magnitude pruning with lottery-ticket rewinding, from the
    results dir's best model or ``arch`` (an architecture YAML)."""
    return _stage(
        "local", config, progress=progress, arch=arch, epochs=epochs, seed=seed, results_dir=results_dir,
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
    )


# ----------------------------------------------------------------------------
# Models


class Model:
    """A quantized model (local search's ``best_model_{bits}b{int}i.json``),
    computed as fixed-point hardware computes it."""

    def __init__(self, source: Union[PathLike, "_native.Model"]) -> None:
        self._native = source if isinstance(source, _native.Model) else _native.Model(os.fspath(source))

    @property
    def path(self) -> Optional[Path]:
        """The file the model was read from."""
        p = self._native.path
        return None if p is None else Path(p)

    @property
    def input_shape(self) -> tuple:
        """One sample's shape: (features,), (height, width, channels) or (elements, features)."""
        return tuple(self._native.input_shape)

    @property
    def input_features(self) -> int:
        return self._native.input_features

    @property
    def output_features(self) -> int:
        return self._native.output_features

    @property
    def weights(self) -> Dict[str, np.ndarray]:
        """Each parameter's real values (what its integer codes stand for),
        named ``layer{index}_{kind}/{param}``; Dense kernels are (inputs, outputs)."""
        return {
            name: np.frombuffer(raw, dtype="<f8").reshape(shape).copy()
            for name, shape, raw in self._native.weights_raw()
        }

    def predict(self, x: Any) -> np.ndarray:
        """Integer inference of samples ``x`` (one sample or a batch): the
        outputs, (samples, classes), bit-exact with ``snac predict``."""
        x = np.asarray(x, dtype=np.float32)
        features = self.input_features
        if x.size == features and x.ndim <= len(self.input_shape):
            x = x.reshape(1, features)
        elif x.ndim >= 2 and int(np.prod(x.shape[1:])) == features:
            x = x.reshape(len(x), features)
        else:
            raise SnacError(
                f"x has shape {x.shape}; the model takes {features} values per sample (accepted: "
                f"{self.input_shape}, (N, {features}) or (N, *{self.input_shape}))"
            )
        if not np.isfinite(x).all():
            raise SnacError("x holds non-finite values; predict takes finite numbers only")
        raw = self._native.predict_raw(np.ascontiguousarray(x, dtype="<f4").tobytes(), len(x))
        return np.frombuffer(raw, dtype="<f8").reshape(len(x), self.output_features).copy()

    def export(
        self,
        out: PathLike,
        *,
        board: str = "zcu102",
        reuse: int = 1,
        strategy: str = "latency",
        io_type: str = "io_parallel",
        backend: str = "Vitis",
        clock_ns: Optional[float] = None,
        samples: int = 100,
        hls_output_dir: Optional[PathLike] = None,
        verify: bool = False,
    ) -> Path:
        """The hls4ml hand-off (``snac export``): QONNX, hls4ml config, test
        vectors, ``convert.py`` and a README in ``out``, for hls4ml's
        ``io_type`` (io_parallel or io_stream) and ``backend`` (Vivado or
        Vitis) at ``clock_ns`` (default 5). With ``verify``, runs hls4ml's C
        simulation against our integer inference (needs hls4ml and g++;
        ``SNAC_PYTHON`` or this Python when it has hls4ml). Returns the path
        of ``convert.py``."""
        flags = [
            "--board", board, "--reuse", str(reuse), "--strategy", strategy,
            "--io-type", io_type, "--backend", backend, "--samples", str(samples),
        ]
        if clock_ns is not None:
            flags += ["--clock-ns", str(clock_ns)]
        if hls_output_dir is not None:
            flags += ["--hls-output-dir", os.fspath(hls_output_dir)]
        script = Path(self._native.export(os.fspath(out), flags))
        if verify:
            _verify(script)
        return script

    def to_qonnx(self, path: PathLike) -> Path:
        """Writes the model as QONNX (the ``model.onnx`` of the hand-off)."""
        with tempfile.TemporaryDirectory() as tmp:
            script = self.export(tmp, samples=1)
            shutil.copyfile(script.parent / "model.onnx", path)
        return Path(path)

    def describe(self) -> str:
        """The architecture and fixed-point types in one line."""
        return self._native.describe()

    def to_json(self) -> str:
        return self._native.to_json()

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"<snac_pack.Model{where}: {self.describe()}>"


def _verify(script: Path) -> None:
    import subprocess
    import sys

    python = os.environ.get("SNAC_PYTHON")
    if python is None:
        try:
            import hls4ml  # noqa: F401

            python = sys.executable
        except ImportError as e:
            raise SnacError(
                "verify needs hls4ml: install it in this environment (pip install hls4ml==1.3.0 "
                "qonnx==1.0.0 onnx==1.23.2) or set SNAC_PYTHON to a Python that has it"
            ) from e
    done = subprocess.run([python, os.fspath(script), "--verify"])
    if done.returncode != 0:
        raise SnacError(f"{script} --verify failed (exit status {done.returncode}); its output says why")


def load_model(path: PathLike) -> Model:
    """Reads a quantized model file (``best_model_{bits}b{int}i.json``)."""
    return Model(path)


def predict(model: Union[Model, PathLike], x: Any) -> np.ndarray:
    """Integer inference, as :meth:`Model.predict`, of a model or model file."""
    return (model if isinstance(model, Model) else Model(model)).predict(x)


def export(model: Union[Model, PathLike], out: PathLike, **options: Any) -> Path:
    """The hls4ml hand-off of a model or model file; options as :meth:`Model.export`."""
    return (model if isinstance(model, Model) else Model(model)).export(out, **options)


def estimate(
    model: PathLike,
    *,
    board: str = "zcu102",
    precision: str = "ap_fixed<8,3>",
    reuse: int = 1,
    strategy: str = "latency",
    io_type: str = "io_parallel",
    backend: str = "Vitis",
    report: str = "csynth",
    estimator: str = "analytical",
    clock_ns: Optional[float] = None,
    weights: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """FPGA resources and latency of a model as hls4ml builds it (``snac
    estimate --json``): a quantized model file, or an architecture YAML
    (with its trained ``weights`` for their zeros)."""
    flags = [
        "--board", board, "--precision", precision, "--reuse", str(reuse), "--strategy", strategy,
        "--io-type", io_type, "--backend", backend, "--report", report, "--estimator", estimator,
    ]
    if clock_ns is not None:
        flags += ["--clock-ns", str(clock_ns)]
    if weights is not None:
        flags += ["--weights", os.fspath(weights)]
    if isinstance(model, Model):
        if model.path is None:
            raise SnacError("estimate needs a model file; write the model with to_json() first")
        model = model.path
    return json.loads(_native.estimate(os.fspath(model), flags))


# ----------------------------------------------------------------------------
# Results


def _local_time(text: Optional[str]) -> Optional[_dt.datetime]:
    if text is None:
        return None
    # Optuna's DataFrame shows naive local times.
    return _dt.datetime.fromisoformat(text).astimezone().replace(tzinfo=None)


class Results:
    """What a run left behind: its study (in storage), its results dir
    (CSVs, trial YAMLs and weights, best model, local-search models, plots,
    report), and a summary of the run that returned it."""

    def __init__(
        self,
        results_dir: Optional[PathLike],
        *,
        storage: str,
        study: str,
        outcome: Optional[Dict[str, Any]] = None,
        messages: Optional[List[dict]] = None,
    ) -> None:
        self.results_dir = None if results_dir is None else Path(results_dir)
        self.storage = storage
        self.study_name = study
        self.outcome = outcome or {}
        self.messages = messages or []

    # A summary of the run ----------------------------------------------------
    @property
    def interrupted(self) -> bool:
        return bool(self.outcome.get("interrupted") or self.outcome.get("interrupted_by_user"))

    @property
    def timed_out(self) -> bool:
        """The time budget (``timeout``) ran out before ``n_trials``."""
        return bool(self.outcome.get("timed_out"))

    @property
    def completed(self) -> int:
        """Completed global-search trials in the study."""
        if "completed" in self.outcome:
            return int(self.outcome["completed"])
        return sum(t["state"] == "COMPLETE" for t in self._trials()["trials"])

    # The study ---------------------------------------------------------------
    def _trials(self) -> Dict[str, Any]:
        return json.loads(_native.load_trials(self.storage, self.study_name))

    def trials_dataframe(
        self,
        attrs: Sequence[str] = (
            "number", "value", "datetime_start", "datetime_complete", "duration", "params", "user_attrs",
            "system_attrs", "state",
        ),
    ) -> "Any":
        """The trials as a pandas DataFrame, with the columns Optuna's
        ``study.trials_dataframe()`` gives (``number``, ``values_<metric>``,
        ``params_<name>``, ``user_attrs_<name>``, ``state``, ...)."""
        import pandas as pd

        data = self._trials()
        trials = data["trials"]
        if not trials:
            return pd.DataFrame()
        names = data.get("metric_names")
        n_objectives = len(data.get("directions") or []) or 1
        attrs = tuple("values" if a == "value" and n_objectives > 1 else a for a in attrs)
        records, columns = [], {}
        for trial in trials:
            start, complete = _local_time(trial["datetime_start"]), _local_time(trial["datetime_complete"])
            record: Dict[str, Any] = {}
            for attr in attrs:
                if attr in ("params", "user_attrs", "system_attrs"):
                    for key, value in trial[attr].items():
                        record[f"{attr}_{key}"] = value
                        columns.setdefault(attr, set()).add(f"{attr}_{key}")
                    continue
                if attr in ("values", "value"):
                    values = trial["values"] or [None] * n_objectives
                    keys = names if names else list(range(n_objectives))
                    if attr == "value":
                        keys = keys[:1] if names else [None]
                    for key, value in zip(keys, values):
                        column = attr if key is None else f"{attr}_{key}"
                        record[column] = value
                        columns.setdefault(attr, set()).add(column)
                    continue
                value = {
                    "number": trial["number"],
                    "datetime_start": start,
                    "datetime_complete": complete,
                    "duration": (complete - start) if start and complete else None,
                    "state": trial["state"],
                }.get(attr)
                record[attr] = value
                columns.setdefault(attr, set()).add(attr)
            records.append(record)
        ordered = [c for a in attrs if a in columns for c in sorted(columns[a], key=str)]
        return pd.DataFrame(records, columns=ordered)

    def optuna_study(self) -> "Any":
        """The study as an ``optuna.Study`` (needs ``pip install optuna``)."""
        try:
            import optuna
        except ImportError as e:
            raise ImportError("optuna_study() needs Optuna: pip install optuna") from e
        return optuna.load_study(study_name=self.study_name, storage=self.storage)

    # Files in the results dir ---------------------------------------------
    def _dir(self) -> Path:
        if self.results_dir is None:
            raise SnacError(
                f"these results come from the storage {self.storage} alone; pass the results dir to "
                "load_results() for files"
            )
        return self.results_dir

    @property
    def report(self) -> Path:
        """``report.html``: open it in a browser."""
        return self._dir() / "report.html"

    @property
    def plots(self) -> List[Path]:
        """The PNG plots of the run."""
        return sorted((self._dir() / "plots").glob("*.png"))

    def show_plots(self) -> None:
        """Shows the plots inline in Jupyter."""
        from IPython.display import Image, display

        for png in self.plots:
            display(Image(filename=str(png)))

    @property
    def best_model_yaml(self) -> Path:
        """The global search's best architecture (``best_model_for_local_search.yaml``)."""
        return self._dir() / "best_model_for_local_search.yaml"

    def trial_weights(self, number: int) -> Dict[str, np.ndarray]:
        """A trial's trained float weights, from ``trial_weights/trial_N.npz``."""
        path = self._dir() / "trial_weights" / f"trial_{number}.npz"
        if not path.exists():
            raise SnacError(f"{path} does not exist: trial {number} did not complete in this results dir")
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}

    def local_dataframe(self) -> "Any":
        """The local search's log (one row per precision and pruning iteration)."""
        import pandas as pd

        path = self._dir() / LOCAL_DIR / LOCAL_LOG
        if not path.exists():
            raise SnacError(f"{path} does not exist: run the local search first (snac_pack.local)")
        return pd.read_csv(path)

    @property
    def models(self) -> Dict[str, Model]:
        """The local search's quantized models, by precision (``"8b3i"``)."""
        found = {}
        for path in sorted((self._dir() / LOCAL_DIR).glob("best_model_*.json")):
            label = path.stem[len("best_model_"):]
            found[label] = Model(path)
        return found

    def best_model(self, precision: Optional[str] = None) -> Model:
        """A local-search model: the one of ``precision`` (``"8b3i"``), or
        else the most accurate one in the local-search log."""
        models = self.models
        if not models:
            raise SnacError(
                f"{self._dir() / LOCAL_DIR} has no best_model_*.json: run the local search first "
                "(a config with local_search, or snac_pack.local)"
            )
        if precision is not None:
            if precision not in models:
                raise SnacError(f"no model of precision {precision!r}; accepted: {sorted(models)}")
            return models[precision]
        log = self.local_dataframe()
        best = log.sort_values("Accuracy", ascending=False)
        for label in best["Precision"].astype(str):
            key = label.replace("<", "").replace(">", "")
            for name in models:
                if name == key or name == label:
                    return models[name]
        return next(iter(models.values()))

    def __repr__(self) -> str:
        where = self.results_dir if self.results_dir is not None else self.storage
        return f"<snac_pack.Results study={self.study_name!r} at {where}>"


def load_results(path_or_storage: PathLike, study: Optional[str] = None) -> Results:
    """Results of an earlier run: a results dir (its ``study.db``) or a
    storage URL (``sqlite:///...``, ``postgresql://...``). ``study`` defaults
    to the storage's only study, else ``snac``."""
    text = os.fspath(path_or_storage)
    if "://" in text:
        results_dir, storage = None, text
    else:
        results_dir = Path(text)
        db = results_dir / "study.db"
        if not db.exists():
            raise SnacError(
                f"{db} does not exist: {results_dir} is not a snac results dir (accepted: a results dir with "
                "study.db, or a storage URL such as sqlite:///path.db or postgresql://user@host/db)"
            )
        storage = "sqlite:///" + str(db.resolve())  # sqlite:////abs/path.db, as Optuna reads it
    if study is None:
        names = _native.study_names(storage)
        study = names[0] if len(names) == 1 else "snac"
        if names and study not in names:
            raise SnacError(f"{storage} holds several studies {names}; pass study=NAME")
    return Results(results_dir, storage=storage, study=study)

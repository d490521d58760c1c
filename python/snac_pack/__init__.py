"""snac-pack from Python: hardware-aware neural architecture search for FPGAs.

The same engine as the ``snac`` command line, in this process::

    import snac_pack
    r = snac_pack.run()                      # the embedded digits example
    r.trials_dataframe().head()              # pandas, Optuna's column names
    model = r.best_model()                   # the quantized model local search kept
    model.predict(x)                         # integer inference, bit-exact with `snac predict`

Every stage takes a config as a path, a YAML string or a dict, with the
command line's overrides as keyword arguments (``trials``, ``epochs``,
``seed``, ``workers``, ``results_dir``, ``storage``, ``study``). Errors are
:class:`SnacError` with the message the command line prints. Ctrl-C (or a
Jupyter kernel interrupt) stops the run cleanly and raises
:class:`Interrupted`, which carries the results kept so far.
"""

from ._api import (
    Interrupted,
    Model,
    Results,
    SnacError,
    cli,
    estimate,
    example_config,
    export,
    load_model,
    load_results,
    local,
    predict,
    run,
    search,
)

__all__ = [
    "Interrupted",
    "Model",
    "Results",
    "SnacError",
    "cli",
    "estimate",
    "example_config",
    "export",
    "load_model",
    "load_results",
    "local",
    "predict",
    "run",
    "search",
]

try:
    from importlib.metadata import version as _version

    __version__ = _version("snac-pack")
except Exception:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

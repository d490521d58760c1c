"""Helper of tests/optuna_interop.rs, run with the venv's Python (optuna pinned).

    optuna_study.py dump STORAGE STUDY     -> JSON: every trial and the Pareto set
    optuna_study.py create STORAGE STUDY   -> a study made by Optuna itself
    optuna_study.py name STORAGE STUDY     -> names its objectives in Optuna (acc, cost)
    optuna_study.py add STORAGE STUDY      -> asks for one trial, as Optuna's own worker, and tells it

STORAGE is a URL Optuna takes, or journal://PATH for a JournalFileBackend file
(journal:///abs/path or journal://relative/path, as snac writes them).
"""
import json
import math
import sys

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)


def number(v):
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def dump(storage, name):
    study = optuna.load_study(storage=storage, study_name=name)
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "values": None if t.values is None else [number(v) for v in t.values],
            "user_attrs": sorted(t.user_attrs),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    out = {
        "directions": [d.name for d in study.directions],
        "trials": trials,
        "pareto": sorted(t.number for t in study.best_trials),
        "metric_names": study.metric_names,
        "optuna": optuna.__version__,
    }
    print(json.dumps(out))


def create(storage, name):
    study = optuna.create_study(storage=storage, study_name=name, directions=["maximize", "minimize"])
    dists = {
        "x": FloatDistribution(0.0, 1.0),
        "n": IntDistribution(1, 4),
        "act": CategoricalDistribution(["relu", "tanh"]),
    }
    study.add_trial(create_trial(params={"x": 0.25, "n": 2, "act": "tanh"}, distributions=dists, values=[0.5, 100.0]))
    study.add_trial(create_trial(params={"x": 0.75, "n": 3, "act": "relu"}, distributions=dists, values=[0.75, 300.0]))
    study.add_trial(create_trial(params={"x": 0.5}, distributions={"x": dists["x"]}, state=TrialState.FAIL))
    study.set_user_attr("made_by", "optuna")


def name(storage, name):
    optuna.load_study(storage=storage, study_name=name).set_metric_names(["acc", "cost"])


def add(storage, name):
    """Continues the study as an Optuna worker: samples with the study's own
    distributions (NSGA-II's default sampler reads them), reports values."""
    study = optuna.load_study(storage=storage, study_name=name)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    trial = study.ask(done[0].distributions)
    trial.set_user_attr("added_by", "optuna")
    study.tell(trial, [0.25] * len(study.directions))
    print(json.dumps({"number": trial.number, "params": trial.params}))


def open_storage(url):
    if url.startswith("journal://"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url[len("journal://"):]))
    # SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql:// URL; we install psycopg2.
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg2://" + url[len(scheme):]
    return url


if __name__ == "__main__":
    storage = open_storage(sys.argv[2])
    {"dump": dump, "create": create, "name": name, "add": add}[sys.argv[1]](storage, sys.argv[3])

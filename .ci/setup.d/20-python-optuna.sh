# Sourced by .ci/run: Python Optuna (pinned) in the repo's .venv for the
# interop tests, which read and write studies with it; exports SNAC_PYTHON.
# Other setup scripts install into the same .venv: it is created only when
# missing, and packages are only ever added.

optuna_setup() {
    local optuna_version=4.5.0 psycopg2_version=2.9.13
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv || return 1
    fi
    if ! .venv/bin/python -c "import optuna, psycopg2, sys; sys.exit(optuna.__version__ != '$optuna_version')" 2>/dev/null; then
        .venv/bin/pip install --quiet --disable-pip-version-check \
            "optuna==$optuna_version" "psycopg2-binary==$psycopg2_version" || return 1
    fi
    export SNAC_PYTHON="$PWD/.venv/bin/python"
    echo "optuna $("$SNAC_PYTHON" -c 'import optuna; print(optuna.__version__)') at $SNAC_PYTHON"
}
optuna_setup

# Sourced by .ci/run: builds the snac_pack Python package from this checkout
# (`pip install .`: maturin compiles crates/snac-py into the same target dir
# and profile as the cargo steps) into the repo's .venv, with what its
# pytest suite and the tutorial notebooks need (pinned). Exports
# SNAC_PY_PYTHON, which .ci/run uses for `pytest python/tests`.

python_package_setup() {
    local packages=(
        "pytest==9.2.0" "numpy==2.4.6" "pandas==3.1.1" "tqdm==4.70.1"
        "nbclient==0.11.0" "nbformat==5.11.1" "ipykernel==7.4.0" "ipywidgets==8.1.9"
    )
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv || return 1
    fi
    .venv/bin/pip install --quiet --disable-pip-version-check "${packages[@]}" || return 1
    # --force-reinstall: the version number does not change between commits.
    CARGO_TARGET_DIR="$PWD/target" .venv/bin/pip install --quiet --disable-pip-version-check \
        --force-reinstall --no-deps . || return 1
    export SNAC_PY_PYTHON="$PWD/.venv/bin/python"
    "$SNAC_PY_PYTHON" -c 'import snac_pack; print("snac_pack", snac_pack.__version__, "from", snac_pack.__file__)'
}
python_package_setup

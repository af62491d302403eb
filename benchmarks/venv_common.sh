# Sourced by the benchmark venv scripts (foolbox_venv.sh, lirpa_venv.sh): make_venv DIR
# creates DIR as a venv of python3.11 (or $PYTHON) if it is not one yet, keeps it out of git
# and upgrades pip.
make_venv() {
    local venv="$1" python="${PYTHON:-python3.11}"
    command -v "$python" >/dev/null || python=python3
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    echo "*" > "$venv/.gitignore"  # keep the venv out of git whatever the top-level ignores say
    "$venv/bin/python" -m pip install --quiet --upgrade pip
}

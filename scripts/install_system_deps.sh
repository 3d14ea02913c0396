#!/usr/bin/env bash
# Install the system packages the toolkit needs, only when missing (idempotent).
# Each part is one function; the bottom of the file calls them in order.
#
# LibreOffice Calc (headless) recalculates SpreadsheetBench workbooks before scoring, as the
# benchmark's official pipeline does. ~264 MiB from Debian/Ubuntu packages.
#
# Usage: scripts/install_system_deps.sh        (run as root, or with sudo available)
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Part 1: LibreOffice (see the header above).
# ---------------------------------------------------------------------------------------------
install_libreoffice() {
    if command -v soffice >/dev/null 2>&1; then
        echo "LibreOffice already installed: $(command -v soffice)"
        return 0
    fi

    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: apt-get not found; install LibreOffice Calc (soffice) with your package manager" >&2
        exit 1
    fi

    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo"
        else
            echo "error: run as root (or install sudo) to install libreoffice-calc-nogui" >&2
            exit 1
        fi
    fi

    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends libreoffice-calc-nogui
    command -v soffice >/dev/null 2>&1 || { echo "error: soffice still missing after install" >&2; exit 1; }
    echo "LibreOffice installed: $(command -v soffice)"
}

# ---------------------------------------------------------------------------------------------
# Part 2: the sandbox Python (toolkit/sandbox), the interpreter the sandboxed `python` tool runs.
#
# Why a dedicated venv: the sandbox drops to uid 65534, which must be able to read and execute
# the interpreter and its site-packages. The project venv may point at an interpreter under
# /root (pyenv, mode 700), which uid 65534 cannot open. So we build a venv at a world-readable
# prefix from a world-readable base interpreter (the distribution's /usr/bin/python3), with
# pandas/numpy/openpyxl pinned from PyPI so every machine runs agent code against the same
# versions (Debian's python3-pandas is 1.5.3, Ubuntu's 2.1.4: results would differ).
# The toolkit finds it at $TRACE2SKILL_SANDBOX_PYTHON or /opt/trace2skill/sandbox-venv/bin/python.
# Not root: skipped with a note (the sandbox then runs degraded and says so).
# ---------------------------------------------------------------------------------------------
SANDBOX_VENV="${TRACE2SKILL_SANDBOX_VENV:-/opt/trace2skill/sandbox-venv}"
SANDBOX_REQUIREMENTS=("pandas==2.3.3" "numpy==2.2.6" "openpyxl==3.1.5")
SANDBOX_UID=65534

# Runs a command as the sandbox user (no supplementary groups), as the sandbox will.
as_sandbox_user() {
    setpriv --reuid="$SANDBOX_UID" --regid="$SANDBOX_UID" --clear-groups --no-new-privs -- "$@"
}

# A subshell body, so its umask does not leak into the other parts.
install_sandbox_python() (
    umask 022
    if [ "$(id -u)" != 0 ]; then
        echo "sandbox: not root, skipping $SANDBOX_VENV (the sandbox will run without dropping privileges)"
        return 0
    fi
    need_apt=()
    { command -v unshare && command -v setpriv; } >/dev/null || need_apt+=(util-linux)
    command -v mount >/dev/null || need_apt+=(mount)
    if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
        need_apt+=(python3 python3-venv)
    fi
    if [ ${#need_apt[@]} -gt 0 ]; then
        echo "sandbox: installing ${need_apt[*]} with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    fi
    base=/usr/bin/python3
    want="$("$base" -c 'import sys; print(sys.version.split()[0])') ${SANDBOX_REQUIREMENTS[*]}"
    stamp="$SANDBOX_VENV/.trace2skill-stamp"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && as_sandbox_user "$SANDBOX_VENV/bin/python" -I -c 'import pandas, openpyxl' 2>/dev/null; then
        echo "sandbox: $SANDBOX_VENV is up to date"
        return 0
    fi
    echo "sandbox: building $SANDBOX_VENV ($want)"
    rm -rf "$SANDBOX_VENV"
    mkdir -p "$(dirname "$SANDBOX_VENV")"
    "$base" -m venv "$SANDBOX_VENV"
    "$SANDBOX_VENV/bin/python" -m pip install --quiet --no-input --disable-pip-version-check \
        "${SANDBOX_REQUIREMENTS[@]}"
    chmod -R a+rX "$SANDBOX_VENV"
    # The stamp goes last: an interrupted build is redone on the next run.
    as_sandbox_user "$SANDBOX_VENV/bin/python" -I -c 'import pandas, openpyxl'
    echo "$want" >"$stamp"
    echo "sandbox: ready ($SANDBOX_VENV/bin/python)"
)

# ---------------------------------------------------------------------------------------------
# Part 3: Chromium (headless), for the app's browser test (tests/test_app_browser.py).
# ---------------------------------------------------------------------------------------------
install_chromium() {
    if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
        echo "Chromium already installed"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
        echo "warning: Chromium missing (apt-get as root needed); the browser test will skip" >&2
        return 0
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
    echo "Chromium installed: $(command -v chromium)"
}

install_libreoffice
install_sandbox_python
install_chromium

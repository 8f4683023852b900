#!/usr/bin/env bash
# Install what the browser end-to-end tests (tests/e2e, marker "e2e") need, idempotently:
#   * Debian's chromium (Playwright's own browser download does not work here; the tests launch
#     /usr/bin/chromium through Playwright's executable_path);
#   * the project's "e2e" extra (jupyterlab>=4, playwright) into .venv.
#
#   bash scripts/e2e_setup.sh                            # install (no-op when already there)
#   BAI_REQUIRE_E2E=1 .venv/bin/pytest -m e2e tests/e2e  # then run them
#
# Needs root (or sudo) for apt-get only when chromium is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # fonts-liberation: readable text in the screenshots.
  $SUDO apt-get install -y -q --no-install-recommends chromium fonts-liberation
fi
chromium --version

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import jupyterlab, playwright, ipywidgets' >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q -e '.[e2e]'
fi
.venv/bin/python - <<'EOF'
import jupyterlab, playwright.sync_api  # noqa: F401
from importlib.metadata import version
print(f"jupyterlab {version('jupyterlab')}, playwright {version('playwright')}")
EOF

#!/usr/bin/env bash
# Install backendai-jupyter and run the demo notebook on the "Backend.AI Python (remote GPU)"
# kernel: on your cluster when BACKEND_ENDPOINT (and keys) are set, otherwise on the embedded
# local endpoint that starts by itself. Writes artifacts/demo.ipynb and artifacts/demo.html.
#
#   bash scripts/demo.sh                   # local endpoint
#   set -a; . /tmp/backendai-cluster/user.env; set +a; bash scripts/demo.sh   # a real cluster
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[widgets,demo]'
mkdir -p artifacts
.venv/bin/jupyter nbconvert --to notebook --execute examples/demo.ipynb \
  --ExecutePreprocessor.timeout=600 --output-dir artifacts --output demo.ipynb
.venv/bin/jupyter nbconvert --to html artifacts/demo.ipynb --output-dir artifacts --output demo.html
echo "demo notebook executed: artifacts/demo.ipynb (HTML: artifacts/demo.html)"

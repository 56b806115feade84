#!/usr/bin/env bash
# Creates .tools/venv with kubernetes-validate (which brings PyYAML and jsonschema, all the
# packaging scripts need) if it is missing or at another version, and prints its python.
#
#   PY=$(scripts/packaging-venv.sh)     # then "$PY" scripts/chart_values.py --check
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned: its bundled schemas decide what "valid" means, and a new release could change that.
KUBERNETES_VALIDATE_VERSION=1.37.0
VENV=.tools/venv

if ! "$VENV/bin/python" -c "import kubernetes_validate, sys
sys.exit(kubernetes_validate.__version__ != '$KUBERNETES_VALIDATE_VERSION')" 2>/dev/null; then
  printf 'packaging-venv: creating %s with kubernetes-validate==%s\n' "$VENV" "$KUBERNETES_VALIDATE_VERSION" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" >&2
fi
printf '%s\n' "$PWD/$VENV/bin/python"

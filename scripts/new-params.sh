#!/usr/bin/env bash
# Writes a parameter file to start from, anywhere: a copy of infra/main.bicepparam whose `using`
# line points at this checkout's infra/main.bicep from the new file's folder (the Bicep CLI reads
# a using path from the parameter file's own folder, so a plain copy elsewhere would not deploy).
#
#   scripts/new-params.sh <file.bicepparam>
#
# e.g. scripts/new-params.sh ~/aks-audit/prod.bicepparam, then edit it and run
#      scripts/deploy.sh rg-aks-audit ~/aks-audit/prod.bicepparam
# Needs: python3. Runs on bash 3.2 (macOS) and later.
set -euo pipefail
USAGE="usage: scripts/new-params.sh <file.bicepparam>"
DEST="${1:?$USAGE}"
case "$DEST" in
  *.bicepparam) ;;
  *) echo "$USAGE (the name must end in .bicepparam)" >&2; exit 2 ;;
esac
[ ! -e "$DEST" ] || { echo "new-params: $DEST exists; not overwriting it" >&2; exit 1; }
REPO="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$(dirname "$DEST")"
USING="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], os.path.dirname(os.path.abspath(sys.argv[2]))))' "$REPO/infra/main.bicep" "$DEST")"
grep -q "^using './main.bicep'" "$REPO/infra/main.bicepparam" ||
  { echo "new-params: infra/main.bicepparam no longer starts with using './main.bicep'" >&2; exit 1; }
sed "s|^using './main.bicep'|using '$USING'|" "$REPO/infra/main.bicepparam" > "$DEST"
echo "wrote $DEST (using '$USING'); set your values, then: scripts/deploy.sh <resource-group> $DEST"

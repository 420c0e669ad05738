#!/usr/bin/env bash
# Writes a parameter file to start from, anywhere: a copy of infra/main.bicepparam whose `using`
# line points at this checkout's infra/main.bicep from the new file's folder (the Bicep CLI reads
# a using path from the parameter file's own folder, so a plain copy elsewhere would not deploy).
#
#   scripts/new-params.sh <file.bicepparam>
#
# e.g. scripts/new-params.sh ~/aks-audit/prod.bicepparam, then edit it and run
#      scripts/deploy.sh rg-aks-audit ~/aks-audit/prod.bicepparam
# The site-specific values (appName, the cluster, the subnet, the receiver, the alert address)
# are written as placeholders such as '<your-oncall-email>'; scripts/deploy.sh refuses a file
# that still holds one, naming the parameter.
# Needs: python3. Runs on bash 3.2 (macOS) and later. -h, --help: this text.
set -euo pipefail
case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
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
sed -E -e "s|^using './main.bicep'|using '$USING'|" \
  -e "s|^(param appName = ).*|\\1'<your-app-name>'|" \
  -e "s|^(param aksClusterName = ).*|\\1'<your-aks-cluster>'|" \
  -e "s|^(param aksResourceGroup = ).*|\\1'<your-aks-resource-group>'|" \
  -e "s|^(param integrationSubnetId = ).*|\\1'/subscriptions/<your-subscription-id>/resourceGroups/<your-vnet-resource-group>/providers/Microsoft.Network/virtualNetworks/<your-vnet>/subnets/<your-functions-subnet>'|" \
  -e "s|^(param auditWebhookUrl = ).*|\\1'<your-receiver-url>'|" \
  -e "s|^(param alertEmail = ).*|\\1'<your-oncall-email>'|" \
  "$REPO/infra/main.bicepparam" > "$DEST"
LEFT="$(grep -Eo "^param [A-Za-z]+ = '[^']*<your-" "$DEST" | wc -l | tr -d ' ')"
[ "$LEFT" = 6 ] ||
  { rm -f "$DEST"; echo "new-params: infra/main.bicepparam changed shape; $LEFT of 6 placeholders written" >&2; exit 1; }
echo "wrote $DEST (using '$USING'); replace every '<your-...>' placeholder (deploy.sh refuses them), then: scripts/deploy.sh <resource-group> $DEST"

#!/usr/bin/env bash
# Provisions the infrastructure and publishes the handler.
#
#   scripts/deploy.sh <resource-group> [bicepparam-file] [extra az parameters...]
#
# e.g. scripts/deploy.sh rg-aks-audit infra/main.bicepparam auditWebhookUrl=http://10.240.0.100:7765/k8s_audit
#
# Needs: az (logged in, with Bicep), Azure Functions Core Tools v4 (func), and what
# scripts/package.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."

RG="${1:?usage: scripts/deploy.sh <resource-group> [bicepparam-file] [name=value ...]}"
PARAMS="${2:-infra/main.bicepparam}"
shift $(( $# >= 2 ? 2 : 1 ))
EXTRA=()
for kv in "$@"; do EXTRA+=(--parameters "$kv"); done

az deployment group create \
  --resource-group "$RG" \
  --name aks-audit-forwarder \
  --template-file infra/main.bicep \
  --parameters "$PARAMS" "${EXTRA[@]}" \
  --output none

APP="$(az deployment group show --resource-group "$RG" --name aks-audit-forwarder \
  --query properties.outputs.functionAppName.value --output tsv)"
echo "function app: $APP"

bash scripts/package.sh
# Publish from the package folder: func zips it and marks `handler` (the defaultExecutablePath)
# executable. Role assignments can take a minute to apply; retry once if the first try fails.
(cd dist/app && (func azure functionapp publish "$APP" || { sleep 60; func azure functionapp publish "$APP"; }))

echo "deployed. Follow the logs with: func azure functionapp logstream $APP"

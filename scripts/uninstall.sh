#!/usr/bin/env bash
# Removes what scripts/deploy.sh created, read from the deployment's outputs and resources:
#
#   scripts/uninstall.sh <resource-group> [--yes]
#
# Order: the cluster's diagnostic setting first (so the cluster stops streaming into a hub that
# is about to go), the Key Vault role assignment, then the resources of the deployment (role
# assignments and diagnostic settings, alerts, private endpoints, the app and its plan, DNS zone
# links and zones, then the namespace, storage with its dead letters, monitoring and identity),
# and last the deployment records. The resource group itself is left in place.
#
# Needs: az (logged in), python3. Runs on bash 3.2 (macOS) and later. -h, --help: this text.
# Environment: DEPLOYMENT_NAME (default aks-audit-forwarder).
set -euo pipefail
case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
cd "$(dirname "$0")/.."

USAGE="usage: scripts/uninstall.sh <resource-group> [--yes]"
RG="${1:?$USAGE}"
YES="${2:-}"
DEPLOYMENT="${DEPLOYMENT_NAME:-aks-audit-forwarder}"

output() {
  az deployment group show --resource-group "$RG" --name "$DEPLOYMENT" \
    --query "properties.outputs.$1.value" --output tsv
}

die() { echo "uninstall: $*" >&2; exit 1; }
command -v az >/dev/null 2>&1 ||
  die "the Azure CLI (az) is not on PATH: install it (https://aka.ms/azure-cli), then az login"
# Only a deployment that is not there means "nothing to remove"; any other failure (not logged
# in, no such resource group, no network) is shown as az reports it.
if ! AZ_ERROR="$(az deployment group show --resource-group "$RG" --name "$DEPLOYMENT" --output none 2>&1)"; then
  case "$AZ_ERROR" in
    *DeploymentNotFound*) die "no deployment $DEPLOYMENT in resource group $RG (DEPLOYMENT_NAME names another)" ;;
    *) die "az could not read deployment $DEPLOYMENT in resource group $RG (logged in? az login; resource group name right?): $AZ_ERROR" ;;
  esac
fi

APP="$(output functionAppName)"
DIAG="$(output aksDiagnosticSettingName)"
CLUSTER="$(output aksClusterId)"
KV_ASSIGNMENT="$(output keyVaultRoleAssignmentId)"
STORAGE="$(output storageAccountName)"

# Resources of the main deployment and of its modules deployed in this resource group.
IDS="$(
  {
    az deployment group show --resource-group "$RG" --name "$DEPLOYMENT" \
      --query "properties.outputResources[].id" --output tsv
    for nested in $(az deployment group list --resource-group "$RG" \
      --query "[?starts_with(name, 'private-endpoints-') || starts_with(name, 'private-dns-zones-')].name" --output tsv); do
      az deployment group show --resource-group "$RG" --name "$nested" \
        --query "properties.outputResources[].id" --output tsv
    done
  } | python3 -c '
import re, sys
# Extension resources first, then dependents before what they depend on. Child resources go
# with their parent, except DNS zone links, which must go before their zone.
ORDER = [
    "/providers/microsoft.insights/diagnosticsettings/",
    "/providers/microsoft.authorization/roleassignments/",
    "/providers/microsoft.insights/scheduledqueryrules/",
    "/providers/microsoft.insights/actiongroups/",
    "/providers/microsoft.network/privateendpoints/",
    "/providers/microsoft.web/sites/",
    "/providers/microsoft.web/serverfarms/",
    "/virtualnetworklinks/",
    "/providers/microsoft.network/privatednszones/",
]
top = re.compile(r"^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/[^/]+/[^/]+/[^/]+$")
# Resource ids compare case-insensitively, whatever the letters (Azure upper-cases some
# outputs; resource-group names may hold non-ASCII letters): upper-case, then fold.
def key(rid):
    return rid.upper().casefold()
ids = []
seen = set()
for line in sys.stdin:
    rid = line.strip()
    low = key(rid)
    if not rid or low in seen:
        continue
    seen.add(low)
    extension = "/providers/microsoft.insights/diagnosticsettings/" in low or "/providers/microsoft.authorization/roleassignments/" in low
    if extension or top.match(low) or "/virtualnetworklinks/" in low:
        ids.append(rid)
def rank(rid):
    low = key(rid)
    for i, marker in enumerate(ORDER):
        if marker in low:
            return i
    return len(ORDER)
for rid in sorted(ids, key=rank):
    print(rid)
'
)"

echo "This removes from resource group $RG:"
[ -z "$DIAG" ] || echo "  diagnostic setting $DIAG on $CLUSTER"
[ -z "$KV_ASSIGNMENT" ] || echo "  Key Vault role assignment $KV_ASSIGNMENT"
echo "$IDS" | while IFS= read -r id; do echo "  $id"; done
echo "including the dead letters in storage account $STORAGE (replay them first: aks-audit-forwarder resend)."
if [ "$YES" != "--yes" ]; then
  printf 'Type the function app name (%s) to continue: ' "$APP"
  read -r answer
  [ "$answer" = "$APP" ] || { echo "uninstall: cancelled" >&2; exit 1; }
fi

if [ -n "$DIAG" ] && [ -n "$CLUSTER" ]; then
  echo "== diagnostic setting $DIAG"
  az monitor diagnostic-settings delete --resource "$CLUSTER" --name "$DIAG" ||
    echo "   (not found or already removed)"
fi
if [ -n "$KV_ASSIGNMENT" ]; then
  echo "== Key Vault role assignment"
  az role assignment delete --ids "$KV_ASSIGNMENT" || echo "   (not found or already removed)"
fi
echo "$IDS" | while IFS= read -r id; do
  [ -n "$id" ] || continue
  echo "== delete $id"
  az resource delete --ids "$id" --output none || echo "   (not found or already removed)"
done

for name in $(az deployment group list --resource-group "$RG" \
  --query "[?name=='$DEPLOYMENT' || starts_with(name, 'private-endpoints-') || starts_with(name, 'private-dns-zones-')].name" --output tsv); do
  az deployment group delete --resource-group "$RG" --name "$name"
done
echo "removed. The Log Analytics workspace stays recoverable for 14 days (soft delete)."

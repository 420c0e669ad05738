#!/usr/bin/env bash
# Provisions the infrastructure and publishes the handler. Safe to run again: every app setting
# is a template parameter (or in extraAppSettings), so a redeployment keeps them all.
#
#   scripts/deploy.sh <resource-group> [bicepparam-file] [name=value ...]
#
# e.g. scripts/deploy.sh rg-aks-audit ~/aks-audit/prod.bicepparam auditWebhookUrl=http://10.240.0.100:7765/k8s_audit
#
# The parameter file may live anywhere (a relative path is read from where you stand). A
# .bicepparam file names its template in its `using` line, resolved from the file's own folder
# (the Bicep CLI's rule), and it must be this checkout's infra/main.bicep: scripts/new-params.sh
# writes such a copy anywhere. A .json parameter file is deployed with infra/main.bicep.
#
# 1. Pre-flight, before anything is created: the parameter file's template, the resource
#    providers are registered, the cluster's region is read (the event hub must be there), the
#    integration subnet is in the app's region, Flex Consumption offers the custom runtime in the
#    app's region, and a Key Vault named by keyVaultName is reachable for Key Vault references.
#    Also, before any Azure call: no parameter still holding a scripts/new-params.sh
#    placeholder such as '<your-oncall-email>' (all of them named at once, checked before az is
#    needed), then az 2.54 or later (older versions may silently ignore name=value overrides
#    given with a .bicepparam file: Azure/azure-cli#27924, Azure/bicep#12647).
# 2. scripts/package.sh builds dist/app (before anything is created, so a machine that cannot
#    build stops here), and the publish folder is checked.
# 3. az deployment group create with that template.
# 4. func azure functionapp publish from dist/app.
#
# Needs: az 2.54+ (logged in, with Bicep), Azure Functions Core Tools v4 (func), python3, and
# what scripts/package.sh needs. Runs on bash 3.2 (macOS) and later. -h, --help: this text.
# Environment: DEPLOYMENT_NAME (default aks-audit-forwarder), DEPLOY_SKIP_PREFLIGHT=1,
# DEPLOY_SKIP_PACKAGE=1 (publish an existing dist/app), DEPLOY_SKIP_PUBLISH=1,
# DEPLOY_ALLOW_RESTRICTED_VAULT=1 (deploy although keyVaultName's vault restricts network access),
# and what scripts/package.sh reads (PACKAGE_CONFIG_DIR: files shipped under config/).
set -euo pipefail
case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
CALLER_DIR="$PWD"
cd "$(dirname "$0")/.."
REPO="$PWD"

USAGE="usage: scripts/deploy.sh <resource-group> [bicepparam-file] [name=value ...]"
RG="${1:?$USAGE}"
shift
PARAMS="$REPO/infra/main.bicepparam"
if [ $# -gt 0 ] && [ "${1#*=}" = "$1" ]; then
  case "$1" in
    /*) PARAMS="$1" ;;
    *) PARAMS="$CALLER_DIR/$1" ;;
  esac
  shift
fi
[ -f "$PARAMS" ] || { echo "parameter file not found: $PARAMS" >&2; exit 2; }
DEPLOYMENT="${DEPLOYMENT_NAME:-aks-audit-forwarder}"

# name=value overrides, in order (later wins). May be empty: bash 3.2 treats "${a[@]}" of an
# empty array as unset under set -u, so every expansion is ${a[@]+"${a[@]}"}.
OVERRIDES=()
for kv in "$@"; do
  case "$kv" in
    *=*) OVERRIDES+=("$kv") ;;
    *) echo "not a name=value parameter: $kv" >&2; echo "$USAGE" >&2; exit 2 ;;
  esac
done

die() { echo "deploy: $*" >&2; exit 1; }
norm() { printf '%s' "$1" | tr -d ' ' | tr '[:upper:]' '[:lower:]'; }

# The template the parameter file belongs to. The Bicep CLI resolves a .bicepparam file's
# `using` path from the file's own folder and refuses a --template-file that names another
# file, so the template is read from there, and it must be this checkout's infra/main.bicep
# (the package is built from this checkout).
template_of() {
  local params="$1" using template
  case "$params" in
    *.bicepparam) ;;
    *) printf '%s' "$REPO/infra/main.bicep"; return 0 ;;
  esac
  using="$(sed -nE "s/^[[:space:]]*using[[:space:]]+'([^']*)'.*/\1/p" "$params" | head -n 1)"
  [ -n "$using" ] || die "$params has no using '<path>/main.bicep' line; start from a copy made by scripts/new-params.sh"
  template="$(python3 -c 'import os, sys; print(os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), sys.argv[2])))' "$params" "$using")"
  if [ ! -f "$template" ] || ! python3 -c 'import os, sys; sys.exit(0 if os.path.realpath(sys.argv[1]) == os.path.realpath(sys.argv[2]) else 1)' "$template" "$REPO/infra/main.bicep"; then
    local wanted
    wanted="$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], os.path.dirname(os.path.abspath(sys.argv[2]))))' "$REPO/infra/main.bicep" "$params")"
    die "$params says using '$using', which resolves to $template (a using path is read from the parameter file's folder)$([ -f "$template" ] || printf ', and that file does not exist'); it must be this checkout's template. Change the line to: using '$wanted'   (scripts/new-params.sh <file> writes copies that way)"
  fi
  printf '%s' "$template"
}
TEMPLATE="$(template_of "$PARAMS")"
echo "ok   parameter file $PARAMS deploys $TEMPLATE"

# The value a parameter will have: the last override, else the parameter file, else empty.
param_value() {
  local name="$1" value="" kv
  case "$PARAMS" in
    *.json)
      value="$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])).get("parameters",{}).get(sys.argv[2],{}); print(p.get("value","") if isinstance(p.get("value",""),str) else "")' "$PARAMS" "$name")" ;;
    *)
      value="$(sed -nE "s/^[[:space:]]*param[[:space:]]+${name}[[:space:]]*=[[:space:]]*'([^']*)'.*/\\1/p" "$PARAMS" | tail -n 1)" ;;
  esac
  for kv in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
    case "$kv" in "$name="*) value="${kv#*=}" ;; esac
  done
  printf '%s' "$value"
}
param_given() {
  local name="$1" kv
  case "$PARAMS" in
    *.json) python3 -c 'import json,sys; sys.exit(0 if sys.argv[2] in json.load(open(sys.argv[1])).get("parameters",{}) else 1)' "$PARAMS" "$name" && return 0 ;;
    *) grep -Eq "^[[:space:]]*param[[:space:]]+${name}[[:space:]]*=" "$PARAMS" && return 0 ;;
  esac
  for kv in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
    case "$kv" in "$name="*) return 0 ;; esac
  done
  return 1
}

# Placeholders that scripts/new-params.sh writes ('<your-app-name>'): refused, naming the
# parameter, unless an override replaces them.
PLACEHOLDER='<[A-Za-z0-9_-]+>'
placeholder_names() {
  case "$PARAMS" in
    *.json) python3 -c 'import json, re, sys
for k, p in json.load(open(sys.argv[1])).get("parameters", {}).items():
    if isinstance(p.get("value"), str) and re.search(sys.argv[2], p["value"]): print(k)' "$PARAMS" "$PLACEHOLDER" ;;
    *) sed -nE "s/^[[:space:]]*param[[:space:]]+([A-Za-z0-9_]+)[[:space:]]*=.*${PLACEHOLDER}.*/\1/p" "$PARAMS" ;;
  esac
  for kv in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do
    printf '%s' "${kv#*=}" | grep -Eq "$PLACEHOLDER" && printf '%s\n' "${kv%%=*}"
  done
  return 0
}
# Every parameter still holding one is named in one run, before the Azure CLI is needed.
LEFT=0
HINT=""
for name in $(placeholder_names | awk '!seen[$0]++'); do
  if printf '%s' "$(param_value "$name")" | grep -Eq "$PLACEHOLDER"; then
    echo "deploy: parameter $name in $PARAMS still holds a placeholder ($(param_value "$name" | grep -Eo "$PLACEHOLDER" | head -n 1))" >&2
    LEFT=$((LEFT + 1))
    [ "$name" != alertEmail ] || HINT="; alertEmail = '' deploys without e-mail alerts"
  fi
done
[ "$LEFT" = 0 ] ||
  die "$LEFT parameter(s) above still hold a placeholder: set your values in the file, or pass name=<value> for each$HINT"
echo "ok   no parameter holds a placeholder"

command -v az >/dev/null 2>&1 ||
  die "the Azure CLI (az) is not on PATH: install it (https://aka.ms/azure-cli), then az login"
# .bicepparam files with --parameters name=value overrides need az 2.54 or later: some older
# versions deploy the file and silently drop the overrides (Azure/azure-cli#27924,
# Azure/bicep#12647).
AZ_MIN_VERSION="2.54.0"
AZ_VERSION="$(az version --query '"azure-cli"' --output tsv 2>/dev/null)" ||
  die "az version failed: the Azure CLI is too old to have az version, or not working; this needs $AZ_MIN_VERSION or later: az upgrade, or reinstall it (https://aka.ms/azure-cli)"
python3 -c 'import re, sys
v = lambda t: tuple(int(n) for n in re.findall(r"\d+", t)[:3])
sys.exit(0 if re.match(r"\d+\.\d+", sys.argv[1]) and v(sys.argv[1]) >= v(sys.argv[2]) else 1)' "$AZ_VERSION" "$AZ_MIN_VERSION" ||
  die "the Azure CLI is ${AZ_VERSION:-of unknown version}; this needs $AZ_MIN_VERSION or later (older versions may silently ignore name=value overrides given with a .bicepparam file). Run: az upgrade"
echo "ok   Azure CLI $AZ_VERSION (at least $AZ_MIN_VERSION)"
if [ "${DEPLOY_SKIP_PUBLISH:-0}" != 1 ]; then
  command -v func >/dev/null 2>&1 ||
    die "the Azure Functions Core Tools v4 (func) are not on PATH: they publish the package (https://aka.ms/func-core-tools); DEPLOY_SKIP_PUBLISH=1 deploys the infrastructure only"
fi

preflight() {
  echo "== pre-flight"
  local rg_location app_location hub_location cluster cluster_rg cluster_sub cluster_location
  local subnet pe_subnet vnet_location delegations runtimes ns state

  rg_location="$(az group show --name "$RG" --query location --output tsv 2>/dev/null)" ||
    die "resource group $RG not found in the current subscription; create it: az group create --name $RG --location <region>"
  app_location="$(norm "$(param_value location)")"
  [ -n "$app_location" ] || app_location="$(norm "$rg_location")"

  subnet="$(param_value integrationSubnetId)"
  pe_subnet="$(param_value privateEndpointSubnetId)"
  local providers="Microsoft.Web Microsoft.Storage Microsoft.EventHub Microsoft.Insights Microsoft.OperationalInsights Microsoft.ManagedIdentity"
  [ -z "$subnet" ] || providers="$providers Microsoft.App"
  [ -z "$pe_subnet" ] || providers="$providers Microsoft.Network"
  for ns in $providers; do
    state="$(az provider show --namespace "$ns" --query registrationState --output tsv 2>/dev/null || true)"
    [ "$state" = "Registered" ] ||
      die "resource provider $ns is ${state:-unknown}, not Registered: az provider register --namespace $ns --wait"
  done
  echo "ok   resource providers registered: $providers"

  # The event hub must be in the cluster's region: a diagnostic setting streams only to an event
  # hub in the monitored resource's region.
  cluster="$(param_value aksClusterName)"
  hub_location="$(norm "$(param_value eventHubLocation)")"
  if [ -n "$cluster" ]; then
    cluster_rg="$(param_value aksResourceGroup)"
    cluster_rg="${cluster_rg:-$RG}"
    cluster_sub="$(param_value aksSubscriptionId)"
    cluster_location="$(az aks show --name "$cluster" --resource-group "$cluster_rg" \
      ${cluster_sub:+--subscription "$cluster_sub"} --query location --output tsv)" ||
      die "cluster $cluster not found in resource group $cluster_rg${cluster_sub:+ of subscription $cluster_sub}"
    cluster_location="$(norm "$cluster_location")"
    if ! param_given eventHubLocation; then
      hub_location="$cluster_location"
      OVERRIDES+=("eventHubLocation=$cluster_location")
    elif [ "$hub_location" != "$cluster_location" ]; then
      die "eventHubLocation is $hub_location but cluster $cluster is in $cluster_location: a diagnostic setting streams only to an event hub in the cluster's region. Remove eventHubLocation or set it to $cluster_location (each cluster region needs its own deployment)."
    fi
    echo "ok   cluster $cluster is in $cluster_location: the event hub goes there"
  else
    hub_location="${hub_location:-$app_location}"
    echo "ok   no aksClusterName: the event hub goes to $hub_location; only clusters in $hub_location can stream to it"
  fi

  # VNet integration needs a subnet in the app's region, delegated to Microsoft.App/environments.
  if [ -n "$subnet" ]; then
    vnet_location="$(az network vnet show --ids "${subnet%/subnets/*}" --query location --output tsv)" ||
      die "the VNet of integrationSubnetId was not found: $subnet"
    vnet_location="$(norm "$vnet_location")"
    [ "$vnet_location" = "$app_location" ] ||
      die "integrationSubnetId is in $vnet_location but the app would be in $app_location: VNet integration needs a subnet in the app's region. Set location=$vnet_location, or use a subnet in $app_location (in a VNet peered with the cluster's)."
    delegations="$(az network vnet subnet show --ids "$subnet" --query "delegations[].serviceName" --output tsv)"
    case "$delegations" in
      *Microsoft.App/environments*) ;;
      *) die "integrationSubnetId is not delegated to Microsoft.App/environments (Flex Consumption): az network vnet subnet update --ids $subnet --delegations Microsoft.App/environments" ;;
    esac
    echo "ok   integration subnet is in $app_location and delegated to Microsoft.App/environments"
  fi
  if [ -n "$pe_subnet" ]; then
    [ -n "$subnet" ] || die "privateEndpointSubnetId needs integrationSubnetId: without VNet integration the app cannot reach its private endpoints"
    vnet_location="$(az network vnet show --ids "${pe_subnet%/subnets/*}" --query location --output tsv)" ||
      die "the VNet of privateEndpointSubnetId was not found: $pe_subnet"
    vnet_location="$(norm "$vnet_location")"
    [ "$vnet_location" = "$app_location" ] ||
      die "privateEndpointSubnetId is in $vnet_location but the private endpoints are created in $app_location: use a subnet in $app_location"
    echo "ok   private endpoint subnet is in $app_location"
  fi

  # Key Vault references: Microsoft's Flex Consumption page (Considerations) has said that they
  # do not resolve from a vault that restricts network access, even with VNet integration. An
  # unresolved reference stops the forwarder at start-up, so check the vault before deploying.
  local vault vault_rg vault_sub access
  vault="$(param_value keyVaultName)"
  if [ -n "$vault" ]; then
    vault_rg="$(param_value keyVaultResourceGroup)"
    vault_rg="${vault_rg:-$RG}"
    vault_sub="$(param_value keyVaultSubscriptionId)"
    access="$(az keyvault show --name "$vault" --resource-group "$vault_rg" ${vault_sub:+--subscription "$vault_sub"} \
      --query "[properties.publicNetworkAccess, properties.networkAcls.defaultAction]" --output tsv)" ||
      die "Key Vault $vault not found in resource group $vault_rg${vault_sub:+ of subscription $vault_sub} (keyVaultName, keyVaultResourceGroup, keyVaultSubscriptionId)"
    case "$(norm "$access")" in
      *disabled* | *deny*)
        [ "${DEPLOY_ALLOW_RESTRICTED_VAULT:-0}" = 1 ] ||
          die "Key Vault $vault restricts network access (public network access disabled, or its firewall denies by default). Flex Consumption apps cannot resolve Key Vault references through a network-restricted vault, even with VNet integration (Microsoft's Flex Consumption plan page, Considerations), and the forwarder refuses to start on an unresolved reference. Use a vault that allows public network access (reads stay limited to the app's identity by Azure RBAC), or pass the secret as a secure parameter (docs/deployment.md#secrets). DEPLOY_ALLOW_RESTRICTED_VAULT=1 deploys anyway." ;;
    esac
    echo "ok   Key Vault $vault allows the platform to resolve references (access by Azure RBAC)"
  fi

  # Flex Consumption must offer the custom runtime (custom handlers) in the app's region.
  runtimes="$(az functionapp list-flexconsumption-runtimes --location "$app_location" --runtime custom --output tsv 2>/dev/null || true)"
  [ -n "$runtimes" ] ||
    die "Flex Consumption does not offer the custom runtime in $app_location (or az is too old to tell: az upgrade). Set location= to a region that offers it; the event hub stays in $hub_location and the app reads it across regions (with VNet integration, the subnet must then be in the new region)."
  echo "ok   Flex Consumption offers the custom runtime in $app_location"
}

if [ "${DEPLOY_SKIP_PREFLIGHT:-0}" != 1 ]; then
  preflight
fi

# The package is built before anything is created: a machine that cannot build stops here, not
# with the resources half made.
if [ "${DEPLOY_SKIP_PUBLISH:-0}" != 1 ]; then
  echo "== package"
  if [ "${DEPLOY_SKIP_PACKAGE:-0}" != 1 ]; then
    bash scripts/package.sh ||
      die "scripts/package.sh failed (see above); nothing has been created in Azure. Fix the build and run this again, or build dist/app elsewhere with scripts/package.sh and deploy with DEPLOY_SKIP_PACKAGE=1"
  else
    [ -d dist/app ] ||
      die "DEPLOY_SKIP_PACKAGE=1 but there is no dist/app: build it with scripts/package.sh"
    echo "ok   DEPLOY_SKIP_PACKAGE=1: publishing the existing dist/app (built $(date -r dist/app/handler 2>/dev/null || echo 'at an unknown time')); rebuild with scripts/package.sh after any change"
  fi
  # The publish folder must tell Core Tools the worker runtime (it refuses to publish otherwise).
  python3 scripts/check_package.py --publish-folder dist/app ||
    die "dist/app is not a publish folder Core Tools accepts (see above); nothing has been created in Azure. Rebuild it: scripts/package.sh"
fi

EXTRA=()
for kv in ${OVERRIDES[@]+"${OVERRIDES[@]}"}; do EXTRA+=(--parameters "$kv"); done

echo "== provision ($DEPLOYMENT in $RG)"
az deployment group create \
  --resource-group "$RG" \
  --name "$DEPLOYMENT" \
  --template-file "$TEMPLATE" \
  --parameters "$PARAMS" ${EXTRA[@]+"${EXTRA[@]}"} \
  --output none

output() {
  az deployment group show --resource-group "$RG" --name "$DEPLOYMENT" \
    --query "properties.outputs.$1.value" --output tsv
}
APP="$(output functionAppName)"
echo "function app: $APP"

if [ "${DEPLOY_SKIP_PUBLISH:-0}" = 1 ]; then
  exit 0
fi

echo "== publish"
# Publish from the package folder: func zips it and marks `handler` (the defaultExecutablePath)
# executable. FUNCTIONS_WORKER_RUNTIME=custom is also in dist/app/local.settings.json, which
# func reads and never uploads. Role assignments can take a minute to apply; retry once.
publish() { (cd dist/app && FUNCTIONS_WORKER_RUNTIME=custom func azure functionapp publish "$APP"); }
publish || { echo "publish failed; retrying in 60 s (role assignments may still be propagating)" >&2; sleep "${DEPLOY_RETRY_SECONDS:-60}"; publish; }

# Built-in log streaming is unavailable for Linux apps on consumption plans (Flex included):
# the summary lines are read from Application Insights (docs/deployment.md#verify).
APPI="$(output appInsightsName)"
echo "deployed. Read the summary lines (within a few minutes of a change in the cluster) with:"
echo "  az monitor app-insights query --app $APPI --resource-group $RG --analytics-query 'traces | where timestamp > ago(15m) and message startswith \"Invocation\" | project timestamp, message' --output table"
echo "(docs/deployment.md#verify says what the lines mean)"

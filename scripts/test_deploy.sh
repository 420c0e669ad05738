#!/usr/bin/env bash
# Tests scripts/deploy.sh without Azure: az and func are stubs on PATH that log their arguments
# and answer the pre-flight queries from environment variables. `az deployment group create`
# applies the Bicep CLI's rule for a .bicepparam file: its `using` path is resolved from the
# file's own folder, must exist, and must be the file --template-file names, else it refuses.
# Covers argument handling (no extra parameters under set -u, name=value overrides, a parameter
# file given or not, relative to where the caller stands, copied outside infra/), the region,
# runtime and Key Vault pre-flight, the Azure CLI's version, placeholders left by new-params.sh,
# the package built before anything is created, the publish step's worker runtime, --help on
# every script, and uninstall.sh without a working az.
#
#   scripts/test_deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# A copy of what deploy.sh reads, and a publish folder as scripts/package.sh leaves it.
mkdir -p "$WORK/repo/scripts" "$WORK/repo/infra" "$WORK/repo/dist/app/EventHubForwarder" "$WORK/bin"
cp scripts/deploy.sh scripts/new-params.sh scripts/uninstall.sh scripts/check_package.py "$WORK/repo/scripts/"
# package.sh needs cargo: a stand-in logs its run (to prove the order) and fails on request.
cat > "$WORK/repo/scripts/package.sh" <<'STUB'
echo "package.sh" >> "$STUB_LOG"
[ -z "${STUB_PACKAGE_FAIL:-}" ] || { echo "error: linker cc not found" >&2; exit 1; }
STUB
cp infra/main.bicep infra/main.bicepparam "$WORK/repo/infra/"
cp host.json .funcignore "$WORK/repo/dist/app/"
cp EventHubForwarder/function.json "$WORK/repo/dist/app/EventHubForwarder/"
printf '#!/bin/sh\n' > "$WORK/repo/dist/app/handler"
sed -n '/^cat > dist\/app\/local.settings.json/,/^JSON$/p' scripts/package.sh > "$WORK/write-settings.sh"
(cd "$WORK/repo" && bash "$WORK/write-settings.sh")

cat > "$WORK/bin/az" <<'STUB'
#!/usr/bin/env bash
echo "az $*" >> "$STUB_LOG"
case "$*" in
  "version"*) [ -z "${STUB_AZ_BROKEN:-}" ] || exit 1; echo "${STUB_AZ_VERSION:-2.67.0}" ;;
  "group show"*) echo "${STUB_RG_LOCATION:-westeurope}" ;;
  "provider show"*) echo "${STUB_PROVIDER_STATE:-Registered}" ;;
  "aks show"*) echo "${STUB_CLUSTER_LOCATION:-westeurope}" ;;
  "network vnet subnet show"*) echo "Microsoft.App/environments" ;;
  "network vnet show"*) echo "${STUB_VNET_LOCATION:-West Europe}" ;;
  "functionapp list-flexconsumption-runtimes"*) [ "${STUB_FLEX_CUSTOM:-yes}" = yes ] && printf 'custom\t1.0\n' ;;
  "keyvault show"*) printf '%s\n%s\n' "${STUB_VAULT_PUBLIC:-Enabled}" "${STUB_VAULT_DEFAULT_ACTION:-Allow}" ;;
  "deployment group create"*)
    # The Bicep CLI's rule (bicep build-params --bicep-file): the using path, read from the
    # .bicepparam file's folder, must exist and be the template given.
    python3 - "$@" <<'PY' || exit 1
import os, re, sys
args = sys.argv[1:]
template = args[args.index("--template-file") + 1] if "--template-file" in args else None
params = args[args.index("--parameters") + 1]
if params.endswith(".bicepparam"):
    using = re.search(r"^\s*using\s+'([^']*)'", open(params).read(), re.M)
    if not using:
        sys.exit(f"Error BCP337: {params} has no using declaration")
    target = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(params)), using.group(1)))
    if not os.path.isfile(target):
        sys.exit(f"Error BCP091: An error occurred reading file. Could not find file '{target}'.")
    if template and os.path.normpath(os.path.abspath(template)) != target:
        sys.exit(f"Bicep file {os.path.abspath(template)} provided with --bicep-file option doesn't match the Bicep file {target} referenced by the \"using\" declaration in the parameters file")
PY
    ;;
  "deployment group show"*) echo "fwd-app" ;;
  *) echo "unexpected az call: $*" >&2; exit 3 ;;
esac
STUB
cat > "$WORK/bin/func" <<'STUB'
#!/usr/bin/env bash
echo "func $* runtime=${FUNCTIONS_WORKER_RUNTIME:-unset} settings=$(test -f local.settings.json && echo yes || echo no)" >> "$STUB_LOG"
STUB
chmod +x "$WORK/bin/az" "$WORK/bin/func"

failures=0
run() { # name expected-status [env...] -- deploy args...
  local name="$1" expected="$2"
  shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  : > "$WORK/log"
  set +e
  (cd "${RUN_DIR:-.}" && env PATH="$WORK/bin:$PATH" STUB_LOG="$WORK/log" DEPLOY_SKIP_PACKAGE=1 ${envs[@]+"${envs[@]}"} \
    bash "$WORK/repo/scripts/deploy.sh" "$@") > "$WORK/out" 2>&1
  status=$?
  set -e
  if [ "$status" -ne "$expected" ]; then
    echo "FAIL $name: exit $status, expected $expected"; sed 's/^/     /' "$WORK/out"; failures=$((failures + 1))
    return 1
  fi
  echo "ok   $name"
}
expect_log() { grep -q -- "$2" "$WORK/log" || { echo "FAIL $1: az/func log lacks: $2"; sed 's/^/     /' "$WORK/log"; failures=$((failures + 1)); }; }
expect_out() { grep -q -- "$2" "$WORK/out" || { echo "FAIL $1: output lacks: $2"; sed 's/^/     /' "$WORK/out"; failures=$((failures + 1)); }; }
refute_out() { if grep -q -- "$2" "$WORK/out"; then echo "FAIL $1: output has: $2"; failures=$((failures + 1)); fi; }
refute_log() { if grep -q -- "$2" "$WORK/log"; then echo "FAIL $1: az/func log has: $2"; failures=$((failures + 1)); fi; }

run "no extra parameters, no pre-flight (empty arrays under set -u)" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test &&
  { expect_log "empty" "--parameters $WORK/repo/infra/main.bicepparam --output none"
    refute_log "empty" "--parameters eventHubLocation"
    expect_log "empty" "func azure functionapp publish fwd-app runtime=custom settings=yes"
    expect_out "empty" "az monitor app-insights query --app fwd-app --resource-group rg-test"
    refute_out "empty" "logstream"; }

run "the package is built before anything is created" 0 DEPLOY_SKIP_PREFLIGHT=1 DEPLOY_SKIP_PACKAGE=0 -- rg-test &&
  { expect_log "package first" "package.sh"
    [ "$(grep -n -e '^package.sh' -e 'deployment group create' "$WORK/log" | head -n 1 | cut -d: -f2)" = "package.sh" ] ||
      { echo "FAIL package first: package.sh did not run before az deployment group create"; sed 's/^/     /' "$WORK/log"; failures=$((failures + 1)); }; }
run "a package that does not build stops before anything is created" 1 DEPLOY_SKIP_PACKAGE=0 STUB_PACKAGE_FAIL=1 -- rg-test &&
  { expect_out "package fails" "nothing has been created in Azure"; refute_log "package fails" "deployment group create"; }

run "an Azure CLI older than 2.54 is refused before any other az call" 1 STUB_AZ_VERSION=2.53.1 -- rg-test appName=x &&
  { expect_out "old az" "the Azure CLI is 2.53.1; this needs 2.54.0 or later"; expect_out "old az" "az upgrade"
    refute_log "old az" "group show"; refute_log "old az" "deployment group create"; }
run "the minimum Azure CLI version is accepted" 0 STUB_AZ_VERSION=2.54.0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test &&
  { expect_out "min az" "ok   Azure CLI 2.54.0"; }
run "an az that cannot answer az version is refused" 1 STUB_AZ_BROKEN=1 -- rg-test &&
  { expect_out "broken az" "az version failed"; refute_log "broken az" "deployment group create"; }

run "default parameter file, pre-flight sets the hub's region from the cluster" 0 STUB_CLUSTER_LOCATION=northeurope STUB_RG_LOCATION=northeurope STUB_VNET_LOCATION=northeurope -- rg-test &&
  { expect_log "pre-flight" "aks show --name aks-prod-weu --resource-group rg-aks-prod-weu"
    expect_log "pre-flight" "--parameters eventHubLocation=northeurope"
    expect_log "pre-flight" "functionapp list-flexconsumption-runtimes --location northeurope --runtime custom"; }

RUN_DIR="$WORK/repo" run "overrides pass through as --parameters" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test infra/main.bicepparam auditWebhookUrl=http://10.0.0.1:7765/a partitionCount=8 &&
  { expect_log "overrides" "--parameters auditWebhookUrl=http://10.0.0.1:7765/a --parameters partitionCount=8"; }

run "a multi-line value stays one argument" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test "auditRoutes=$(printf 'routes:\n  - name: a b\n')" &&
  { expect_log "multi-line" "--parameters auditRoutes=routes:"; }

run "overrides without a parameter file" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test appName=other-fwd &&
  { expect_log "no file" "--parameters $WORK/repo/infra/main.bicepparam --parameters appName=other-fwd"; }

run "eventHubLocation given and not the cluster's region" 1 STUB_CLUSTER_LOCATION=northeurope -- rg-test eventHubLocation=westeurope &&
  { expect_out "hub region" "streams only to an event hub in the cluster's region"; refute_log "hub region" "deployment group create"; }

run "subnet in another region than the app" 1 STUB_VNET_LOCATION=northeurope -- rg-test &&
  { expect_out "subnet region" "VNet integration needs a subnet in the app's region"; refute_log "subnet region" "deployment group create"; }

run "Flex offers no custom runtime in the region" 1 STUB_FLEX_CUSTOM=no -- rg-test &&
  { expect_out "flex" "does not offer the custom runtime in westeurope"; refute_log "flex" "deployment group create"; }

run "unregistered resource provider" 1 STUB_PROVIDER_STATE=NotRegistered -- rg-test &&
  { expect_out "providers" "az provider register --namespace Microsoft.Web"; }

run "not a name=value argument" 2 -- rg-test infra/main.bicepparam oops || true

# A parameter file copied outside infra/, as a user keeps it next to their other configuration.
mkdir -p "$WORK/ops/prod" "$WORK/elsewhere"
cp "$WORK/repo/infra/main.bicepparam" "$WORK/ops/prod/copied.bicepparam"
run "a plain copy outside infra/ is refused before anything is created" 1 -- rg-test "$WORK/ops/prod/copied.bicepparam" &&
  { expect_out "plain copy" "using '../../repo/infra/main.bicep'"; expect_out "plain copy" "does not exist"
    refute_log "plain copy" "deployment group create"; refute_log "plain copy" "provider show"; }

(cd "$WORK/elsewhere" && bash "$WORK/repo/scripts/new-params.sh" ../ops/prod/new.bicepparam) > "$WORK/out" 2>&1 ||
  { echo "FAIL new-params.sh:"; sed 's/^/     /' "$WORK/out"; failures=$((failures + 1)); }
grep -q "^using '../../repo/infra/main.bicep'$" "$WORK/ops/prod/new.bicepparam" ||
  { echo "FAIL new-params.sh did not point using at the template"; head -n 3 "$WORK/ops/prod/new.bicepparam"; failures=$((failures + 1)); }
grep -q "^param alertEmail = '<your-oncall-email>'$" "$WORK/ops/prod/new.bicepparam" ||
  { echo "FAIL new-params.sh did not write an obvious placeholder for alertEmail"; failures=$((failures + 1)); }
refute_placeholder() { if grep -Eq "$2" "$WORK/ops/prod/new.bicepparam"; then echo "FAIL new-params.sh kept a real-looking value: $1"; failures=$((failures + 1)); fi; }
refute_placeholder "alertEmail" "example.com"; refute_placeholder "subscription" "00000000-"; refute_placeholder "appName" "aks-audit-fwd-demo"
RUN_DIR="$WORK/elsewhere" run "a new-params.sh copy still holding placeholders is refused, naming the parameter" 1 -- rg-test ../ops/prod/new.bicepparam &&
  { expect_out "placeholders" "parameter appName in .* still holds a placeholder (<your-app-name>)"
    for name in aksClusterName aksResourceGroup integrationSubnetId auditWebhookUrl alertEmail; do
      expect_out "placeholders, all in one run" "parameter $name in .* still holds a placeholder"
    done
    expect_out "placeholders counted" "6 parameter(s) above still hold a placeholder"
    expect_out "placeholders: how to go without e-mail" "alertEmail = '' deploys without e-mail alerts"
    refute_log "placeholders" "group show"; refute_log "placeholders" "deployment group create"; }
RUN_DIR="$WORK/elsewhere" run "alertEmail='' clears that placeholder; the others are still named" 1 -- rg-test ../ops/prod/new.bicepparam alertEmail= &&
  { expect_out "no e-mail" "5 parameter(s) above still hold a placeholder"; refute_out "no e-mail" "parameter alertEmail"
    refute_out "no e-mail" "deploys without e-mail alerts"; }
run "a placeholder replaced by an override is accepted; one given as an override is refused" 1 -- rg-test "$WORK/ops/prod/new.bicepparam" \
  appName=fwd aksClusterName=aks aksResourceGroup=rg integrationSubnetId=/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v/subnets/n \
  auditWebhookUrl=http://10.0.0.1:7765/a alertEmail='<your-oncall-email>' &&
  { expect_out "override placeholders" "parameter alertEmail in .* still holds a placeholder (<your-oncall-email>)"; }
# The user fills in the placeholders.
sed -i.bak -e "s/<your-aks-cluster>/aks-prod-weu/" -e "s/<your-[a-z-]*>/filled/g" "$WORK/ops/prod/new.bicepparam"
# deploy.sh run from another folder, with the path relative to that folder, as a user types it.
RUN_DIR="$WORK/elsewhere" run "a new-params.sh copy outside infra/, given relative to the caller, deploys" 0 STUB_CLUSTER_LOCATION=westeurope -- rg-test ../ops/prod/new.bicepparam &&
  { expect_log "copy" "--template-file $WORK/repo/infra/main.bicep --parameters $WORK/elsewhere/../ops/prod/new.bicepparam"
    expect_log "copy" "aks show --name aks-prod-weu"; }
RUN_DIR="$WORK/elsewhere" run "alertEmail='' deploys (no e-mail receiver)" 0 STUB_CLUSTER_LOCATION=westeurope -- rg-test ../ops/prod/new.bicepparam alertEmail= &&
  { expect_log "empty alertEmail" "--parameters $WORK/elsewhere/../ops/prod/new.bicepparam --parameters alertEmail= --parameters"; }

# Spacing the Bicep grammar allows: the pre-flight still reads the values.
sed -e "s/^param aksClusterName = 'aks-prod-weu'/param  aksClusterName='aks-spaced'/" \
    -e "s|^// param location = 'northeurope'.*|param location   =   'northeurope'|" \
    "$WORK/ops/prod/new.bicepparam" > "$WORK/ops/prod/spaced.bicepparam"
run "parameters written with other spacing are read" 0 STUB_CLUSTER_LOCATION=westeurope STUB_VNET_LOCATION=northeurope -- rg-test "$WORK/ops/prod/spaced.bicepparam" &&
  { expect_log "spacing" "aks show --name aks-spaced"; expect_log "spacing" "list-flexconsumption-runtimes --location northeurope"; }

run "Key Vault that allows the platform's lookups" 0 -- rg-test keyVaultName=kv-open &&
  { expect_log "vault open" "keyvault show --name kv-open --resource-group rg-test"; expect_out "vault open" "Key Vault kv-open allows"; }
run "Key Vault behind a firewall is refused before anything is created" 1 STUB_VAULT_DEFAULT_ACTION=Deny -- rg-test keyVaultName=kv-closed &&
  { expect_out "vault closed" "cannot resolve Key Vault references through a network-restricted vault"; refute_log "vault closed" "deployment group create"; }
run "Key Vault without public network access is refused" 1 STUB_VAULT_PUBLIC=Disabled -- rg-test keyVaultName=kv-private &&
  { expect_out "vault private" "restricts network access"; }
run "a restricted vault deploys when asked to" 0 STUB_VAULT_PUBLIC=Disabled DEPLOY_ALLOW_RESTRICTED_VAULT=1 -- rg-test keyVaultName=kv-private &&
  { expect_log "vault forced" "deployment group create"; }

mkdir -p "$WORK/bare"
for tool in sed head tail tr grep dirname cat env bash awk; do ln -sf "$(command -v "$tool")" "$WORK/bare/$tool"; done
ln -sf "$(python3 -c 'import sys; print(sys.executable)')" "$WORK/bare/python3"
run "no az on PATH: stops before anything, saying what to install" 1 PATH="$WORK/bare" -- rg-test &&
  { expect_out "no az" "the Azure CLI (az) is not on PATH"; }
run "placeholders are named without az on PATH" 1 PATH="$WORK/bare" -- rg-test "$WORK/ops/prod/new.bicepparam.bak" &&
  { expect_out "placeholders before az" "6 parameter(s) above still hold a placeholder"
    refute_out "placeholders before az" "Azure CLI (az) is not on PATH"; }
cp "$WORK/bin/az" "$WORK/bare/az"
run "no func on PATH: stops before anything, saying what to install" 1 PATH="$WORK/bare" -- rg-test &&
  { expect_out "no func" "Core Tools v4 (func) are not on PATH"; refute_log "no func" "deployment group create"; }

rm "$WORK/repo/dist/app/local.settings.json"
run "publish folder without local.settings.json is refused before anything is created" 1 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test &&
  { expect_out "no settings" "Worker runtime is not set"; refute_log "no settings" "func azure functionapp publish"
    refute_log "no settings" "deployment group create"; }

# --help on every script: prints the header's usage, exits 0, runs nothing.
for script in deploy.sh uninstall.sh new-params.sh package.sh azurite.sh check_package.py; do
  for flag in --help -h; do
    : > "$WORK/log"
    case "$script" in *.py) cmd=(python3 "scripts/$script" "$flag") ;; *) cmd=(bash "scripts/$script" "$flag") ;; esac
    if (env PATH="$WORK/bin:$PATH" STUB_LOG="$WORK/log" "${cmd[@]}") > "$WORK/out" 2>&1 &&
      grep -q "$script" "$WORK/out" && [ ! -s "$WORK/log" ]; then
      echo "ok   $script $flag prints its usage"
    else
      echo "FAIL $script $flag: not usage with exit 0, or it ran something"; sed 's/^/     /' "$WORK/out" "$WORK/log"; failures=$((failures + 1))
    fi
  done
done

# uninstall.sh says what is wrong with az instead of "no deployment".
uninstall() { # name expected-output PATH
  set +e
  env PATH="$3" STUB_LOG="$WORK/log" bash "$WORK/repo/scripts/uninstall.sh" rg-test --yes > "$WORK/out" 2>&1
  status=$?
  set -e
  if [ "$status" -eq 1 ] && grep -q -- "$2" "$WORK/out" && ! grep -q "no deployment" "$WORK/out"; then
    echo "ok   uninstall.sh: $1"
  else
    echo "FAIL uninstall.sh: $1 (exit $status)"; sed 's/^/     /' "$WORK/out"; failures=$((failures + 1))
  fi
}
rm "$WORK/bare/az"
uninstall "no az on PATH" "the Azure CLI (az) is not on PATH" "$WORK/bare"
printf '#!/bin/sh\necho "ERROR: Please run '"'"'az login'"'"' to setup account." >&2\nexit 1\n' > "$WORK/bare/az"
chmod +x "$WORK/bare/az"
uninstall "az not logged in" "Please run 'az login'" "$WORK/bare"
printf '#!/bin/sh\necho "ERROR: (DeploymentNotFound) Deployment not found." >&2\nexit 3\n' > "$WORK/bare/az"
set +e
env PATH="$WORK/bare" bash "$WORK/repo/scripts/uninstall.sh" rg-test --yes > "$WORK/out" 2>&1
set -e
if grep -q "no deployment aks-audit-forwarder in resource group rg-test" "$WORK/out"; then echo "ok   uninstall.sh: no deployment"; else
  echo "FAIL uninstall.sh: no deployment"; sed 's/^/     /' "$WORK/out"; failures=$((failures + 1)); fi

if [ "$failures" -ne 0 ]; then
  echo "$failures deploy.sh test(s) failed"
  exit 1
fi
echo "deploy.sh tests passed"

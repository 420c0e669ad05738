#!/usr/bin/env bash
# Tests scripts/deploy.sh without Azure: az and func are stubs on PATH that log their arguments
# and answer the pre-flight queries from environment variables. Covers argument handling
# (no extra parameters under set -u, name=value overrides, a parameter file given or not), the
# region and runtime pre-flight, and the publish step's worker runtime.
#
#   scripts/test_deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# A copy of what deploy.sh reads, and a publish folder as scripts/package.sh leaves it.
mkdir -p "$WORK/repo/scripts" "$WORK/repo/infra" "$WORK/repo/dist/app/EventHubForwarder" "$WORK/bin"
cp scripts/deploy.sh scripts/check_package.py "$WORK/repo/scripts/"
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
  "group show"*) echo "${STUB_RG_LOCATION:-westeurope}" ;;
  "provider show"*) echo "${STUB_PROVIDER_STATE:-Registered}" ;;
  "aks show"*) echo "${STUB_CLUSTER_LOCATION:-westeurope}" ;;
  "network vnet subnet show"*) echo "Microsoft.App/environments" ;;
  "network vnet show"*) echo "${STUB_VNET_LOCATION:-West Europe}" ;;
  "functionapp list-flexconsumption-runtimes"*) [ "${STUB_FLEX_CUSTOM:-yes}" = yes ] && printf 'custom\t1.0\n' ;;
  "deployment group create"*) ;;
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
  env PATH="$WORK/bin:$PATH" STUB_LOG="$WORK/log" DEPLOY_SKIP_PACKAGE=1 ${envs[@]+"${envs[@]}"} \
    bash "$WORK/repo/scripts/deploy.sh" "$@" > "$WORK/out" 2>&1
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
refute_log() { if grep -q -- "$2" "$WORK/log"; then echo "FAIL $1: az/func log has: $2"; failures=$((failures + 1)); fi; }

run "no extra parameters, no pre-flight (empty arrays under set -u)" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test &&
  { expect_log "empty" "--parameters infra/main.bicepparam --output none"
    refute_log "empty" "--parameters eventHubLocation"
    expect_log "empty" "func azure functionapp publish fwd-app runtime=custom settings=yes"; }

run "default parameter file, pre-flight sets the hub's region from the cluster" 0 STUB_CLUSTER_LOCATION=northeurope STUB_RG_LOCATION=northeurope STUB_VNET_LOCATION=northeurope -- rg-test &&
  { expect_log "pre-flight" "aks show --name aks-prod-weu --resource-group rg-aks-prod-weu"
    expect_log "pre-flight" "--parameters eventHubLocation=northeurope"
    expect_log "pre-flight" "functionapp list-flexconsumption-runtimes --location northeurope --runtime custom"; }

run "overrides pass through as --parameters" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test infra/main.bicepparam auditWebhookUrl=http://10.0.0.1:7765/a partitionCount=8 &&
  { expect_log "overrides" "--parameters auditWebhookUrl=http://10.0.0.1:7765/a --parameters partitionCount=8"; }

run "a multi-line value stays one argument" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test "auditRoutes=$(printf 'routes:\n  - name: a b\n')" &&
  { expect_log "multi-line" "--parameters auditRoutes=routes:"; }

run "overrides without a parameter file" 0 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test appName=other-fwd &&
  { expect_log "no file" "--parameters infra/main.bicepparam --parameters appName=other-fwd"; }

run "eventHubLocation given and not the cluster's region" 1 STUB_CLUSTER_LOCATION=northeurope -- rg-test eventHubLocation=westeurope &&
  { expect_out "hub region" "streams only to an event hub in the cluster's region"; refute_log "hub region" "deployment group create"; }

run "subnet in another region than the app" 1 STUB_VNET_LOCATION=northeurope -- rg-test &&
  { expect_out "subnet region" "VNet integration needs a subnet in the app's region"; refute_log "subnet region" "deployment group create"; }

run "Flex offers no custom runtime in the region" 1 STUB_FLEX_CUSTOM=no -- rg-test &&
  { expect_out "flex" "does not offer the custom runtime in westeurope"; refute_log "flex" "deployment group create"; }

run "unregistered resource provider" 1 STUB_PROVIDER_STATE=NotRegistered -- rg-test &&
  { expect_out "providers" "az provider register --namespace Microsoft.Web"; }

run "not a name=value argument" 2 -- rg-test infra/main.bicepparam oops || true

rm "$WORK/repo/dist/app/local.settings.json"
run "publish folder without local.settings.json is refused before publishing" 1 DEPLOY_SKIP_PREFLIGHT=1 -- rg-test &&
  { expect_out "no settings" "Worker runtime is not set"; refute_log "no settings" "func azure functionapp publish"; }

if [ "$failures" -ne 0 ]; then
  echo "$failures deploy.sh test(s) failed"
  exit 1
fi
echo "deploy.sh tests passed"

#!/usr/bin/env bash
# Builds the deployment package: a Linux x86-64 release binary that needs nothing newer than
# glibc 2.28 (every current Functions Linux image has it), named `handler` at the app root,
# with host.json and EventHubForwarder/function.json, and nothing else.
#
# Output: dist/app/ (the folder to run `func azure functionapp publish <app>` in: the three files,
#         plus .funcignore and a local.settings.json naming the worker runtime, neither uploaded)
#         and dist/aks-audit-forwarder.zip (the three files only, for zip deployment).
# Needs: cargo, python3 with pip (installs ziglang and cargo-zigbuild into a virtualenv).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${PACKAGE_VENV:-target/package-venv}"
TARGET="x86_64-unknown-linux-gnu"
GLIBC="2.28"

if [ ! -x "$VENV/bin/cargo-zigbuild" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet ziglang cargo-zigbuild
fi
VENV_BIN="$(cd "$VENV" && pwd)/bin"
export PATH="$VENV_BIN:$PATH"

cargo zigbuild --release --locked --target "$TARGET.$GLIBC"

rm -rf dist/app dist/aks-audit-forwarder.zip
mkdir -p dist/app/EventHubForwarder
install -m 0755 "target/$TARGET/release/aks-audit-forwarder" dist/app/handler
install -m 0644 host.json dist/app/host.json
install -m 0644 EventHubForwarder/function.json dist/app/EventHubForwarder/function.json
cp .funcignore dist/app/.funcignore
# Core Tools' publish refuses to run without a local worker runtime ("Worker runtime is not
# set"), on Flex Consumption too. It reads local.settings.json from the folder it publishes and
# never uploads it; nothing else is in it.
cat > dist/app/local.settings.json <<'JSON'
{
  "IsEncrypted": false,
  "Values": {
    "FUNCTIONS_WORKER_RUNTIME": "custom"
  }
}
JSON

python3 - <<'PY'
import os, zipfile
root = "dist/app"
files = ["handler", "host.json", "EventHubForwarder/function.json"]
with zipfile.ZipFile("dist/aks-audit-forwarder.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for name in files:
        path = os.path.join(root, name)
        info = zipfile.ZipInfo.from_file(path, name)
        info.create_system = 3  # Unix, so the mode below is honoured
        mode = 0o755 if name == "handler" else 0o644
        info.external_attr = (0o100000 | mode) << 16
        with open(path, "rb") as f:
            z.writestr(info, f.read(), zipfile.ZIP_DEFLATED)
PY
ls -l dist/aks-audit-forwarder.zip dist/app/handler

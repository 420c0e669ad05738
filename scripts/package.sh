#!/usr/bin/env bash
# Builds the deployment package: a Linux x86-64 release binary that needs nothing newer than
# glibc 2.28 (every current Functions Linux image has it), named `handler` at the app root,
# with host.json and EventHubForwarder/function.json, plus the files of the configuration folder
# under config/ when there is one, and nothing else.
#
#   scripts/package.sh            (scripts/deploy.sh runs it before creating anything)
#
# It is a second full release build, separate from `cargo build --release`: for the target
# x86_64-unknown-linux-gnu.2.28, so every crate is compiled again (about 4 minutes on 2 cores
# the first time; later runs rebuild only what changed). The first run also creates a Python
# virtualenv and installs ziglang and cargo-zigbuild into it from PyPI (network access needed).
#
# Configuration folder: PACKAGE_CONFIG_DIR (relative to where you stand), else ./config in this
# checkout when it exists. Its files land in the app root's config/ folder, so the file forms of
# the settings name them from there: AUDIT_POLICY_FILE=config/policy.yaml,
# AUDIT_ROUTES=config/routes.yaml, AUDIT_WEBHOOK_CA=config/ca.pem. Never put private keys or
# tokens there: the package is a blob any reader of the storage account can fetch; use Key
# Vault references for secrets.
#
# Output: dist/app/ (the folder to run `func azure functionapp publish <app>` in: the package
#         files, plus .funcignore and a local.settings.json naming the worker runtime, neither
#         uploaded) and dist/aks-audit-forwarder.zip (the package files only, for zip deployment).
# The binary is built into cargo's target directory (CARGO_TARGET_DIR is honoured).
# Needs: cargo, python3 with pip (installs ziglang and cargo-zigbuild into a virtualenv); on
# macOS the Rust standard library for Linux, which this script adds with rustup when missing.
# The virtualenv lives in this checkout's target/package-venv, even when CARGO_TARGET_DIR is set.
# -h, --help: this text.
set -euo pipefail
case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
CONFIG_DIR="${PACKAGE_CONFIG_DIR:-}"
if [ -n "$CONFIG_DIR" ]; then
  CONFIG_DIR="$(cd "$CONFIG_DIR" && pwd)" || { echo "PACKAGE_CONFIG_DIR is not a folder: $PACKAGE_CONFIG_DIR" >&2; exit 2; }
fi
cd "$(dirname "$0")/.."
if [ -z "$CONFIG_DIR" ] && [ -d config ]; then
  CONFIG_DIR="$PWD/config"
fi

VENV="${PACKAGE_VENV:-target/package-venv}"
TARGET="x86_64-unknown-linux-gnu"
GLIBC="2.28"

if [ ! -x "$VENV/bin/cargo-zigbuild" ]; then
  echo "package: first run: installing ziglang and cargo-zigbuild from PyPI into $VENV (once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet ziglang cargo-zigbuild
fi
VENV_BIN="$(cd "$VENV" && pwd)/bin"
export PATH="$VENV_BIN:$PATH"

# The Linux standard library: present on a Linux x86-64 host, added on others (macOS).
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET"
fi
echo "package: release build for $TARGET with glibc $GLIBC (a build of its own: the first takes minutes)"
cargo zigbuild --release --locked --target "$TARGET.$GLIBC"
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

rm -rf dist/app dist/aks-audit-forwarder.zip
mkdir -p dist/app/EventHubForwarder
install -m 0755 "$TARGET_DIR/$TARGET/release/aks-audit-forwarder" dist/app/handler
install -m 0644 host.json dist/app/host.json
install -m 0644 EventHubForwarder/function.json dist/app/EventHubForwarder/function.json
cp .funcignore dist/app/.funcignore
if [ -n "$CONFIG_DIR" ]; then
  mkdir -p dist/app/config
  cp -R "$CONFIG_DIR"/. dist/app/config/
  echo "package: config/ holds $(find dist/app/config -type f | wc -l | tr -d ' ') file(s) from $CONFIG_DIR"
fi
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
for folder, _, names in sorted(os.walk(os.path.join(root, "config"))):
    files += sorted(os.path.relpath(os.path.join(folder, n), root) for n in names)
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

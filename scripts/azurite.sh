#!/usr/bin/env bash
# Starts Azurite (the local Azure Storage emulator the Functions host uses through
# AzureWebJobsStorage=UseDevelopmentStorage=true) on 127.0.0.1:10000-10002.
#
#   scripts/azurite.sh          start it in the foreground (Ctrl-C stops it)
#   scripts/azurite.sh --check  start it, prove blob, queue and table storage work with the
#                               Azure SDK (as the host's checkpoint store would), then stop
#   scripts/azurite.sh --install only install it (the storage tests start their own)
#   scripts/azurite.sh --upload-archive [FILE]
#                               put an archive blob (default samples/PT1H.json: the sample
#                               cluster's kube-audit records) into the Azurite started above,
#                               where Azure Monitor would write it, for `backfill` to read:
#                               insights-logs-<category>/resourceId=<id>/y=/m=/d=/h=/m=00/PT1H.json
#                               from the first record's category, resourceId and time
#
# Needs: Node.js with npm (installs azurite under target/azurite); --check and --upload-archive
# also need python3 (they install the Azure Storage SDK into target/azurite-venv). Both live
# under this checkout's target/, even when CARGO_TARGET_DIR is set.
#   scripts/azurite.sh -h, --help   this text
set -euo pipefail
case "${1:-}" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac

UPLOAD=""
if [ "${1:-}" = "--upload-archive" ]; then
  UPLOAD="${2:-}"
  case "$UPLOAD" in /* | "") ;; *) UPLOAD="$PWD/$UPLOAD" ;; esac
  UPLOAD="${UPLOAD:-$(cd "$(dirname "$0")/.." && pwd)/samples/PT1H.json}"
fi
cd "$(dirname "$0")/.."
PREFIX="target/azurite"
DATA="${AZURITE_DATA:-.azurite}"
VENV="${AZURITE_VENV:-target/azurite-venv}"

sdk() {
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import azure.storage.blob, azure.storage.queue, azure.data.tables' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet azure-storage-blob azure-storage-queue azure-data-tables
  fi
}

if [ -n "$UPLOAD" ]; then
  [ -f "$UPLOAD" ] || { echo "azurite: no archive file $UPLOAD" >&2; exit 2; }
  sdk
  "$VENV/bin/python" - "$UPLOAD" <<'PY'
import json, sys
from azure.core.exceptions import ResourceExistsError, ServiceRequestError
from azure.storage.blob import BlobServiceClient

path = sys.argv[1]
data = open(path, "rb").read()
first = json.loads(data.splitlines()[0])
category, resource, time = first["category"], first["resourceId"].upper(), first["time"]
day, clock = time.split("T")
y, m, d = day.split("-")
blob = f"resourceId={resource}/y={y}/m={m}/d={d}/h={clock[:2]}/m=00/PT1H.json"
container = f"insights-logs-{category}"
try:
    service = BlobServiceClient.from_connection_string("UseDevelopmentStorage=true")
    try:
        service.create_container(container)
    except ResourceExistsError:
        pass
    service.get_blob_client(container, blob).upload_blob(data, overwrite=True)
except ServiceRequestError:
    sys.exit("azurite: nothing answers on 127.0.0.1:10000; start it first, in another terminal: scripts/azurite.sh")
print(f"azurite: {container}/{blob} ({len(data.splitlines())} records)")
PY
  exit 0
fi
if [ ! -x "$PREFIX/node_modules/.bin/azurite" ]; then
  mkdir -p "$PREFIX"
  npm install --silent --no-audit --no-fund --prefix "$PREFIX" azurite >/dev/null
fi
if [ "${1:-}" = "--install" ]; then
  echo "azurite: installed under $PREFIX"
  exit 0
fi
# --skipApiVersionCheck: current Azure SDKs send API versions newer than Azurite knows.
# --disableTelemetry: Azurite otherwise sends usage data to Microsoft.
ARGS=(--silent --skipApiVersionCheck --disableTelemetry --location "$DATA"
      --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1)

if [ "${1:-}" != "--check" ]; then
  exec "$PREFIX/node_modules/.bin/azurite" "${ARGS[@]}"
fi

DATA="$(mktemp -d)"
ARGS[4]="$DATA"
"$PREFIX/node_modules/.bin/azurite" "${ARGS[@]}" &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT

sdk
"$VENV/bin/python" - <<'PY'
import time
from azure.core.exceptions import ServiceRequestError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

conn = "UseDevelopmentStorage=true"
deadline = time.monotonic() + 60
while True:
    try:
        blobs = BlobServiceClient.from_connection_string(conn)
        blobs.get_service_properties()
        break
    except ServiceRequestError:
        if time.monotonic() > deadline:
            raise SystemExit("FAIL Azurite blob service did not answer within 60 s")
        time.sleep(0.5)
# The container the Event Hubs trigger keeps checkpoints and ownership blobs in.
container = blobs.create_container("azure-webjobs-eventhub")
container.upload_blob("ns/hub/cg/checkpoint/0", b'{"sequenceNumber":4211}')
assert container.download_blob("ns/hub/cg/checkpoint/0").readall() == b'{"sequenceNumber":4211}'
print("ok   blob: created azure-webjobs-eventhub, wrote and read a checkpoint blob")
queue = QueueServiceClient.from_connection_string(conn).create_queue("probe")
queue.send_message("hello")
assert next(iter(queue.receive_messages())).content == "hello"
print("ok   queue: sent and received a message")
table = TableServiceClient.from_connection_string(conn).create_table("probe")
table.create_entity({"PartitionKey": "p", "RowKey": "r", "v": 1})
assert table.get_entity("p", "r")["v"] == 1
print("ok   table: wrote and read an entity")
print("azurite checks passed")
PY

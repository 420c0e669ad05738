#!/usr/bin/env python3
"""Checks the deployment zip: the three files plus only files under config/, `handler`
executable and needing no glibc newer than 2.28, host.json pointing at it, and the unpacked
`handler` starting as the Functions host starts it and answering GET / (with --policy-file, with
AUDIT_POLICY_FILE naming that file of the package, so a file-form setting is proved to reach the
handler from the package). Then checks the publish folder next to it
(dist/app): `func azure functionapp publish` run there must find FUNCTIONS_WORKER_RUNTIME=custom
(Core Tools refuses to publish with "Worker runtime is not set" otherwise) and must not upload
local.settings.json.

Usage: check_package.py [dist/aks-audit-forwarder.zip] [--policy-file config/<name>.yaml]
       check_package.py --publish-folder dist/app   (the folder check alone; any platform)
       check_package.py -h | --help                 (this text)
"""

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

EXPECTED = {"handler", "host.json", "EventHubForwarder/function.json"}
MAX_GLIBC = (2, 28)


def die(message):
    print(f"FAIL {message}")
    sys.exit(1)


def publish_folder_problems(folder):
    """Why `func azure functionapp publish` run in `folder` would fail or upload too much."""
    problems = []
    for name in EXPECTED:
        if not os.path.isfile(os.path.join(folder, name)):
            problems.append(f"{folder}: {name} missing")
    settings_path = os.path.join(folder, "local.settings.json")
    try:
        with open(settings_path) as f:
            settings = json.load(f)
        runtime = (settings.get("Values") or {}).get("FUNCTIONS_WORKER_RUNTIME")
        if runtime != "custom":
            problems.append(f"{settings_path}: Values.FUNCTIONS_WORKER_RUNTIME is {runtime!r}, not 'custom': func would refuse to publish ('Worker runtime is not set' when absent, a runtime mismatch otherwise)")
        extra = sorted(set(settings.get("Values") or {}) - {"FUNCTIONS_WORKER_RUNTIME"})
        if extra:
            problems.append(f"{settings_path}: holds more than the worker runtime ({extra}); app settings belong in the template")
    except FileNotFoundError:
        problems.append(f"{settings_path} missing: func would stop with 'Worker runtime is not set' (no FUNCTIONS_WORKER_RUNTIME)")
    except (json.JSONDecodeError, AttributeError) as e:
        problems.append(f"{settings_path}: not a settings file: {e}")
    ignore_path = os.path.join(folder, ".funcignore")
    ignored = open(ignore_path).read().split() if os.path.isfile(ignore_path) else []
    if "local.settings.json" not in ignored:
        problems.append(f"{ignore_path}: must list local.settings.json")
    return problems


def check_publish_folder(folder):
    problems = publish_folder_problems(folder)
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print(f"ok   {folder}: publishable (FUNCTIONS_WORKER_RUNTIME=custom in local.settings.json, not uploaded)")


if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help"):
    print(__doc__.strip())
    sys.exit(0)

if len(sys.argv) > 2 and sys.argv[1] == "--publish-folder":
    check_publish_folder(sys.argv[2])
    sys.exit(0)

ARGS = sys.argv[1:]
POLICY_FILE = None
if "--policy-file" in ARGS:
    at = ARGS.index("--policy-file")
    POLICY_FILE = ARGS[at + 1]
    del ARGS[at : at + 2]
ZIP = ARGS[0] if ARGS else "dist/aks-audit-forwarder.zip"

with zipfile.ZipFile(ZIP) as z:
    names = {i.filename for i in z.infolist() if not i.is_dir()}
    config_files = {n for n in names if n.startswith("config/")}
    if names - config_files != EXPECTED:
        die(f"zip holds {sorted(names - config_files)} outside config/, expected {sorted(EXPECTED)}")
    if POLICY_FILE and POLICY_FILE not in config_files:
        die(f"--policy-file {POLICY_FILE} is not in the zip (its config/ holds {sorted(config_files)})")
    mode = z.getinfo("handler").external_attr >> 16
    if not mode & stat.S_IXUSR:
        die(f"handler is not executable in the zip (mode {oct(mode)})")
    host = json.loads(z.read("host.json"))
    if host["customHandler"]["description"]["defaultExecutablePath"] != "handler":
        die("host.json defaultExecutablePath is not 'handler'")
    function = json.loads(z.read("EventHubForwarder/function.json"))
    trigger = function["bindings"][0]
    if (trigger["type"], trigger["cardinality"], trigger["dataType"]) != ("eventHubTrigger", "many", "binary"):
        die(f"unexpected trigger binding {trigger}")
    size = os.path.getsize(ZIP)
    print(f"ok   {ZIP}: {sorted(names - config_files)} and {len(config_files)} file(s) under config/, handler mode {oct(mode & 0o777)}, {size / 1048576:.1f} MiB")

    with tempfile.TemporaryDirectory() as tmp:
        z.extractall(tmp)
        handler = os.path.join(tmp, "handler")
        os.chmod(handler, mode & 0o777)  # extractall drops modes; apply the zip's own

        symbols = subprocess.run(["objdump", "-T", handler], capture_output=True, text=True).stdout
        versions = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols)}
        newest = max(versions) if versions else (0, 0)
        if newest > MAX_GLIBC:
            die(f"handler needs glibc {'.'.join(map(str, newest))}, newer than {MAX_GLIBC}")
        print(f"ok   handler needs glibc {'.'.join(map(str, newest))} at most")

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "FUNCTIONS_"))}
        env.update(
            FUNCTIONS_CUSTOMHANDLER_PORT=str(port),
            AUDIT_WEBHOOK_URL="http://127.0.0.1:9/k8s_audit",
            FUNCTIONS_APP_ROOT_PATH=tmp,
        )
        if POLICY_FILE:
            env["AUDIT_POLICY_FILE"] = POLICY_FILE
        started = time.monotonic()
        process = subprocess.Popen([handler], cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                        status = r.status
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() - started > 30:
                        die(f"handler did not answer GET /: {process.stdout.read().decode()[-2000:]}")
                    time.sleep(0.025)
            elapsed = (time.monotonic() - started) * 1000
            if status != 200:
                die(f"GET / answered {status}")
            with_policy = f" with AUDIT_POLICY_FILE={POLICY_FILE} from the package" if POLICY_FILE else ""
            print(f"ok   unpacked handler answered GET / with {status} after {elapsed:.0f} ms{with_policy}")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
        if code != 0:
            die(f"handler exited {code} on SIGTERM")
        print("ok   handler stopped cleanly on SIGTERM")
check_publish_folder(os.path.join(os.path.dirname(ZIP) or ".", "app"))
print("package checks passed")

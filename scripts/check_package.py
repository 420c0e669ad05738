#!/usr/bin/env python3
"""Checks the deployment zip: exactly the three files, `handler` executable and needing no
glibc newer than 2.28, host.json pointing at it, and the unpacked `handler` starting as the
Functions host starts it and answering GET /.

Usage: check_package.py [dist/aks-audit-forwarder.zip]
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

ZIP = sys.argv[1] if len(sys.argv) > 1 else "dist/aks-audit-forwarder.zip"
EXPECTED = {"handler", "host.json", "EventHubForwarder/function.json"}
MAX_GLIBC = (2, 28)


def die(message):
    print(f"FAIL {message}")
    sys.exit(1)


with zipfile.ZipFile(ZIP) as z:
    names = {i.filename for i in z.infolist() if not i.is_dir()}
    if names != EXPECTED:
        die(f"zip holds {sorted(names)}, expected {sorted(EXPECTED)}")
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
    print(f"ok   {ZIP}: {sorted(names)}, handler mode {oct(mode & 0o777)}, {size / 1048576:.1f} MiB")

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
            print(f"ok   unpacked handler answered GET / with {status} after {elapsed:.0f} ms")
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=10)
        if code != 0:
            die(f"handler exited {code} on SIGTERM")
        print("ok   handler stopped cleanly on SIGTERM")
print("package checks passed")

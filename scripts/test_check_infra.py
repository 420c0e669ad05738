#!/usr/bin/env python3
"""Proves that scripts/check_infra.py's deployment rules can fail: for each rule, breaks one
thing in a copy of the repository's infra files and expects check_infra.py to fail naming it.
Runs without checkov (--no-scan); the scan itself runs in check_infra.py.

Usage: test_check_infra.py   (needs what check_infra.py needs, in the same Python)
"""

import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
COPIED = ["infra", "scripts/deploy.sh", "scripts/uninstall.sh", "scripts/check_infra.py", "host.json", ".funcignore", "src/config/vars.rs", "EventHubForwarder/function.json"]

# (what is broken, file, text replaced, replacement, expected in the output)
MUTATIONS = [
    ("namespace name overflows for long appNames", "infra/main.bicep", "var eventHubNamespaceName = 'evhns-${take(appName, 30)}-${suffix}'", "var eventHubNamespaceName = 'evhns-${appName}-${suffix}'", "for a 31-character appName"),
    ("storage name too long", "infra/main.bicep", "take('staudit${suffix}', 24)", "'staudit${suffix}${suffix}'", "var storageName is"),
    ("appName without an upper bound", "infra/main.bicep", "@maxLength(40)\nparam appName", "param appName", "appName has no @maxLength"),
    ("hub not in the cluster's region", "infra/main.bicep", "  location: eventHubLocation\n", "  location: location\n", "eventHubLocation (the cluster's region)"),
    ("app not in the subnet's region", "infra/main.bicep", "resource site 'Microsoft.Web/sites@2024-11-01' = {\n  name: appName\n  location: location", "resource site 'Microsoft.Web/sites@2024-11-01' = {\n  name: appName\n  location: eventHubLocation", "site must be in location"),
    ("no region pre-flight", "scripts/deploy.sh", "az aks show", "az aks list", "pre-flight reads the cluster's region"),
    ("no Flex runtime pre-flight", "scripts/deploy.sh", "list-flexconsumption-runtimes", "list-runtimes", "Flex custom runtime availability"),
    ("publish without the worker runtime", "scripts/deploy.sh", "FUNCTIONS_WORKER_RUNTIME=custom func", "func", "FUNCTIONS_WORKER_RUNTIME=custom"),
    ("empty array expansion bash 3.2 rejects", "scripts/deploy.sh", '${EXTRA[@]+"${EXTRA[@]}"}', '"${EXTRA[@]}"', "fails on bash 3.2"),
    ("credential parameter not secure", "infra/main.bicep", "@secure()\nparam auditWebhookHeaders", "param auditWebhookHeaders", "param auditWebhookHeaders can carry a credential"),
    ("routes not secure", "infra/main.bicep", "@secure()\nparam auditRoutes", "param auditRoutes", "param auditRoutes"),
    ("partitionCount without its warning", "infra/main.bicep", "Fixed at creation on the Standard tier: changing", "Changing", "partitionCount's description"),
    ("a forwarder setting missing from the template", "infra/main.bicep", "  AUDIT_WEBHOOK_CLIENT_KEY: auditWebhookClientKey\n", "", "AUDIT_WEBHOOK_CLIENT_KEY (read by the forwarder)"),
    ("extra settings not merged", "infra/main.bicep", "union(auditSettings, extraAppSettings, platformSettings)", "union(auditSettings, platformSettings)", "union(auditSettings, extraAppSettings, platformSettings)"),
    ("app settings resource not holding the whole collection", "infra/main.bicep", "  name: 'appsettings'\n  properties: allAppSettings", "  name: 'appsettings'\n  properties: auditSettings", "whole allAppSettings collection"),
    ("no Key Vault reference identity", "infra/main.bicep", "    keyVaultReferenceIdentity: identity.id\n", "", "keyVaultReferenceIdentity"),
    ("no Key Vault Secrets User", "infra/modules/key-vault-access.bicep", "4633458b-17de-408a-b874-0445c86b69e6", "00000000-0000-0000-0000-000000000000", "Key Vault Secrets User"),
    ("SCM basic auth on", "infra/main.bicep", "name: 'scm'\n  properties: {\n    allow: false", "name: 'scm'\n  properties: {\n    allow: true", "basic publishing credentials for scm"),
    ("both audit categories streamed", "infra/modules/aks-diagnostic-setting.bicep", "        category: auditCategory\n        enabled: true\n", "        category: auditCategory\n        enabled: true\n      }\n      {\n        category: 'kube-audit'\n        enabled: true\n", "exactly one log category"),
    ("AUDIT_CATEGORIES not following the choice", "infra/main.bicep", "  AUDIT_CATEGORIES: auditCategory\n", "  AUDIT_CATEGORIES: 'kube-audit,kube-audit-admin'\n", "AUDIT_CATEGORIES must follow auditCategory"),
    ("diagnostic setting streams with a Send-only rule", "infra/main.bicep", "      'Listen'\n      'Send'\n      'Manage'\n", "      'Send'\n", "needs Manage, Send and Listen"),
    ("diagnostic setting name shared by every forwarder", "infra/main.bicep", "var aksDiagnosticSettingName = 'aks-audit-${take(appName, 30)}-${suffix}'", "var aksDiagnosticSettingName = 'aks-audit-forwarder'", "unique per forwarder"),
    ("no dead-letter alert", "infra/main.bicep", 'Message contains "dead_lettered="', 'Message contains "Invocation"', "alert alertDeadLetters"),
    ("alert window a log alert refuses", "infra/main.bicep", "@allowed([\n  15\n  30\n", "@allowed([\n  20\n  30\n", "is not a window size log alerts accept"),
    ("alert window from an unbounded parameter", "infra/main.bicep", "@allowed([\n  15\n  30\n  45\n  60\n  120\n  180\n  240\n  300\n  360\n  1440\n])\nparam fallingBehindWindowMinutes", "@minValue(15)\nparam fallingBehindWindowMinutes", "windowSize must be a literal duration"),
    ("delivery-stalled window shorter than the retry cadence allows", "infra/main.bicep", "    windowSize: 'PT30M'", "    windowSize: 'PT15M'", "would resolve while delivery is still stalled"),
    ("slower retries than the delivery-stalled window allows", "EventHubForwarder/function.json", '"maximumInterval": "00:05:00"', '"maximumInterval": "00:10:00"', "would resolve while delivery is still stalled"),
    ("falling-behind alert without actions", "infra/main.bicep", "    actions: {\n      actionGroups: alertActionGroups\n    }\n  }\n}\n\n// -----", "    actions: {\n      actionGroups: []\n    }\n  }\n}\n\n// -----", "alert alertFallingBehind"),
    ("namespace logs not sent to the workspace", "infra/main.bicep", "  scope: eventHubNamespace\n  properties: {\n    workspaceId: logAnalytics.id", "  scope: eventHubNamespace\n  properties: {\n    workspaceId: ''", "diagnostic setting eventHubDiagnostics"),
    ("no dead-letter lifecycle rule", "infra/main.bicep", "daysAfterModificationGreaterThan: deadLetterRetentionDays", "daysAfterModificationGreaterThan: 36500", "lifecycle rule on the dead-letter container"),
    ("sampling may drop summary lines", "host.json", '"excludedTypes": "Request;Trace;Exception"', '"excludedTypes": "Request"', "sampling may drop the summary lines"),
    ("storage open with private endpoints", "infra/main.bicep", "defaultAction: usePrivateEndpoints ? 'Deny' : 'Allow'", "defaultAction: 'Allow'", "storage firewall denies by default"),
    ("no private endpoint for the namespace", "infra/modules/private-endpoints.bicep", "group: 'namespace'", "group: 'none'", "no private endpoint for namespace"),
    ("no auto-inflate parameter", "infra/main.bicep", "param eventHubAutoInflate bool", "param eventHubAutoGrow bool", "param eventHubAutoInflate missing"),
    ("conditional module's outputs read unguarded", "infra/main.bicep", "keyVaultAccess!.outputs", "keyVaultAccess.outputs", "keyVaultAccess is a conditional module"),
    ("no principal id output", "infra/main.bicep", "output identityPrincipalId string", "output identityObjectId string", "output identityPrincipalId missing"),
    (".funcignore publishes dist/", ".funcignore", "dist/\n", "", ".funcignore: dist/ missing"),
    ("uninstall leaves the diagnostic setting", "scripts/uninstall.sh", "az monitor diagnostic-settings delete", "echo", "diagnostic setting is not removed"),
]


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for rel in COPIED:
            src, dst = REPO / rel, root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        check = [sys.executable, str(root / "scripts/check_infra.py"), "--no-scan", str(root / "infra")]
        baseline = subprocess.run(check, capture_output=True, text=True)
        if baseline.returncode != 0:
            print(f"FAIL the unbroken copy does not pass:\n{baseline.stdout}")
            return 1
        for what, rel, old, new, expected in MUTATIONS:
            path = root / rel
            original = path.read_text()
            if original.count(old) < 1:
                print(f"FAIL {what}: {rel} no longer contains {old!r}; update this test")
                failures += 1
                continue
            path.write_text(original.replace(old, new, 1))
            try:
                result = subprocess.run(check, capture_output=True, text=True)
            finally:
                path.write_text(original)
            if result.returncode == 0 or expected not in result.stdout:
                print(f"FAIL {what}: check_infra.py {'passed' if result.returncode == 0 else 'failed without naming it'} (expected {expected!r})")
                print("\n".join("     " + line for line in result.stdout.splitlines() if line.startswith("FAIL")))
                failures += 1
            else:
                print(f"ok   {what}: caught")
    if failures:
        print(f"{failures} of {len(MUTATIONS)} broken rules went unnoticed")
        return 1
    print(f"all {len(MUTATIONS)} broken rules caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())

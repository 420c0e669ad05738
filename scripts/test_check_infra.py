#!/usr/bin/env python3
"""Proves that every rule of scripts/check_infra.py can fail: breaks one thing at a time in a
copy of the files it reads and expects check_infra.py to fail naming the rule (`FAIL [id]`).
The unbroken copy must pass, and every rule id the unbroken run evaluates (--list-rules) must be
caught by at least one break below: a new rule without a break here fails this test. Runs
without checkov (--no-scan); the scan itself runs in check_infra.py.

Usage: test_check_infra.py   (needs what check_infra.py needs, in the same Python)
"""

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parent.parent
COPIED = ["infra", "scripts/deploy.sh", "scripts/uninstall.sh", "scripts/check_infra.py", "host.json", ".funcignore", "src/config/vars.rs", "EventHubForwarder/function.json"]
MAIN = "infra/main.bicep"
ALL = "all"  # replace every occurrence, not only the first

# (rule id expected to fail, file, text replaced, replacement[, ALL])
MUTATIONS = [
    # Per file: syntax, commas, descriptions, secrets, role assignment comments.
    ("syntax", MAIN, "resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {", "resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {{"),
    ("trailing-comma", MAIN, "  name: 'id-${appName}'\n", "  name: 'id-${appName}',\n"),
    ("param-description", MAIN, "@description('Subscription of that Key Vault.')\n", ""),
    ("no-secrets:listKeys(", MAIN, "var suffix = ", "var leaked = storage.listKeys().keys[0].value\nvar suffix = "),
    ("no-secrets:listConnectionStrings(", MAIN, "var suffix = ", "var leaked = site.listConnectionStrings()\nvar suffix = "),
    ("no-secrets:AccountKey=", MAIN, "var suffix = ", "var leaked = 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc'\nvar suffix = "),
    ("no-secrets:SharedAccessKey=", MAIN, "var suffix = ", "var leaked = 'Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=abc'\nvar suffix = "),
    ("role-assignment-comment", MAIN, "// The host keeps Event Hubs checkpoints and partition leases as blobs, and Flex reads the\n// deployment package from a blob container: Storage Blob Data Owner is the documented minimum\n// for AzureWebJobsStorage with an identity.\n", ""),
    # Required settings of the template.
    ("required:Flex Consumption plan", MAIN, "name: 'FC1'", "name: 'Y1'"),
    ("required:custom runtime", MAIN, "        version: '1.0'", "        version: '2.0'"),
    ("required:storage: no shared keys", MAIN, "allowSharedKeyAccess: false", "allowSharedKeyAccess: true"),
    ("required:storage: no public blobs", MAIN, "allowBlobPublicAccess: false", "allowBlobPublicAccess: true"),
    ("required:storage: TLS 1.2", MAIN, "minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'"),
    ("required:Application Insights: local auth off", MAIN, "DisableLocalAuth: true", "DisableLocalAuth: false"),
    ("required:identity-based host storage", MAIN, "AzureWebJobsStorage__credential", "AzureWebJobsStorageCredential"),
    ("required:identity-based Event Hubs connection", MAIN, "EventHubConnection__fullyQualifiedNamespace", "EventHubConnectionNamespace"),
    ("required:webhook URL is secure", MAIN, "@secure()\nparam auditWebhookUrl", "param auditWebhookUrl"),
    ("required:Event Hubs local auth off unless the diagnostic setting needs it", MAIN, "disableLocalAuth: !createDiagnosticSetting", "disableLocalAuth: false"),
    ("forbidden:FUNCTIONS_WORKER_RUNTIME", MAIN, "  EVENTHUB_NAME: eventHub.name\n", "  EVENTHUB_NAME: eventHub.name\n  FUNCTIONS_WORKER_RUNTIME: 'custom'\n"),
    ("forbidden:FUNCTIONS_EXTENSION_VERSION", MAIN, "  EVENTHUB_NAME: eventHub.name\n", "  EVENTHUB_NAME: eventHub.name\n  FUNCTIONS_EXTENSION_VERSION: '~4'\n"),
    ("forbidden:WEBSITE_RUN_FROM_PACKAGE", MAIN, "  EVENTHUB_NAME: eventHub.name\n", "  EVENTHUB_NAME: eventHub.name\n  WEBSITE_RUN_FROM_PACKAGE: '1'\n"),
    ("conditional-module-outputs", MAIN, "keyVaultAccess!.outputs", "keyVaultAccess.outputs"),
    # Names.
    ("name-limits", MAIN, "var eventHubNamespaceName = 'evhns-${take(appName, 30)}-${suffix}'", "var eventHubNamespaceName = 'evhns-${appName}-${suffix}'"),
    ("name-limits", MAIN, "take('staudit${suffix}', 24)", "'staudit${suffix}${suffix}'"),
    ("appName-max-length", MAIN, "@maxLength(40)\nparam appName", "param appName"),
    ("name-var-missing", MAIN, "var keyVaultAccessDeploymentName =", "var kvAccessDeploymentName ="),
    ("name-evaluable", MAIN, "var privateEndpointPrefix = 'pe-${take(appName, 40)}'", "var privateEndpointPrefix = 'pe-${substring(appName, 0, 40)}'"),
    # Regions.
    ("region:hub", MAIN, "  location: eventHubLocation\n", "  location: location\n"),
    ("region:hub-default", MAIN, "param eventHubLocation string = location", "param eventHubLocation string = 'westeurope'"),
    ("region:site", MAIN, "resource site 'Microsoft.Web/sites@2024-11-01' = {\n  name: appName\n  location: location", "resource site 'Microsoft.Web/sites@2024-11-01' = {\n  name: appName\n  location: eventHubLocation"),
    ("region:plan", MAIN, "  name: 'plan-${appName}'\n  location: location", "  name: 'plan-${appName}'\n  location: eventHubLocation"),
    ("region:storage", MAIN, "  name: storageName\n  location: location", "  name: storageName\n  location: eventHubLocation"),
    # deploy.sh: pre-flight and publishing.
    ("deploy:pre-flight reads the cluster's region", "scripts/deploy.sh", "az aks show", "az aks list"),
    ("deploy:pre-flight compares the subnet's region with the app's", "scripts/deploy.sh", "az network vnet show", "az network vnet list", ALL),
    ("deploy:pre-flight checks Flex custom runtime availability", "scripts/deploy.sh", "list-flexconsumption-runtimes", "list-runtimes"),
    ("deploy:pre-flight checks resource providers", "scripts/deploy.sh", "az provider show", "az provider list"),
    ("deploy:pre-flight checks that Key Vault references can resolve", "scripts/deploy.sh", "az keyvault show", "az keyvault list"),
    ("deploy:the parameter file's using path decides the template", "scripts/deploy.sh", '--template-file "$TEMPLATE"', "--template-file infra/main.bicep"),
    ("deploy:publish runs with FUNCTIONS_WORKER_RUNTIME=custom", "scripts/deploy.sh", "FUNCTIONS_WORKER_RUNTIME=custom func", "func"),
    ("bash-3.2-arrays", "scripts/deploy.sh", '${EXTRA[@]+"${EXTRA[@]}"}', '"${EXTRA[@]}"'),
    # Secure parameters and settings.
    ("credential-secure", MAIN, "@secure()\nparam auditWebhookHeaders", "param auditWebhookHeaders"),
    ("secure-params", MAIN, "@secure()\nparam auditRoutes", "param auditRoutes"),
    ("partitionCount-warning", MAIN, "Fixed at creation on the Standard tier: changing", "Changing"),
    ("settings-found", "src/config/vars.rs", ': &str = "AUDIT_', ': &str = "X_AUDIT_', ALL),
    ("settings-in-template", MAIN, "  AUDIT_WEBHOOK_CLIENT_KEY: auditWebhookClientKey\n", ""),
    ("settings-union", MAIN, "union(auditSettings, alertNotifierUrls, extraAppSettings, platformSettings)", "union(auditSettings, alertNotifierUrls, platformSettings, extraAppSettings)"),
    ("settings-whole-collection", MAIN, "  name: 'appsettings'\n  properties: allAppSettings", "  name: 'appsettings'\n  properties: auditSettings"),
    ("settings-not-inline", MAIN, "    clientCertEnabled: false\n", "    clientCertEnabled: false\n    appSettings: []\n"),
    # Key Vault, publishing credentials.
    ("keyvault-reference-identity", MAIN, "    keyVaultReferenceIdentity: identity.id\n", ""),
    ("keyvault-secrets-user", "infra/modules/key-vault-access.bicep", "4633458b-17de-408a-b874-0445c86b69e6", "00000000-0000-0000-0000-000000000000"),
    ("keyvault-module-condition", MAIN, "module keyVaultAccess 'modules/key-vault-access.bicep' = if (!empty(keyVaultName))", "module keyVaultAccess 'modules/key-vault-access.bicep' = if (true)"),
    ("basic-auth-off:scm", MAIN, "name: 'scm'\n  properties: {\n    allow: false", "name: 'scm'\n  properties: {\n    allow: true"),
    ("basic-auth-off:ftp", MAIN, "name: 'ftp'\n  properties: {\n    allow: false", "name: 'ftp'\n  properties: {\n    allow: true"),
    # The cluster's diagnostic setting.
    ("diagnostic-setting-archive", MAIN, "    archiveStorageAccountId: auditArchiveStorageAccountId\n", ""),
    ("diagnostic-setting-archive", "infra/modules/aks-diagnostic-setting.bicep", "storageAccountId: empty(archiveStorageAccountId) ? null : archiveStorageAccountId", "storageAccountId: archiveStorageAccountId"),
    ("one-category", "infra/modules/aks-diagnostic-setting.bicep", "        category: auditCategory\n        enabled: true\n", "        category: auditCategory\n        enabled: true\n      }\n      {\n        category: 'kube-audit'\n        enabled: true\n"),
    ("categories-follow", MAIN, "  AUDIT_CATEGORIES: auditCategory\n", "  AUDIT_CATEGORIES: 'kube-audit,kube-audit-admin'\n"),
    ("diagnostic-setting-category", MAIN, "    auditCategory: auditCategory\n", "    auditCategory: 'kube-audit'\n"),
    ("stream-rule-rights", MAIN, "      'Listen'\n      'Send'\n      'Manage'\n", "      'Send'\n"),
    ("diagnostic-setting-unique", MAIN, "var aksDiagnosticSettingName = 'aks-audit-${take(appName, 30)}-${suffix}'", "var aksDiagnosticSettingName = 'aks-audit-forwarder'"),
    ("cluster-subscription", MAIN, "scope: resourceGroup(aksSubscriptionId, aksResourceGroup)", "scope: resourceGroup(aksResourceGroup)"),
    # Alerts and monitoring.
    ("alert:alertDeliveryStalled", MAIN, "'AppRequests | where Success == false'", "'AppRequests'"),
    ("alert:alertDeadLetters", MAIN, 'Message contains "dead_lettered="', 'Message contains "Invocation"'),
    ("alert:alertFallingBehind", MAIN, "    actions: {\n      actionGroups: alertActionGroups\n    }\n  }\n}\n\n// Freshness", "    actions: {\n      actionGroups: []\n    }\n  }\n}\n\n// Freshness"),
    ("alert:alertFreshness", MAIN, 'extract("lag_ms=([0-9]+)", 1, Message)', 'extract("lag=([0-9]+)", 1, Message)'),
    ("freshness-name", MAIN, "name: 'alert-${appName}-freshness'", "name: 'alert-${appName}-lag'"),
    ("freshness-p95", MAIN, "percentile(lagMs, 95)", "avg(lagMs)"),
    ("freshness-threshold", MAIN, "threshold: freshnessThresholdSeconds * 1000", "threshold: freshnessThresholdSeconds"),
    ("freshness-window", MAIN, "windowSize: 'PT${freshnessWindowMinutes}M'", "windowSize: 'PT30M'"),
    ("alert-window-sizes", MAIN, "@allowed([\n  15\n  30\n  45\n  60\n  120\n  180", "@allowed([\n  20\n  30\n  45\n  60\n  120\n  180"),
    ("alert-window-form", MAIN, "@allowed([\n  15\n  30\n  45\n  60\n  120\n  180\n  240\n  300\n  360\n  1440\n])\nparam fallingBehindWindowMinutes", "@minValue(15)\nparam fallingBehindWindowMinutes"),
    ("stalled-cadence", MAIN, "    windowSize: 'PT30M'", "    windowSize: 'PT15M'"),
    ("stalled-cadence", "EventHubForwarder/function.json", '"maximumInterval": "00:05:00"', '"maximumInterval": "00:10:00"'),
    ("stalled-cadence-readable", "EventHubForwarder/function.json", '"maximumInterval": "00:05:00"', '"maximumInterval": "5m"'),
    ("action-group", MAIN, "actionGroups@2023-01-01' = if (createActionGroup) {", "actionGroups@2023-01-01' = {"),
    ("namespace-diagnostics", MAIN, "  scope: eventHubNamespace\n  properties: {\n    workspaceId: logAnalytics.id", "  scope: eventHubNamespace\n  properties: {\n    workspaceId: ''"),
    ("no-site-diagnostics", MAIN, "// The namespace's metrics (IncomingMessages)", "resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {\n  name: 'to-site'\n  scope: site\n  properties: {\n    workspaceId: logAnalytics.id\n  }\n}\n\n// The namespace's metrics (IncomingMessages)"),
    ("deadletter-lifecycle", MAIN, "daysAfterModificationGreaterThan: deadLetterRetentionDays", "daysAfterModificationGreaterThan: 36500"),
    ("sampling", "host.json", '"excludedTypes": "Request;Trace;Exception"', '"excludedTypes": "Request"'),
    # Network.
    ("private-endpoints-module", MAIN, "module privateEndpoints 'modules/private-endpoints.bicep' = if (usePrivateEndpoints)", "module privateEndpoints 'modules/private-endpoints.bicep' = if (true)"),
    ("private-endpoint:blob", "infra/modules/private-endpoints.bicep", "group: 'blob'", "group: 'file'"),
    ("private-endpoint:table", "infra/modules/private-endpoints.bicep", "group: 'table'", "group: 'queue'"),
    ("private-endpoint:namespace", "infra/modules/private-endpoints.bicep", "group: 'namespace'", "group: 'none'"),
    ("storage-firewall", MAIN, "defaultAction: usePrivateEndpoints ? 'Deny' : 'Allow'", "defaultAction: 'Allow'"),
    ("eventhubs-firewall", MAIN, "    defaultAction: 'Deny'\n    publicNetworkAccess: 'Enabled'", "    defaultAction: 'Allow'\n    publicNetworkAccess: 'Enabled'"),
    # Throughput parameters and outputs.
    ("throughput-param:eventHubThroughputUnits", MAIN, "param eventHubThroughputUnits int", "param eventHubUnits int"),
    ("throughput-param:eventHubAutoInflate", MAIN, "param eventHubAutoInflate bool", "param eventHubAutoGrow bool"),
    ("throughput-param:eventHubMaximumThroughputUnits", MAIN, "param eventHubMaximumThroughputUnits int", "param eventHubMaxUnits int"),
] + [
    (f"output:{name}", MAIN, f"output {name} string", f"output {name}Renamed string")
    for name in ("functionAppName", "eventHubNamespace", "eventHubName", "consumerGroup", "storageAccountName", "appInsightsName", "identityClientId", "identityPrincipalId", "aksDiagnosticSettingName", "aksClusterId")
] + [
    # Packaging and uninstalling.
    ("funcignore:dist/", ".funcignore", "dist/\n", ""),
    ("funcignore:.azurite/", ".funcignore", ".azurite/\n", ""),
    ("funcignore:local.settings.json", ".funcignore", "local.settings.json\n", ""),
    ("uninstall-diagnostic-setting", "scripts/uninstall.sh", "az monitor diagnostic-settings delete", "echo"),
    # The .bicepparam file.
    ("bicepparam-using", "infra/main.bicepparam", "using './main.bicep'", "using 'main.bicep'"),
    ("bicepparam-known", "infra/main.bicepparam", "param appName = 'aks-audit-fwd-demo'\n", "param appName = 'aks-audit-fwd-demo'\nparam appNmae = 'typo'\n"),
    ("bicepparam-required", "infra/main.bicepparam", "param appName = 'aks-audit-fwd-demo'\n", ""),
]


def main():
    failures = 0
    caught = set()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for rel in COPIED:
            src, dst = REPO / rel, root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        check = [sys.executable, str(root / "scripts/check_infra.py"), "--no-scan", str(root / "infra")]
        baseline = subprocess.run(check + ["--list-rules"], capture_output=True, text=True)
        if baseline.returncode != 0:
            print(f"FAIL the unbroken copy does not pass:\n{baseline.stdout}")
            return 1
        rules = set(re.findall(r"^RULE (.+)$", baseline.stdout, re.M))
        for rule_id, rel, old, new, *how in MUTATIONS:
            what = f"{rule_id}: {old.strip().splitlines()[0][:60]!r} -> {new.strip().splitlines()[0][:60] if new.strip() else '(removed)'!r}"
            path = root / rel
            original = path.read_text()
            if original.count(old) < 1:
                print(f"FAIL {what}: {rel} no longer contains {old!r}; update this test")
                failures += 1
                continue
            path.write_text(original.replace(old, new) if how == [ALL] else original.replace(old, new, 1))
            try:
                result = subprocess.run(check, capture_output=True, text=True)
            finally:
                path.write_text(original)
            if result.returncode == 0 or f"FAIL [{rule_id}]" not in result.stdout:
                print(f"FAIL {what}: check_infra.py {'passed' if result.returncode == 0 else 'failed without naming the rule'}")
                print("\n".join("     " + line for line in result.stdout.splitlines() if line.startswith("FAIL")))
                failures += 1
            else:
                caught.add(rule_id)
                print(f"ok   {what}: caught")
    never = sorted(rules - caught)
    for rule_id in never:
        print(f"FAIL rule {rule_id} of check_infra.py is never broken here: add a break for it")
    unknown = sorted({m[0] for m in MUTATIONS} - rules)
    for rule_id in unknown:
        print(f"FAIL {rule_id} is not a rule check_infra.py evaluates (--list-rules)")
    if failures or never or unknown:
        print(f"{failures} of {len(MUTATIONS)} breaks went unnoticed; {len(never)} of {len(rules)} rules never broken")
        return 1
    print(f"all {len(rules)} rules of check_infra.py broken and caught ({len(MUTATIONS)} breaks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

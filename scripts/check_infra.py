#!/usr/bin/env python3
"""Checks infra/: Bicep syntax, the .bicepparam file, a checkov security scan with zero
failures, and the project's own rules that checkov has no checks for.

No Bicep compiler can be installed offline, so syntax is checked with tree-sitter-bicep, and
the files keep to constructs that checkov's bundled parser reads (a file it cannot parse would
silently not be scanned, so parsing errors fail this check too).

Usage: check_infra.py [infra-dir]   (needs: tree-sitter, tree-sitter-bicep, checkov)
"""

import json
import pathlib
import re
import subprocess
import sys

import tree_sitter
import tree_sitter_bicep

INFRA = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "infra")
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def syntax_errors(tree):
    found = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            found.append(node.start_point)
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return found


def strip_comments_and_strings(text):
    text = re.sub(r"'(?:[^'\\\n]|\\.)*'", "''", text)
    return re.sub(r"//[^\n]*", "", text)


parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
bicep_files = sorted(INFRA.rglob("*.bicep"))
if not bicep_files:
    fail(f"no .bicep files under {INFRA}")
for path in bicep_files:
    source = path.read_bytes()
    errors = syntax_errors(parser.parse(source))
    if errors:
        fail(f"{path}: syntax errors at (line, column) {[(r + 1, c + 1) for r, c in errors[:5]]}")
    text = source.decode()
    code = strip_comments_and_strings(text)
    # The real compiler rejects a comma at the end of a line inside objects and arrays (BCP238).
    for number, line in enumerate(code.splitlines(), 1):
        if line.rstrip().endswith(","):
            fail(f"{path}:{number}: trailing comma (Bicep wants one item per line, no commas)")
    # Every parameter documented.
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("param "):
            start = number
            while start > 0 and lines[start - 1].strip():
                start -= 1
            above = "\n".join(lines[start:number])
            if "@description(" not in above:
                fail(f"{path}:{number + 1}: parameter without @description: {line.strip()}")
    # No secrets in templates: keys and connection strings must not be built or stored.
    for pattern in ("listKeys(", "AccountKey=", "SharedAccessKey=", "listConnectionStrings("):
        if pattern in code:
            fail(f"{path}: uses {pattern!r}; every connection must use the managed identity")
    # Every role assignment explains itself in a comment right above it.
    for match in re.finditer(r"^resource \w+ 'Microsoft\.Authorization/roleAssignments@", text, re.M):
        before = text[: match.start()].rstrip().splitlines()
        if not before or not before[-1].lstrip().startswith("//"):
            line = text[: match.start()].count("\n") + 1
            fail(f"{path}:{line}: role assignment without a comment saying why")
    print(f"ok   {path}: parsed")

main = INFRA / "main.bicep"
main_text = main.read_text()
required_rules = {
    "Flex Consumption plan": r"name: 'FC1'",
    "custom runtime": r"name: 'custom'\s*\n\s*version: '1.0'",
    "storage: no shared keys": r"allowSharedKeyAccess: false",
    "storage: no public blobs": r"allowBlobPublicAccess: false",
    "storage: TLS 1.2": r"minimumTlsVersion: 'TLS1_2'",
    "Application Insights: local auth off": r"DisableLocalAuth: true",
    "identity-based host storage": r"AzureWebJobsStorage__credential",
    "identity-based Event Hubs connection": r"EventHubConnection__fullyQualifiedNamespace",
    "webhook URL is secure": r"@secure\(\)\s*\nparam auditWebhookUrl",
    "Event Hubs local auth off unless the diagnostic setting needs it": r"disableLocalAuth: !createDiagnosticSetting",
}
for name, pattern in required_rules.items():
    if not re.search(pattern, main_text):
        fail(f"{main}: missing rule: {name}")
main_code = re.sub(r"//[^\n]*", "", main_text)
for forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"):
    if forbidden in main_code:
        fail(f"{main}: {forbidden} must not be set on Flex Consumption")

# .bicepparam: no parser reads it offline; check its names against main.bicep.
params_in_main = dict(re.findall(r"^param (\w+) \w+( =)?", main_text, re.M))
for path in sorted(INFRA.rglob("*.bicepparam")):
    text = path.read_text()
    if not re.search(r"^using '\./main\.bicep'", text, re.M):
        fail(f"{path}: expected using './main.bicep'")
    given = re.findall(r"^param (\w+) = ", text, re.M)
    for name in given:
        if name not in params_in_main:
            fail(f"{path}: param {name} is not a parameter of main.bicep")
    for name, has_default in params_in_main.items():
        if not has_default and name not in given:
            fail(f"{path}: required param {name} is not set")
    print(f"ok   {path}: {len(given)} parameters, all known")

# Security scan.
scan = subprocess.run(
    [str(pathlib.Path(sys.executable).with_name("checkov")), "-d", str(INFRA), "--framework", "bicep", "-o", "json", "--skip-download", "--quiet", "--compact"],
    capture_output=True,
    text=True,
)
try:
    report = json.loads(scan.stdout)
except json.JSONDecodeError:
    fail(f"checkov printed no JSON report: {scan.stderr[-2000:]}")
    report = None
if report is not None:
    reports = report if isinstance(report, list) else [report]
    for r in reports:
        summary = r.get("summary", {})
        print(f"checkov: {summary}")
        if summary.get("parsing_errors"):
            fail(f"checkov could not parse: {r['results'].get('parsing_errors')}")
        if summary.get("resource_count", 0) == 0:
            fail("checkov scanned no resources")
        for check in r.get("results", {}).get("failed_checks", []):
            fail(f"checkov {check['check_id']} {check['resource']}: {check['check_name']}")
        for check in r.get("results", {}).get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment") or ""
            if len(reason.strip()) < 20:
                fail(f"checkov skip of {check['check_id']} on {check['resource']} has no real justification")

if failures:
    print(f"{len(failures)} infra check(s) failed")
    sys.exit(1)
print("infra checks passed")

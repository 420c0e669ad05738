#!/usr/bin/env python3
"""Checks infra/: Bicep syntax, the .bicepparam file, a checkov security scan with zero
failures, and the project's own rules that checkov has no checks for.

No Bicep compiler can be installed offline, so syntax is checked with tree-sitter-bicep, and
the files keep to constructs that checkov's bundled parser reads (a file it cannot parse would
silently not be scanned, so parsing errors fail this check too).

Usage: check_infra.py [--no-scan] [--list-rules] [infra-dir]
       (needs: tree-sitter, tree-sitter-bicep, checkov)

The repository root is the parent of infra-dir: the rules also read scripts/deploy.sh,
scripts/uninstall.sh, host.json, .funcignore and the forwarder's settings in src/config/vars.rs.
--no-scan skips checkov (scripts/test_check_infra.py uses it to break one rule at a time).
Every rule has an id, printed with its failure as `FAIL [id] ...`; --list-rules prints the id of
every rule the run evaluated (`RULE id`), so that the self-test can prove each one can fail.
"""

import json
import pathlib
import re
import subprocess
import sys

import tree_sitter
import tree_sitter_bicep

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
SCAN = "--no-scan" not in sys.argv[1:]
INFRA = pathlib.Path(ARGS[0] if ARGS else "infra")
failures = []
RULES = set()  # the id of every rule evaluated


def seen(rule_id):
    """Records that the rule `rule_id` was evaluated (whether or not it failed)."""
    RULES.add(rule_id)


def fail(rule_id, message):
    seen(rule_id)
    failures.append(message)
    print(f"FAIL [{rule_id}] {message}")


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
    sys.exit(f"FAIL no .bicep files under {INFRA}")
for rule_id in ("syntax", "trailing-comma", "param-description", "role-assignment-comment"):
    seen(rule_id)
SECRET_PATTERNS = ("listKeys(", "AccountKey=", "SharedAccessKey=", "listConnectionStrings(")
for pattern in SECRET_PATTERNS:
    seen(f"no-secrets:{pattern}")
for path in bicep_files:
    source = path.read_bytes()
    errors = syntax_errors(parser.parse(source))
    if errors:
        fail("syntax", f"{path}: syntax errors at (line, column) {[(r + 1, c + 1) for r, c in errors[:5]]}")
    text = source.decode()
    code = strip_comments_and_strings(text)
    # The real compiler rejects a comma at the end of a line inside objects and arrays (BCP238).
    for number, line in enumerate(code.splitlines(), 1):
        if line.rstrip().endswith(","):
            fail("trailing-comma", f"{path}:{number}: trailing comma (Bicep wants one item per line, no commas)")
    # Every parameter documented.
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("param "):
            start = number
            while start > 0 and lines[start - 1].strip():
                start -= 1
            above = "\n".join(lines[start:number])
            if "@description(" not in above:
                fail("param-description", f"{path}:{number + 1}: parameter without @description: {line.strip()}")
    # No secrets in templates: keys and connection strings must not be built or stored. Strings
    # are searched too: a connection string is a string, and '${listKeys(...)}' is in one.
    uncommented = re.sub(r"(^|[ \t])//[^\n]*", r"\1", text, flags=re.M)  # not the // of a URL
    for pattern in SECRET_PATTERNS:
        if pattern in uncommented:
            fail(f"no-secrets:{pattern}", f"{path}: uses {pattern!r}; every connection must use the managed identity")
    # Every role assignment explains itself in a comment right above it.
    for match in re.finditer(r"^resource \w+ 'Microsoft\.Authorization/roleAssignments@", text, re.M):
        before = text[: match.start()].splitlines()  # the comment must be right above, no blank line
        if not before or not before[-1].lstrip().startswith("//"):
            line = text[: match.start()].count("\n") + 1
            fail("role-assignment-comment", f"{path}:{line}: role assignment without a comment saying why")
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
    seen(f"required:{name}")
    if not re.search(pattern, main_text):
        fail(f"required:{name}", f"{main}: missing rule: {name}")
main_code = re.sub(r"//[^\n]*", "", main_text)
for forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"):
    seen(f"forbidden:{forbidden}")
    if forbidden in main_code:
        fail(f"forbidden:{forbidden}", f"{main}: {forbidden} must not be set on Flex Consumption")

# A conditional module may not be deployed: the compiler warns (BCP318) that reading its outputs
# may fail the deployment unless the access says it is guarded, with ! (asserted non-null, behind
# the same condition) or .? (null when absent).
seen("conditional-module-outputs")
for path in bicep_files:
    code = re.sub(r"//[^\n]*", "", path.read_text())
    for symbol in re.findall(r"^module (\w+) '[^']+' = if \(", code, re.M):
        for match in re.finditer(rf"\b{symbol}\.outputs\b", code):
            line = code[: match.start()].count("\n") + 1
            fail("conditional-module-outputs", f"{path}:{line}: {symbol} is a conditional module; read its outputs as {symbol}!.outputs (behind the same condition) or {symbol}.?outputs")

# ---------------------------------------------------------------------------------------------
# Deployment rules (docs/deployment.md): what a first deployment and a redeployment need.
# ---------------------------------------------------------------------------------------------
REPO = INFRA.resolve().parent
modules = {p.name: p.read_text() for p in sorted((INFRA / "modules").glob("*.bicep"))}


def rule(rule_id, name, ok):
    seen(rule_id)
    if not ok:
        fail(rule_id, f"{main}: {name}")


def param_block(text, name):
    """The decorators and declaration of one parameter."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if re.match(rf"param {name}\b", line):
            start = number
            while start > 0 and lines[start - 1].strip() and not lines[start - 1].startswith(("param ", "var ", "resource ", "//")):
                start -= 1
            return "\n".join(lines[start : number + 1])
    return None


def resource_body(text, symbol):
    """The text of `resource <symbol> ...` up to the closing brace at column 0."""
    match = re.search(rf"^resource {symbol} '[^']+'.*?^}}", text, re.M | re.S)
    return match.group(0) if match else ""


# Names: evaluate every generated name for every allowed appName length and compare it with its
# resource type's limit. A tiny evaluator for the expressions the template uses (strings with
# interpolation, take, toLower, replace, uniqueString); anything else fails the check.
class Unevaluable(Exception):
    pass


def tokenize(expression):
    tokens, i = [], 0
    while i < len(expression):
        c = expression[i]
        if c.isspace():
            i += 1
        elif c == "'":
            j, depth, buf = i + 1, 0, []
            while j < len(expression):
                if expression[j] == "\\":
                    buf.append(expression[j : j + 2])
                    j += 2
                    continue
                if expression.startswith("${", j):
                    depth += 1
                elif expression[j] == "}" and depth:
                    depth -= 1
                elif expression[j] == "'" and not depth:
                    break
                buf.append(expression[j])
                j += 1
            tokens.append(("str", "".join(buf)))
            i = j + 1
        elif c.isdigit():
            j = i
            while j < len(expression) and expression[j].isdigit():
                j += 1
            tokens.append(("num", int(expression[i:j])))
            i = j
        elif c.isalpha() or c == "_":
            j = i
            while j < len(expression) and (expression[j].isalnum() or expression[j] == "_"):
                j += 1
            tokens.append(("id", expression[i:j]))
            i = j
        elif c in "(),.":
            tokens.append((c, c))
            i += 1
        else:
            raise Unevaluable(f"unexpected {c!r} in {expression!r}")
    return tokens


def evaluate(expression, env, variables):
    tokens = tokenize(expression)
    position = [0]

    def peek():
        return tokens[position[0]] if position[0] < len(tokens) else (None, None)

    def take_token(kind=None):
        token = peek()
        if kind and token[0] != kind:
            raise Unevaluable(f"expected {kind} in {expression!r}")
        position[0] += 1
        return token

    def primary():
        kind, value = take_token()
        if kind == "str":
            return interpolate(value)
        if kind == "num":
            return value
        if kind != "id":
            raise Unevaluable(f"unexpected {value!r} in {expression!r}")
        if peek()[0] == "(":
            take_token("(")
            args = []
            while peek()[0] != ")":
                start = position[0]
                try:
                    args.append(expr())
                except Unevaluable:
                    if value != "uniqueString":
                        raise
                    # uniqueString's arguments do not matter: its result is 13 characters.
                    position[0] = start
                    depth = 0
                    while not (depth == 0 and peek()[0] in (",", ")")):
                        depth += {"(": 1, ")": -1}.get(take_token()[0], 0)
                    args.append(None)
                if peek()[0] == ",":
                    take_token(",")
            take_token(")")
            return call(value, args)
        if value in env:
            return env[value]
        if value in variables:
            return evaluate(variables[value], env, variables)
        raise Unevaluable(f"unknown name {value!r} in {expression!r}")

    def expr():
        value = primary()
        while peek()[0] == ".":
            take_token(".")
            take_token("id")
            raise Unevaluable(f"property access in {expression!r}")
        return value

    result = expr()
    if position[0] != len(tokens):
        raise Unevaluable(f"trailing tokens in {expression!r}")
    return result

    # (interpolate and call are defined below, closed over env and variables)


def call(name, args):
    if name == "uniqueString":
        return "u" * 13
    if name == "take":
        return args[0][: args[1]]
    if name == "toLower":
        return args[0].lower()
    if name == "replace":
        return args[0].replace(args[1], args[2])
    raise Unevaluable(f"function {name}")


_context = {}


def interpolate(template):
    out, i = [], 0
    while i < len(template):
        if template.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += {"{": 1, "}": -1}.get(template[j], 0)
                j += 1
            out.append(str(evaluate(template[i + 2 : j - 1], _context["env"], _context["vars"])))
            i = j
        else:
            out.append(template[i])
            i += 1
    return "".join(out)


# (min, max, allowed characters) of the names that appear both as resources and as variables.
STORAGE_NAME = (3, 24, r"[a-z0-9]+")
EVENT_HUB_NAMESPACE_NAME = (6, 50, r"[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]")
DEPLOYMENT_NAME = (1, 64, r"[A-Za-z0-9_.()-]+")

NAME_LIMITS = {
    # type: (min, max, allowed characters)
    "Microsoft.Storage/storageAccounts": STORAGE_NAME,
    "Microsoft.EventHub/namespaces": EVENT_HUB_NAMESPACE_NAME,
    "Microsoft.Web/sites": (2, 60, r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]"),
    "Microsoft.Web/serverfarms": (1, 60, r"[A-Za-z0-9-]+"),
    "Microsoft.ManagedIdentity/userAssignedIdentities": (3, 128, r"[A-Za-z0-9][A-Za-z0-9_-]*"),
    "Microsoft.OperationalInsights/workspaces": (4, 63, r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]"),
    "Microsoft.Insights/components": (1, 260, r"[^%&\\?/]+"),
    "Microsoft.Insights/actionGroups": (1, 260, r"[^%&\\?/]+"),
    "Microsoft.Insights/scheduledQueryRules": (1, 260, r"[^*<>%{}&:\\?/#]+"),
    "Microsoft.Insights/diagnosticSettings": (1, 260, r"[^*<>%&:\\?/+]+"),
}
# Names built in variables and used elsewhere (modules, deployments), with their limits.
VAR_NAME_LIMITS = {
    "storageName": STORAGE_NAME,
    "eventHubNamespaceName": EVENT_HUB_NAMESPACE_NAME,
    "aksDiagnosticSettingName": (1, 64, r"[A-Za-z0-9-]+"),
    "aksDiagnosticDeploymentName": DEPLOYMENT_NAME,
    "keyVaultAccessDeploymentName": DEPLOYMENT_NAME,
    "privateEndpointsDeploymentName": DEPLOYMENT_NAME,
    # Private endpoint names are '<prefix>-blob|table|namespace' (2 to 64 characters).
    "privateEndpointPrefix": (1, 64 - len("-namespace"), r"[A-Za-z0-9][A-Za-z0-9-]*"),
}

variables = dict(re.findall(r"^var (\w+) = (.+)$", main_text, re.M))
app_block = param_block(main_text, "appName") or ""
min_len = int((re.search(r"@minLength\((\d+)\)", app_block) or [0, 1])[1])
max_len = int((re.search(r"@maxLength\((\d+)\)", app_block) or [0, 0])[1])
seen("appName-max-length")
for rule_id in ("name-var-missing", "name-evaluable", "name-limits"):
    seen(rule_id)
if not max_len:
    fail("appName-max-length", f"{main}: appName has no @maxLength: names cannot be bounded")
name_failures = set()
worst = {}
for length in range(min_len, max_len + 1):
    env = {"appName": "a" * length}
    _context.update(env=env, vars=variables)
    targets = []
    for symbol, rtype, body in re.findall(r"^resource (\w+) '([^@']+)@[^']+'(.*?)^}", main_text, re.M | re.S):
        if " existing" in body.split("\n", 1)[0] or rtype not in NAME_LIMITS:
            continue
        name = re.search(r"^  name: (.+)$", body, re.M)
        if name:
            targets.append((f"{symbol} ({rtype})", name.group(1).strip(), NAME_LIMITS[rtype]))
    for var, limits in VAR_NAME_LIMITS.items():
        if var not in variables:
            fail("name-var-missing", f"{main}: var {var} (a generated name) is missing")
            continue
        targets.append((f"var {var}", variables[var], limits))
    for label, expression, (low, high, chars) in targets:
        if label in name_failures:
            continue
        try:
            value = evaluate(expression, env, variables)
        except (Unevaluable, IndexError, TypeError) as e:
            fail("name-evaluable", f"{main}: cannot evaluate the name of {label}: {e}")
            name_failures.add(label)
            continue
        worst[label] = max(worst.get(label, 0), len(value))
        if not low <= len(value) <= high or not re.fullmatch(chars, value):
            fail("name-limits", f"{main}: {label} is {value!r} ({len(value)} characters) for a {length}-character appName; allowed {low}-{high} of {chars}")
            name_failures.add(label)
if not name_failures:
    print(f"ok   names: {len(worst)} generated names within their limits for every appName of {min_len}-{max_len} characters (longest: {max(worst.values()) if worst else 0})")

# Regions: the hub follows the cluster, the app and its subnet share a region.
hub = resource_body(main_text, "eventHubNamespace")
rule("region:hub", "the Event Hubs namespace must be in eventHubLocation (the cluster's region)", re.search(r"^  location: eventHubLocation$", hub, re.M))
rule("region:hub-default", "eventHubLocation must default to location", re.search(r"^param eventHubLocation string = location$", main_text, re.M))
for symbol in ("site", "plan", "storage"):
    rule(f"region:{symbol}", f"{symbol} must be in location (the integration subnet's region)", re.search(r"^  location: location$", resource_body(main_text, symbol), re.M))
deploy_sh = (REPO / "scripts" / "deploy.sh").read_text()
for what, pattern in {
    "pre-flight reads the cluster's region": r"az aks show",
    "pre-flight compares the subnet's region with the app's": r"az network vnet show",
    "pre-flight checks Flex custom runtime availability": r"list-flexconsumption-runtimes",
    "pre-flight checks resource providers": r"az provider show",
    "publish runs with FUNCTIONS_WORKER_RUNTIME=custom": r"FUNCTIONS_WORKER_RUNTIME=custom func azure functionapp publish",
    "the parameter file's using path decides the template": r'--template-file "\$TEMPLATE"',
    "pre-flight checks that Key Vault references can resolve": r"az keyvault show",
}.items():
    seen(f"deploy:{what}")
    if not re.search(pattern, deploy_sh):
        fail(f"deploy:{what}", f"scripts/deploy.sh: {what}")
# bash 3.2 treats "${a[@]}" of an empty array as unset under set -u.
seen("bash-3.2-arrays")
for number, line in enumerate(deploy_sh.splitlines(), 1):
    if line.lstrip().startswith("#"):
        continue
    for match in re.finditer(r'"\$\{(\w+)\[@\]\}"', line):
        if not re.search(r"\$\{" + match.group(1) + r"\[@\]\+", line):
            fail("bash-3.2-arrays", f"scripts/deploy.sh:{number}: \"${{{match.group(1)}[@]}}\" fails on bash 3.2 when empty; write ${{{match.group(1)}[@]+\"${{{match.group(1)}[@]}}\"}}")

# Secure parameters: everything that can carry a credential.
CREDENTIAL = re.compile(r"(Url|Token|Password|Username|ClientKey|Headers|Routes|Policy|Secret|AppSettings)$")
seen("credential-secure")
seen("secure-params")
for name in re.findall(r"^param (\w+) ", main_text, re.M):
    if CREDENTIAL.search(name) and "@secure()" not in (param_block(main_text, name) or ""):
        fail("credential-secure", f"{main}: param {name} can carry a credential and must be @secure()")
for name in ("auditWebhookUrl", "auditWebhookBearerToken", "auditWebhookPassword", "auditWebhookClientKey", "auditWebhookHeaders", "auditRoutes", "auditPolicy", "extraAppSettings", "alertWebhookUrl"):
    block = param_block(main_text, name)
    if block is None or "@secure()" not in block:
        fail("secure-params", f"{main}: param {name} must exist and be @secure()")
rule("partitionCount-warning", "partitionCount's description must say it cannot change after creation", re.search(r"@description\('[^']*Fixed at creation[^']*'\)\s*\n(@\w+\(\d+\)\s*\n)*param partitionCount", main_text))

# Settings: every AUDIT_* variable the forwarder reads is a template setting; the collection is
# owned by the template (parameters plus the secure extraAppSettings), so a redeploy keeps them.
config_rs = REPO / "src" / "config" / "vars.rs"
forwarder_vars = sorted(set(re.findall(r'pub const \w+: &str = "(AUDIT_\w+)"', config_rs.read_text()))) if config_rs.exists() else []
seen("settings-found")
seen("settings-in-template")
if not forwarder_vars:
    fail("settings-found", "src/config/vars.rs: no AUDIT_* variables found in `vars`")
settings_block = re.search(r"^var auditSettings = \{(.*?)^\}", main_text, re.M | re.S)
settings_keys = set(re.findall(r"^  (\w+): ", settings_block.group(1), re.M)) if settings_block else set()
for var in forwarder_vars:
    if var not in settings_keys:
        fail("settings-in-template", f"{main}: {var} (read by the forwarder) is not in auditSettings: a redeploy would drop it")
rule("settings-union", "app settings must be union(auditSettings, alertNotifierUrls, extraAppSettings, platformSettings): the platform's last, so nothing overrides them", re.search(r"^var allAppSettings = union\(auditSettings, alertNotifierUrls, extraAppSettings, platformSettings\)$", main_text, re.M))
rule("settings-whole-collection", "the app settings resource must hold the whole allAppSettings collection", re.search(r"^  parent: site\n  name: 'appsettings'\n  properties: allAppSettings$", resource_body(main_text, "appSettings"), re.M))
rule("settings-not-inline", "no app settings inline in the site (they would be a second, partial collection)", "appSettings:" not in resource_body(main_text, "site"))
print(f"ok   settings: {len(forwarder_vars)} AUDIT_* variables from src/config/vars.rs are template settings")

# Key Vault references resolve with the user-assigned identity, which may read the vault.
rule("keyvault-reference-identity", "keyVaultReferenceIdentity must be the user-assigned identity", re.search(r"^    keyVaultReferenceIdentity: identity\.id$", resource_body(main_text, "site"), re.M))
kv = modules.get("key-vault-access.bicep", "")
seen("keyvault-secrets-user")
if "4633458b-17de-408a-b874-0445c86b69e6" not in kv or "Microsoft.Authorization/roleAssignments@" not in kv:
    fail("keyvault-secrets-user", "infra/modules/key-vault-access.bicep: Key Vault Secrets User assignment missing")
rule("keyvault-module-condition", "the Key Vault access module must run when keyVaultName is set", re.search(r"module keyVaultAccess 'modules/key-vault-access\.bicep' = if \(!empty\(keyVaultName\)\)", main_text))

# Publishing: basic-auth credentials off for FTP and SCM.
for kind in ("ftp", "scm"):
    rule(f"basic-auth-off:{kind}", f"basic publishing credentials for {kind} must be off", re.search(rf"basicPublishingCredentialsPolicies@[^']+' = \{{\s*parent: site\s*name: '{kind}'\s*properties: \{{\s*allow: false", main_text))

# One audit category, shared by the diagnostic setting and AUDIT_CATEGORIES.
diag = modules.get("aks-diagnostic-setting.bicep", "")
categories = re.findall(r"^\s+category: (.+)$", diag, re.M)
seen("one-category")
if categories != ["auditCategory"]:
    fail("one-category", f"infra/modules/aks-diagnostic-setting.bicep: expected exactly one log category (auditCategory), found {categories}")
rule("categories-follow", "AUDIT_CATEGORIES must follow auditCategory", re.search(r"^  AUDIT_CATEGORIES: auditCategory$", main_text, re.M))
rule("diagnostic-setting-category", "the diagnostic setting must stream auditCategory", re.search(r"^    auditCategory: auditCategory$", main_text, re.M))
rule("diagnostic-setting-unique", "the diagnostic setting name must be unique per forwarder", re.search(r"^    diagnosticSettingName: aksDiagnosticSettingName$", main_text, re.M) and "${suffix}" in variables.get("aksDiagnosticSettingName", ""))
# The archive backfill reads: the same diagnostic setting (one category, one place to change),
# a storage destination only when an account is given.
rule("diagnostic-setting-archive", "the diagnostic setting must archive to auditArchiveStorageAccountId when it is set, and only then", re.search(r"^    archiveStorageAccountId: auditArchiveStorageAccountId$", main_text, re.M) and re.search(r"^    storageAccountId: empty\(archiveStorageAccountId\) \? null : archiveStorageAccountId$", diag, re.M))
rule("cluster-subscription", "the cluster may be in another subscription", re.search(r"scope: resourceGroup\(aksSubscriptionId, aksResourceGroup\)", main_text))
# The namespace rule the diagnostic setting streams with: "Streaming to Event Hubs requires Manage,
# Send, and Listen permissions" (Azure Monitor, Diagnostic settings, destination limitations).
stream_rule = re.search(r"^    eventHubAuthorizationRuleId: (\w+)\.id$", main_text, re.M)
stream_rule_body = resource_body(main_text, stream_rule.group(1)) if stream_rule else ""
stream_rights = set(re.findall(r"^      '(\w+)'$", stream_rule_body, re.M))
rule(
    "stream-rule-rights",
    f"the authorization rule the diagnostic setting streams with needs Manage, Send and Listen (has {sorted(stream_rights)})",
    "namespaces/authorizationRules@" in stream_rule_body and {"Manage", "Send", "Listen"} <= stream_rights,
)

# Telling the operator: alerts, action group, diagnostic settings, dead-letter retention.
alerts = re.findall(r"^resource (\w+) 'Microsoft\.Insights/scheduledQueryRules@", main_text, re.M)
ALERT_QUERIES = {
    "alertDeliveryStalled": "Success == false",
    "alertDeadLetters": 'Message contains "dead_lettered="',
    "alertFallingBehind": "IncomingMessages",
    "alertFreshness": 'extract("lag_ms=([0-9]+)", 1, Message)',
}
for symbol, needle in ALERT_QUERIES.items():
    seen(f"alert:{symbol}")
    body = resource_body(main_text, symbol)
    if symbol not in alerts or needle not in body or "actionGroups: alertActionGroups" not in body:
        fail(f"alert:{symbol}", f"{main}: alert {symbol} (query on {needle!r}, wired to the action group) missing")
# Freshness (docs/operations.md): the 95th percentile of lag_ms over the window, compared with the
# threshold parameter in milliseconds, under the documented name.
freshness = resource_body(main_text, "alertFreshness")
rule("freshness-name", "the freshness alert must be named alert-<app>-freshness", "name: 'alert-${appName}-freshness'" in freshness)
rule("freshness-p95", "the freshness alert must take the 95th percentile of lag_ms and alert on its maximum", "percentile(lagMs, 95)" in freshness and "metricMeasureColumn: 'lagP95Ms'" in freshness and "timeAggregation: 'Maximum'" in freshness)
rule("freshness-threshold", "the freshness alert must compare with freshnessThresholdSeconds in milliseconds", "threshold: freshnessThresholdSeconds * 1000" in freshness and re.search(r"^param freshnessThresholdSeconds int = \d+$", main_text, re.M))
rule("freshness-window", "the freshness alert's window must be freshnessWindowMinutes", "windowSize: 'PT${freshnessWindowMinutes}M'" in freshness)
# Log alert windows: the service accepts only these aggregation granularities, in minutes
# ("Supported granularities are: 5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440, 2880",
# its answer to any other windowSize; Azure/azure-rest-api-specs#21258).
ALERT_WINDOWS = {5, 10, 15, 30, 45, 60, 120, 180, 240, 300, 360, 1440, 2880}


def duration_minutes(text):
    """Minutes of an ISO 8601 duration literal such as PT30M, PT1H or P1D, else None."""
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", text)
    if not match or not any(match.groups()):
        return None
    days, hours, mins = (int(g or 0) for g in match.groups())
    return days * 1440 + hours * 60 + mins


def window_values(symbol):
    """Every windowSize an alert can get, in minutes: a literal, or 'PT${param}M' with @allowed."""
    found = re.search(r"^    windowSize: '([^']*)'$", resource_body(main_text, symbol), re.M)
    if not found:
        return None
    value = found.group(1)
    param = re.fullmatch(r"PT\$\{(\w+)\}M", value)
    if param:
        allowed = re.search(r"@allowed\(\[(.*?)\]\)", param_block(main_text, param.group(1)) or "", re.S)
        return [int(v) for v in allowed.group(1).split()] if allowed else None
    minutes = duration_minutes(value)
    return None if minutes is None else [minutes]


for symbol in alerts:
    values = window_values(symbol)
    seen("alert-window-form")
    seen("alert-window-sizes")
    if values is None:
        fail("alert-window-form", f"{main}: alert {symbol}: windowSize must be a literal duration or 'PT${{param}}M' with a param limited by @allowed to the supported window sizes")
    elif not set(values) <= ALERT_WINDOWS:
        fail("alert-window-sizes", f"{main}: alert {symbol}: windowSize {sorted(set(values) - ALERT_WINDOWS)} minutes is not a window size log alerts accept {sorted(ALERT_WINDOWS)}")

# The delivery-stalled alert must keep firing while a partition stays stalled: a stalled
# partition fails once per delivery deadline and then waits up to the retry policy's
# maximumInterval (EventHubForwarder/function.json), so a window holds at least
# floor(window / (deadline + maximumInterval)) failures, which must reach the threshold.
function_json = REPO / "EventHubForwarder" / "function.json"
retry_policy = json.loads(function_json.read_text()).get("retry", {}) if function_json.exists() else {}
max_interval = re.fullmatch(r"(\d+):(\d+):(\d+)", str(retry_policy.get("maximumInterval", "")))
deadline_default = re.search(r"^param auditDeliveryDeadline string = '(\d+)(ms|s|m|h)'$", main_text, re.M)
threshold_default = re.search(r"^param failedInvocationsThreshold int = (\d+)$", main_text, re.M)
stalled_windows = window_values("alertDeliveryStalled")
seen("stalled-cadence-readable")
seen("stalled-cadence")
if not (max_interval and deadline_default and threshold_default and stalled_windows):
    fail("stalled-cadence-readable", f"{main}: cannot compare the delivery-stalled window with the retry cadence (function.json retry.maximumInterval, auditDeliveryDeadline and failedInvocationsThreshold defaults)")
else:
    hours, mins, secs = (int(g) for g in max_interval.groups())
    unit = {"ms": 1 / 60000, "s": 1 / 60, "m": 1, "h": 60}[deadline_default.group(2)]
    period = hours * 60 + mins + secs / 60 + int(deadline_default.group(1)) * unit
    threshold = int(threshold_default.group(1))
    window = min(stalled_windows)
    if int(window // period) < threshold:
        fail("stalled-cadence", f"{main}: the delivery-stalled alert's {window}-minute window holds only {int(window // period)} failures of a stalled partition (one every {period:g} minutes: deadline plus retry maximumInterval), below its threshold {threshold}; it would resolve while delivery is still stalled")
rule("action-group", "optional action group (email, webhook)", re.search(r"resource actionGroup 'Microsoft\.Insights/actionGroups@[^']+' = if \(createActionGroup\)", main_text))
body = resource_body(main_text, "eventHubDiagnostics")
rule("namespace-diagnostics", "diagnostic setting eventHubDiagnostics for eventHubNamespace to the workspace missing", "scope: eventHubNamespace" in body and "workspaceId: logAnalytics.id" in body)
# Microsoft's Flex Consumption page has listed diagnostic settings as not supported on the plan:
# the app's logs reach the workspace through Application Insights instead (docs/deployment.md).
rule("no-site-diagnostics", "no diagnostic setting on the function app (Flex Consumption: not supported; logs go through Application Insights)", not re.search(r"^  scope: site$", main_text, re.M))
lifecycle = resource_body(main_text, "storageLifecycle")
rule("deadletter-lifecycle", "lifecycle rule on the dead-letter container missing", "${deadLetterContainerName}/" in lifecycle and "daysAfterModificationGreaterThan: deadLetterRetentionDays" in lifecycle)
host_json = json.loads((REPO / "host.json").read_text())
sampling = host_json.get("logging", {}).get("applicationInsights", {}).get("samplingSettings", {})
excluded = {t.strip() for t in str(sampling.get("excludedTypes", "")).split(";")}
seen("sampling")
if sampling.get("isEnabled", True) and not {"Request", "Trace"} <= excluded:
    fail("sampling", "host.json: Application Insights sampling may drop the summary lines (Trace) or invocations (Request); exclude both")

# Network: optional private endpoints for storage and Event Hubs, firewalls follow them.
rule("private-endpoints-module", "optional private endpoints module", re.search(r"module privateEndpoints 'modules/private-endpoints\.bicep' = if \(usePrivateEndpoints\)", main_text))
pe = modules.get("private-endpoints.bicep", "")
for group in ("blob", "table", "namespace"):
    seen(f"private-endpoint:{group}")
    if f"group: '{group}'" not in pe:
        fail(f"private-endpoint:{group}", f"infra/modules/private-endpoints.bicep: no private endpoint for {group}")
rule("storage-firewall", "storage firewall denies by default with private endpoints", "defaultAction: usePrivateEndpoints ? 'Deny' : 'Allow'" in resource_body(main_text, "storage"))
rule("eventhubs-firewall", "Event Hubs firewall denies by default with private endpoints", re.search(r"networkRuleSets@[^']+' = if \(usePrivateEndpoints\)[^}]*defaultAction: 'Deny'", main_text, re.S))

# Throughput and outputs.
for name in ("eventHubThroughputUnits", "eventHubAutoInflate", "eventHubMaximumThroughputUnits"):
    rule(f"throughput-param:{name}", f"param {name} missing", re.search(rf"^param {name} ", main_text, re.M))
outputs = set(re.findall(r"^output (\w+) ", main_text, re.M))
for name in ("functionAppName", "eventHubNamespace", "eventHubName", "consumerGroup", "storageAccountName", "appInsightsName", "identityClientId", "identityPrincipalId", "aksDiagnosticSettingName", "aksClusterId"):
    rule(f"output:{name}", f"output {name} missing", name in outputs)

# Packaging: what a publish run must leave out.
funcignore = (REPO / ".funcignore").read_text().split()
for entry in ("dist/", ".azurite/", "local.settings.json"):
    seen(f"funcignore:{entry}")
    if entry not in funcignore:
        fail(f"funcignore:{entry}", f".funcignore: {entry} missing")
uninstall = REPO / "scripts" / "uninstall.sh"
seen("uninstall-diagnostic-setting")
if not uninstall.exists() or "az monitor diagnostic-settings delete" not in uninstall.read_text():
    fail("uninstall-diagnostic-setting", "scripts/uninstall.sh: missing, or the cluster's diagnostic setting is not removed")


# .bicepparam: no parser reads it offline; check its names against main.bicep.
params_in_main = dict(re.findall(r"^param (\w+) \w+( =)?", main_text, re.M))
for rule_id in ("bicepparam-using", "bicepparam-known", "bicepparam-required"):
    seen(rule_id)
for path in sorted(INFRA.rglob("*.bicepparam")):
    text = path.read_text()
    if not re.search(r"^using '\./main\.bicep'", text, re.M):
        fail("bicepparam-using", f"{path}: expected using './main.bicep'")
    given = re.findall(r"^param (\w+) = ", text, re.M)
    for name in given:
        if name not in params_in_main:
            fail("bicepparam-known", f"{path}: param {name} is not a parameter of main.bicep")
    for name, has_default in params_in_main.items():
        if not has_default and name not in given:
            fail("bicepparam-required", f"{path}: required param {name} is not set")
    print(f"ok   {path}: {len(given)} parameters, all known")

# Security scan.
scan = None if not SCAN else subprocess.run(
    [str(pathlib.Path(sys.executable).with_name("checkov")), "-d", str(INFRA), "--framework", "bicep", "-o", "json", "--skip-download", "--quiet", "--compact"],
    capture_output=True,
    text=True,
)
try:
    report = json.loads(scan.stdout) if scan else None
except json.JSONDecodeError:
    fail("scan", f"checkov printed no JSON report: {scan.stderr[-2000:]}")
    report = None
if report is not None:
    reports = report if isinstance(report, list) else [report]
    for r in reports:
        summary = r.get("summary", {})
        print(f"checkov: {summary}")
        if summary.get("parsing_errors"):
            fail("scan", f"checkov could not parse: {r['results'].get('parsing_errors')}")
        if summary.get("resource_count", 0) == 0:
            fail("scan", "checkov scanned no resources")
        for check in r.get("results", {}).get("failed_checks", []):
            fail("scan", f"checkov {check['check_id']} {check['resource']}: {check['check_name']}")
        for check in r.get("results", {}).get("skipped_checks", []):
            reason = (check.get("check_result") or {}).get("suppress_comment") or ""
            if len(reason.strip()) < 20:
                fail("scan", f"checkov skip of {check['check_id']} on {check['resource']} has no real justification")

if "--list-rules" in sys.argv[1:]:
    for rule_id in sorted(RULES):
        print(f"RULE {rule_id}")
if failures:
    print(f"{len(failures)} infra check(s) failed")
    sys.exit(1)
print("infra checks passed")

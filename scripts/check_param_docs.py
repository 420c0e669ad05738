#!/usr/bin/env python3
"""Keeps the parameter reference of docs/deployment.md true to infra/main.bicep.

Two tables are generated from the template: the setting-to-parameter table (from the
`auditSettings` object: each app setting the forwarder reads and the parameter that sets it) and
the parameter table (every `param`: type, default, secure, @description and its bounds). Each
lives in docs/deployment.md between `<!-- generated: NAME -->` and `<!-- end: NAME -->`.

Usage: check_param_docs.py           fail, showing the difference, when a table is out of date
       check_param_docs.py --write   rewrite both tables from the template

Needs: Python 3 only (CI runs it; a changed parameter fails CI until the tables are rewritten).
"""

import difflib
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
TEMPLATE = REPO / "infra" / "main.bicep"
DOC = REPO / "docs" / "deployment.md"


def cell(text):
    """Markdown table cell text: pipes escaped, no line breaks."""
    return " ".join(text.replace("|", "\\|").split())


def parameters(template):
    """(name, type, default or None, decorators text) of every parameter, in template order."""
    found = []
    lines = template.splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"param (\w+) (\w+)(?: = (.*))?$", line)
        if not match:
            continue
        start = number
        while start > 0 and lines[start - 1].strip() and not lines[start - 1].startswith(("param ", "var ", "resource ", "//")):
            start -= 1
        decorators = "\n".join(lines[start:number])
        default = match.group(3)
        if default is not None and default.rstrip().endswith(("{", "[")):
            default = default.rstrip()[-1] + "…" + {"{": "}", "[": "]"}[default.rstrip()[-1]]
        found.append((match.group(1), match.group(2), default, decorators))
    return found


def description(decorators):
    match = re.search(r"@description\('((?:[^'\\]|\\.)*)'\)", decorators)
    return match.group(1).replace("\\'", "'") if match else ""


def bounds(decorators):
    """The limits the decorators put on a value, as the table shows them."""
    low = re.search(r"@min(?:Value|Length)\((\d+)\)", decorators)
    high = re.search(r"@max(?:Value|Length)\((\d+)\)", decorators)
    unit = " characters" if "Length(" in decorators else ""
    allowed = re.search(r"@allowed\(\[(.*?)\]\)", decorators, re.S)
    if allowed:
        return "one of " + ", ".join(f"`{v}`" for v in allowed.group(1).split())
    if low or high:
        return f"{low.group(1) if low else ''}–{high.group(1) if high else ''}{unit}"
    return ""


def parameter_table(template):
    rows = ["| Parameter | Type | Default | Secure | Meaning |", "|---|---|---|---|---|"]
    for name, kind, default, decorators in parameters(template):
        meaning = description(decorators)
        limit = bounds(decorators)
        if limit:
            meaning += f" ({limit})"
        shown_default = "*(required)*" if default is None else f"`{default}`"
        secure = "yes" if "@secure()" in decorators else ""
        rows.append(f"| `{name}` | {kind} | {cell(shown_default)} | {secure} | {cell(meaning)} |")
    return "\n".join(rows)


def settings_table(template):
    block = re.search(r"^var auditSettings = \{(.*?)^\}", template, re.M | re.S)
    if not block:
        sys.exit(f"FAIL {TEMPLATE}: no `var auditSettings = {{ ... }}` object")
    secure = {name for name, _, _, decorators in parameters(template) if "@secure()" in decorators}
    rows = ["| Forwarder setting | Template parameter |", "|---|---|"]
    for setting, expression in re.findall(r"^  (\w+): (.+)$", block.group(1), re.M):
        names = [n for n in re.findall(r"\b([a-z]\w*)\b", expression) if n not in ("string", "true", "false")]
        shown = ", ".join(f"`{n}`" for n in names) + (" (secure)" if any(n in secure for n in names) else "")
        rows.append(f"| `{setting}` | {shown} |")
    rows.append("| anything else (route secrets, …) | `extraAppSettings` (secure) |")
    return "\n".join(rows)


def replace_section(doc, name, body):
    pattern = re.compile(rf"(<!-- generated: {name} [^\n]*-->\n)(.*?)(<!-- end: {name} -->)", re.S)
    if not pattern.search(doc):
        sys.exit(f"FAIL {DOC}: markers <!-- generated: {name} ... --> and <!-- end: {name} --> are missing")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(3), doc, count=1)


def main():
    template = TEMPLATE.read_text()
    doc = DOC.read_text()
    wanted = replace_section(doc, "settings", settings_table(template))
    wanted = replace_section(wanted, "parameters", parameter_table(template))
    if "--write" in sys.argv[1:]:
        DOC.write_text(wanted)
        print(f"wrote the parameter tables of {DOC.relative_to(REPO)} from {TEMPLATE.relative_to(REPO)}")
        return 0
    if wanted != doc:
        diff = difflib.unified_diff(doc.splitlines(), wanted.splitlines(), "docs/deployment.md", "from infra/main.bicep", lineterm="", n=0)
        print("\n".join(diff))
        print("FAIL docs/deployment.md's parameter reference differs from infra/main.bicep: run python3 scripts/check_param_docs.py --write")
        return 1
    count = len(parameters(template))
    print(f"ok   docs/deployment.md lists the {count} parameters of infra/main.bicep and the settings they set")
    return 0


if __name__ == "__main__":
    sys.exit(main())

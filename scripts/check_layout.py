#!/usr/bin/env python3
"""Checks the crate's layout rules: the import graph between top-level modules of src/ has no
cycle and follows the documented direction, only the binary and its tools read `config`, production code
never imports `tools`, every file opens with a `//!` line and stays under 500 lines, no
function outside test code runs over 100 lines (from `fn` to its closing brace), and the
Layout section of docs/development.md names every source file.

Imports are read from `use crate::…`, `crate::…` paths and `super::…` paths that leave a
top-level module. Test code (`#[cfg(test)]` modules and `tests.rs` files) is left out.

Usage: check_layout.py [src-dir]
"""

import pathlib
import re
import sys

SRC = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
MAX_LINES = 500
MAX_FUNCTION_LINES = 100
# Which top-level modules each may import (the edge first, the domain last).
ALLOWED = {
    "main": {"config", "host", "pipeline", "tools", "telemetry"},
    "tools": {"config", "host", "pipeline", "alerts", "delivery", "azure", "deadletter", "audit", "redact"},
    "config": {"host", "pipeline", "alerts", "delivery", "azure", "audit", "redact"},
    "host": {"pipeline", "deadletter", "redact"},
    "pipeline": {"alerts", "delivery", "azure", "deadletter", "audit", "redact"},
    "alerts": {"delivery", "azure", "deadletter", "audit", "redact"},
    "delivery": {"azure", "audit", "redact"},
    "azure": {"deadletter", "audit", "redact"},
    "deadletter": {"audit", "redact"},
    "audit": {"redact"},
    "redact": set(),
    "telemetry": set(),
    "lib": None,  # the crate root declares every module
}

failures = []


def top_module(path):
    rel = path.relative_to(SRC)
    if len(rel.parts) == 1:
        return rel.stem
    return rel.parts[0]


def strip_tests(text):
    """Drops `#[cfg(test)] mod tests { … }` blocks (brace-matched) and `mod tests;` lines."""
    out = []
    i = 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*(\{|;)")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        if m.group(3) == ";":
            i = m.end()
            continue
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    return "".join(out)


def blank_literals(text):
    """Comments, strings and char literals replaced by spaces (newlines kept), so that braces
    inside them are not counted."""
    out = []
    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif re.match(r'r#*"', text[i : i + 8]) and (i == 0 or not text[i - 1].isalnum()):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            j = text.find('"' + hashes, i + 2 + len(hashes))
            j = n if j < 0 else j + 1 + len(hashes)
        elif text[i] == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
        else:
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", text[i : i + 12])
            if not m:
                out.append(text[i])
                i += 1
                continue
            j = i + len(m.group(0))
        out.append(re.sub(r"[^\n]", " ", text[i:j]))
        i = j
    return "".join(out)


def long_functions(text):
    """(name, first line, lines) of each function longer than MAX_FUNCTION_LINES, from `fn`
    to its closing brace; declarations without a body are skipped."""
    s = blank_literals(text)
    for m in re.finditer(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)", s):
        j, nesting = m.end(), 0
        while j < len(s):
            c = s[j]
            if c in "(<[":
                nesting += 1
            elif c in ")>]" and not (c == ">" and s[j - 1] == "-"):
                nesting -= 1
            elif c == ";" and nesting <= 0:
                j = -1
                break
            elif c == "{" and nesting <= 0:
                break
            j += 1
        if j < 0 or j >= len(s):
            continue
        depth, k = 0, j
        while k < len(s):
            depth += {"{": 1, "}": -1}.get(s[k], 0)
            if depth == 0:
                break
            k += 1
        first = s.count("\n", 0, m.start()) + 1
        lines = s.count("\n", 0, k) + 2 - first
        if lines > MAX_FUNCTION_LINES:
            yield m.group(1), first, lines


edges = {}
for path in sorted(SRC.rglob("*.rs")):
    text = path.read_text()
    lines = text.count("\n")
    if not text.startswith("//!"):
        failures.append(f"{path}: does not open with a //! line")
    if lines > MAX_LINES:
        failures.append(f"{path}: {lines} lines, over {MAX_LINES}")
    if path.name == "tests.rs" or path.name.endswith("_tests.rs"):
        continue
    me = top_module(path)
    body = strip_tests(text)
    for name, first, length in long_functions(body):
        failures.append(f"{path}:{first}: fn {name} is {length} lines, over {MAX_FUNCTION_LINES}")
    used = set(re.findall(r"\bcrate::([a-z_]+)", body))
    if me == "main":
        used |= set(re.findall(r"\baks_audit_forwarder::([a-z_]+)", body))
        used |= {
            name
            for group in re.findall(r"\baks_audit_forwarder::\{([^}]*)\}", body)
            for name in re.findall(r"\b([a-z_]+)\b", group)
        }
    for name in used:
        if name == me or name not in ALLOWED:
            continue
        edges.setdefault(me, set()).add(name)

for module, targets in sorted(edges.items()):
    allowed = ALLOWED.get(module)
    if allowed is None:
        continue
    for target in sorted(targets - allowed):
        failures.append(f"{module} imports {target}: not allowed by the layout")

# Cycle check over the measured edges.
state = {}


def visit(node, stack):
    state[node] = "open"
    for nxt in sorted(edges.get(node, ())):
        if state.get(nxt) == "open":
            failures.append("import cycle: " + " -> ".join(stack + [node, nxt]))
        elif nxt not in state:
            visit(nxt, stack + [node])
    state[node] = "done"


for node in sorted(edges):
    if node not in state:
        visit(node, [])

# The documented layout names every file (tests and mod.rs files aside).
LAYOUT_DOC = SRC.parent / "docs" / "development.md"
if LAYOUT_DOC.exists():
    doc = LAYOUT_DOC.read_text()
    layout = doc[doc.find("# Layout") :]
    for path in sorted(SRC.rglob("*.rs")):
        name = path.name
        if name == "mod.rs" or name == "tests.rs" or name.endswith("_tests.rs"):
            continue
        if not re.search(r"(^|\s)" + re.escape(name) + r"\s", layout):
            failures.append(f"{path}: not named in the Layout section of {LAYOUT_DOC}")

for module, targets in sorted(edges.items()):
    print(f"{module} -> {', '.join(sorted(targets))}")
if failures:
    for f in failures:
        print("FAIL", f)
    sys.exit(1)
print(
    "layout: ok (no import cycle between top-level modules; every file under",
    MAX_LINES,
    "lines; every function at most",
    MAX_FUNCTION_LINES,
    "lines)",
)

#!/usr/bin/env python3
"""Checks the crate's layout rules: the import graph between top-level modules of src/ has no
cycle and follows the documented direction, only the binary and its tools read `config`, production code
never imports `tools`, every file opens with a `//!` line and stays under 500 lines, and the
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
# Which top-level modules each may import (the edge first, the domain last).
ALLOWED = {
    "main": {"config", "host", "pipeline", "tools", "telemetry"},
    "tools": {"config", "host", "pipeline", "delivery", "azure", "deadletter", "audit", "redact"},
    "config": {"host", "pipeline", "delivery", "azure", "audit", "redact"},
    "host": {"pipeline", "deadletter", "redact"},
    "pipeline": {"delivery", "azure", "deadletter", "audit", "redact"},
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


edges = {}
for path in sorted(SRC.rglob("*.rs")):
    text = path.read_text()
    lines = text.count("\n")
    if not text.startswith("//!"):
        failures.append(f"{path}: does not open with a //! line")
    if lines > MAX_LINES:
        failures.append(f"{path}: {lines} lines, over {MAX_LINES}")
    if path.name == "tests.rs":
        continue
    me = top_module(path)
    body = strip_tests(text)
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
print("layout: ok (no import cycle between top-level modules; every file under", MAX_LINES, "lines)")

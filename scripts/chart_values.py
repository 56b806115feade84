#!/usr/bin/env python3
"""Generates the chart's values table (charts/switchyard/README.md) and values.schema.json from
the "# --" comments in charts/switchyard/values.yaml, or checks that they are up to date.

    python3 scripts/chart_values.py --write    # rewrite README table and schema
    python3 scripts/chart_values.py --check    # exit 1 when either is stale or a value is undocumented

Convention (as helm-docs): a comment block starting with "# --" documents the key right below
it; further "#" lines continue the description. An optional "(type)" right after "# --" gives
the type when the default does not tell it: "(int)", "(int|string)", or
"(enum A|B|C)" for a string limited to those values. A documented key is one row of the table,
whatever its default (a map such as `resources` is one row). Every other key is a section whose
keys must all be documented: an undocumented value is an error, so the table covers every value.

The schema makes helm reject unknown keys (a typo such as `proxy.replicas` would otherwise be
ignored silently) and values of the wrong type.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "switchyard"
VALUES = CHART / "values.yaml"
README = CHART / "README.md"
SCHEMA = CHART / "values.schema.json"
START, END = "<!-- values-table:start -->", "<!-- values-table:end -->"

DOC_START = re.compile(r"^(\s*)# --\s*(?:\((?P<type>[^)]*)\)\s*)?(?P<text>.*)$")
DOC_MORE = re.compile(r"^\s*#\s?(?P<text>.*)$")
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(\s|$)")
SCALAR_TYPES = {"int": "integer", "string": "string", "bool": "boolean", "number": "number",
                "object": "object", "array": "array"}


class Doc:
    def __init__(self, type_hint, text):
        self.type_hint = type_hint
        self.lines = [text] if text else []

    @property
    def text(self):
        return " ".join(line.strip() for line in self.lines).strip()


def parse_docs(text):
    """Maps each documented key path (a tuple) to its Doc, in file order."""
    docs, stack, pending = {}, [], None
    for line in text.splitlines():
        if m := DOC_START.match(line):
            pending = Doc(m.group("type"), m.group("text"))
            continue
        if pending is not None and (m := DOC_MORE.match(line)):
            pending.lines.append(m.group("text"))
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if (m := KEY.match(line)) is None:
            pending = None  # a list item or a continuation: never documents anything
            continue
        indent = len(m.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group("key")))
        if pending is not None:
            docs[tuple(k for _, k in stack)] = pending
            pending = None
    return docs


def type_of(value, doc):
    """(table type, JSON schema) of a documented value."""
    hint = (doc.type_hint or "").strip()
    if hint.startswith("enum "):
        choices = [c.strip() for c in hint[len("enum "):].split("|")]
        return " \\| ".join(choices), {"type": "string", "enum": choices}
    if hint:
        names = [n.strip() for n in hint.split("|")]
        unknown = [n for n in names if n not in SCALAR_TYPES]
        if unknown:
            raise SystemExit(f"values.yaml: unknown type {unknown} in ({hint})")
        types = [SCALAR_TYPES[n] for n in names]
    elif isinstance(value, bool):
        names, types = ["bool"], ["boolean"]
    elif isinstance(value, int):
        names, types = ["int"], ["integer"]
    elif isinstance(value, float):
        names, types = ["number"], ["number"]
    elif isinstance(value, str):
        names, types = ["string"], ["string"]
    elif isinstance(value, list):
        names, types = ["list"], ["array"]
    elif isinstance(value, dict):
        names, types = ["object"], ["object"]
    else:
        raise SystemExit("values.yaml: a null default needs a type, e.g. '# -- (int) ...'")
    if value is None:
        types.append("null")
    schema = {"type": types[0] if len(types) == 1 else types}
    return "\\|".join(names), schema


def walk(values, docs, path=()):
    """Yields (path, value, doc) rows in file order; raises on undocumented values."""
    rows, errors = [], []
    for key, value in values.items():
        here = path + (key,)
        if here in docs:
            rows.append((here, value, docs[here]))
        elif isinstance(value, dict) and value:
            sub_rows, sub_errors = walk(value, docs, here)
            rows += sub_rows
            errors += sub_errors
        else:
            errors.append(".".join(here))
    return rows, errors


def schema_for(values, docs, path=()):
    properties = {}
    for key, value in values.items():
        here = path + (key,)
        if here in docs:
            properties[key] = type_of(value, docs[here])[1]
            properties[key]["description"] = docs[here].text
        else:
            properties[key] = schema_for(value, docs, here)
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if not path:
        # Helm gives every chart a `global` map when it is used as a dependency.
        # No "$schema": the keywords used mean the same in every draft helm 3 and 4 accept.
        properties["global"] = {"type": "object"}
    return schema


def cell(text):
    return text.replace("|", "\\|")


def table(rows):
    out = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    for path, value, doc in rows:
        default = json.dumps(value, separators=(", ", ": "))
        type_name = type_of(value, doc)[0]
        out.append(f"| `{'.'.join(path)}` | {type_name} | `{cell(default)}` | {cell(doc.text)} |")
    return "\n".join(out)


def render(readme_text, rows):
    if START not in readme_text or END not in readme_text:
        raise SystemExit(f"{README}: missing the {START} / {END} markers")
    head, rest = readme_text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(rows)}\n{END}{tail}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true")
    mode.add_argument("--check", action="store_true")
    args = parser.parse_args()

    text = VALUES.read_text()
    docs = parse_docs(text)
    values = yaml.safe_load(text)
    rows, undocumented = walk(values, docs)
    row_paths = {r[0] for r in rows}
    stray = [".".join(p) for p in docs if p not in row_paths]
    problems = [f"undocumented value: {p} (add a '# --' comment above it)" for p in undocumented]
    problems += [f"documented key not in the values: {p}" for p in stray]

    readme = render(README.read_text(), rows)
    schema = json.dumps(schema_for(values, docs), indent=2) + "\n"
    if args.write and not problems:
        README.write_text(readme)
        SCHEMA.write_text(schema)
        print(f"chart_values: wrote the values table ({len(rows)} values) and {SCHEMA.name}")
    if args.check:
        if README.read_text() != readme:
            problems.append(f"{README.relative_to(ROOT)}: values table is stale")
        if not SCHEMA.exists() or SCHEMA.read_text() != schema:
            problems.append(f"{SCHEMA.relative_to(ROOT)}: stale")
        if problems:
            problems.append("fix values.yaml comments, then run: python3 scripts/chart_values.py --write")
        else:
            print(f"chart_values: README table and values.schema.json up to date ({len(rows)} values)")
    for p in problems:
        print(f"chart_values: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

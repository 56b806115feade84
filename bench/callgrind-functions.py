#!/usr/bin/env python3
"""Self cost per function of callgrind dumps, per request, and the difference between two.

    callgrind-functions.py REQUESTS BASE_DUMP [OTHER_DUMP] [--top N]
    callgrind-functions.py REQUESTS DUMP --lines NAME_PART   (self cost per source line)

callgrind_annotate 3.19 attributes everything to `clone` on the proxy's dumps (see
docs/benchmarks.md), so this reads the dump format directly: a cost line counts as self
cost of the current `fn=`, except the one after a `calls=` line, which is the inclusive
cost of that call (added to the callee's inclusive figure; recursion is not corrected).
With two dumps it prints OTHER - BASE per function, largest first: where the extra
instructions of one route over the other go.
"""
import re
import sys
from collections import defaultdict


def parse(path):
    names = {}  # compressed fn ids
    self_cost = defaultdict(int)
    called = defaultdict(int)  # inclusive cost of calls to a function
    fn = None
    after_calls = False
    cfn = None
    with open(path, errors="replace") as f:
        for line in f:
            if not line or line[0] == "#":
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if after_calls:
                    called[cfn] += cost
                    after_calls = False
                else:
                    self_cost[fn] += cost
                continue
            if line.startswith("fn="):
                fn = resolve(names, line[3:].strip())
            elif line.startswith("cfn="):
                cfn = resolve(names, line[4:].strip())
            elif line.startswith("calls="):
                after_calls = True
    return self_cost, called


def lines(path, part):
    """Self cost per (file, line) of the functions whose name contains `part`."""
    names, files = {}, {}
    cost_at = defaultdict(int)
    fn = fl = fi = None
    last = 0
    after_calls = False
    with open(path, errors="replace") as f:
        for line in f:
            c = line[0] if line else "#"
            if c.isdigit() or c in "+-*":
                pos, *rest = line.split()
                if pos == "*":
                    n = last
                elif pos[0] in "+-":
                    n = last + int(pos)
                else:
                    n = int(pos)
                last = n
                if after_calls:
                    after_calls = False
                elif fn and part in fn:
                    cost_at[(fi or fl, n)] += int(rest[0]) if rest else 0
                continue
            if line.startswith("fn="):
                fn = resolve(names, line[3:].strip())
                fi = None
            elif line.startswith("fl="):
                fl = resolve(files, line[3:].strip())
                fi = None
            elif line.startswith(("fi=", "fe=")):
                fi = resolve(files, line[3:].strip())
            elif line.startswith("cfn="):
                resolve(names, line[4:].strip())
            elif line.startswith(("cfi=", "cfl=")):
                resolve(files, line[4:].strip())
            elif line.startswith("calls="):
                after_calls = True
    return cost_at


def resolve(names, text):
    m = re.match(r"\((\d+)\)(?: (.*))?$", text)
    if not m:
        return text
    if m.group(2) is not None:
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), text)


def short(name, width=110):
    return name if len(name) <= width else name[: width - 3] + "..."


def main():
    args = sys.argv[1:]
    top = 40
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i : i + 2]
    n = int(args[0])
    if "--lines" in args:
        part = args[args.index("--lines") + 1]
        cost_at = lines(args[1], part)
        print(f"{sum(cost_at.values()) / n:,.1f} Ir/request in functions matching {part!r}")
        for (file, line), cost in sorted(cost_at.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{cost / n:10,.1f}  {file}:{line}")
        return
    base, base_called = parse(args[1])
    if len(args) < 3:
        total = sum(base.values())
        print(f"total {total / n:,.0f} Ir/request")
        for name, cost in sorted(base.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{cost / n:10,.1f}  {short(name)}")
        return
    other, other_called = parse(args[2])
    diff = {k: other.get(k, 0) - base.get(k, 0) for k in set(base) | set(other)}
    total = sum(other.values()) - sum(base.values())
    print(f"difference {total / n:,.0f} Ir/request (self cost; inclusive of calls where shown)")
    for name, cost in sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:top]:
        inc = (other_called.get(name, 0) - base_called.get(name, 0)) / n
        print(f"{cost / n:10,.1f}  incl {inc:10,.1f}  {short(name)}")


if __name__ == "__main__":
    main()

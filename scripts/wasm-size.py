#!/usr/bin/env python3
"""Per-crate size breakdown of a wasm file that still has its "name" section (build with
`wasm-pack build --profiling`, optimise with `wasm-opt --debuginfo`).

twiggy 0.8 cannot parse modules from rustc >= 1.87 (new import kinds), so this reads the code
section and the function names itself. Usage: wasm-size.py FILE [--top N] [--json]
"""
import collections
import json
import re
import sys


def leb(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def sections(buf):
    pos = 8
    while pos < len(buf):
        sid = buf[pos]
        size, pos = leb(buf, pos + 1)
        yield sid, pos, pos + size
        pos += size


def count_function_imports(buf, start, end):
    n, pos = leb(buf, start)
    funcs = 0
    for _ in range(n):
        for _ in range(2):  # module, field
            ln, pos = leb(buf, pos)
            pos += ln
        kind = buf[pos]
        pos += 1
        if kind == 0x00:
            _, pos = leb(buf, pos)
            funcs += 1
        elif kind == 0x01:  # table: reftype, limits
            pos += 1
            flags, pos = leb(buf, pos)
            _, pos = leb(buf, pos)
            if flags & 1:
                _, pos = leb(buf, pos)
        elif kind == 0x02:  # memory
            flags, pos = leb(buf, pos)
            _, pos = leb(buf, pos)
            if flags & 1:
                _, pos = leb(buf, pos)
        elif kind == 0x03:  # global
            pos += 2
        elif kind == 0x04:  # tag
            pos += 1
            _, pos = leb(buf, pos)
        else:
            raise SystemExit(f"unknown import kind {kind:#x}")
    return funcs


def main():
    path = sys.argv[1]
    top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 15
    buf = open(path, "rb").read()
    imported = 0
    bodies = []
    names = {}
    other = collections.Counter()
    for sid, start, end in sections(buf):
        if sid == 2:
            imported = count_function_imports(buf, start, end)
        elif sid == 10:
            n, pos = leb(buf, start)
            for _ in range(n):
                size, body = leb(buf, pos)
                bodies.append(body + size - pos)
                pos = body + size
        elif sid == 0:
            ln, pos = leb(buf, start)
            name = buf[pos:pos + ln].decode()
            pos += ln
            if name == "name":
                while pos < end:
                    sub = buf[pos]
                    size, pos = leb(buf, pos + 1)
                    if sub == 1:
                        n, p = leb(buf, pos)
                        for _ in range(n):
                            idx, p = leb(buf, p)
                            ln, p = leb(buf, p)
                            names[idx] = buf[p:p + ln].decode(errors="replace")
                            p += ln
                    pos += size
            else:
                other[f"custom:{name}"] += end - start
        else:
            other[{1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
                   7: "export", 8: "start", 9: "element", 11: "data", 12: "datacount"}.get(sid, str(sid))] += end - start
    by_crate = collections.Counter()
    funcs = []
    for i, size in enumerate(bodies):
        name = names.get(imported + i, f"func[{imported + i}]")
        m = re.search(r"([a-z_][a-z_0-9]*)(?:\[[0-9a-f]+\])?::", name)
        crate = m.group(1) if m else "(bindgen glue / unnamed)"
        by_crate[crate] += size
        funcs.append((size, name))
    code = sum(bodies)
    total = len(buf)
    if "--json" in sys.argv:
        print(json.dumps({"total": total, "code": code, "crates": dict(by_crate.most_common()),
                          "sections": dict(other)}))
        return
    print(f"{path}: {total} bytes, code {code}, data {other.get('data', 0)}")
    print("code by crate:")
    for crate, size in by_crate.most_common():
        print(f"  {size:8d}  {100 * size / total:5.1f}%  {crate}")
    print(f"largest functions:")
    for size, name in sorted(funcs, reverse=True)[:top]:
        print(f"  {size:8d}  {name[:110]}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Per-crate size breakdown of a wasm file that still has its "name" section (build with
`wasm-pack build --profiling`, optimise with `wasm-opt --debuginfo`).

twiggy 0.8 cannot parse modules from rustc >= 1.87 (new import kinds), so this reads the code
section and the function names itself. Usage: wasm-size.py FILE [--top N] [--json] [--full]
(--full: whole function names instead of their first 110 characters)

With LTO at opt-level "z" most of the module is inlined into a few large functions (the fetch's
async state machine, the constructor), so names alone cannot say which source the bytes come
from. `--by-source FILE` can: FILE is a build with line tables (CARGO_PROFILE_RELEASE_DEBUG=
line-tables-only, then `wasm-bindgen --keep-debug`, before wasm-opt), read with llvm-dwarfdump,
and every code byte is counted against the source file (and line) it was compiled from,
inlined code included. Usage: wasm-size.py --by-source FILE [--top N]
"""
import collections
import json
import os
import re
import shutil
import subprocess
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


def dwarfdump():
    """`llvm-dwarfdump`, any version the machine has."""
    for name in ["llvm-dwarfdump"] + [f"llvm-dwarfdump-{v}" for v in range(30, 13, -1)]:
        if shutil.which(name):
            return name
    raise SystemExit("wasm-size: --by-source needs llvm-dwarfdump (Debian: apt install llvm)")


def by_source(path, top):
    """Code bytes per source file and line, from the DWARF line tables (see the docstring)."""
    tool = dwarfdump()
    info = subprocess.run([tool, "--debug-info", path], capture_output=True, text=True).stdout
    # Each line table names files relative to its compilation unit's directory (index 0).
    comp_dirs = {}
    for unit in info.split("DW_TAG_compile_unit")[1:]:
        stmt = re.search(r"DW_AT_stmt_list\s+\((0x[0-9a-f]+)\)", unit)
        comp = re.search(r'DW_AT_comp_dir\s+\("([^"]*)"\)', unit)
        if stmt and comp:
            comp_dirs[int(stmt.group(1), 16)] = comp.group(1)
    lines = subprocess.run([tool, "--debug-line", path], capture_output=True, text=True).stdout
    per_line = collections.Counter()
    for program in lines.split("debug_line[")[1:]:
        comp_dir = comp_dirs.get(int(program[:program.index("]")], 16), "")
        dirs = {int(i): d for i, d in re.findall(r'include_directories\[\s*(\d+)\] = "([^"]*)"', program)}
        files = {}
        for i, name, d in re.findall(
                r'file_names\[\s*(\d+)\]:\s*\n\s*name: "([^"]*)"\s*\n\s*dir_index: (\d+)', program):
            folder = dirs.get(int(d), comp_dir) if int(d) else comp_dir
            if not folder.startswith("/"):
                folder = f"{comp_dir}/{folder}"
            files[int(i)] = name if name.startswith("/") else f"{folder}/{name}"
        previous = None
        for address, line, file, flags in re.findall(
                r"^0x([0-9a-f]+)\s+(\d+)\s+\d+\s+(\d+)\s+\d+\s+\d+\s*(.*)$", program, re.M):
            address = int(address, 16)
            if previous:
                per_line[previous[1]] += address - previous[0]
            where = (short_path(files.get(int(file), "?")), int(line))
            previous = None if "end_sequence" in flags else (address, where)
    if not per_line:
        raise SystemExit(f"wasm-size: {path} has no line tables (build with "
                         "CARGO_PROFILE_RELEASE_DEBUG=line-tables-only, wasm-bindgen --keep-debug)")
    per_file = collections.Counter()
    for (name, _), size in per_line.items():
        per_file[name] += size
    total = sum(per_line.values())
    print(f"{path}: {total} code bytes with line info (before wasm-opt)")
    print("by source file (inlined code counted where it was written):")
    for name, size in per_file.most_common(top):
        print(f"  {size:8d}  {100 * size / total:5.1f}%  {name}")
    print("largest source lines (line 0: compiler-generated code, e.g. drop glue and state machines):")
    for (name, line), size in per_line.most_common(top):
        print(f"  {size:8d}  {name}:{line}")


def short_path(path):
    """A crate-relative path: `serde_core-1.0.229/src/de/mod.rs`, `core/src/ptr/mod.rs`, `src/web/shell.rs`."""
    path = re.sub(r".*/registry/src/[^/]+/", "", path)
    path = re.sub(r".*/rustlib/src/rust/library/", "", path)
    path = re.sub(r"^/crates/[^/]+/", "", path)
    path = re.sub(r"^/rust/(library/)?", "", path)
    path = re.sub(r"^/speech-token-client/", "", path)
    return re.sub(r"^" + re.escape(os.getcwd()) + "/", "", path)


def main():
    if sys.argv[1] == "--by-source":
        top = int(sys.argv[sys.argv.index("--top") + 1]) if "--top" in sys.argv else 30
        return by_source(sys.argv[2], top)
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
        print(f"  {size:8d}  {name if '--full' in sys.argv else name[:110]}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Allocation calls in a callgrind dump: how many times malloc, calloc, realloc and the aligned
allocators were called, and free, counted from the dump's call records (`cfn=` + `calls=`).

Calls an allocator makes to another (glibc's realloc calling malloc) are not counted twice.
Usage: callgrind_allocs.py DUMP [PAGES]  — prints the totals, and per page when PAGES is given.
"""
import re
import sys

ALLOC = {"malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign"}
FREE = {"free"}
NAME = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")


def count(path):
    names = {}
    caller = callee = None
    allocs = {name: 0 for name in sorted(ALLOC)}
    frees = 0
    with open(path, encoding="utf-8", errors="replace") as dump:
        for line in dump:
            match = NAME.match(line)
            if match:
                kind, ident, name = match.groups()
                if name is not None:
                    # `'2` marks a recursion level when callgrind separates them.
                    names[ident] = name.split("'")[0]
                if kind == "fn":
                    caller = names.get(ident)
                else:
                    callee = names.get(ident)
                continue
            if line.startswith("calls=") and callee is not None:
                calls = int(line[6:].split()[0])
                if caller not in ALLOC and caller not in FREE:
                    if callee in ALLOC:
                        allocs[callee] += calls
                    elif callee in FREE:
                        frees += calls
                callee = None
    return allocs, frees


def main():
    allocs, frees = count(sys.argv[1])
    pages = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    total = sum(allocs.values())
    detail = ", ".join(f"{name} {n}" for name, n in allocs.items() if n)
    if pages:
        print(f"{total / pages:.1f} allocations per page ({detail}; free {frees / pages:.1f}"
              f" per page; {pages} pages)")
    else:
        print(f"{total} allocations ({detail}; free {frees})")


if __name__ == "__main__":
    main()

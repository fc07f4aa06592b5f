#!/usr/bin/env python3
"""CPU per page of two gateways, loaded in turn: a comparison that the machine's swings cancel.

On a shared machine the speed moves by up to 1.7x over minutes, so measuring one gateway for
10 s and then the other (as the peer harness does) can put one of them in a slow minute. Here
both stay up the whole time and take the same load in short turns (`oha -z SLICE -c 64`), the
order alternating every round; each side's CPU (user + kernel of the process, its threads and
its child processes, from /proc) and its 2xx pages are summed over its turns. Run the same
gateway on both sides first: what that reads (an A/A check) is the method's own noise.

    interleaved_ab.py ROUNDS SLICE SIDE SIDE
    SIDE = NAME=BINARY:CONFIG:PORT   a fanout binary this script starts (`serve --config`)
         | NAME=@PID:PORT            a gateway already running (e.g. ../shared/bench's nginx + Lua)

Each side's page is http://127.0.0.1:PORT/api/page/42 (the peer harness's page). Prints, per
side: pages, CPU per page and its ratio to the first side's, pages over the first side's.
Needs oha (scripts/tools.sh installs it).
"""
import json
import os
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + kernel time of `pid` (all its threads) and of its child processes."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICKS


def load(port, duration):
    """Runs oha against the side's page; returns its 2xx count."""
    out = subprocess.run(
        ["oha", "--no-tui", "-z", duration, "-c", "64", "--output-format", "json",
         f"http://127.0.0.1:{port}/api/page/42"],
        capture_output=True, text=True, check=True,
    ).stdout
    codes = json.loads(out)["statusCodeDistribution"]
    return sum(count for code, count in codes.items() if code.startswith("2"))


def side(spec):
    name, target = spec.split("=", 1)
    if target.startswith("@"):
        pid, port = target[1:].split(":")
        return {"name": name, "pid": int(pid), "port": port, "process": None, "cpu": 0.0, "pages": 0}
    binary, config, port = target.split(":")
    with open(f"/tmp/interleaved-ab-{name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen([binary, "serve", "--config", config], stdout=log, stderr=log)
    return {"name": name, "pid": process.pid, "port": port, "process": process, "cpu": 0.0, "pages": 0}


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    rounds, slice_duration = int(sys.argv[1]), sys.argv[2]
    sides = [side(spec) for spec in sys.argv[3:]]
    try:
        time.sleep(2)
        for each in sides:
            load(each["port"], "3s")
        for round_ in range(rounds):
            for each in sides if round_ % 2 == 0 else sides[::-1]:
                before = cpu_seconds(each["pid"])
                each["pages"] += load(each["port"], slice_duration)
                each["cpu"] += cpu_seconds(each["pid"]) - before
    finally:
        started = [each["process"] for each in sides if each["process"]]
        for process in started:
            process.terminate()
        for process in started:
            process.wait()
    first = sides[0]
    first_us = first["cpu"] / first["pages"] * 1e6
    for each in sides:
        us = each["cpu"] / each["pages"] * 1e6
        print(f'{each["name"]}: {each["pages"]} pages ({each["pages"] / first["pages"]:.3f}x), '
              f'{us:.1f} us CPU per page ({us / first_us:.3f}x)')


if __name__ == "__main__":
    main()

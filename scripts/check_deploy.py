"""Checks deploy/: the Dockerfile, the kustomize base, overlay and load-test Job, and that the
rendered manifests agree with the config they ship and with the binary the image builds.

Run through scripts/check_deploy.sh (which installs the tools first), from the repository root:
    .tools/venv/bin/python scripts/check_deploy.py [--skip-build]

Steps (each failure names the file or object and what to fix, then exits 1):
  1. hadolint on deploy/Dockerfile; any finding fails.
  2. The build: the Dockerfile stage the runtime image copies `fanout` from, and every stage it
     derives from (the cached dependency layer), build with scripts/build_release.sh and with
     no other cargo command. The dependency stage's COPY and stub-making RUN lines are replayed
     in a temporary directory, where `cargo fetch --locked` must load the workspace. Then the
     script is run here, so CI compiles what the image ships (`--skip-build` reuses
     target/release/fanout).
  3. `kubectl kustomize` renders base, overlay and load test; `kubernetes-validate --strict`
     validates each for several Kubernetes versions (first proving, on a copy with a typo'd
     field, that the validator does reject unknown fields).
  4. The gateway config the Deployment actually reads (its --config path -> the volume mounted
     at that directory -> the ConfigMap key), with the container's FANOUT__* environment, passes
     `fanout check`, whose JSON output (`--format json`: defaults and overrides applied) is what
     the next steps read: this script knows no default and parses no duration.
  5. Static cross-checks: probe ports (named ports resolved) = server.admin_listen's port, the
     public container port = server.listen's port, the Service targets the public port and not
     the admin port (which must never be exposed), probe paths,
     terminationGracePeriodSeconds > preStop sleep + server.shutdown_grace, scrape annotations,
     hardening settings, HPA/PDB targets, the load-test URL.
  6. Dynamic: `fanout serve` on that config (listeners moved to 127.0.0.1:0) answers 200 on every
     probe path and the metrics path, then exits 0 on SIGTERM.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".tools" / "venv" / "bin"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
FANOUT = ROOT / "target" / "release" / "fanout"
# The release build, shared by the image and CI.
BUILD_SCRIPT = "scripts/build_release.sh"
# Gateway kustomizations (each renders a fanout Deployment + Service + ConfigMap) and the load test.
GATEWAYS = {"base": ROOT / "deploy" / "base", "overlay": ROOT / "deploy" / "overlays" / "example"}
LOADTEST = ROOT / "deploy" / "loadtest"
# 1.30: the oldest version with lifecycle.preStop.sleep on by default; the newest bundled.
KUBE_VERSIONS = os.environ.get("KUBE_VERSIONS", "1.30.0 1.33.0 1.37.0").split()
PROBE_PATHS = {"readinessProbe": {"/readyz"}, "livenessProbe": {"/healthz"}, "startupProbe": {"/healthz", "/readyz"}}


class CheckFailed(Exception):
    """A check failed; the message says what and where."""


def fail(message: str) -> None:
    raise CheckFailed(message)


def step(title: str) -> None:
    print(f"==> {title}", flush=True)


def ok(message: str) -> None:
    print(f"    ok: {message}", flush=True)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, **kwargs)


# ---------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    if current.strip():
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerfile_stages(text: str) -> list[dict[str, Any]]:
    stages: list[dict[str, Any]] = []
    for word, args in dockerfile_instructions(text):
        if word == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].lower() == "as" else str(len(stages))
            stages.append({"base": parts[0], "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((word, args))
    return stages


def builds(stage: dict[str, Any]) -> list[str]:
    """The stage's RUN instructions that build: run the build script or call cargo."""
    return [args for word, args in stage["instructions"] if word == "RUN" and (BUILD_SCRIPT in args or re.search(r"\bcargo\b", args))]


def check_dockerfile_build() -> tuple[list[str], list[dict[str, Any]]]:
    """Returns the image's default CMD and the stages the build stage derives from (the
    dependency cache), once every one of them builds with the build script only."""
    text = DOCKERFILE.read_text()
    stages = dockerfile_stages(text)
    if not stages:
        fail(f"{DOCKERFILE}: no FROM")
    runtime = stages[-1]
    source = None
    for word, args in runtime["instructions"]:
        if word == "COPY":
            m = re.search(r"--from=(\S+)", args)
            paths = [a for a in args.split() if not a.startswith("--")]
            if m and paths and paths[0].endswith("/fanout"):
                source = (m.group(1), paths[0])
    if source is None:
        fail(f"{DOCKERFILE}: the final stage copies no `fanout` binary with COPY --from=STAGE")
    by_name = {s["name"]: s for s in stages}
    if source[0] not in by_name:
        fail(f"{DOCKERFILE}: COPY --from={source[0]}: no such stage")
    if not source[1].endswith("target/release/fanout"):
        fail(f"{DOCKERFILE}: the image copies {source[1]}, not the release build's target/release/fanout")
    build = by_name[source[0]]
    ancestors = []
    parent = by_name.get(build["base"])
    while parent is not None:
        ancestors.insert(0, parent)
        parent = by_name.get(parent["base"])
    for stage in [*ancestors, build]:
        found = builds(stage)
        if len(found) != 1 or not re.match(rf"^sh {re.escape(BUILD_SCRIPT)}(\s|$)", found[0]) or re.search(r"\bcargo\b", found[0]):
            fail(f"{DOCKERFILE}: stage `{stage['name']}` must build with one `RUN sh {BUILD_SCRIPT}` and no other cargo command "
                 f"(found {found}): the image and CI then build alike, and the dependency layer caches what the build stage needs")
    cmd_default: list[str] = []
    for word, args in runtime["instructions"]:
        if word == "CMD":
            try:
                cmd_default = json.loads(args)
            except json.JSONDecodeError:
                fail(f"{DOCKERFILE}: CMD must be in JSON (exec) form: {args}")
    return cmd_default, ancestors


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the repository root) out of the build
    context: the last pattern matching it or a directory above it decides, `!` re-includes."""
    ignore = ROOT / ".dockerignore"
    patterns = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")] if ignore.exists() else []
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, pattern.replace("**/", "")) for c in candidates):
            ignored = not negated
    return ignored


def check_copies_in_context(stages: list[dict[str, Any]]) -> None:
    """Every source a COPY takes from the build context is in it (not in .dockerignore)."""
    for stage in stages:
        for word, args in stage["instructions"]:
            if word != "COPY" or "--from" in args:
                continue
            for source in [a for a in args.split() if not a.startswith("--")][:-1]:
                if dockerignored(source):
                    fail(f"{DOCKERFILE}: stage `{stage['name']}` copies {source}, which .dockerignore keeps out of the build context")
    ok("every file the Dockerfile copies is in the build context (.dockerignore)")


def check_dependency_stage(stages: list[dict[str, Any]], tmp: Path) -> None:
    """Replays the dependency stage's COPY and RUN instructions (all but its `cargo` line) in a
    temporary directory and has cargo load the workspace there (`cargo fetch --locked`): every
    workspace member's manifest must be copied and every target it names stubbed, or
    `docker build` would fail at this stage, which nothing else here runs."""
    root = tmp / "deps-stage"
    workdir = root
    members = tomllib.loads((ROOT / "Cargo.toml").read_text()).get("workspace", {}).get("members", [])
    for stage in stages:
        for word, args in stage["instructions"]:
            if word == "WORKDIR":
                workdir = root / args.strip().lstrip("/") if args.startswith("/") else workdir / args.strip()
                workdir.mkdir(parents=True, exist_ok=True)
            elif word == "COPY":
                if "--from" in args:
                    fail(f"{DOCKERFILE}: stage `{stage['name']}`: COPY --from in the dependency stage is not supported by this check")
                parts = [a for a in args.split() if not a.startswith("--")]
                sources, dest = parts[:-1], parts[-1]
                target = root / dest.lstrip("/") if dest.startswith("/") else workdir / dest
                for source in sources:
                    origin = ROOT / source
                    if not origin.exists():
                        fail(f"{DOCKERFILE}: stage `{stage['name']}` copies {source}, which does not exist")
                    into = target / origin.name if dest.endswith("/") or len(sources) > 1 else target
                    into.parent.mkdir(parents=True, exist_ok=True)
                    if origin.is_dir():
                        shutil.copytree(origin, into, dirs_exist_ok=True)
                    else:
                        shutil.copy2(origin, into)
            elif word == "RUN" and BUILD_SCRIPT not in args:
                result = subprocess.run(["sh", "-c", re.sub(r"--mount=\S+\s*", "", args)], cwd=workdir,
                                        text=True, capture_output=True)
                if result.returncode != 0:
                    fail(f"{DOCKERFILE}: stage `{stage['name']}`: `RUN {args}` failed:\n{result.stderr}")
    missing = [m for m in members if not (workdir / m / "Cargo.toml").is_file()]
    if missing:
        fail(f"{DOCKERFILE}: the dependency stage does not copy the manifest of workspace member(s) {', '.join(missing)}")
    result = subprocess.run(["cargo", "fetch", "--locked"], cwd=workdir, text=True, capture_output=True)
    if result.returncode != 0:
        fail(f"{DOCKERFILE}: cargo cannot load the workspace as the dependency stage leaves it (manifests + stubs):\n{result.stderr}")
    ok(f"the dependency stage loads the workspace: {len(members)} member manifests + stubs, Cargo.lock unchanged (cargo fetch --locked)")


def step_hadolint() -> None:
    step("hadolint deploy/Dockerfile")
    result = run([str(VENV_BIN / "hadolint"), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    if result.returncode != 0:
        fail(f"hadolint reported:\n{result.stdout}{result.stderr}")
    ok("no findings")


def step_build(skip: bool) -> None:
    step(f"build what the image builds, here: sh {BUILD_SCRIPT}")
    if skip:
        print("    skipped (--skip-build): using the existing target/release/fanout", flush=True)
    else:
        started = time.monotonic()
        result = subprocess.run(["sh", BUILD_SCRIPT], cwd=ROOT)
        if result.returncode != 0:
            fail(f"`sh {BUILD_SCRIPT}` failed (exit {result.returncode})")
        ok(f"built in {time.monotonic() - started:.0f}s")
    if not FANOUT.is_file():
        fail(f"{FANOUT} does not exist after the build")


# ---------------------------------------------------------------------------------------------
# Rendering and schema validation


def render(directory: Path) -> list[dict[str, Any]]:
    result = run(["kubectl", "kustomize", str(directory)])
    if result.returncode != 0:
        fail(f"kubectl kustomize {directory.relative_to(ROOT)} failed:\n{result.stderr}")
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def validate(name: str, docs: list[dict[str, Any]], tmp: Path) -> None:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    for version in KUBE_VERSIONS:
        result = run([str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", version, str(path)])
        if result.returncode != 0:
            fail(f"{name}: kubernetes-validate --strict -k {version} rejected the rendered manifests:\n"
                 f"{result.stdout}{result.stderr}")
    kinds = ", ".join(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    ok(f"{name}: {kinds} valid for Kubernetes {', '.join(KUBE_VERSIONS)}")


def validator_rejects_typos(docs: list[dict[str, Any]], tmp: Path) -> None:
    """A negative control: a copy of the Deployment with a typo'd field must fail validation."""
    broken = json.loads(json.dumps(find(docs, "Deployment")))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe", {})
    path = tmp / "negative-control.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = run([str(VENV_BIN / "kubernetes-validate"), "--strict", "--quiet", "-k", KUBE_VERSIONS[-1], str(path)])
    if result.returncode == 0:
        fail("kubernetes-validate --strict accepted a Deployment with a typo'd field (readinesProbe): "
             "the validation step proves nothing")
    ok("negative control: a typo'd field (readinesProbe) is rejected")


# ---------------------------------------------------------------------------------------------
# Helpers over rendered objects


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    if len(matches) != 1:
        fail(f"expected exactly one {kind}{' ' + name if name else ''}, found {len(matches)}")
    return matches[0]


def port_of(address: str, where: str) -> int:
    m = re.fullmatch(r"(?:\[[^\]]+\]|[^:]+):(\d+)", str(address).strip())
    if not m:
        fail(f"{where}: {address!r} is not IP:PORT")
    return int(m.group(1))


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c["name"] == "fanout"]
    if len(named) != 1:
        fail(f"Deployment/{deployment['metadata']['name']}: expected one container named fanout")
    return named[0]


def config_path_of(container: dict[str, Any], cmd_default: list[str]) -> str:
    if "command" in container:
        fail("the fanout container must not override the image's ENTRYPOINT (`command`); use `args`")
    args = container.get("args", cmd_default)
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    fail(f"the fanout container's args {args} name no --config FILE")
    raise AssertionError


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as fanout would see it; values from Secrets etc. are
    placeholders (they exist, so ${VAR} resolves)."""
    env = {}
    for entry in container.get("env", []):
        env[entry["name"]] = str(entry["value"]) if "value" in entry else "placeholder-from-valueFrom"
    return env


def gateway_config(name: str, docs: list[dict[str, Any]], cmd_default: list[str]) -> tuple[str, str]:
    """(config path in the container, config text) as the Deployment mounts it."""
    deployment = find(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    path = config_path_of(container, cmd_default)
    directory, _, filename = path.rpartition("/")
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"].rstrip("/") in (directory, path)]
    if any("subPath" in m or "subPathExpr" in m for m in mounts):
        fail(f"{name}: the config is mounted with subPath: such mounts never see ConfigMap updates (no hot reload); "
             f"mount the ConfigMap as the directory {directory}")
    if len(mounts) != 1:
        fail(f"{name}: no volumeMount at {directory} (the directory of --config {path})")
    mount = mounts[0]
    volume = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), None)
    if volume is None or "configMap" not in volume:
        fail(f"{name}: volume {mount['name']} is not a ConfigMap volume")
    configmap = find(docs, "ConfigMap", volume["configMap"]["name"])
    text = (configmap.get("data") or {}).get(filename)
    if text is None:
        fail(f"{name}: ConfigMap {configmap['metadata']['name']} has no key {filename} (the file --config names)")
    return path, text


# ---------------------------------------------------------------------------------------------
# fanout check, static and dynamic checks


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FANOUT__") and k != "RUST_LOG"}
    env.update(extra)
    return env


def step_fanout_check(name: str, config_file: Path, env: dict[str, str]) -> dict[str, Any]:
    """The config's effective settings as the binary reads them (defaults and the container's
    FANOUT__* overrides applied: `fanout check --format json`), once it has accepted them."""
    result = run([str(FANOUT), "check", "--format", "json", "--config", str(config_file)], env=clean_env(env))
    if result.returncode != 0:
        fail(f"{name}: fanout check rejected the rendered config (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    ok(f"{name}: fanout check: config OK")
    return json.loads(result.stdout)


def resolve_port(port: Any, ports: dict[str, int], where: str) -> int:
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    if port not in ports:
        fail(f"{where}: named port {port!r} is not a container port (known: {', '.join(ports)})")
    return ports[port]


def static_checks(name: str, docs: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    deployment = find(docs, "Deployment")
    dname = f"{name}: Deployment/{deployment['metadata']['name']}"
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
    server = settings["server"]
    listen = port_of(server["listen"], f"{name}: server.listen")
    admin = port_of(server["admin_listen"], f"{name}: server.admin_listen")
    grace = server["shutdown_grace"] / 1000

    ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    numbers = sorted(p["containerPort"] for p in container.get("ports", []))
    if numbers != sorted({listen, admin}):
        fail(f"{dname}: container ports {numbers} must be the public port {listen} (server.listen) and the admin port {admin} (server.admin_listen)")
    if len(ports) != len(numbers):
        fail(f"{dname}: every container port needs a name")

    probe_paths = set()
    for probe, allowed in PROBE_PATHS.items():
        spec = container.get(probe)
        if not spec or "httpGet" not in spec:
            fail(f"{dname}: {probe} must be an httpGet probe")
        got = spec["httpGet"]
        port = resolve_port(got.get("port"), ports, f"{dname}: {probe}")
        if port != admin:
            fail(f"{dname}: {probe} probes port {got.get('port')} = {port}, but server.admin_listen's port is {admin}")
        if got.get("path") not in allowed:
            fail(f"{dname}: {probe} path {got.get('path')!r}, expected {' or '.join(sorted(allowed))}")
        probe_paths.add(got["path"])
    ok(f"{dname}: probes on the admin port {admin} (readiness /readyz, liveness /healthz, startup {container['startupProbe']['httpGet']['path']}); public port {listen}")

    services = [d for d in docs if d.get("kind") == "Service"]
    labels = deployment["spec"]["template"]["metadata"].get("labels", {})
    service_ports: dict[int, int] = {}
    for service in services:
        selector = service["spec"].get("selector") or {}
        if not selector or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for sp in service["spec"]["ports"]:
            where = f"{name}: Service/{service['metadata']['name']} port {sp.get('name', sp['port'])}"
            if "name" not in sp:
                fail(f"{where}: Service ports must be named")
            target = resolve_port(sp.get("targetPort", sp["port"]), ports, where)
            if target == admin:
                fail(f"{where}: publishes the admin port {admin}; remove it (probes and Prometheus reach "
                     "the pod directly; /openapi.json lists the backends and /metrics is internal)")
            if target != listen:
                fail(f"{where}: targets port {target}, which is not fanout's public port {listen}")
            service_ports[target] = sp["port"]
    if listen not in service_ports:
        fail(f"{name}: no Service selecting the fanout pods targets the public port {listen}")
    ok(f"{name}: the Service targets the public port ({listen}) and not the admin port ({admin})")

    tgps = pod.get("terminationGracePeriodSeconds", 30)
    pre_stop = (container.get("lifecycle") or {}).get("preStop")
    if not pre_stop or "sleep" not in pre_stop:
        fail(f"{dname}: lifecycle.preStop.sleep is required (the image has no shell for an exec sleep)")
    sleep = pre_stop["sleep"]["seconds"]
    if not tgps > sleep + grace:
        fail(f"{dname}: terminationGracePeriodSeconds {tgps} must exceed preStop sleep {sleep}s + server.shutdown_grace {grace:g}s = {sleep + grace:g}s, "
             "or the kubelet kills fanout before it has drained")
    ok(f"{dname}: terminationGracePeriodSeconds {tgps} > preStop sleep {sleep}s + shutdown_grace {grace:g}s")

    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    metrics = settings["telemetry"]["metrics"]
    metrics_path = annotations.get("prometheus.io/path", "/metrics")
    if metrics:
        if annotations.get("prometheus.io/scrape") != "true" or str(annotations.get("prometheus.io/port")) != str(admin) or metrics_path != "/metrics":
            fail(f"{dname}: pod annotations must be prometheus.io/scrape \"true\", prometheus.io/port \"{admin}\", prometheus.io/path /metrics; got {annotations}")
        ok(f"{dname}: Prometheus scrapes :{admin}/metrics")

    hardening(dname, pod, container)
    if (container.get("lifecycle") or {}).get("postStart"):
        fail(f"{dname}: no postStart hook expected")

    hpa = find(docs, "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref.get("kind"), ref.get("name")) != ("Deployment", deployment["metadata"]["name"]):
        fail(f"{name}: the HorizontalPodAutoscaler scales {ref}, not Deployment/{deployment['metadata']['name']}")
    if "replicas" in deployment["spec"]:
        fail(f"{dname}: spec.replicas is set, but the HorizontalPodAutoscaler owns the count (set minReplicas/maxReplicas)")
    pdb = find(docs, "PodDisruptionBudget")
    match = pdb["spec"]["selector"].get("matchLabels", {})
    if not match or any(labels.get(k) != v for k, v in match.items()):
        fail(f"{name}: the PodDisruptionBudget's selector {match} does not select the fanout pods")
    account = pod.get("serviceAccountName")
    if account:
        find(docs, "ServiceAccount", account)
    ok(f"{name}: HPA targets the Deployment ({hpa['spec'].get('minReplicas', 1)}–{hpa['spec']['maxReplicas']} replicas), PDB selects its pods, ServiceAccount {account} exists")
    return {"probe_paths": sorted(probe_paths), "metrics_path": metrics_path if metrics else None,
            "grace": grace, "service_ports": service_ports, "listen": listen}


def hardening(where: str, pod: dict[str, Any], container: dict[str, Any]) -> None:
    psc = pod.get("securityContext") or {}
    csc = container.get("securityContext") or {}
    problems = []
    if not (csc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        problems.append("runAsNonRoot: true")
    if csc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem: true")
    if csc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation: false")
    if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
        problems.append("capabilities.drop: [ALL]")
    if ((csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")) != "RuntimeDefault":
        problems.append("seccompProfile.type: RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken: false")
    if pod.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks: false")
    if "resources" not in container or not all(k in container["resources"] for k in ("requests", "limits")):
        problems.append("resources.requests and resources.limits")
    if problems:
        fail(f"{where}: missing hardening: {', '.join(problems)}")
    ok(f"{where}: non-root, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp, no token, no service links, requests+limits")


def http_get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def dynamic_check(name: str, config_file: Path, env: dict[str, str], paths: list[str], grace: float) -> None:
    overrides = {
        "FANOUT__SERVER__LISTEN": "127.0.0.1:0",
        "FANOUT__SERVER__ADMIN_LISTEN": "127.0.0.1:0",
        # The `listening` line is read as JSON at level info, whatever the file says.
        "FANOUT__TELEMETRY__LOG_FORMAT": "json",
        "RUST_LOG": "info",
    }
    cmd = [str(FANOUT), "serve", "--config", str(config_file)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env({**env, **overrides}), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: queue.Queue[str | None] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        admin = None
        deadline = time.monotonic() + 15
        while admin is None:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                fail(f"{name}: fanout serve logged no `listening` line within 15s:\n{''.join(log)}")
            if line is None:
                fail(f"{name}: fanout serve exited (code {proc.wait()}) before listening:\n{''.join(log)}")
            log.append(line)
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("message") == "listening":
                admin = record.get("admin") or (record.get("fields") or {}).get("admin")
                if not admin:
                    fail(f"{name}: the listening line has no admin address: {line}")
        for path in paths:
            status = http_get(f"http://{admin}{path}")
            if status != 200:
                fail(f"{name}: GET {path} on the admin port answered {status}, expected 200")
        ok(f"{name}: fanout serve answers 200 on {', '.join(paths)} (admin {admin})")
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=grace + 10)
        except subprocess.TimeoutExpired:
            fail(f"{name}: fanout did not exit within shutdown_grace + 10s after SIGTERM")
        if code != 0:
            while (line := lines.get(timeout=1)) is not None:
                log.append(line)
            fail(f"{name}: fanout exited {code} after SIGTERM, expected 0:\n{''.join(log)}")
        ok(f"{name}: SIGTERM -> exit 0")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def route_matches(route: str, path: str) -> bool:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(route))
    return re.fullmatch(pattern, path) is not None


def loadtest_checks(docs: list[dict[str, Any]], gateway_docs: list[dict[str, Any]], gateway_settings: dict[str, Any]) -> None:
    job = find(docs, "Job")
    where = f"loadtest: Job/{job['metadata']['name']}"
    pod = job["spec"]["template"]["spec"]
    containers = pod["containers"]
    if len(containers) != 1:
        fail(f"{where}: expected one container")
    container = containers[0]
    hardening(where, pod, container)
    urls = [a for a in container.get("args", []) if str(a).startswith("http")]
    if len(urls) != 1:
        fail(f"{where}: expected one target URL in args, found {urls}")
    m = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?:(\d+)(/[^?#]*)\S*", urls[0])
    if not m:
        fail(f"{where}: target {urls[0]!r} is not http://SERVICE.NAMESPACE.svc:PORT/PATH")
    service_name, namespace, port, path = m.group(1), m.group(2), int(m.group(3)), m.group(4)
    job_ns = job["metadata"].get("namespace", "default")
    if namespace != job_ns:
        fail(f"{where}: runs in namespace {job_ns} but targets {service_name}.{namespace}: keep the two equal")
    service = find(gateway_docs, "Service", service_name)
    gw_ns = service["metadata"].get("namespace", "default")
    if gw_ns != namespace:
        fail(f"{where}: targets namespace {namespace}, the example overlay deploys to {gw_ns}")
    if port not in [p["port"] for p in service["spec"]["ports"] if p.get("name") == "http"]:
        fail(f"{where}: port {port} is not the Service's http port")
    routes = [e["route"].split(" ", 1)[1] for e in gateway_settings["endpoints"]]
    if not any(route_matches(r, path) for r in routes):
        fail(f"{where}: {path} matches no endpoint of the overlay's config ({', '.join(routes)})")
    ok(f"{where}: targets Service {service_name}.{namespace}:{port}{path}, an endpoint of the overlay")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-build", action="store_true", help=f"reuse target/release/fanout instead of running {BUILD_SCRIPT}")
    options = parser.parse_args()
    started = time.monotonic()
    try:
        step_hadolint()
        with tempfile.TemporaryDirectory(prefix="check-deploy-") as tmpdir:
            tmp = Path(tmpdir)
            step("the Dockerfile's stages")
            cmd_default, deps_stages = check_dockerfile_build()
            ok(f"every build stage runs sh {BUILD_SCRIPT}, as CI does")
            check_copies_in_context(dockerfile_stages(DOCKERFILE.read_text()))
            check_dependency_stage(deps_stages, tmp)
            step_build(options.skip_build)
            step("render and validate (kubectl kustomize | kubernetes-validate --strict)")
            rendered = {name: render(path) for name, path in GATEWAYS.items()}
            rendered["loadtest"] = render(LOADTEST)
            validator_rejects_typos(rendered["base"], tmp)
            for name, docs in rendered.items():
                validate(name, docs, tmp)
            settings = {}
            for name in GATEWAYS:
                docs = rendered[name]
                step(f"{name}: the config the Deployment mounts, and the manifests around it")
                path, text = gateway_config(name, docs, cmd_default)
                config_file = tmp / name / Path(path).name
                config_file.parent.mkdir()
                config_file.write_text(text)
                env = container_env(container_of(find(docs, "Deployment")))
                settings[name] = step_fanout_check(name, config_file, env)
                facts = static_checks(name, docs, settings[name])
                paths = facts["probe_paths"] + ([facts["metrics_path"]] if facts["metrics_path"] else [])
                dynamic_check(name, config_file, env, paths, facts["grace"])
            step("loadtest: the Job")
            loadtest_checks(rendered["loadtest"], rendered["overlay"], settings["overlay"])
    except CheckFailed as err:
        print(f"\ncheck_deploy: FAILED: {err}", file=sys.stderr, flush=True)
        return 1
    print(f"\ndeploy checks passed ({time.monotonic() - started:.0f}s): Dockerfile lint + build, "
          f"{len(GATEWAYS) + 1} kustomizations rendered and validated for Kubernetes {', '.join(KUBE_VERSIONS)}, "
          "configs checked by fanout, probes/ports/grace consistent, probes answered by the binary")
    return 0


if __name__ == "__main__":
    sys.exit(main())

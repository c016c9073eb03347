"""deploy/ checked as far as this machine allows: no Docker engine and no helm here.

Every YAML file parses; the Helm chart's templates use only values that exist and render the
kinds they should; `kubectl kustomize deploy/kubernetes` builds (where kubectl is); every
environment variable a deploy file sets is one the bot reads and `.env.example` lists; the
Dockerfile runs the README's install commands as a non-root user with a HEALTHCHECK; the
systemd units verify and point at what the README's install steps create.
"""

from __future__ import annotations

import ast
import configparser
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab import REPO

DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "badgateway"
KUSTOMIZE = DEPLOY / "kubernetes"
UNITS = sorted(DEPLOY.glob("*.service"))

# Variables for the interpreter and the shell, not the bot's settings: the image may set them.
PROCESS_VARIABLES = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}

# kind -> apiVersion, for everything the chart and the manifests make.
API_VERSIONS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "Service": "v1",
    "Secret": "v1",
    "ConfigMap": "v1",
    "Ingress": "networking.k8s.io/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}


def _yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _yaml_mapping(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path}: not a mapping"
    return loaded


# --- what the bot reads ----------------------------------------------------------------------


def _settings_the_bot_reads() -> set[str]:
    """Environment variable names read by the code, found with ``ast`` in every module of bot/
    and checks/ that touches the environment (``os.environ``, ``getenv``, ``.env``).

    A name is an upper-case string constant of such a module, or one built by an f-string
    prefix (``f"BADGATEWAY_ALERT_{name}"``) and an upper-case constant of the same module.
    """
    names: set[str] = set()
    for path in sorted([*(REPO / "bot").rglob("*.py"), *(REPO / "checks").rglob("*.py")]):
        source = path.read_text(encoding="utf-8")
        if not re.search(r"environ|getenv|dotenv", source):
            continue
        constants: set[str] = set()
        prefixes: set[str] = set()
        for node in ast.walk(ast.parse(source, str(path))):
            if isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    if re.fullmatch(r"[A-Z][A-Z0-9_]*_", first.value):
                        prefixes.add(first.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"[A-Z][A-Z0-9_]*", node.value):
                    constants.add(node.value)
        names |= constants | {p + c for p in prefixes for c in constants}
    return names


def _settings_env_example_lists() -> set[str]:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


# --- what the deploy files set ----------------------------------------------------------------


def _env_lists(node: Any) -> Iterator[list[Any]]:
    """Every ``env:`` list of a Kubernetes object, wherever it is nested."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                yield value
            yield from _env_lists(value)
    elif isinstance(node, list):
        for item in node:
            yield from _env_lists(item)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    out = []
    for line in joined:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _settings_deploy_files_set() -> dict[str, set[str]]:
    """deploy file -> the environment variable names it sets."""
    found: dict[str, set[str]] = {}
    compose = _yaml_mapping(DEPLOY / "compose.yaml")
    for service_name, service in compose["services"].items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        found[f"compose.yaml {service_name}"] = set(environment)
    for path in sorted(KUSTOMIZE.glob("*.yaml")):
        names = {
            item["name"] for doc in _yaml_documents(path) for env in _env_lists(doc) for item in env
        }
        found[str(path.relative_to(REPO))] = names
    env_file = (KUSTOMIZE / "secret.env.example").read_text(encoding="utf-8")
    found["kubernetes/secret.env.example"] = set(
        re.findall(r"^([A-Z][A-Z0-9_]*)=", env_file, re.MULTILINE)
    )
    for path in sorted((CHART / "templates").iterdir()):
        text = path.read_text(encoding="utf-8")
        names = set(re.findall(r"- name: ([A-Z][A-Z0-9_]*)\s*$", text, re.MULTILINE))
        if path.name == "secret.yaml":
            names |= set(re.findall(r"^\s+([A-Z][A-Z0-9_]*):", text, re.MULTILINE))
        found[str(path.relative_to(REPO))] = names
    values = _yaml_mapping(CHART / "values.yaml")
    found["helm values.yaml extraEnv"] = {item["name"] for item in values["extraEnv"]}
    dockerfile_env: set[str] = set()
    for word, rest in _dockerfile_instructions():
        if word == "ENV":
            dockerfile_env |= set(re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=", rest))
    found["Dockerfile"] = dockerfile_env - PROCESS_VARIABLES
    for unit in UNITS:
        text = unit.read_text(encoding="utf-8")
        found[unit.name] = set(re.findall(r"^Environment=\"?([A-Z][A-Z0-9_]*)=", text, re.M))
    return found


# --- the README's install steps ----------------------------------------------------------------


def _readme_install_block() -> list[str]:
    """The commands of the README's systemd install steps (Deploy section, first sh block)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    deploy = readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"\*\*systemd\*\*.*?```sh\n(.*?)```", deploy, re.DOTALL)
    assert block, "README: no sh block of systemd install steps under ## Deploy"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def _readme_install_commands() -> list[str]:
    """The two that install badgateway: make the venv, pip install the checkout into it."""
    wanted = [c for c in _readme_install_block() if " -m venv " in c or "pip install" in c]
    assert len(wanted) == 2, f"README install steps: expected a venv and a pip line: {wanted}"
    return wanted


def _readme_venv() -> str:
    venv = _readme_install_commands()[0].split(" -m venv ", 1)[1].split()[0]
    return venv


# --- tests -------------------------------------------------------------------------------------


def test_every_yaml_file_outside_the_chart_templates_parses() -> None:
    files = [
        p
        for p in sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
        if "templates" not in p.relative_to(DEPLOY).parts
    ]
    assert {p.name for p in files} >= {
        "compose.yaml",
        "kustomization.yaml",
        "Chart.yaml",
        "values.yaml",
        "slack-manifest.yaml",
    }
    for path in files:
        assert _yaml_documents(path), f"{path}: empty"


def test_the_code_reader_finds_the_settings_it_must() -> None:
    read = _settings_the_bot_reads()
    for name in (
        "SLACK_BOT_TOKEN",
        "REDIS_URL",
        "PORT",
        "BADGATEWAY_SITES",
        "BADGATEWAY_QUEUE_HEARTBEAT_S",
        "BADGATEWAY_ALERT_FAILURES",
    ):
        assert name in read
    assert "BADGATEWAY_SITE" not in read and "REDIS_URI" not in read  # typos stay typos


def test_env_example_lists_every_setting_bot_config_reads() -> None:
    """bot/config.py reads every setting, each named in full; `.env.example` documents each."""
    source = (REPO / "bot" / "config.py").read_text(encoding="utf-8")
    named = {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"(SLACK|BADGATEWAY|REDIS|ALERTS)_[A-Z0-9_]+|PORT", node.value)
    }
    assert {"BADGATEWAY_QUEUE_KEEP_S", "BADGATEWAY_ALERT_FAILURES", "BADGATEWAY_SINK"} <= named
    assert sorted(named - _settings_env_example_lists()) == []


def test_every_variable_a_deploy_file_sets_is_read_by_the_bot_and_listed() -> None:
    read = _settings_the_bot_reads()
    listed = _settings_env_example_lists()
    found = _settings_deploy_files_set()
    assert found["compose.yaml web"] >= {"REDIS_URL", "BADGATEWAY_SITES"}
    assert "SLACK_BOT_TOKEN" in found["kubernetes/secret.env.example"]
    assert "SLACK_BOT_TOKEN" in found["deploy/helm/badgateway/templates/secret.yaml"]
    for where, names in found.items():
        assert not names - read, f"{where} sets what the bot never reads: {names - read}"
        assert not names - listed, f"{where} sets what .env.example omits: {names - listed}"


def test_chart_metadata_and_values_parse() -> None:
    chart = _yaml_mapping(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "badgateway"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    values = _yaml_mapping(CHART / "values.yaml")
    assert values["worker"]["replicas"] >= 2
    assert values["redis"]["enabled"] is True
    assert values["metrics"]["serviceMonitor"]["enabled"] is False
    assert values["web"]["livenessPath"] == "/healthz"
    assert values["web"]["readinessPath"] == "/readyz"
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["podSecurityContext"]["runAsUser"] != 0
    assert values["securityContext"]["allowPrivilegeEscalation"] is False


def _chart_templates() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((CHART / "templates").iterdir())}


def test_chart_templates_reference_only_values_that_exist() -> None:
    values = _yaml_mapping(CHART / "values.yaml")
    used_top: set[str] = set()
    for name, text in _chart_templates().items():
        for path in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
            keys = path.strip(".").split(".")
            used_top.add(keys[0])
            node: Any = values
            for depth, key in enumerate(keys):
                assert isinstance(node, dict) and key in node, (
                    f"{name}: .Values.{'.'.join(keys)} — values.yaml has no "
                    f"{'.'.join(keys[: depth + 1])}"
                )
                node = node[key]
    assert not set(values) - used_top, f"values no template uses: {set(values) - used_top}"


def test_chart_templates_are_balanced_and_include_only_defined_names() -> None:
    templates = _chart_templates()
    defined = set(re.findall(r'\{\{-? *define "([^"]+)"', "".join(templates.values())))
    for name, text in templates.items():
        assert text.count("{{") == text.count("}}"), f"{name}: unbalanced braces"
        opened = len(re.findall(r"\{\{-? *(?:if|with|range|define)\b", text))
        closed = len(re.findall(r"\{\{-? *end *-?\}\}", text))
        assert opened == closed, f"{name}: {opened} blocks opened, {closed} ended"
        for included in re.findall(r'include "([^"]+)"', text):
            assert included in defined, f"{name}: includes {included!r}, defined nowhere"


def test_chart_templates_render_their_kind_and_api_version() -> None:
    kinds: Counter[str] = Counter()
    for name, text in _chart_templates().items():
        if not name.endswith(".yaml"):
            continue
        api = re.findall(r"^apiVersion: (\S+)$", text, re.MULTILINE)
        kind = re.findall(r"^kind: (\S+)$", text, re.MULTILINE)
        assert len(api) == len(kind) == 1, f"{name}: one literal apiVersion and kind"
        assert API_VERSIONS[kind[0]] == api[0], f"{name}: {kind[0]} is {API_VERSIONS[kind[0]]}"
        kinds[kind[0]] += 1
    assert kinds == Counter(
        Deployment=3, Service=2, StatefulSet=1, Secret=1, ConfigMap=1, Ingress=1, ServiceMonitor=1
    )
    templates = _chart_templates()
    assert templates["servicemonitor.yaml"].startswith(
        "{{- if .Values.metrics.serviceMonitor.enabled }}"
    )
    assert templates["secret.yaml"].startswith("{{- if not .Values.existingSecret }}")
    for redis in ("redis-statefulset.yaml", "redis-service.yaml"):
        assert templates[redis].startswith("{{- if .Values.redis.enabled }}")
    assert "--appendonly" in templates["redis-statefulset.yaml"]
    web = templates["web-deployment.yaml"]
    assert "path: {{ .Values.web.livenessPath }}" in web.split("livenessProbe:")[1]
    assert "path: {{ .Values.web.readinessPath }}" in web.split("readinessProbe:")[1]
    assert "replicas: {{ .Values.worker.replicas }}" in templates["worker-deployment.yaml"]
    for deployment in ("web-deployment.yaml", "worker-deployment.yaml"):
        assert "toYaml .Values.podSecurityContext" in templates[deployment]
        assert "toYaml .Values.securityContext" in templates[deployment]


def _pod_specs(docs: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _assert_manifests(docs: list[Any]) -> None:
    """What deploy/kubernetes must hold, raw or built: kinds, probes, non-root pods."""
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for doc in docs:
        assert API_VERSIONS[doc["kind"]] == doc["apiVersion"]
    web = by_name[("Deployment", "badgateway-web")]["spec"]["template"]["spec"]["containers"][0]
    assert web["args"] == ["serve"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    worker = by_name[("Deployment", "badgateway-worker")]
    assert worker["spec"]["replicas"] >= 2
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"][0] == "worker"
    redis = by_name[("StatefulSet", "badgateway-redis")]["spec"]
    assert "--appendonly" in redis["template"]["spec"]["containers"][0]["args"]
    assert redis["volumeClaimTemplates"]
    for name, spec in _pod_specs(docs):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["limits"]["memory"], name


def test_kubernetes_manifests_hold_the_parts_without_kubectl() -> None:
    kustomization = _yaml_mapping(KUSTOMIZE / "kustomization.yaml")
    docs = [d for r in kustomization["resources"] for d in _yaml_documents(KUSTOMIZE / r)]
    assert Counter(d["kind"] for d in docs) == Counter(Deployment=2, Service=2, StatefulSet=1)
    _assert_manifests(docs)
    assert [g["name"] for g in kustomization["secretGenerator"]] == ["badgateway"]
    assert [g["name"] for g in kustomization["configMapGenerator"]] == ["badgateway-sites"]
    assert "secret.env" in (KUSTOMIZE / ".gitignore").read_text(encoding="utf-8").split()


def _kustomized(tmp_path: Path, resource: str | None = None) -> list[Any]:
    """`kubectl kustomize` of a copy of deploy/kubernetes (``resource``: one of its commented
    resources added, as its comment says); skips where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # Debian's kubernetes-client (1.20) embeds a kustomize too old for this kustomization.
        pytest.skip("kubectl is not installed")
    work = tmp_path / "kubernetes"
    shutil.copytree(KUSTOMIZE, work)
    # The one step the README asks before `kubectl apply -k`: a secret.env of one's own.
    shutil.copy(work / "secret.env.example", work / "secret.env")
    if resource is not None:
        kustomization = work / "kustomization.yaml"
        text = kustomization.read_text(encoding="utf-8")
        kustomization.write_text(text.replace(f"  # - {resource}", f"  - {resource}"))
    built = subprocess.run(
        [kubectl, "kustomize", str(work)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    assert "deprecated" not in built.stderr, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d is not None]


def test_kubectl_kustomize_builds_the_manifests(tmp_path: Path) -> None:
    docs = _kustomized(tmp_path)
    kinds = Counter(d["kind"] for d in docs)
    assert kinds == Counter(Deployment=2, Service=2, StatefulSet=1, Secret=1, ConfigMap=1)
    _assert_manifests(docs)
    generated = {
        d["kind"]: d["metadata"]["name"] for d in docs if d["kind"] in ("Secret", "ConfigMap")
    }
    for name, spec in _pod_specs(docs):
        if name == "badgateway-redis":
            continue
        container = spec["containers"][0]
        assert container["envFrom"][0]["secretRef"]["name"] == generated["Secret"], name
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["sites"]["configMap"]["name"] == generated["ConfigMap"], name
        assert container["image"] == "badgateway:0.1.0"
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "badgateway"


def test_chart_renders_one_vantage_deployment_per_place_with_redis_only() -> None:
    values = _yaml_mapping(CHART / "values.yaml")
    assert values["vantages"] == []  # none unless listed: a place is the operator's to name
    vantage = _chart_templates()["vantage-deployment.yaml"]
    body = vantage.split("{{- range .Values.vantages }}", 1)[1]
    assert body.rstrip().endswith("{{- end }}")  # the whole Deployment, once per place
    assert 'args: ["worker", "--vantage", {{ .name | quote }}]' in body
    assert "-vantage-{{ .name }}" in body  # one Deployment name per place
    assert "envFrom" not in body and "SLACK_" not in body  # no Slack token: Redis only
    assert "key: REDIS_URL" in body  # an external Redis's URL from the Secret, that key only
    resolvers = body.split("{{- if .resolvers }}", 1)[1].split("{{- end }}", 1)[0]
    assert "- name: BADGATEWAY_VANTAGE_RESOLVERS" in resolvers  # only when given
    for setting in ("podSecurityContext", "securityContext"):
        assert f"toYaml $.Values.{setting}" in body


def test_kubectl_kustomize_builds_a_vantage_worker(tmp_path: Path) -> None:
    """The example vantage, added to the resources as its comment says, builds: `worker
    --vantage eu-west` with REDIS_URL and the sites file, no Secret."""
    (doc,) = _yaml_documents(KUSTOMIZE / "vantage-eu-west.yaml")
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["worker", "--vantage", "eu-west"]
    assert {e["name"] for e in container["env"]} == {"REDIS_URL", "BADGATEWAY_SITES"}
    assert "envFrom" not in container
    kustomization = (KUSTOMIZE / "kustomization.yaml").read_text(encoding="utf-8")
    assert "  # - vantage-eu-west.yaml" in kustomization  # offered, not applied by default
    docs = _kustomized(tmp_path, "vantage-eu-west.yaml")
    _assert_manifests(docs)
    vantage = next(d for d in docs if d["metadata"]["name"] == "badgateway-vantage-eu-west")
    spec = vantage["spec"]["template"]["spec"]
    sites = next(d for d in docs if d["kind"] == "ConfigMap")["metadata"]["name"]
    assert {v["name"]: v for v in spec["volumes"]}["sites"]["configMap"]["name"] == sites
    assert spec["containers"][0]["image"] == "badgateway:0.1.0"
    # Its selector is its own: the workers' Deployment does not adopt its pods.
    worker = next(d for d in docs if d["metadata"]["name"] == "badgateway-worker")
    own = vantage["spec"]["selector"]["matchLabels"]
    assert own != worker["spec"]["selector"]["matchLabels"]
    assert own["app.kubernetes.io/component"] == "vantage"


def test_compose_offers_a_vantage_worker_that_needs_redis_only() -> None:
    services = _yaml_mapping(DEPLOY / "compose.yaml")["services"]
    vantage = services["vantage-eu-west"]
    assert vantage["profiles"] == ["vantage"]  # not started by a plain `up`
    assert vantage["command"] == ["worker", "--vantage", "eu-west"]
    assert set(vantage["environment"]) == {"REDIS_URL"}
    assert "env_file" not in vantage  # no Slack token reaches it
    assert vantage["depends_on"]["redis"]["condition"] == "service_healthy"
    assert vantage["healthcheck"] == {"disable": True}


def test_compose_runs_web_two_workers_and_redis_with_aof() -> None:
    compose = _yaml_mapping(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert set(services) == {"web", "worker", "redis", "vantage-eu-west"}
    web, worker, redis = services["web"], services["worker"], services["redis"]
    assert web["command"] == ["serve"]
    assert worker["command"][0] == "worker"
    assert worker["deploy"]["replicas"] == 2
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert worker["healthcheck"] == {"disable": True}  # no HTTP in a worker
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(str(v).startswith("redis-data:/data") for v in redis["volumes"])
    assert "redis-data" in compose["volumes"]
    for service in (web, worker):
        assert service["env_file"] == "../.env"  # the root's .env, as the README says
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    assert all(port.startswith("127.0.0.1:") for port in web["ports"])  # TLS goes in front


def test_dockerfile_is_non_root_pinned_healthchecked_and_runs_the_readme_install() -> None:
    instructions = _dockerfile_instructions()
    words = [word for word, _ in instructions]
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for w, rest in instructions if w == "ARG"}
    for word, rest in instructions:
        if word == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
            assert re.fullmatch(r"python:3\.11\.?\d*-slim-bookworm(@sha256:[0-9a-f]{64})?", image)
    user = [rest for word, rest in instructions if word == "USER"]
    assert user, "no USER: the image would run as root"
    assert user[-1].split(":")[0] not in ("root", "0")
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")
    healthcheck = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert len(healthcheck) == 1 and "/healthz" in healthcheck[0]
    assert ("ENTRYPOINT", '["badgateway"]') in instructions
    assert ("CMD", '["serve"]') in instructions
    run_commands = [
        c.strip() for word, rest in instructions if word == "RUN" for c in rest.split("&&")
    ]
    for command in _readme_install_commands():
        assert command in run_commands, f"the Dockerfile does not run the README's {command!r}"
    venv = _readme_venv()
    assert any(w == "COPY" and rest.endswith(f"{venv} {venv}") for w, rest in instructions)
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".env", ".venv", "tests"} <= ignored
    assert not {"badgateway", "bot", "checks", "pyproject.toml", "README.md"} & ignored


def _unit_sections(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"), str(path))
    return parser


def test_systemd_units_point_at_what_the_readme_install_creates() -> None:
    assert {u.name for u in UNITS} == {"badgateway-serve.service", "badgateway-worker@.service"}
    steps = "\n".join(_readme_install_block())
    venv = _readme_venv()
    for unit in UNITS:
        sections = _unit_sections(unit)
        assert set(sections.sections()) == {"Unit", "Service", "Install"}, unit.name
        service = sections["Service"]
        assert service["ExecStart"].split()[0] == f"{venv}/bin/badgateway", unit.name
        assert service["ExecStart"].split()[1] in ("serve", "worker"), unit.name
        assert re.search(rf"useradd .*\b{service['User']}$", steps, re.MULTILINE), unit.name
        assert service["EnvironmentFile"] in steps, unit.name
        assert unit.name in steps, f"the README's install steps do not install {unit.name}"
    assert "badgateway = " in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None or not Path("/lib/systemd/system").is_dir():
        pytest.skip("systemd-analyze is not installed (the units are checked as INI files above)")
    # A root holding what the README's steps create (a stub for the installed command) and
    # the system's own units (targets), so `verify` checks the units and nothing else.
    root = tmp_path / "root"
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    command = root / _readme_venv().lstrip("/") / "bin" / "badgateway"
    command.parent.mkdir(parents=True)
    command.write_text("#!/bin/sh\n", encoding="utf-8")
    command.chmod(0o755)
    for unit in UNITS:
        env_file = root / _unit_sections(unit)["Service"]["EnvironmentFile"].lstrip("/")
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.touch()
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in UNITS:
        shutil.copy(unit, units / unit.name)
        checked = subprocess.run(
            [analyze, "verify", f"--root={root}", str(units / unit.name)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (checked.returncode, checked.stderr) == (0, ""), f"{unit.name}: {checked.stderr}"

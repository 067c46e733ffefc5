#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes/ without a cluster.

Usage: check_kubernetes.py REPO_ROOT

1. Every document of every *.yaml file is validated against the Kubernetes OpenAPI schemas
   shipped offline by `kubernetes-validate`, in strict mode (an unknown field fails).
2. What the schemas cannot see: each Deployment's probes (liveness /healthz, readiness /readyz,
   on a declared container port), resource requests and limits, envFrom of a ConfigMap and a
   Secret of the set, security context; HPAs and PDBs aim at Deployments that exist; Service
   selectors match pods and their target ports are declared; the ConfigMap and Secret hold only
   variables the services read (the `env = "NAME"` attributes in the Rust sources); the
   kustomization lists every manifest.

Prints each check; exits 1 naming every failure, 2 on bad usage.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import kubernetes_validate
import yaml

# The Kubernetes version whose schemas the manifests must satisfy.
KUBERNETES_VERSION = "1.33.0"
MANIFEST_DIR = Path("deploy/kubernetes")
KUSTOMIZATION = "kustomization.yaml"
# Where the services declare their settings (clap `#[arg(env = "NAME")]`).
SOURCE_DIRS = ["ingest/src", "query/src", "aggregator/src", "service-kit/src"]
ENV_ATTRIBUTE = re.compile(r'\benv\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"')
# tracing_subscriber's EnvFilter::{try_,}from_default_env reads RUST_LOG.
DEFAULT_ENV_FILTER = re.compile(r"EnvFilter::(?:try_)?from_default_env\b")
NAMESPACED_KINDS = {
    "ConfigMap",
    "Secret",
    "Deployment",
    "Service",
    "Job",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
}
POD_OWNERS = {"Deployment", "Job"}


class Report:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def ok(self, message: str) -> None:
        self.passed += 1
        print(f"ok    {message}")

    def fail(self, message: str) -> None:
        self.failures.append(message)
        print(f"FAIL  {message}")

    def check(self, condition: bool, message: str, failure: str | None = None) -> bool:
        if condition:
            self.ok(message)
        else:
            self.fail(failure or message)
        return condition


def ref(doc: dict) -> str:
    return f"{doc.get('kind', '?').lower()}/{(doc.get('metadata') or {}).get('name', '?')}"


def load_documents(directory: Path, report: Report) -> tuple[list[tuple[str, dict]], dict | None]:
    """(file name, document) for every manifest, and the kustomization if there is one."""
    documents: list[tuple[str, dict]] = []
    kustomization = None
    files = sorted(list(directory.glob("*.yaml")) + list(directory.glob("*.yml")))
    if not files:
        report.fail(f"no *.yaml files in {directory}")
    for path in files:
        try:
            loaded = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        except yaml.YAMLError as error:
            report.fail(f"{path.name}: not valid YAML: {error}")
            continue
        if path.name == KUSTOMIZATION:
            kustomization = loaded[0] if len(loaded) == 1 else None
            report.check(
                kustomization is not None,
                f"{path.name}: one document",
                f"{path.name}: expected exactly one document, found {len(loaded)}",
            )
            continue
        if not loaded:
            report.fail(f"{path.name}: holds no documents")
        for doc in loaded:
            if not isinstance(doc, dict):
                report.fail(f"{path.name}: a document is not a mapping")
                continue
            documents.append((path.name, doc))
    return documents, kustomization


def validate_schemas(documents: list[tuple[str, dict]], report: Report) -> None:
    for file, doc in documents:
        where = f"{file}: {ref(doc)}"
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path) or "(top level)"
            report.fail(f"{where}: schema (Kubernetes {KUBERNETES_VERSION}, strict): at {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            report.fail(f"{where}: {error.message}")
        except (KeyError, TypeError) as error:
            report.fail(f"{where}: cannot be validated (missing apiVersion or kind?): {error!r}")
        else:
            report.ok(f"{where}: valid against the Kubernetes {KUBERNETES_VERSION} schema (strict)")


def check_kustomization(kustomization: dict | None, documents: list[tuple[str, dict]], report: Report) -> None:
    if kustomization is None:
        report.fail(f"{KUSTOMIZATION} missing (it is what `kubectl apply -k` reads)")
        return
    report.check(
        kustomization.get("apiVersion") == "kustomize.config.k8s.io/v1beta1"
        and kustomization.get("kind") == "Kustomization",
        f"{KUSTOMIZATION}: apiVersion kustomize.config.k8s.io/v1beta1, kind Kustomization",
    )
    listed = kustomization.get("resources") or []
    files = sorted({file for file, _ in documents})
    report.check(
        sorted(listed) == files and len(listed) == len(set(listed)),
        f"{KUSTOMIZATION}: resources lists every manifest once ({', '.join(listed)})",
        f"{KUSTOMIZATION}: resources {sorted(listed)} != manifest files {files}",
    )


def check_identity(documents: list[tuple[str, dict]], report: Report) -> None:
    seen: set[tuple[str, str, str]] = set()
    namespaces = {doc["metadata"]["name"] for _, doc in documents if doc.get("kind") == "Namespace"}
    for file, doc in documents:
        meta = doc.get("metadata") or {}
        key = (doc.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
        if key in seen:
            report.fail(f"{file}: {ref(doc)} defined twice")
        seen.add(key)
        if doc.get("kind") in NAMESPACED_KINDS:
            report.check(
                meta.get("namespace") in namespaces,
                f"{file}: {ref(doc)} in namespace {meta.get('namespace')!r}, defined in the set",
                f"{file}: {ref(doc)}: namespace {meta.get('namespace')!r} is not a Namespace of the set {sorted(namespaces)}",
            )


def matches(selector: dict, labels: dict) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against a label set."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False  # an empty selector would select everything: never what we mean
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_labels(doc: dict) -> dict:
    return ((doc.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}


def pod_spec(doc: dict) -> dict:
    return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}


def container_ports(container: dict) -> dict:
    """Declared ports, by name and by number, each to its number."""
    ports = {}
    for port in container.get("ports") or []:
        ports[port["containerPort"]] = port["containerPort"]
        if "name" in port:
            ports[port["name"]] = port["containerPort"]
    return ports


CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)$")
MEMORY_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(resource: str, value) -> float | None:
    text = str(value)
    if resource == "cpu":
        found = CPU.match(text)
        return None if not found else float(found[1]) / (1000 if found[2] else 1)
    found = MEMORY.match(text)
    return None if not found else float(found[1]) * MEMORY_UNITS[found[2]]


def check_probe(where: str, container: dict, kind: str, path: str, report: Report, required: bool = True) -> None:
    probe = container.get(kind)
    if probe is None:
        if required:
            report.fail(f"{where}: no {kind}")
        return
    http = probe.get("httpGet") or {}
    ports = container_ports(container)
    port = http.get("port")
    report.check(
        http.get("path") == path and port in ports,
        f"{where}: {kind} GET {path} on port {port} ({ports.get(port)})",
        f"{where}: {kind} must be an httpGet of {path} on a declared container port "
        f"{sorted(map(str, ports))}; found path {http.get('path')!r}, port {port!r}",
    )


def check_pod_env(where: str, container: dict, config_maps: set, secrets: set, known_env: set, report: Report) -> None:
    env_from = container.get("envFrom") or []
    used_maps = {e["configMapRef"]["name"] for e in env_from if "configMapRef" in e}
    used_secrets = {e["secretRef"]["name"] for e in env_from if "secretRef" in e}
    report.check(
        bool(used_maps) and used_maps <= config_maps,
        f"{where}: envFrom ConfigMap {sorted(used_maps)}",
        f"{where}: envFrom must name a ConfigMap of the set {sorted(config_maps)}; names {sorted(used_maps)}",
    )
    report.check(
        bool(used_secrets) and used_secrets <= secrets,
        f"{where}: envFrom Secret {sorted(used_secrets)}",
        f"{where}: envFrom must name a Secret of the set {sorted(secrets)}; names {sorted(used_secrets)}",
    )
    for var in container.get("env") or []:
        report.check(
            var["name"] in known_env,
            f"{where}: env {var['name']} is read by a service",
            f"{where}: env {var['name']} is not read by any service",
        )


def check_security(where: str, pod: dict, container: dict, report: Report) -> None:
    pod_ctx = pod.get("securityContext") or {}
    ctx = container.get("securityContext") or {}
    non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is True
    uid = ctx.get("runAsUser", pod_ctx.get("runAsUser"))
    report.check(
        non_root and uid == 10001,
        f"{where}: runs as non-root uid 10001 (the Dockerfile's user)",
        f"{where}: must set runAsNonRoot: true and runAsUser: 10001 (the image's USER is a name, "
        f"which the kubelet cannot check); found runAsNonRoot={non_root}, runAsUser={uid}",
    )
    report.check(
        ctx.get("readOnlyRootFilesystem") is True
        and ctx.get("allowPrivilegeEscalation") is False
        and "ALL" in ((ctx.get("capabilities") or {}).get("drop") or []),
        f"{where}: read-only root filesystem, no privilege escalation, capabilities drop ALL",
        f"{where}: securityContext needs readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, "
        f"capabilities.drop [ALL]",
    )


def check_workloads(by_kind: dict, known_env: set, shutdown_grace: int, report: Report) -> None:
    config_maps = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}
    config = {}
    for cm in by_kind.get("ConfigMap", []):
        config.update(cm.get("data") or {})
    for kind in sorted(POD_OWNERS):
        for doc in by_kind.get(kind, []):
            pod = pod_spec(doc)
            containers = pod.get("containers") or []
            if not containers:
                report.fail(f"{ref(doc)}: no containers")
            for container in containers:
                where = f"{ref(doc)} container {container.get('name')}"
                check_pod_env(where, container, config_maps, secrets, known_env, report)
                check_security(where, pod, container, report)
                resources = container.get("resources") or {}
                for resource in ("cpu", "memory"):
                    request = quantity(resource, (resources.get("requests") or {}).get(resource))
                    limit = quantity(resource, (resources.get("limits") or {}).get(resource))
                    report.check(
                        request is not None and limit is not None and 0 < request <= limit,
                        f"{where}: {resource} request {(resources.get('requests') or {}).get(resource)} "
                        f"<= limit {(resources.get('limits') or {}).get(resource)}",
                        f"{where}: needs a {resource} request and a {resource} limit, request <= limit; "
                        f"found {resources}",
                    )
                if kind != "Deployment":
                    continue
                check_probe(where, container, "livenessProbe", "/healthz", report)
                check_probe(where, container, "readinessProbe", "/readyz", report)
                check_probe(where, container, "startupProbe", "/healthz", report, required=False)
                ports = container_ports(container)
                binary = (container.get("command") or [""])[0]
                addr = config.get(f"{binary.upper()}_ADDR")
                if addr is not None:
                    port = int(str(addr).rsplit(":", 1)[1])
                    report.check(
                        port in ports,
                        f"{where}: {binary.upper()}_ADDR {addr} listens on a declared port",
                        f"{where}: {binary.upper()}_ADDR {addr} is not a declared containerPort {sorted(map(str, ports))}",
                    )
                annotations = (doc["spec"]["template"].get("metadata") or {}).get("annotations") or {}
                if annotations.get("prometheus.io/scrape") == "true":
                    report.check(
                        int(annotations.get("prometheus.io/port", 0)) in ports
                        and annotations.get("prometheus.io/path") == "/metrics",
                        f"{where}: prometheus.io annotations scrape /metrics on port {annotations.get('prometheus.io/port')}",
                        f"{where}: prometheus.io/port must be a containerPort and prometheus.io/path /metrics",
                    )
            if kind == "Deployment":
                selector = doc["spec"].get("selector") or {}
                report.check(
                    matches(selector, pod_labels(doc)),
                    f"{ref(doc)}: selector matches its pod labels",
                    f"{ref(doc)}: selector {selector} does not match its pod labels {pod_labels(doc)}",
                )
                grace = pod.get("terminationGracePeriodSeconds", 30)
                report.check(
                    grace > shutdown_grace,
                    f"{ref(doc)}: terminationGracePeriodSeconds {grace} > SHUTDOWN_GRACE_SECS {shutdown_grace}",
                    f"{ref(doc)}: terminationGracePeriodSeconds {grace} must exceed SHUTDOWN_GRACE_SECS {shutdown_grace}",
                )


def selected(selector: dict, namespace: str, deployments: list) -> list:
    return [d for d in deployments if d["metadata"].get("namespace") == namespace and matches(selector, pod_labels(d))]


def check_targets(by_kind: dict, report: Report) -> None:
    deployments = by_kind.get("Deployment", [])
    named = {(d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in deployments}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"]["scaleTargetRef"]
        ns = hpa["metadata"].get("namespace")
        deployment = named.get((ns, target.get("name")))
        if not report.check(
            target.get("kind") == "Deployment" and target.get("apiVersion") == "apps/v1" and deployment is not None,
            f"{ref(hpa)}: scales deployment/{target.get('name')}, which exists",
            f"{ref(hpa)}: scaleTargetRef {target} is not a Deployment of the set",
        ):
            continue
        report.check(
            1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"],
            f"{ref(hpa)}: {hpa['spec'].get('minReplicas', 1)} to {hpa['spec']['maxReplicas']} replicas",
        )
        for metric in hpa["spec"].get("metrics") or []:
            name = (metric.get("resource") or {}).get("name")
            if metric.get("type") == "Resource":
                report.check(
                    all(
                        ((c.get("resources") or {}).get("requests") or {}).get(name)
                        for c in pod_spec(deployment)["containers"]
                    ),
                    f"{ref(hpa)}: every container of its target requests {name} (utilization base)",
                    f"{ref(hpa)}: scales on {name} utilization, but a container of {ref(deployment)} requests no {name}",
                )
        report.check(
            "replicas" not in deployment["spec"],
            f"{ref(deployment)}: leaves replicas to {ref(hpa)}",
            f"{ref(deployment)}: sets spec.replicas, which each apply would reset under {ref(hpa)}",
        )
    for pdb in by_kind.get("PodDisruptionBudget", []):
        found = selected(pdb["spec"].get("selector") or {}, pdb["metadata"].get("namespace"), deployments)
        report.check(
            bool(found),
            f"{ref(pdb)}: selects the pods of {', '.join(map(ref, found))}",
            f"{ref(pdb)}: selector {pdb['spec'].get('selector')} matches no Deployment's pods",
        )
    for service in by_kind.get("Service", []):
        selector = service["spec"].get("selector") or {}
        found = selected({"matchLabels": selector}, service["metadata"].get("namespace"), deployments)
        if not report.check(
            bool(found),
            f"{ref(service)}: selector {selector} matches the pods of {', '.join(map(ref, found))}",
            f"{ref(service)}: selector {selector} matches no Deployment's pod labels",
        ):
            continue
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            for deployment in found:
                declared = {}
                for container in pod_spec(deployment)["containers"]:
                    declared.update(container_ports(container))
                report.check(
                    target in declared,
                    f"{ref(service)}: port {port['port']} -> targetPort {target} ({declared.get(target)}) declared by {ref(deployment)}",
                    f"{ref(service)}: targetPort {target!r} is not a containerPort of {ref(deployment)} {sorted(map(str, declared))}",
                )


def read_env_names(root: Path, report: Report) -> set:
    names: set = set()
    for directory in SOURCE_DIRS:
        sources = sorted((root / directory).rglob("*.rs"))
        if not sources:
            report.fail(f"no Rust sources under {root / directory}")
        for source in sources:
            text = source.read_text()
            names.update(ENV_ATTRIBUTE.findall(text))
            if DEFAULT_ENV_FILTER.search(text):
                names.add("RUST_LOG")
    report.check(bool(names), f"{len(names)} environment variables declared in {', '.join(SOURCE_DIRS)}")
    return names


def check_settings(by_kind: dict, known_env: set, report: Report) -> None:
    for kind, fields in (("ConfigMap", ("data", "binaryData")), ("Secret", ("stringData", "data"))):
        items = by_kind.get(kind, [])
        report.check(bool(items), f"a {kind} is defined", f"no {kind} in the set")
        for doc in items:
            keys = sorted({key for field in fields for key in (doc.get(field) or {})})
            unknown = [key for key in keys if key not in known_env]
            report.check(
                not unknown,
                f"{ref(doc)}: every key is read by a service ({', '.join(keys)})",
                f"{ref(doc)}: {', '.join(unknown)} not read by any service "
                f'(no env = "..." in {", ".join(SOURCE_DIRS)})',
            )


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    directory = root / MANIFEST_DIR
    report = Report()
    print(
        f"checking {directory} (kubernetes-validate {metadata.version('kubernetes-validate')}, "
        f"Kubernetes {KUBERNETES_VERSION} schemas, strict)"
    )
    documents, kustomization = load_documents(directory, report)
    validate_schemas(documents, report)
    check_kustomization(kustomization, documents, report)
    check_identity(documents, report)
    by_kind: dict = {}
    for _, doc in documents:
        by_kind.setdefault(doc.get("kind"), []).append(doc)
    known_env = read_env_names(root, report)
    check_settings(by_kind, known_env, report)
    config = {}
    for cm in by_kind.get("ConfigMap", []):
        config.update(cm.get("data") or {})
    check_workloads(by_kind, known_env, int(config.get("SHUTDOWN_GRACE_SECS", 10)), report)
    check_targets(by_kind, report)
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    if report.failures:
        print(
            f"\n{len(report.failures)} of {len(report.failures) + report.passed} checks FAILED in {directory}:",
            file=sys.stderr,
        )
        for failure in report.failures:
            print(f"  - {failure}", file=sys.stderr)
        return 1
    print(f"\nall {report.passed} checks passed: {len(documents)} documents ({kinds})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

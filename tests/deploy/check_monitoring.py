"""Checks the deployment files that no test runs (there is no Docker engine here): the Prometheus
configuration, alert rules and their unit tests (with promtool), docker-compose.yml against the
Compose Specification schema plus what the schema cannot see (health checks, dependencies,
mounted paths, Dockerfile stages), and the Grafana dashboard (every query parses and names only
metrics the services export).

usage: check_monitoring.py REPO_ROOT
promtool: from PATH, or the PROMTOOL environment variable (Debian: `apt-get install prometheus`).
The Compose schema: the copy vendored by the PyPI package check-jsonschema, or the file named by
COMPOSE_SPEC_SCHEMA. Needs PyYAML and jsonschema.
"""

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import jsonschema
import yaml

# The metrics the services export: name -> (type, labels). Histograms are queried as
# name_bucket (plus `le`), name_sum and name_count. Every series also has `job` and `instance`.
METRICS = {
    # ingest
    "ingest_events_received_total": ("counter", {"kind"}),
    "ingest_events_accepted_total": ("counter", {"kind", "duplicate"}),
    "ingest_events_rejected_total": ("counter", {"kind", "reason"}),
    "ingest_publish_duration_seconds": ("histogram", set()),
    "ingest_messages_published_total": ("counter", {"outcome"}),
    "ingest_tracking_unrecorded_total": ("counter", {"endpoint", "reason"}),
    "ingest_connections_refused_total": ("counter", set()),
    "ingest_events_spooled_total": ("counter", {"endpoint"}),
    "ingest_spool_replayed_total": ("counter", set()),
    "ingest_spool_events": ("gauge", set()),
    "ingest_spool_bytes": ("gauge", set()),
    "ingest_spool_oldest_age_seconds": ("gauge", set()),
    "query_connections_refused_total": ("counter", set()),
    # aggregator
    "aggregator_messages_consumed_total": ("counter", set()),
    "aggregator_events_inserted_total": ("counter", {"table"}),
    "aggregator_events_already_stored_total": ("counter", set()),
    "aggregator_dead_letters_total": ("counter", {"reason"}),
    "aggregator_insert_retries_total": ("counter", set()),
    "aggregator_batch_size_messages": ("histogram", set()),
    "aggregator_clickhouse_insert_duration_seconds": ("histogram", set()),
    "aggregator_batch_stage_duration_seconds": ("histogram", {"stage"}),
    "aggregator_consumer_pending_messages": ("gauge", set()),
    "aggregator_consumer_ack_pending_messages": ("gauge", set()),
    "aggregator_oldest_unprocessed_event_age_seconds": ("gauge", set()),
    "aggregator_stream_bytes": ("gauge", set()),
    "aggregator_stream_max_bytes": ("gauge", set()),
    # query
    "query_cache_lookups_total": ("counter", {"cache", "outcome"}),
    "query_clickhouse_query_duration_seconds": ("histogram", {"query"}),
    "query_write_notices_total": ("counter", set()),
    # every service
    "http_request_duration_seconds": ("histogram", {"method", "route", "status"}),
}
TARGET_LABELS = {"job", "instance"}
# Series Prometheus makes itself.
BUILTIN_SERIES = {"up": set(), "ALERTS": {"alertname", "alertstate", "severity"}, "ALERTS_FOR_STATE": {"alertname", "severity"}}
BUILTIN_PREFIX = "scrape_"

# The services Prometheus scrapes: job -> container address.
# The services a deployment exposes to its clients; everything else stays inside the stack.
PUBLIC_SERVICES = {"ingest", "query"}
SCRAPE_JOBS = {"ingest": "ingest:8090", "query": "query:8091", "aggregator": "aggregator:8082"}

PROMQL_FUNCTIONS = {
    # aggregation operators
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    # functions (Prometheus 2.x and 3.x)
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp", "floor", "histogram_avg",
    "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev", "histogram_stdvar",
    "histogram_sum", "holt_winters", "double_exponential_smoothing", "hour", "idelta", "increase", "irate",
    "label_join", "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate", "resets",
    "round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label", "sort_by_label_desc", "sqrt", "time",
    "timestamp", "vector", "year", "avg_over_time", "min_over_time", "max_over_time", "sum_over_time",
    "count_over_time", "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
    "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "sin",
    "sinh", "tan", "tanh", "deg", "rad", "pi",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                   "offset", "bool", "inf", "nan", "atan2", "start", "end"}

# Grafana's variables, replaced by something PromQL accepts before promtool parses a query.
GRAFANA_RANGE_VARS = re.compile(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}")
GRAFANA_VARS = re.compile(r"\$\{?\w+\}?")


class Failed(Exception):
    """A check that did not pass; the message says why."""


def load_yaml(path):
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise Failed(f"cannot read {path}: {e}") from e


def run_promtool(promtool, *args, cwd=None):
    proc = subprocess.run([promtool, *args], check=False, cwd=cwd, capture_output=True, text=True, timeout=300)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise Failed(f"`promtool {' '.join(args)}` exited {proc.returncode}:\n{indent(output)}")
    return output


def indent(text, by="      "):
    return "\n".join(by + line for line in text.splitlines())


# --- PromQL: the metric names and label matchers a query uses ----------------------------------

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^{}]*)\}")
MATCHER = re.compile(r"\s*([A-Za-z_][\w]*)\s*(=~|!~|!=|=)\s*\"\"\s*")
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
TOKEN = re.compile(r"(?P<num>\d[\w.]*)|(?P<ident>[A-Za-z_:][\w:]*)(?P<call>\s*\()?")


def known_labels(series):
    """The labels of a series name, or None when no exporter makes it."""
    if series in BUILTIN_SERIES:
        return BUILTIN_SERIES[series] | TARGET_LABELS
    if series.startswith(BUILTIN_PREFIX):
        return TARGET_LABELS
    if series in METRICS and METRICS[series][0] != "histogram":
        return METRICS[series][1] | TARGET_LABELS
    for suffix, extra in (("_bucket", {"le"}), ("_sum", set()), ("_count", set())):
        base = series.removesuffix(suffix)
        if series.endswith(suffix) and METRICS.get(base, ("",))[0] == "histogram":
            return METRICS[base][1] | TARGET_LABELS | extra
    return None


def promql_problems(expr):
    """Unknown metrics, unknown labels on them, unknown functions: a list of messages."""
    problems = []
    text = STRING.sub('""', expr)
    for match in SELECTOR.finditer(text):
        name, matchers = match.group(1), match.group(2)
        labels = {m.group(1) for m in MATCHER.finditer(matchers)}
        if name in PROMQL_KEYWORDS:
            name = None
        if name is None:
            name_matcher = re.search(r'__name__\s*=\s*""', matchers)
            if name_matcher:
                problems.append("selects by __name__; name the metric instead")
            continue
        allowed = known_labels(name)
        if allowed is not None:
            for label in sorted(labels - allowed - {"__name__"}):
                problems.append(f"{name} has no label {label!r} (it has {', '.join(sorted(allowed))})")
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    text = GRAFANA_VARS.sub(" ", text)
    for token in TOKEN.finditer(text):
        ident = token.group("ident")
        if ident is None:
            continue
        if token.group("call"):
            if ident not in PROMQL_FUNCTIONS and ident not in PROMQL_KEYWORDS:
                problems.append(f"unknown function {ident}()")
        elif ident not in PROMQL_KEYWORDS and known_labels(ident) is None:
            problems.append(f"unknown metric {ident}")
    return problems


def metrics_used(expr):
    text = re.sub(r"\{[^{}]*\}|\[[^\[\]]*\]", " ", STRING.sub('""', expr))
    text = GRAFANA_VARS.sub(" ", GROUPING.sub(" ", text))
    names = set()
    for token in TOKEN.finditer(text):
        ident = token.group("ident")
        if ident and not token.group("call") and ident not in PROMQL_KEYWORDS:
            names.add(re.sub(r"_(bucket|sum|count)$", "", ident) if known_labels(ident) and ident not in METRICS else ident)
    return names


# --- the checks -------------------------------------------------------------------------------


class Checker:
    def __init__(self, root, promtool):
        self.root = root
        self.promtool = promtool
        self.prom_dir = root / "deploy" / "prometheus"
        self.grafana_dir = root / "deploy" / "grafana"
        self.passed = 0
        self.failed = 0
        self._compose = None

    def check(self, what, fn):
        try:
            detail = fn()
        except Failed as e:
            self.failed += 1
            print(f"FAIL {what}\n{indent(str(e))}")
        except Exception:  # noqa: BLE001 (a bug here, or a file of an unexpected shape: still a failure)
            self.failed += 1
            print(f"FAIL {what} (unexpected error)\n{indent(traceback.format_exc())}")
        else:
            self.passed += 1
            print(f"ok   {what}" + (f": {detail}" if detail else ""))

    @property
    def compose(self):
        if self._compose is None:
            self._compose = load_yaml(self.root / "docker-compose.yml")
            if not isinstance(self._compose, dict) or not isinstance(self._compose.get("services"), dict):
                raise Failed("docker-compose.yml has no `services` mapping")
        return self._compose

    def mount_source(self, service, target):
        """The repository path bind-mounted at `target` in `service`, or None."""
        for volume in self.compose["services"].get(service, {}).get("volumes", []):
            source, dest = parse_volume(volume)
            if dest and dest.rstrip("/") == target.rstrip("/") and source and source.startswith("."):
                return (self.root / source).resolve()
        return None

    def container_to_repo(self, service, container_path):
        """Maps a path inside `service`'s container to the repository through its bind mounts."""
        best = None
        for volume in self.compose["services"].get(service, {}).get("volumes", []):
            source, dest = parse_volume(volume)
            if not (source and dest and source.startswith(".")):
                continue
            dest = dest.rstrip("/")
            inside = container_path == dest or container_path.startswith(dest + "/")
            if inside and (best is None or len(dest) > len(best[1])):
                best = (source, dest)
        if best is None:
            return None
        return (self.root / best[0]).resolve() / container_path[len(best[1]):].lstrip("/")

    # Prometheus

    def promtool_config(self):
        out = run_promtool(self.promtool, "check", "config", str(self.prom_dir / "prometheus.yml"))
        return next((line.strip() for line in out.splitlines() if "valid prometheus config" in line), last_success(out))

    def prometheus_layout(self):
        config = load_yaml(self.prom_dir / "prometheus.yml")
        service = self.compose["services"].get("prometheus")
        if service is None:
            raise Failed("docker-compose.yml has no `prometheus` service")
        flags = dict(arg.split("=", 1) for arg in service.get("command", []) if "=" in arg)
        config_path = flags.get("--config.file", "/etc/prometheus/prometheus.yml")
        repo_config = self.container_to_repo("prometheus", config_path)
        if repo_config != (self.prom_dir / "prometheus.yml").resolve():
            raise Failed(f"--config.file={config_path} is {repo_config} through the mounts, not deploy/prometheus/prometheus.yml")
        container_dir = os.path.dirname(config_path)
        rules = config.get("rule_files") or []
        if not rules:
            raise Failed("prometheus.yml has no rule_files")
        for rule_file in rules:
            in_container = rule_file if rule_file.startswith("/") else os.path.join(container_dir, rule_file)
            repo_path = self.container_to_repo("prometheus", in_container)
            if repo_path is None or not repo_path.is_file():
                raise Failed(f"rule file {rule_file} is {in_container} in the container: not a mounted repository file")
        return f"config at {config_path}, rule files {', '.join(rules)} resolve in the container"

    def scrape_jobs(self):
        config = load_yaml(self.prom_dir / "prometheus.yml")
        default_interval = (config.get("global") or {}).get("scrape_interval", "1m")
        jobs = {job["job_name"]: job for job in config.get("scrape_configs") or []}
        problems = []
        for name, address in SCRAPE_JOBS.items():
            job = jobs.get(name)
            if job is None:
                problems.append(f"no scrape job {name!r}")
                continue
            targets = [t for sc in job.get("static_configs") or [] for t in sc.get("targets") or []]
            if targets != [address]:
                problems.append(f"job {name}: targets {targets}, expected [{address!r}]")
            if job.get("metrics_path", "/metrics") != "/metrics":
                problems.append(f"job {name}: metrics_path {job['metrics_path']}")
            seconds = duration_seconds(job.get("scrape_interval", default_interval))
            if not 5 <= seconds <= 15:
                problems.append(f"job {name}: scrape interval {seconds:g}s, expected 5s to 15s")
        for job in jobs.values():
            for sc in job.get("static_configs") or []:
                for target in sc.get("targets") or []:
                    host = target.rsplit(":", 1)[0]
                    if host != "localhost" and host not in self.compose["services"]:
                        problems.append(f"job {job['job_name']}: target {target} is no docker-compose service")
        if problems:
            raise Failed("\n".join(problems))
        return ", ".join(f"{n} ({SCRAPE_JOBS[n]})" for n in SCRAPE_JOBS)

    def promtool_rules(self):
        return last_success(run_promtool(self.promtool, "check", "rules", str(self.prom_dir / "alerts.yml")))

    def promtool_tests(self):
        out = run_promtool(self.promtool, "test", "rules", "alerts_test.yml", cwd=self.prom_dir)
        return last_success(out)

    def alert_rules(self):
        rules = [r for g in load_yaml(self.prom_dir / "alerts.yml")["groups"] for r in g["rules"] if "alert" in r]
        problems = []
        for rule in rules:
            name = rule["alert"]
            if "for" not in rule:
                problems.append(f"{name}: no `for:`")
            if (rule.get("labels") or {}).get("severity") not in {"critical", "warning", "info"}:
                problems.append(f"{name}: severity label must be critical, warning or info")
            for annotation in ("summary", "description"):
                if not (rule.get("annotations") or {}).get(annotation):
                    problems.append(f"{name}: no {annotation} annotation")
            problems += [f"{name}: {p}" for p in promql_problems(rule["expr"])]
        if problems:
            raise Failed("\n".join(problems))
        return f"{len(rules)} alerts, each with for, severity, summary, description and known metrics"

    def alert_test_coverage(self):
        alerts = {r["alert"] for g in load_yaml(self.prom_dir / "alerts.yml")["groups"] for r in g["rules"] if "alert" in r}
        tests = load_yaml(self.prom_dir / "alerts_test.yml").get("tests") or []
        fires, quiet = set(), set()
        for test in tests:
            for case in test.get("alert_rule_test") or []:
                (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
                for alert in case.get("exp_alerts") or []:
                    if not alert.get("exp_annotations"):
                        raise Failed(f"{test['name']}: a firing {case['alertname']} without exp_annotations")
        problems = [f"{a}: no case where it fires" for a in sorted(alerts - fires)]
        problems += [f"{a}: no case where it does not fire" for a in sorted(alerts - quiet)]
        problems += [f"tests name an alert alerts.yml does not have: {a}" for a in sorted((fires | quiet) - alerts)]
        if problems:
            raise Failed("\n".join(problems))
        return f"each of {len(alerts)} alerts fires in one case and stays quiet in another"

    # docker-compose.yml

    def compose_schema(self):
        schema_path, origin = compose_schema_path()
        with open(schema_path, encoding="utf-8") as f:
            schema = json.load(f)
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
        validator = validator_class(schema)
        # The schema must know the newer parts of the specification this file uses.
        probe = {"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "service_completed_successfully"}}},
                              "b": {"image": "x"}}}
        if not validator.is_valid(probe):
            raise Failed(f"{origin} refuses depends_on condition service_completed_successfully: too old")
        if validator.is_valid({"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "whenever"}}}}}):
            raise Failed(f"{origin} accepts any depends_on condition: not a strict schema")
        errors = sorted(validator.iter_errors(self.compose), key=lambda e: list(e.absolute_path))
        # An error inside a service also makes the `allOf` around it refuse the service's other
        # keys as "unevaluated": keep those only when they are the whole story.
        specific = [e for e in errors if not e.message.startswith("Unevaluated properties")]
        errors = specific or errors
        if errors:
            raise Failed("\n".join(f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors[:20]))
        return f"valid against {origin}"

    def compose_structure(self):
        services = self.compose["services"]
        declared_volumes = set((self.compose.get("volumes") or {}).keys())
        # One-shot jobs (others wait for them to exit 0) have nothing to be healthy about.
        one_shot = {dep for s in services.values() for dep, cond in depends_on(s).items()
                    if cond == "service_completed_successfully"}
        waited_healthy = {dep for s in services.values() for dep, cond in depends_on(s).items() if cond == "service_healthy"}
        problems, mounts = [], 0
        for name, service in services.items():
            hc = service.get("healthcheck")
            if name in one_shot and name not in waited_healthy:
                if hc:
                    problems.append(f"{name}: a one-shot job (service_completed_successfully) with a healthcheck")
            elif not hc or hc.get("disable") or not hc.get("test"):
                problems.append(f"{name}: no healthcheck")
            for dep in depends_on(service):
                if dep not in services:
                    problems.append(f"{name}: depends_on {dep!r}, which is no service")
            for volume in service.get("volumes", []):
                source, _ = parse_volume(volume)
                if source is None:
                    continue
                if source.startswith((".", "/")):
                    mounts += 1
                    if source.startswith("/"):
                        problems.append(f"{name}: bind mount of the absolute host path {source}")
                    elif not (self.root / source).exists():
                        problems.append(f"{name}: mounts {source}, which does not exist in the repository")
                elif source not in declared_volumes:
                    problems.append(f"{name}: volume {source!r} is not declared under top-level volumes")
        if problems:
            raise Failed("\n".join(problems))
        checked = len(services) - len(one_shot - waited_healthy)
        exempt = f" (one-shot jobs need none: {', '.join(sorted(one_shot))})" if one_shot else ""
        return f"{checked} services with healthchecks{exempt}, depends_on targets exist, {mounts} bind mounts exist"

    def compose_exposure(self):
        """Only ingest and query face the network; nothing has a password written into the file."""
        problems = []
        for name, service in self.compose["services"].items():
            for port in service.get("ports", []):
                published = str(port.get("published", "")) if isinstance(port, dict) else str(port)
                host_ip = port.get("host_ip", "") if isinstance(port, dict) else ""
                loopback = host_ip == "127.0.0.1" or published.startswith("127.0.0.1:")
                if name not in PUBLIC_SERVICES and not loopback:
                    problems.append(f"{name}: publishes {published} on every address (only {', '.join(sorted(PUBLIC_SERVICES))} may)")
            environment = service.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(item.split("=", 1) for item in environment if "=" in item)
            for variable, value in environment.items():
                if "PASSWORD" in variable and not re.fullmatch(r"\$\{[A-Z_]+:\?[^}]*\}", str(value)):
                    problems.append(f"{name}: {variable} is not a required variable (${{NAME:?why}}): {value!r}")
        if problems:
            raise Failed("\n".join(problems))
        return f"only {', '.join(sorted(PUBLIC_SERVICES))} publish on every address; passwords are required variables"

    def dockerfile(self):
        stages = parse_dockerfile(self.root / "Dockerfile")
        services = self.compose["services"]
        problems = []
        build_stages = [s for s in stages.values() if "cargo build" in " ".join(s["run"])]
        if len(build_stages) != 1:
            problems.append(f"{len(build_stages)} stages run cargo build; expected one")
        else:
            build = build_stages[0]
            command = " ".join(build["run"])
            if not build["from"].startswith("rust:") or "--release" not in command or "--locked" not in command:
                problems.append(f"build stage: expected FROM rust:... and cargo build --release --locked, got {build['from']}")
            for crate in SCRAPE_JOBS:
                if f"-p {crate}" not in command:
                    problems.append(f"build stage does not build -p {crate}")
        for target, address in SCRAPE_JOBS.items():
            stage = stages.get(target)
            if stage is None:
                problems.append(f"no stage {target!r}")
                continue
            chain = stage_chain(stages, target)
            copies = [c for s in chain for c in s["copy_from"]]
            binaries = {os.path.basename(src) for c in copies for src in c}
            if binaries != {target}:
                problems.append(f"stage {target}: copies {sorted(binaries)} from the build, expected only {target}")
            user = next((s["user"] for s in chain if s["user"]), None)
            if user is None or user.split(":")[0] in {"root", "0"}:
                problems.append(f"stage {target}: runs as {user or 'root'}; set a non-root USER")
            if address.split(":")[1] not in {p for s in chain for p in s["expose"]}:
                problems.append(f"stage {target}: does not EXPOSE {address.split(':')[1]}")
            if not any(s["entrypoint"] for s in chain):
                problems.append(f"stage {target}: no ENTRYPOINT or CMD")
        for name, service in services.items():
            build = service.get("build")
            if build is None:
                continue
            target = build.get("target") if isinstance(build, dict) else None
            if target not in stages:
                problems.append(f"{name}: build target {target!r} is no Dockerfile stage ({', '.join(stages)})")
                continue
            test = (service.get("healthcheck") or {}).get("test") or []
            tool = test[1] if isinstance(test, list) and len(test) > 1 and test[0] == "CMD" else None
            installed = " ".join(r for s in stage_chain(stages, target) for r in s["run"])
            if tool and not re.search(rf"\b{re.escape(tool)}\b", installed):
                problems.append(f"{name}: healthcheck runs {tool}, which stage {target} does not install")
        if problems:
            raise Failed("\n".join(problems))
        return f"stages {', '.join(stages)}; compose build targets exist; healthcheck tools installed"

    # Grafana

    def grafana_provisioning(self):
        datasources = load_yaml(self.grafana_dir / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
        prometheus = [d for d in datasources if d.get("type") == "prometheus"]
        if len(prometheus) != 1 or not prometheus[0].get("uid"):
            raise Failed("expected one Prometheus data source with a uid")
        url = prometheus[0].get("url", "")
        host = re.sub(r"^\w+://", "", url).split(":")[0].split("/")[0]
        if host not in self.compose["services"]:
            raise Failed(f"data source url {url}: {host} is no docker-compose service")
        providers = load_yaml(self.grafana_dir / "provisioning" / "dashboards" / "adtrack.yml")["providers"]
        problems = []
        for provider in providers:
            path = (provider.get("options") or {}).get("path", "")
            repo_path = self.container_to_repo("grafana", path)
            if repo_path is None or not (repo_path / "adtrack.json").is_file():
                problems.append(f"dashboard provider {provider.get('name')}: {path} does not hold the repository's adtrack.json in the grafana container")
        provisioning = self.mount_source("grafana", "/etc/grafana/provisioning")
        if provisioning != (self.grafana_dir / "provisioning").resolve():
            problems.append("grafana does not mount ./deploy/grafana/provisioning at /etc/grafana/provisioning")
        if problems:
            raise Failed("\n".join(problems))
        return f"data source uid {prometheus[0]['uid']!r} at {url}; dashboards mounted where the provider looks"

    def metrics_match_the_code(self):
        """The list above is what the services register: every metric name given to a
        prometheus constructor in the Rust sources, no more, no fewer."""
        pattern = re.compile(r'(?:Opts|HistogramOpts)::new\(\s*"([a-z_]+)"|(?:IntGauge|Gauge|IntCounter|Counter)::new\(\s*"([a-z_]+)"')
        exported = set()
        for crate in ["service-kit", "ingest", "aggregator", "query"]:
            for source in sorted((self.root / crate / "src").rglob("*.rs")):
                text = source.read_text(encoding="utf-8").split("#[cfg(test)]")[0]
                exported |= {a or b for a, b in pattern.findall(text)}
        missing, stale = sorted(exported - set(METRICS)), sorted(set(METRICS) - exported)
        if missing or stale:
            raise Failed(f"registered by the services but not listed here: {missing}; listed here but registered nowhere: {stale}")
        return f"{len(exported)} metrics, as registered in the Rust sources"

    def dashboard(self):
        datasources = load_yaml(self.grafana_dir / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
        uids = {d["uid"] for d in datasources if d.get("uid")}
        dash = json.loads((self.grafana_dir / "dashboards" / "adtrack.json").read_text(encoding="utf-8"))
        problems = []
        if dash.get("uid") != "adtrack":
            problems.append(f"dashboard uid is {dash.get('uid')!r}, expected 'adtrack'")
        if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
            problems.append(f"schemaVersion {dash.get('schemaVersion')!r}: expected 36 or later")
        panels = list(all_panels(dash.get("panels") or []))
        ids = [p.get("id") for p in panels]
        duplicates = sorted({i for i in ids if ids.count(i) > 1}, key=str)
        if None in ids:
            problems.append("a panel has no id")
        if duplicates:
            problems.append(f"panel ids used twice: {duplicates}")
        exprs, used = [], set()
        for panel in panels:
            where = f"panel {panel.get('id')} {panel.get('title')!r}"
            if panel.get("type") == "row":
                continue
            for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets") or []]:
                uid = ref.get("uid") if isinstance(ref, dict) else ref
                if uid is not None and uid not in uids and not str(uid).startswith("$"):
                    problems.append(f"{where}: data source {uid!r} is not provisioned ({', '.join(sorted(uids))})")
            targets = [t for t in panel.get("targets") or [] if t.get("expr", "").strip()]
            if not targets:
                problems.append(f"{where}: no target with an expr")
            for target in targets:
                exprs.append((f"{where} target {target.get('refId')}", target["expr"]))
        for var in (dash.get("templating") or {}).get("list") or []:
            if var.get("type") != "query":
                continue
            query = var.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            inner = re.fullmatch(r"\s*label_values\((.*?)(?:,\s*\w+)?\)\s*", query)
            exprs.append((f"variable {var.get('name')}", inner.group(1) if inner else query))
        for where, expr in exprs:
            problems += [f"{where}: {p}" for p in promql_problems(expr)]
            used |= metrics_used(expr)
        problems += promql_syntax(self.promtool, exprs)
        unused = sorted(set(METRICS) - used)
        if unused:
            problems.append(f"metrics no panel shows: {', '.join(unused)}")
        if problems:
            raise Failed("\n".join(problems))
        shown = sum(1 for p in panels if p.get("type") != "row")
        return f"{shown} panels, {len(exprs)} queries parse and use only known metrics; ids unique; every metric shown"


def promql_syntax(promtool, exprs):
    """Parses every query with promtool, as recording rules of a scratch rule file."""
    rules = []
    for i, (_, expr) in enumerate(exprs):
        text = GRAFANA_RANGE_VARS.sub("5m", expr)
        text = GRAFANA_VARS.sub(".*", text)
        rules.append({"record": f"dashboard:query_{i}", "expr": text})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboard_queries.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
        try:
            run_promtool(promtool, "check", "rules", str(path))
        except Failed as e:
            # Name the panels whose queries promtool refused.
            bad = {int(m) for m in re.findall(r"dashboard:query_(\d+)", str(e))}
            named = "; ".join(f"{exprs[i][0]}: {exprs[i][1]}" for i in sorted(bad))
            return [f"a query does not parse: {named or e}"]
    return []


# --- helpers ----------------------------------------------------------------------------------


def compose_schema_path():
    if os.environ.get("COMPOSE_SPEC_SCHEMA"):
        return os.environ["COMPOSE_SPEC_SCHEMA"], os.environ["COMPOSE_SPEC_SCHEMA"]
    candidates = [("check-jsonschema", "check_jsonschema/builtin_schemas/vendor/compose-spec.json"),
                  ("docker-compose", "compose/config/compose_spec.json")]
    for dist, rel in candidates:
        try:
            distribution = importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
        path = Path(distribution.locate_file(rel))
        if path.is_file():
            return str(path), f"the Compose Specification schema of {dist} {distribution.version}"
    raise Failed("no Compose Specification schema: pip install --no-deps check-jsonschema, or set COMPOSE_SPEC_SCHEMA")


def depends_on(service):
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {d: (c or {}).get("condition", "service_started") for d, c in deps.items()}


def parse_volume(volume):
    """(source, target) of a service volume, short or long syntax."""
    if isinstance(volume, dict):
        return volume.get("source"), volume.get("target")
    parts = str(volume).split(":")
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def parse_dockerfile(path):
    stages, current = {}, None
    lines = path.read_text(encoding="utf-8").replace("\\\n", " ").splitlines()
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            name = m.group(2) or f"stage{len(stages)}"
            current = stages[name] = {"from": m.group(1), "run": [], "copy_from": [], "user": None,
                                      "expose": set(), "entrypoint": False}
        elif current is None:
            continue
        elif word == "RUN":
            current["run"].append(rest)
        elif word == "COPY" and "--from=" in rest:
            args = [a for a in rest.split() if not a.startswith("--")]
            current["copy_from"].append(args[:-1])
        elif word == "USER":
            current["user"] = rest.strip()
        elif word == "EXPOSE":
            current["expose"] |= {p.split("/")[0] for p in rest.split()}
        elif word in {"ENTRYPOINT", "CMD"}:
            current["entrypoint"] = True
    return stages


def stage_chain(stages, name):
    """The stage and the stages it is built FROM, nearest first."""
    chain = []
    while name in stages and stages[name] not in chain:
        chain.append(stages[name])
        name = stages[name]["from"]
    return chain


def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels") or [])


def duration_seconds(text):
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    for value, unit in re.findall(r"(\d+)(ms|s|m|h|d)", str(text)):
        total += int(value) * units[unit]
    return total


def last_success(output):
    lines = [line.strip() for line in output.splitlines() if "SUCCESS" in line]
    return lines[-1] if lines else output.splitlines()[-1] if output else ""


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(argv[1]).resolve()
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool:
        print("FAIL promtool not found: put it on PATH or set PROMTOOL (Debian: apt-get install prometheus)", file=sys.stderr)
        return 1
    version = subprocess.run([promtool, "--version"], check=False, capture_output=True, text=True).stdout.splitlines()[:1]
    print(f"checking {root} with {promtool} ({' '.join(version).strip()})")
    c = Checker(root, promtool)
    checks = [
        ("promtool check config deploy/prometheus/prometheus.yml", c.promtool_config),
        ("prometheus.yml paths as mounted in the prometheus container", c.prometheus_layout),
        ("scrape jobs ingest, query, aggregator", c.scrape_jobs),
        ("promtool check rules deploy/prometheus/alerts.yml", c.promtool_rules),
        ("alert rules: for, severity, annotations, metric names", c.alert_rules),
        ("promtool test rules deploy/prometheus/alerts_test.yml", c.promtool_tests),
        ("alerts_test.yml covers every alert, firing and not", c.alert_test_coverage),
        ("docker-compose.yml against the Compose Specification", c.compose_schema),
        ("docker-compose.yml healthchecks, depends_on, mounts, volumes", c.compose_structure),
        ("docker-compose.yml published ports and passwords", c.compose_exposure),
        ("Dockerfile stages and compose build targets", c.dockerfile),
        ("grafana provisioning: data source and dashboard provider", c.grafana_provisioning),
        ("grafana dashboard deploy/grafana/dashboards/adtrack.json", c.dashboard),
        ("the metrics checked against are the ones the services register", c.metrics_match_the_code),
    ]
    for name, check in checks:
        c.check(name, check)
    if c.failed:
        print(f"check_monitoring: {c.failed} of {len(checks)} checks FAILED")
    else:
        print(f"check_monitoring: all {c.passed} checks passed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

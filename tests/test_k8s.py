"""The Helm chart (k8s/helm/s2s): rendered and linted by Helm's own SDK, every manifest validated strictly
against the Kubernetes API schemas, the key properties asserted, the values schema exercised, and the
names it relies on checked against the real programs (s2s CLI flags, Triton's and the gateway's metrics)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import numpy as np
import pytest
import tomllib
import tritonclient.http as httpclient
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import s2s
from s2s.cli import build_parser
from s2s.export.specs import ExportOptions
from s2s.export.triton_config import ServingOptions
from s2s.flags import from_flags
from s2s.gateway.app import GatewaySettings
from s2s.gateway.metrics import GatewayMetrics
from s2s.runtime.selfcheck import write_affine_model
from s2s.windowing import PreprocessOptions
from tests.conftest import Serve

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "k8s" / "helm" / "s2s"
ADAPTER_VALUES = ROOT / "k8s" / "prometheus-adapter-values.yaml"
DOCKERFILE = ROOT / "k8s" / "Dockerfile"
RELEASE, NAMESPACE = "demo", "media"
#: the oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and a current one
KUBE_VERSIONS = ("1.27.0", "1.37.0")
#: custom resources the chart may render on purpose (Prometheus Operator); any other unknown kind fails
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
MONITORING = {"scrape": {"enabled": True}, "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}

#: value sets covering each model-repository source, autoscaling and monitoring on/off, gateway options
VALUE_SETS = {
    "default": {},
    "pvc": {"modelRepository": {"source": "pvc", "pvc": {"claimName": "s2s-models", "subPath": "v1"}}},
    "s3": {
        "modelRepository": {
            "source": "objectStore",
            "objectStore": {"uri": "s3://models-bucket/s2s", "secretName": "aws-keys", "region": "eu-west-1"},
        }
    },
    "gcs": {
        "modelRepository": {
            "source": "objectStore",
            "objectStore": {"uri": "gs://models-bucket/s2s", "secretName": "gcs-key"},
        }
    },
    "export-tensorrt": {
        "modelRepository": {
            "export": {
                "format": "tensorrt",
                "flowMethod": "tvl1",
                "checkpointsClaim": "checkpoints",
                "extraArgs": ["--generator-checkpoint", "/checkpoints/regnet_netG.pth"],
                "cache": {"existingClaim": "shared-trt-cache"},
            }
        },
        "images": {"registry": "registry.example.com/ml", "pullSecrets": ["regcred"]},
    },
    "autoscaling-queue-ratio": {
        "autoscaling": {"enabled": True, "maxReplicas": 6},
        "gateway": {"autoscaling": {"enabled": True}},
        "monitoring": MONITORING,
    },
    "autoscaling-pending-podmonitor": {
        "autoscaling": {"enabled": True, "metric": "pendingRequests"},
        "monitoring": {"scrape": {"enabled": True, "kind": "PodMonitor"}, "prometheusRule": {"enabled": True}},
    },
    "monitoring-no-gateway": {"gateway": {"enabled": False}, "monitoring": MONITORING},
    "gateway-managed-store": {
        "gateway": {"replicas": 4, "store": {"existingSecret": "s2s-db", "secretKey": "dsn"}, "drainSeconds": 30}
    },
    "ingress-no-cache": {
        "gateway": {
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "tls": [{"secretName": "s2s-tls", "hosts": ["s2s.example.com"]}],
            },
            "persistence": {"enabled": False},
            "replicas": 1,
            "store": {"mode": "folder"},
        },
        "modelRepository": {"export": {"cache": {"enabled": False}, "trtAccelerator": False}},
        "triton": {"pdb": {"enabled": False}},
    },
}


def render(values: dict | None = None, name: str = RELEASE) -> dict[tuple[str, str], dict]:
    """Render the chart offline; returns the objects by (kind, name)."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values=values or {}, name=name, namespace=NAMESPACE)
    objects = {}
    for path, text in files.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in objects, f"{key} rendered twice"
                objects[key] = doc
    return objects


def deployment(objects: dict, component: str) -> dict:
    return objects[("Deployment", f"{RELEASE}-s2s-{component}")]


def container(dep: dict, name: str, init: bool = False) -> dict:
    containers = dep["spec"]["template"]["spec"]["initContainers" if init else "containers"]
    return next(c for c in containers if c["name"] == name)


def volumes(dep: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}


def mounts(c: dict) -> dict[str, dict]:
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


def flag(args: list[str], name: str) -> str | None:
    for a in args:
        if a.startswith(f"{name}="):
            return a.split("=", 1)[1]
    return None


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    return {name: render(values) for name, values in VALUE_SETS.items()}


# a minimal structural schema for the Prometheus Operator resources (their CRD schemas are not available
# offline): what the operator needs to act on them
_SELECTOR = {"type": "object", "required": ["matchLabels"]}
_ENDPOINTS = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["port", "path"],
        "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"}},
    },
}
CRD_SCHEMAS = {
    "ServiceMonitor": {
        "required": ["selector", "endpoints"],
        "properties": {"selector": _SELECTOR, "endpoints": _ENDPOINTS},
    },
    "PodMonitor": {
        "required": ["selector", "podMetricsEndpoints"],
        "properties": {"selector": _SELECTOR, "podMetricsEndpoints": _ENDPOINTS},
    },
    "PrometheusRule": {
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["name", "rules"],
                    "properties": {
                        "rules": {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                            },
                        }
                    },
                },
            }
        },
    },
}


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_every_manifest_is_valid_kubernetes(rendered, value_set):
    objects = rendered[value_set]
    assert objects
    for (kind, name), obj in objects.items():
        if (obj["apiVersion"], kind) in CRDS:
            jsonschema.validate(obj, {"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"]})
            jsonschema.validate(obj["spec"], {"type": "object", **CRD_SCHEMAS[kind]})
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.utils.SchemaNotFoundError as exc:
                pytest.fail(f"{kind}/{name}: unknown kind for Kubernetes {version} ({exc.message})")
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{kind}/{name} is not valid Kubernetes {version}: {exc.message} at {list(exc.path)}")
        assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_helm_lint_is_clean(value_set):
    report = helm.lint(CHART, VALUE_SETS[value_set], strict=True, namespace=NAMESPACE, kube_version="v1.37.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2 and "icon is recommended" not in m["error"]]
    assert problems == []


def test_triton_pod_has_gpu_shm_probes_ports_and_runs_as_non_root(rendered):
    objects = rendered["default"]
    dep = deployment(objects, "triton")
    pod = dep["spec"]["template"]["spec"]
    triton = container(dep, "triton")
    # GPU: limit, GPU nodes and their taint
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    # /dev/shm: a memory emptyDir with a size limit, and the Python backend's matching flags
    shm = volumes(dep)[mounts(triton)["/dev/shm"]["name"]]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "4096Mi"}
    args = triton["args"]
    assert "--backend-config=python,shm-default-byte-size=268435456" in args
    assert "--backend-config=python,shm-growth-byte-size=67108864" in args
    # ports and probes
    ports = {p["name"]: p["containerPort"] for p in triton["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert (flag(args, "--http-port"), flag(args, "--grpc-port"), flag(args, "--metrics-port")) == (
        "8000",
        "8001",
        "8002",
    )
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    # stopping: the preStop drain (a real `s2s drain` invocation, with the pod's own port and exit timeout)
    # may unload the ensemble because models are under explicit control, loaded all at start
    assert flag(args, "--model-control-mode") == "explicit" and flag(args, "--load-model") == "*"
    drain = triton["lifecycle"]["preStop"]["exec"]["command"]
    drain_args = build_parser().parse_args(drain[1:])
    assert drain[0] == "s2s" and drain_args.func.__name__ == "run_drain" and drain_args.url == "127.0.0.1:8000"
    assert (
        pod["terminationGracePeriodSeconds"] >= 2 * drain_args.timeout == 2 * float(flag(args, "--exit-timeout-secs"))
    )
    startup = triton["startupProbe"]
    assert startup["httpGet"]["path"] == "/v2/health/ready"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600, "model load + warm-up needs minutes"
    # non-root, no privilege escalation
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    for c in pod["containers"] + pod["initContainers"]:
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert "/tmp" in mounts(c), f"{c['name']}: read-only root filesystem needs a writable /tmp"
    # images default to the chart's appVersion, which is the package version
    with helm.Chart.load(CHART) as chart:
        assert chart.metadata["appVersion"] == s2s.__version__
    assert triton["image"] == f"s2s-triton:{s2s.__version__}"
    # the Service exposes the three ports by name
    service = objects[("Service", f"{RELEASE}-s2s-triton")]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports


def test_export_source_runs_the_real_export_cli_on_the_gpu_with_a_cache(rendered):
    dep = deployment(rendered["default"], "triton")
    export = container(dep, "export", init=True)
    assert export["command"] == ["s2s", "export"]
    args = build_parser().parse_args(["export", *export["args"]])  # every flag exists in the real CLI
    serving = from_flags(ServingOptions, args)  # and lands in the record the export builds
    assert args.model_repository == Path("/models") and serving.format == "onnx" and serving.trt_accelerator
    assert args.trt_cache == Path("/trt-cache")
    assert export["resources"]["limits"]["nvidia.com/gpu"] == 1, "engines are built on the serving GPU"
    triton = container(dep, "triton")
    assert flag(triton["args"], "--model-repository") == "/models"
    assert mounts(export)["/models"]["name"] == mounts(triton)["/models"]["name"] == "models"
    assert mounts(triton)["/models"]["readOnly"] is True
    cache = volumes(dep)["trt-cache"]["persistentVolumeClaim"]["claimName"]
    assert mounts(triton)["/trt-cache"]["name"] == "trt-cache", "the TensorRT accelerator writes engines at load"
    env = {e["name"]: e.get("value") for e in triton["env"]}
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/trt-cache/torchinductor", "TV-L1's compiled kernels are kept too"
    claim = rendered["default"][("PersistentVolumeClaim", cache)]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    dep = deployment(rendered["export-tensorrt"], "triton")
    export = container(dep, "export", init=True)
    args = build_parser().parse_args(["export", *export["args"]])
    serving = from_flags(ServingOptions, args)
    assert serving.format == "tensorrt" and not serving.trt_accelerator
    assert from_flags(PreprocessOptions, args).flow_method == "tvl1"
    assert serving.device == "gpu", "TV-L1 runs in PyTorch on the pod's GPU"
    assert from_flags(ExportOptions, args).generator_checkpoint == Path("/checkpoints/regnet_netG.pth")
    assert mounts(export)["/checkpoints"]["readOnly"] is True
    assert volumes(dep)["trt-cache"]["persistentVolumeClaim"]["claimName"] == "shared-trt-cache"
    assert not [k for k in rendered["export-tensorrt"] if k[0] == "PersistentVolumeClaim" and "trt" in k[1]]
    assert export["image"] == f"registry.example.com/ml/s2s-export:{s2s.__version__}"
    assert dep["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "regcred"}]

    dep = deployment(rendered["ingress-no-cache"], "triton")
    args = build_parser().parse_args(["export", *container(dep, "export", init=True)["args"]])
    assert args.trt_cache is None and not from_flags(ServingOptions, args).trt_accelerator
    assert "trt-cache" not in volumes(dep)
    env = {e["name"]: e.get("value") for e in container(dep, "triton")["env"]}
    assert env["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/"), "the writable emptyDir without a cache volume"


def test_triton_admin_apis_need_the_key_from_a_secret(rendered):
    """The chart restricts exactly the admin APIs s2s serve restricts, with a key from a Secret."""
    import base64

    from s2s.runtime.server import ADMIN_APIS, ADMIN_HEADER, check_admin_key

    triton = container(deployment(rendered["default"], "triton"), "triton")
    expected = f"{','.join(ADMIN_APIS)}:{ADMIN_HEADER}=$(S2S_TRITON_ADMIN_KEY)"
    assert flag(triton["args"], "--http-restricted-api") == expected
    assert flag(triton["args"], "--grpc-restricted-protocol") == expected
    source = next(e for e in triton["env"] if e["name"] == "S2S_TRITON_ADMIN_KEY")["valueFrom"]["secretKeyRef"]
    secret = rendered["default"][("Secret", source["name"])]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    check_admin_key(base64.b64decode(secret["data"][source["key"]]).decode())  # a key Triton accepts
    objects = render({"triton": {"adminKey": {"existingSecret": "team-triton-admin", "secretKey": "key"}}})
    triton = container(deployment(objects, "triton"), "triton")
    source = next(e for e in triton["env"] if e["name"] == "S2S_TRITON_ADMIN_KEY")["valueFrom"]["secretKeyRef"]
    assert source == {"name": "team-triton-admin", "key": "key"}
    assert ("Secret", f"{RELEASE}-s2s-triton-admin") not in objects, "the release's own Secret is used"


def test_network_policy_lets_only_the_gateway_tests_and_prometheus_reach_triton(rendered):
    objects = rendered["default"]
    policy = objects[("NetworkPolicy", f"{RELEASE}-s2s-triton")]
    triton = deployment(objects, "triton")
    assert policy["spec"]["podSelector"]["matchLabels"] == triton["spec"]["selector"]["matchLabels"]
    serving, metrics = policy["spec"]["ingress"]
    gateway_labels = deployment(objects, "gateway")["spec"]["template"]["metadata"]["labels"]
    test_labels = objects[("Pod", f"{RELEASE}-s2s-test")]["metadata"]["labels"]
    for peer in serving["from"]:
        wanted = peer["podSelector"]["matchLabels"]
        assert "namespaceSelector" not in peer  # this namespace only
        assert wanted.items() <= gateway_labels.items() or wanted.items() <= test_labels.items(), wanted
    assert {p["port"] for p in serving["ports"]} == {"http", "grpc"}
    assert [p["port"] for p in metrics["ports"]] == ["metrics"]
    assert metrics["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert not [k for k in render({"networkPolicy": {"enabled": False}}) if k[0] == "NetworkPolicy"]


def test_pvc_source_mounts_the_claim_read_only_without_export(rendered):
    dep = deployment(rendered["pvc"], "triton")
    assert "initContainers" not in dep["spec"]["template"]["spec"]
    triton = container(dep, "triton")
    assert flag(triton["args"], "--model-repository") == "/models"
    assert mounts(triton)["/models"] == {"name": "models", "mountPath": "/models", "readOnly": True, "subPath": "v1"}
    assert volumes(dep)["models"]["persistentVolumeClaim"] == {"claimName": "s2s-models", "readOnly": True}
    assert not [k for k in rendered["pvc"] if k[0] == "PersistentVolumeClaim" and "trt" in k[1]]


def test_object_store_sources_give_triton_the_uri_and_credentials(rendered):
    dep = deployment(rendered["s3"], "triton")
    triton = container(dep, "triton")
    assert flag(triton["args"], "--model-repository") == "s3://models-bucket/s2s"
    assert triton["envFrom"] == [{"secretRef": {"name": "aws-keys"}}]
    assert {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"} in triton["env"]
    assert "models" not in volumes(dep) and "/models" not in mounts(triton)
    assert "initContainers" not in dep["spec"]["template"]["spec"]

    dep = deployment(rendered["gcs"], "triton")
    triton = container(dep, "triton")
    assert flag(triton["args"], "--model-repository") == "gs://models-bucket/s2s"
    env = {e["name"]: e.get("value") for e in triton["env"]}
    key = env["GOOGLE_APPLICATION_CREDENTIALS"]
    mount = next(m for path, m in mounts(triton).items() if key.startswith(path + "/"))
    assert volumes(dep)[mount["name"]]["secret"]["secretName"] == "gcs-key"
    assert "envFrom" not in triton


def test_gateway_points_at_triton_with_a_results_volume_and_optional_ingress(rendered):
    objects = rendered["default"]
    dep = deployment(objects, "gateway")
    gw = container(dep, "gateway")
    args = build_parser().parse_args(["gateway", *gw["args"]])  # every flag exists in the real CLI
    settings = from_flags(GatewaySettings, args)  # and lands in the gateway's settings
    # the gateways balance over every Triton pod: a headless Service's DNS answer, not one ClusterIP
    pods = objects[("Service", f"{RELEASE}-s2s-triton-pods")]
    triton_service = objects[("Service", f"{RELEASE}-s2s-triton")]
    assert pods["spec"]["clusterIP"] == "None" and pods["spec"]["selector"] == triton_service["spec"]["selector"]
    grpc_port = next(p["port"] for p in pods["spec"]["ports"] if p["name"] == "grpc")
    assert settings.triton_url == f"dns:///{pods['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{grpc_port}"
    assert settings.max_upload_bytes == 256 * 1024 * 1024 and settings.data_dir == Path("/data")
    claim = volumes(dep)[mounts(gw)["/data"]["name"]]["persistentVolumeClaim"]["claimName"]
    assert objects[("PersistentVolumeClaim", claim)]["spec"]["accessModes"] == ["ReadWriteMany"]
    # stateless replicas over a shared store: rolling updates, a drain that fits in the grace period
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert settings.cancel_in_flight and settings.lease_s == 30
    grace = dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 5 + 2 * settings.drain_s and gw["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    # readiness follows the store, not Triton: results stay downloadable while Triton restarts
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz?triton=false"
    assert gw["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # the job store: the in-cluster PostgreSQL's URL, from its Secret, reaches the gateway as $S2S_GATEWAY_STORE
    import base64

    (store_env,) = [e for e in gw["env"] if e["name"] == "S2S_GATEWAY_STORE"]
    ref = store_env["valueFrom"]["secretKeyRef"]
    secret = objects[("Secret", ref["name"])]
    url = base64.b64decode(secret["data"][ref["key"]]).decode()
    postgres = objects[("StatefulSet", f"{RELEASE}-s2s-postgres")]
    assert url.startswith("postgresql://s2s:") and url.endswith(f"@{RELEASE}-s2s-postgres:5432/s2s")
    assert ("Service", f"{RELEASE}-s2s-postgres") in objects and secret["metadata"]["annotations"][
        "helm.sh/resource-policy"
    ] == "keep"
    password = next(
        e for e in postgres["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "POSTGRES_PASSWORD"
    )
    assert password["valueFrom"]["secretKeyRef"]["name"] == ref["name"]
    policy = objects[("NetworkPolicy", f"{RELEASE}-s2s-postgres")]  # only the gateways reach the database
    pg_labels = postgres["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pg_labels.items()
    (rule,) = policy["spec"]["ingress"]
    gw_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= gw_labels.items()
    assert not [k for k in objects if k[0] == "Ingress"]

    managed = rendered["gateway-managed-store"]  # a database of the team's own: no in-cluster one
    gw = container(deployment(managed, "gateway"), "gateway")
    (store_env,) = [e for e in gw["env"] if e["name"] == "S2S_GATEWAY_STORE"]
    assert store_env["valueFrom"]["secretKeyRef"] == {"name": "s2s-db", "key": "dsn"}
    assert not [k for k in managed if "postgres" in k[1] or k[1].endswith("-store")]
    assert deployment(managed, "gateway")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 65

    objects = rendered["ingress-no-cache"]
    ingress = objects[("Ingress", f"{RELEASE}-s2s-gateway")]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert (("Service", backend["name"]) in objects) and backend["port"] == {"name": "http"}
    assert ingress["spec"]["tls"][0]["secretName"] == "s2s-tls"
    assert "emptyDir" in volumes(deployment(objects, "gateway"))["data"]
    folder = deployment(objects, "gateway")  # one replica on the folder store: no database, Recreate
    assert folder["spec"]["replicas"] == 1 and folder["spec"]["strategy"] == {"type": "Recreate"}
    assert not [e for e in container(folder, "gateway")["env"] if e["name"] == "S2S_GATEWAY_STORE"]
    assert not [k for k in objects if "postgres" in k[1]]

    assert not [k for k in rendered["monitoring-no-gateway"] if k[1].endswith("-gateway")]


def test_gateway_wants_api_keys_from_secrets_it_rereads(rendered, tmp_path):
    """The chart's own key works against the keys file the gateway mounts; Prometheus gets the metrics key;
    auth off means --no-auth, and then no Ingress."""
    import base64

    from s2s.gateway.auth import KeyRing

    objects = rendered["default"]
    dep = deployment(objects, "gateway")
    gw = container(dep, "gateway")
    settings = from_flags(GatewaySettings, build_parser().parse_args(["gateway", *gw["args"]]))
    assert not settings.no_auth and settings.key_quota.jobs == 2 and settings.key_quota.disk_bytes == 5 << 30

    def secret_file(path: Path) -> tuple[dict, str]:
        mount = next(m for m in gw["volumeMounts"] if path.parent == Path(m["mountPath"]))
        assert mount["readOnly"] and "subPath" not in mount, "a subPath mount would never see an edited Secret"
        source = volumes(dep)[mount["name"]]["secret"]
        secret = objects[("Secret", source["secretName"])]
        return secret, base64.b64decode(secret["data"][path.name]).decode()

    secret, keys_file = secret_file(settings.api_keys)
    (tmp_path / "keys").write_text(keys_file)
    plain = objects[("Secret", f"{RELEASE}-s2s-gateway-admin-key")]
    assert plain["metadata"]["name"] not in str(volumes(dep)), "the plain key is not mounted into the gateway"
    key = base64.b64decode(plain["data"]["key"]).decode()
    assert key not in keys_file and KeyRing(tmp_path / "keys", settings.key_quota).lookup(key).id == "admin"
    for kept in (secret, plain):
        assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    metrics_secret, metrics_key = secret_file(settings.metrics_key_file)
    assert len(metrics_key) >= 16
    for value_set in ("autoscaling-queue-ratio", "autoscaling-pending-podmonitor"):
        monitors = [o for k, o in rendered[value_set].items() if k[0] in ("ServiceMonitor", "PodMonitor")]
        endpoint = next((m["spec"].get("endpoints") or m["spec"]["podMetricsEndpoints"])[0]
                        for m in monitors if m["metadata"]["name"].endswith("-gateway"))  # fmt: skip
        assert endpoint["authorization"]["credentials"] == {"name": metrics_secret["metadata"]["name"],
                                                            "key": "metrics-key"}  # fmt: skip

    own = render({"gateway": {"auth": {"existingSecret": "team-keys", "secretKey": "keys.txt"}}})
    gw = container(deployment(own, "gateway"), "gateway")
    assert flag(gw["args"], "--api-keys") == "/etc/s2s/keys/keys.txt"
    assert volumes(deployment(own, "gateway"))["api-keys"]["secret"]["secretName"] == "team-keys"
    assert not [k for k in own if k[0] == "Secret" and ("keys" in k[1] or "admin-key" in k[1])]

    off = render({"gateway": {"auth": {"enabled": False}}})
    gw = container(deployment(off, "gateway"), "gateway")
    assert "--no-auth" in gw["args"] and flag(gw["args"], "--api-keys") is None
    assert from_flags(GatewaySettings, build_parser().parse_args(["gateway", *gw["args"]])).no_auth
    assert not [k for k in off if k[0] == "Secret" and "gateway" in k[1] and not k[1].endswith("-store")]


def test_pod_disruption_budgets_never_block_a_drain(rendered):
    pdbs = {k[1]: v for k, v in rendered["default"].items() if k[0] == "PodDisruptionBudget"}
    assert set(pdbs) == {f"{RELEASE}-s2s-triton", f"{RELEASE}-s2s-gateway"}
    for name, pdb in pdbs.items():
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
        component = name.rsplit("-", 1)[1]
        labels = deployment(rendered["default"], component)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _adapter_metrics() -> dict[str, str]:
    """prometheus-adapter's custom metrics: served name -> recorded series."""
    rules = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["custom"]
    out = {}
    for rule in rules:
        series = re.match(r"([a-z0-9_:]+)\{", rule["seriesQuery"]).group(1)
        name = re.sub(rule["name"]["matches"], rule["name"]["as"].replace("${1}", r"\1"), series)
        overrides = set(rule["resources"]["overrides"])
        assert overrides in ({"namespace", "pod"}, {"namespace", "service"}), "per pod, or per Service"
        out[name] = series
    return out


@pytest.mark.parametrize(
    ("value_set", "metric"),
    [
        ("autoscaling-queue-ratio", "s2s_triton_queue_compute_ratio"),
        ("autoscaling-pending-podmonitor", "s2s_triton_pending_requests"),
    ],
)
def test_hpa_scales_triton_on_a_recorded_metric_that_the_adapter_serves(rendered, value_set, metric):
    objects = rendered[value_set]
    dep = deployment(objects, "triton")
    hpa = objects[("HorizontalPodAutoscaler", dep["metadata"]["name"])]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    [spec] = hpa["spec"]["metrics"]
    assert spec["type"] == "Pods" and spec["pods"]["metric"]["name"] == metric
    assert spec["pods"]["target"]["type"] == "AverageValue"
    # the adapter serves that name from a series the chart's PrometheusRule records, per Triton pod
    series = _adapter_metrics()[metric]
    [rule] = [o for k, o in objects.items() if k[0] == "PrometheusRule"]
    records = {r["record"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert series in records
    assert "sum by (namespace, pod)" in records[series]
    assert 'model!="s2s"' in records[series], "the ensemble's own time would count every request twice"
    # the scrape objects select the Triton Service / pods and its metrics port
    kind = VALUE_SETS[value_set]["monitoring"]["scrape"].get("kind", "ServiceMonitor")
    monitor = objects[(kind, dep["metadata"]["name"])]
    endpoints = monitor["spec"]["podMetricsEndpoints" if kind == "PodMonitor" else "endpoints"]
    assert endpoints[0]["port"] == "metrics"
    target_labels = dep if kind == "PodMonitor" else objects[("Service", dep["metadata"]["name"])]
    labels = (
        target_labels["spec"]["template"]["metadata"]["labels"]
        if kind == "PodMonitor"
        else target_labels["metadata"]["labels"]
    )
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_gateways_can_scale_on_the_shared_queue_through_the_adapter():
    objects = render({"gateway": {"autoscaling": {"enabled": True, "maxReplicas": 8}}, "monitoring": MONITORING})
    dep = deployment(objects, "gateway")
    name = dep["metadata"]["name"]
    hpa = objects[("HorizontalPodAutoscaler", name)]
    assert "replicas" not in dep["spec"] and hpa["spec"]["maxReplicas"] == 8 and hpa["spec"]["minReplicas"] == 2
    [spec] = hpa["spec"]["metrics"]
    assert spec["type"] == "Object" and spec["object"]["describedObject"] == {"apiVersion": "v1", "kind": "Service",
                                                                              "name": name}  # fmt: skip
    assert ("Service", name) in objects and spec["object"]["target"]["type"] == "AverageValue"
    series = _adapter_metrics()[spec["object"]["metric"]["name"]]
    [rule] = [o for k, o in objects.items() if k[0] == "PrometheusRule"]
    records = {r["record"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert "s2s_gateway_queue_depth" in records[series] and f'"service", "{name}"' in records[series]
    assert ("HorizontalPodAutoscaler", f"{RELEASE}-s2s-triton") not in objects  # each autoscaler on its own
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmRenderError, match="prometheusRule"):
        chart.render(values={"gateway": {"autoscaling": {"enabled": True}}}, name=RELEASE, namespace=NAMESPACE)


def test_autoscaling_and_monitoring_are_off_by_default(rendered):
    kinds = {k[0] for k in rendered["default"]}
    assert not kinds & {"HorizontalPodAutoscaler", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
    assert "replicas" in deployment(rendered["default"], "triton")["spec"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"triton": {"gpu": {"count": 0}}}, "/triton/gpu/count"),
        ({"triton": {"shm": {"sizeLimitMiB": "4Gi"}}}, "/triton/shm/sizeLimitMiB"),
        ({"triton": {"ports": {"grpc": 70000}}}, "/triton/ports/grpc"),
        ({"modelRepository": {"source": "nfs"}}, "/modelRepository/source"),
        ({"modelRepository": {"source": "pvc"}}, "/modelRepository/pvc/claimName"),
        ({"modelRepository": {"source": "objectStore"}}, "/modelRepository/objectStore/uri"),
        ({"modelRepository": {"objectStore": {"uri": "https://bucket/models"}}}, "/modelRepository/objectStore/uri"),
        ({"modelRepository": {"export": {"format": "torchscript"}}}, "/modelRepository/export/format"),
        ({"modelRepository": {"export": {"device": "cpu"}}}, "/modelRepository/export/device"),
        ({"modelRepository": {"export": {"cache": {"size": "lots"}}}}, "/modelRepository/export/cache/size"),
        ({"gateway": {"replicas": -1}}, "/gateway/replicas"),
        ({"gateway": {"store": {"mode": "redis"}}}, "/gateway/store/mode"),
        ({"gateway": {"leaseSeconds": 1}}, "/gateway/leaseSeconds"),
        ({"autoscaling": {"metric": "cpu"}}, "/autoscaling/metric"),
        ({"autoscaling": {"targetQueueComputeRatio": "half"}}, "/autoscaling/targetQueueComputeRatio"),
        ({"monitoring": {"scrape": {"kind": "Probe"}}}, "/monitoring/scrape/kind"),
        ({"triton": {"replica": 2}}, "replica"),
        ({"gateway": {"auth": {"jobsPerKey": 0}}}, "/gateway/auth/jobsPerKey"),
        ({"gateway": {"auth": {"token": "x"}}}, "token"),
    ],
)
def test_values_schema_rejects_bad_values(values, message):
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match=re.escape(message)):
            chart.validate_schema(values)
        with pytest.raises(helm.HelmValuesError):
            chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"triton": {"shm": {"sizeLimitMiB": 128, "pythonDefaultMiB": 256}}}, "larger than triton.shm.sizeLimitMiB"),
        ({"autoscaling": {"enabled": True}}, "needs monitoring.prometheusRule.enabled"),
        ({"gateway": {"auth": {"enabled": False}, "ingress": {"enabled": True}}}, "needs gateway.auth.enabled"),
        ({"gateway": {"store": {"mode": "folder"}}}, "folder store serves one gateway"),
        ({"triton": {"exitTimeoutSeconds": 45}}, "at least twice triton.exitTimeoutSeconds"),
        ({"gateway": {"persistence": {"accessMode": "ReadWriteOnce"}}}, "needs gateway.persistence.accessMode"),
        ({"gateway": {"persistence": {"enabled": False}}}, "share uploads and results on one volume"),
        (
            {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 2}, "monitoring": MONITORING},
            "maxReplicas",
        ),
    ],
)
def test_inconsistent_values_fail_the_render_with_a_reason(values, message):
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(values)  # each value is fine on its own
        with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
            chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def test_long_release_names_stay_within_dns_label_limits():
    objects = render({}, name="a-very-long-release-name-for-the-silence-to-sound-service-x")
    for kind, name in objects:
        assert len(name) <= 63 and not name.endswith("-"), (kind, name)
    assert sum(1 for kind, _ in objects if kind == "Deployment") == 2


def test_prometheus_rules_use_metrics_that_triton_and_the_gateway_really_export(rendered, tmp_path):
    [rule] = [o for k, o in rendered["autoscaling-queue-ratio"].items() if k[0] == "PrometheusRule"]
    exprs = " ".join(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"])
    used_triton = set(re.findall(r"\bnv_[a-z_]+", exprs))
    used_gateway = set(re.findall(r"\bs2s_gateway_[a-z_]+", exprs))
    assert {"nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us"} <= used_triton
    assert used_gateway
    # the real embedded tritonserver, after one inference
    repo = tmp_path / "repo"
    write_affine_model(repo, "affine")
    serve = Serve(repo, tmp_path).start().wait_ready()
    try:
        with httpclient.InferenceServerClient(serve.http_url) as client:
            x = httpclient.InferInput("x", [1, 4], "FP32")
            x.set_data_from_numpy(np.ones((1, 4), np.float32))
            client.infer("affine", [x])
        exported = _scraped(f"http://127.0.0.1:{serve.ports[2]}/metrics")
    finally:
        serve.stop()
    names = set(re.findall(r"^(nv_[a-z_]+)\{[^}]*model=\"affine\"", exported, flags=re.M))
    assert used_triton <= names, f"not exported by Triton: {sorted(used_triton - names)}"
    metrics = GatewayMetrics()
    metrics.jobs.labels("done").inc()  # the outcome label the rule also reads
    exported = generate_latest(metrics.registry).decode()
    missing = {m for m in used_gateway if not re.search(rf"^{m}[{{ ]", exported, flags=re.M)}
    assert not missing, f"not exported by the gateway: {missing}"
    assert re.search(r"^s2s_gateway_jobs_total\{[^}]*outcome=", exported, flags=re.M)


def test_images_are_built_from_the_dockerfile_with_the_project_pins():
    text = DOCKERFILE.read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", text, flags=re.M))
    assert {"triton", "export", "gateway"} <= stages
    with helm.Chart.load(CHART) as chart:
        images = chart.values["images"]
    for target in ("triton", "export", "gateway"):
        assert f"--target {target}" in text and images[target]["repository"] in text
    base = re.search(r"^ARG TRITON_IMAGE=nvcr\.io/nvidia/tritonserver:(\d+\.\d+)-py3$", text, flags=re.M)
    assert base, "the Triton image is the NGC release"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    # the August 2025 advisories (CVE-2025-23310/23311/23319/23320/23334) are fixed from NGC 25.07 on
    assert tuple(int(p) for p in base.group(1).split(".")) >= (25, 7), f"{base.group(1)} predates the fixes"
    assert any(d.startswith("tritonclient[all]==") for d in deps)
    torch_pin = next(d for d in pyproject["project"]["optional-dependencies"]["models"] if d.startswith("torch=="))
    assert f"ARG TORCH_VERSION={torch_pin.removeprefix('torch==')}" in text
    # TensorRT follows the image: no version of its own, the one libnvinfer reports, for the image's CUDA
    assert "TENSORRT_VERSION" not in text and "getInferLibVersion()" in text
    assert '"tensorrt-cu${CUDA_MAJOR}==${TRT}.*"' in text


def _prometheus_rules(objects: dict, interval: str | None = None) -> dict:
    """The chart's PrometheusRule as a Prometheus rules file (``interval``: every group's, for a quick test)."""
    [rule] = [o for k, o in objects.items() if k[0] == "PrometheusRule"]
    groups = [{**g, **({"interval": interval} if interval else {})} for g in rule["spec"]["groups"]]
    return {"groups": groups}


def _scraped(url: str, **headers: str) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return response.read().decode()


def test_promtool_checks_and_unit_tests_the_rules_on_series_from_a_real_triton(tmp_path):
    """`promtool check rules` on the chart's rules, and `promtool test rules` on series whose names, labels
    and values come from a real embedded Triton's /metrics: its pending-request gauges summed as recorded,
    and the failure alert firing on the failure counter a bad upload really moved."""
    objects = render({"gateway": {"autoscaling": {"enabled": True}}, "monitoring": MONITORING})
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(_prometheus_rules(objects)))
    check = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    count = sum(len(g["rules"]) for g in _prometheus_rules(objects)["groups"])
    assert check.returncode == 0 and f"SUCCESS: {count} rules found" in check.stdout, check.stdout + check.stderr

    repo = tmp_path / "repo"
    # a Python-backend model whose execute raises: Triton counts a failure (reason BACKEND). An error
    # *response* (what preprocess sends for a bad video) counts as a success in Triton 2.51's statistics.
    (repo / "failing" / "1").mkdir(parents=True)
    (repo / "failing" / "config.pbtxt").write_text(
        'backend: "python"\nmax_batch_size: 0\ninput [{ name: "x", data_type: TYPE_FP32, dims: [4] }]\n'
        'output [{ name: "y", data_type: TYPE_FP32, dims: [4] }]\ninstance_group [{ kind: KIND_CPU }]\n'
    )
    (repo / "failing" / "1" / "model.py").write_text(
        "import triton_python_backend_utils as pb_utils\n\n\nclass TritonPythonModel:\n"
        "    def execute(self, requests):\n        raise pb_utils.TritonModelException('refused')\n"
    )
    pod = {"namespace": NAMESPACE, "pod": f"{RELEASE}-s2s-triton-7d9f8c6b5-x4k2p"}  # what the pod matcher takes

    def series(text: str, name: str) -> dict[str, float]:
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name in (name, f"{name}_total") and s.labels.get("model") == "failing":
                    labels = {**s.labels, **pod}
                    out["{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"] = s.value
        return out

    serve = Serve(repo, tmp_path).start().wait_ready()
    try:
        metrics_url = f"http://127.0.0.1:{serve.ports[2]}/metrics"
        before = _scraped(metrics_url)
        with httpclient.InferenceServerClient(serve.http_url) as client:
            x = httpclient.InferInput("x", [4], "FP32")
            x.set_data_from_numpy(np.ones(4, np.float32))
            with pytest.raises(Exception, match="refused"):
                client.infer("failing", [x])
        # Triton refreshes its metrics every 2 s (--metrics-interval-ms): read until the failure shows, or 15 s
        deadline = time.monotonic() + 15
        while True:
            after = _scraped(metrics_url)
            if series(after, "nv_inference_request_failure") != series(before, "nv_inference_request_failure"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        serve.stop()

    failed_before = series(before, "nv_inference_request_failure")
    moved = {k: v for k, v in series(after, "nv_inference_request_failure").items() if v > failed_before.get(k, 0)}
    [(labels, f1)] = moved.items()  # the bad request was counted, under one failure reason
    f0 = failed_before.get(labels, 0)
    pending = series(after, "nv_inference_pending_request_count")
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                # the failure counter moving as it did, once a minute for 20 minutes
                {"series": f"nv_inference_request_failure{labels}", "values": f"{f0:g}+{f1 - f0:g}x20"},
                *({"series": f"nv_inference_pending_request_count{k}", "values": f"{v:g}x20"}
                  for k, v in pending.items()),
            ],
            "promql_expr_test": [{
                "expr": "s2s:triton_pending_requests", "eval_time": "10m",
                "exp_samples": [{"value": sum(pending.values()), "labels":
                                 f's2s:triton_pending_requests{{namespace="{NAMESPACE}", pod="{pod["pod"]}"}}'}],
            }],
            "alert_rule_test": [
                {"alertname": "S2SInferenceFailures", "eval_time": "3m", "exp_alerts": []},  # pending, not firing
                {"alertname": "S2SInferenceFailures", "eval_time": "15m", "exp_alerts": [{
                    "exp_labels": {**pod, "model": "failing", "severity": "warning"},
                    "exp_annotations": {
                        "summary": "Triton model failing fails requests",
                        "description": f"Failed inferences in {pod['pod']}; the Triton log names the cause.",
                    },
                }]},
            ],
        }],
    }  # fmt: skip
    unit = tmp_path / "rules-test.yml"
    unit.write_text(yaml.safe_dump(tests))
    result = subprocess.run(["promtool", "test", "rules", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_prometheus_records_the_autoscaling_metrics_from_a_live_triton_and_gateway(tmp_path):
    """The real Prometheus scrapes a live embedded Triton (the small s2s repository) and a live gateway,
    labelled as the Prometheus Operator labels pods, and evaluates the chart's rules while jobs run: every
    rule evaluates without error, and the series the two HPAs read (through prometheus-adapter) hold numbers."""
    from s2s.synth import make_video
    from tests.conftest import export_small_repository, free_ports
    from tests.test_gateway import Gateway

    objects = render({"gateway": {"autoscaling": {"enabled": True}}, "monitoring": MONITORING})
    gateway_name = deployment(objects, "gateway")["metadata"]["name"]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(_prometheus_rules(objects, interval="1s")))
    repo = export_small_repository(tmp_path / "repo")
    serve = Serve(repo, tmp_path).start().wait_ready(timeout_s=300)
    # one window in flight: of six jobs sent at once, most wait in the queue for a while
    gateway = Gateway(serve.grpc_url, tmp_path / "gw-data", "--windows-in-flight", "1", key_options="jobs=10 rate=1000")
    (port,) = free_ports(1)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "triton", "static_configs": [{"targets": [f"127.0.0.1:{serve.ports[2]}"], "labels": {
                "namespace": NAMESPACE, "pod": f"{RELEASE}-s2s-triton-7d9f8c6b5-x4k2p"}}]},
            {"job_name": "gateway", "authorization": {"credentials": gateway.key},
             "static_configs": [{"targets": [f"127.0.0.1:{gateway.port}"], "labels": {
                 "namespace": NAMESPACE, "pod": f"{gateway_name}-5f7d9c8b6-q2w3e"}}]},
        ],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=(tmp_path / "prometheus.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip

    def query(expr: str) -> list:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return json.loads(_scraped(url))["data"]["result"]

    try:
        videos = [make_video(duration_s=1.5, fps=20.0, seed=40 + k) for k in range(6)]
        jobs = [gateway.upload(v).json()["id"] for v in videos]
        waiting_seen, busy_seen = [], []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                waiting_seen += [float(s["value"][1]) for s in query("s2s:gateway_jobs_waiting")]
                busy_seen += [float(s["value"][1]) for s in query("s2s:triton_queue_compute_ratio")]
            except OSError:
                pass  # Prometheus still starting
            states = [gateway.http.get(f"/v1/jobs/{j}").json()["status"] for j in jobs]
            if all(s == "done" for s in states) and busy_seen and waiting_seen:
                break
            time.sleep(0.5)
        assert all(s == "done" for s in states), states
        time.sleep(3)  # a last evaluation after the jobs
        health = json.loads(_scraped(f"http://127.0.0.1:{port}/api/v1/rules"))["data"]["groups"]
        evaluated = [r for g in health for r in g["rules"]]
        assert len(evaluated) == sum(len(g["rules"]) for g in _prometheus_rules(objects)["groups"])
        assert all(r["health"] == "ok" and not r.get("lastError") for r in evaluated), evaluated
        # the series each HPA reads, with the labels the adapter maps to objects
        [ratio] = query("s2s:triton_queue_compute_ratio")
        assert ratio["metric"] == {"__name__": "s2s:triton_queue_compute_ratio", "namespace": NAMESPACE,
                                   "pod": f"{RELEASE}-s2s-triton-7d9f8c6b5-x4k2p"}  # fmt: skip
        assert busy_seen and all(v >= 0 for v in busy_seen), "a number (queue per compute) while jobs ran"
        assert query('sum(rate(nv_inference_compute_infer_duration_us{model!="s2s"}[1m])) > 0'), "compute seen"
        [pending] = query("s2s:triton_pending_requests")
        assert float(pending["value"][1]) >= 0
        [waiting] = query("s2s:gateway_jobs_waiting")
        assert waiting["metric"]["service"] == gateway_name and waiting["metric"]["namespace"] == NAMESPACE
        assert max(waiting_seen) >= 1, "six jobs at once: some waited in the gateways' queue"
        assert float(waiting["value"][1]) == 0, "all done: nothing waits"
        assert not query('ALERTS{alertstate="firing"}'), "no alert fires on a healthy stack"
        # the Grafana dashboard: every panel's every query returns data from this stack
        empty = [(title, expr) for title, exprs in _dashboard_queries(NAMESPACE).items() for expr in exprs
                 if not query(expr)]  # fmt: skip
        assert not empty, empty
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
        gateway.stop()
        serve.stop()


DASHBOARD = CHART / "dashboards" / "s2s.json"


def _dashboard_queries(namespace: str) -> dict[str, list[str]]:
    """Every panel's PromQL, by panel title, with the dashboard's namespace variable set."""
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: [t["expr"].replace("$namespace", namespace) for t in p["targets"]] for p in dashboard["panels"]}


def test_grafana_dashboard_is_provisioned_for_the_sidecar_behind_its_toggle(rendered):
    objects = rendered["autoscaling-queue-ratio"]
    [config_map] = [o for k, o in objects.items() if k[0] == "ConfigMap" and k[1].endswith("-dashboard")]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["s2s.json"]) == json.loads(DASHBOARD.read_text())
    assert not [k for k in rendered["default"] if k[0] == "ConfigMap" and k[1].endswith("-dashboard")], "off by default"
    titles = " | ".join(_dashboard_queries(NAMESPACE)).lower()
    wanted_panels = ("clips per second", "windows per second", "latency", "queue vs compute", "preprocess", "errors")
    for wanted in (*wanted_panels, "gateway jobs"):
        assert wanted in titles, wanted
    objects = render({"monitoring": {**MONITORING, "grafanaDashboard": {"enabled": True, "folder": "Media"}}})
    config_map = next(o for k, o in objects.items() if k[0] == "ConfigMap" and k[1].endswith("-dashboard"))
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Media"}
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmRenderError, match="grafanaDashboard"):
        chart.render(values={"monitoring": {"grafanaDashboard": {"enabled": True}}}, name=RELEASE, namespace=NAMESPACE)

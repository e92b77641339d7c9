"""Foreign workloads of every pod-template kind, and the Pods and AdmissionReviews that the
API server makes of them: the inputs of the `inject` and `injector` tests.

The workloads are what a team ships, not what this project would write: their own init
containers, probes by name and by number, a port on the sidecar's default (9476) and a probe on
the next one, a pod securityContext without fsGroup, service-account volumes added by
admission. The Pods are shaped as the API server hands them to a mutating webhook: defaults
applied, generateName without a name (ReplicaSet, Job), ownerReferences, the namespace in the
request and not in the object, the service-account token volume already added.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from sidecar.injector.wiring import DEFAULT_PORT

Obj = dict[str, Any]

NAMESPACE = "shop"


def _app_spec() -> Obj:
    """A web pod whose containers already use the sidecar's default port and the next one."""
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "initContainers": [
            {
                "name": "migrate",
                "image": "registry.example/shop/migrate:2.3",
                "args": ["up"],
                "envFrom": [{"configMapRef": {"name": "shop-db"}}],
            }
        ],
        "containers": [
            {
                "name": "web",
                "image": "registry.example/shop/web:2.3",
                "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"name": "admin", "containerPort": DEFAULT_PORT},
                ],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                "livenessProbe": {"tcpSocket": {"port": "admin"}},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/shop"}],
            },
            {
                "name": "metrics",
                "image": "registry.example/exporter:1.0",
                "livenessProbe": {"httpGet": {"path": "/", "port": DEFAULT_PORT + 1}},
            },
        ],
        "volumes": [{"name": "config", "configMap": {"name": "shop-config"}}],
    }


def _template(labels: Obj, spec: Obj, annotations: Obj | None = None) -> Obj:
    metadata: Obj = {"labels": labels}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"metadata": metadata, "spec": spec}


def workloads(annotations: Obj | None = None) -> list[Obj]:
    """One of each kind (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod)."""
    web = {"app": "web"}
    job_spec: Obj = {
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "report",
                "image": "registry.example/shop/report:2.3",
                "command": ["/bin/report", "--daily"],
            }
        ],
    }
    cron_spec = copy.deepcopy(job_spec)
    cron_spec["restartPolicy"] = "OnFailure"
    db_spec: Obj = {
        "containers": [
            {
                "name": "db",
                "image": "postgres:16",
                "ports": [{"name": "pg", "containerPort": 5432}],
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
            }
        ]
    }
    agent_spec: Obj = {
        "tolerations": [{"operator": "Exists"}],
        "securityContext": {"fsGroup": 2000},
        "containers": [{"name": "agent", "image": "registry.example/node-agent:5"}],
    }

    def meta(name: str) -> Obj:
        return {"name": name, "namespace": NAMESPACE, "labels": {"app": name}}

    def t(labels: Obj, spec: Obj) -> Obj:
        return _template(labels, spec, copy.deepcopy(annotations))

    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta("web"),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": web},
                "template": t(web, _app_spec()),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta("db"),
            "spec": {
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": t({"app": "db"}, db_spec),
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta("agent"),
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": t({"app": "agent"}, agent_spec),
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": meta("legacy"),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "legacy"}},
                "template": t({"app": "legacy"}, _app_spec()),
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta("report"),
            "spec": {"backoffLimit": 2, "template": t({"app": "report"}, job_spec)},
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta("nightly"),
            "spec": {
                "schedule": "0 3 * * *",
                "jobTemplate": {"spec": {"template": t({"app": "nightly"}, cron_spec)}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta("debug"), **({"annotations": annotations} if annotations else {})},
            "spec": _app_spec(),
        },
    ]


def template_of(workload: Obj) -> Obj:
    """The pod template of a workload (a Pod is its own)."""
    kind = workload["kind"]
    if kind == "Pod":
        return workload
    if kind == "CronJob":
        template: Obj = workload["spec"]["jobTemplate"]["spec"]["template"]
        return template
    template = workload["spec"]["template"]
    return template


# --- what the API server makes of a template ---------------------------------------------------


def _defaulted_container(container: Obj) -> Obj:
    c = copy.deepcopy(container)
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", "IfNotPresent")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        port.setdefault("protocol", "TCP")
    c.setdefault("volumeMounts", [])
    c["volumeMounts"].append(
        {
            "name": "kube-api-access-x7k2p",
            "readOnly": True,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        }
    )
    return c


def pod_from(workload: Obj) -> tuple[Obj, str]:
    """The Pod its controller creates from `workload`, as a mutating webhook receives it (after
    defaulting and the ServiceAccount admission plugin), and the request's namespace."""
    kind, name = workload["kind"], workload["metadata"]["name"]
    template = copy.deepcopy(template_of(workload))
    metadata: Obj = {
        "labels": dict(template["metadata"].get("labels") or {}),
        "creationTimestamp": None,
    }
    if template["metadata"].get("annotations"):
        metadata["annotations"] = dict(template["metadata"]["annotations"])
    owner_uid = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))

    def owner(api_version: str, owner_kind: str, owner_name: str) -> list[Obj]:
        return [
            {
                "apiVersion": api_version,
                "kind": owner_kind,
                "name": owner_name,
                "uid": owner_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]

    spec = template["spec"]
    if kind in ("Deployment", "ReplicaSet"):
        rs = f"{name}-7d4b9c8f6d" if kind == "Deployment" else name
        metadata["generateName"] = f"{rs}-"
        metadata["labels"]["pod-template-hash"] = "7d4b9c8f6d"
        metadata["ownerReferences"] = owner("apps/v1", "ReplicaSet", rs)
    elif kind == "StatefulSet":
        metadata["name"] = f"{name}-0"
        metadata["generateName"] = f"{name}-"
        metadata["labels"].update(
            {
                "controller-revision-hash": f"{name}-5f7c9d8b4",
                "statefulset.kubernetes.io/pod-name": f"{name}-0",
                "apps.kubernetes.io/pod-index": "0",
            }
        )
        metadata["ownerReferences"] = owner("apps/v1", "StatefulSet", name)
        spec["hostname"] = f"{name}-0"
        spec["subdomain"] = workload["spec"]["serviceName"]
        spec.setdefault("volumes", []).append(
            {"name": "data", "persistentVolumeClaim": {"claimName": f"data-{name}-0"}}
        )
    elif kind == "DaemonSet":
        metadata["generateName"] = f"{name}-"
        metadata["labels"]["controller-revision-hash"] = "6c9f8d7b5"
        metadata["ownerReferences"] = owner("apps/v1", "DaemonSet", name)
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchFields": [
                                {"key": "metadata.name", "operator": "In", "values": ["node-1"]}
                            ]
                        }
                    ]
                }
            }
        }
    elif kind in ("Job", "CronJob"):
        job = f"{name}-28912345" if kind == "CronJob" else name
        metadata["generateName"] = f"{job}-"
        metadata["labels"].update(
            {
                "batch.kubernetes.io/controller-uid": owner_uid,
                "batch.kubernetes.io/job-name": job,
                "controller-uid": owner_uid,
                "job-name": job,
            }
        )
        metadata["ownerReferences"] = owner("batch/v1", "Job", job)
    else:  # a bare Pod: its own name, and its namespace in the object too
        metadata["name"] = name
        metadata["namespace"] = NAMESPACE
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec["serviceAccountName"] = spec["serviceAccount"] = "default"
    spec["enableServiceLinks"] = True
    spec["preemptionPolicy"] = "PreemptLowerPriority"
    spec["priority"] = 0
    spec["tolerations"] = [
        *(spec.get("tolerations") or []),
        {
            "key": "node.kubernetes.io/not-ready",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    for key in ("initContainers", "containers"):
        if spec.get(key):
            spec[key] = [_defaulted_container(c) for c in spec[key]]
    spec.setdefault("volumes", []).append(
        {
            "name": "kube-api-access-x7k2p",
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                ],
            },
        }
    )
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": {}}
    return pod, NAMESPACE


def admission_review(pod: Obj, namespace: str, *, uid: str | None = None) -> Obj:
    """The AdmissionReview the API server POSTs for the creation of `pod` by a controller."""
    owner = (pod["metadata"].get("ownerReferences") or [{"kind": "user"}])[0]["kind"]
    controllers = {
        "ReplicaSet": "replicaset-controller",
        "StatefulSet": "statefulset-controller",
        "DaemonSet": "daemon-set-controller",
        "Job": "job-controller",
    }
    user = (
        f"system:serviceaccount:kube-system:{controllers[owner]}"
        if owner in controllers
        else "alice@example.com"
    )
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": pod["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": user,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, user)),
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def as_stored(pod: Obj) -> Obj:
    """A Pod of a review as the API server stores it: the null creationTimestamp and the empty
    status of the request's object dropped (the schemas refuse a null timestamp)."""
    stored = copy.deepcopy(pod)
    stored["metadata"].pop("creationTimestamp", None)
    stored.pop("status", None)
    return stored

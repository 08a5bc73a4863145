"""The protobuf bodies kubectl 1.32+ sends decode to the objects it meant, and
the API server refuses protobuf where a real one does (custom resources)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from relearn_sandbox.protobuf import MAGIC, MEDIA_TYPE, ProtobufError, decode

# Request bodies captured from kubectl v1.33.1 (`-v=9` prints them).
KUBECTL_133 = {
    "create configmap settings --from-literal=a=b": (
        "6b3873000a0f0a0276311209436f6e6669674d6170121c0a120a026331120 01a00220 02a0032003800420012060a0161120162"
        "1a002200"
    ),
    "create secret generic fixture-secret --from-literal=token=s3cret": (
        "6b3873000a0c0a027631120653656372657412330a1e0a0e666978747572652d73656372657412001a0022002a003200380042"
        "00120f0a05746f6b656e12067333637265741a001a002200"
    ),
    "create job fixture-job --image=busybox -- echo hi": (
        "6b3873000a0f0a0862617463682f763112034a6f621296010a1b0a0b666978747572652d6a6f6212001a0022002a0032003800"
        "4200126d326b0a100a0012001a0022002a00320038004200125712340a0b666978747572652d6a6f62120762757379626f781a"
        "046563686f1a0268692a0042006a007200800100880100900100a201001a054e65766572320042004a00520058006000680082"
        "01008a01009a0100c201001a082000280030003a001a002200"
    ),
    "create service nodeport fixture-svc --tcp=80:8080": (
        "6b3873000a0d0a0276311207536572766963651280010a2f0a0b666978747572652d73766312001a0022002a00320038004200"
        "5a120a03617070120b666978747572652d73766312490a1b0a0738302d38303830120354435018502207080010903f1a002800"
        "12120a03617070120b666978747572652d7376631a0022084e6f6465506f72743a00420052005a00600068001a020a001a0022"
        "00"
    ),
}


def captured(command: str) -> bytes:
    return bytes.fromhex(KUBECTL_133[command].replace(" ", ""))


def test_decodes_kubectl_configmap_and_secret() -> None:
    configmap = decode(captured("create configmap settings --from-literal=a=b"))
    assert configmap == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}, "data": {"a": "b"}}
    secret = decode(captured("create secret generic fixture-secret --from-literal=token=s3cret"))
    assert base64.b64decode(secret["data"]["token"]) == b"s3cret"
    assert secret["metadata"] == {"name": "fixture-secret"}


def test_decodes_kubectl_job_with_go_json_shapes() -> None:
    job = decode(captured("create job fixture-job --image=busybox -- echo hi"))
    assert job["apiVersion"] == "batch/v1"
    pod_spec = job["spec"]["template"]["spec"]
    # Empty structs stay ({} as Go's JSON writes them); zero scalars go (omitempty).
    assert pod_spec == {
        "containers": [{"name": "fixture-job", "image": "busybox", "command": ["echo", "hi"], "resources": {}}],
        "restartPolicy": "Never",
    }


def test_decodes_kubectl_service_int_or_string_ports() -> None:
    service = decode(captured("create service nodeport fixture-svc --tcp=80:8080"))
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}]
    assert service["metadata"]["labels"] == {"app": "fixture-svc"}


# -- a small encoder, to check the decoder over many objects --------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def string_map(number: int, values: dict[str, Any]) -> bytes:
    return b"".join(
        field(number, field(1, k.encode()) + field(2, v if isinstance(v, bytes) else v.encode()))
        for k, v in values.items()
    )


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return MAGIC + field(1, field(1, api_version.encode()) + field(2, kind.encode())) + field(2, raw)


names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
texts = st.text(max_size=40)


@given(name=names, labels=st.dictionaries(names, texts, max_size=4), data=st.dictionaries(texts, texts, max_size=6))
def test_any_configmap_decodes_to_its_json(name: str, labels: dict[str, str], data: dict[str, str]) -> None:
    meta = field(1, name.encode()) + string_map(11, labels)
    body = envelope("v1", "ConfigMap", field(1, meta) + string_map(2, data))
    decoded = decode(body)
    assert decoded["metadata"] == ({"name": name, "labels": labels} if labels else {"name": name})
    assert decoded.get("data", {}) == data


@given(data=st.dictionaries(texts, st.binary(max_size=64), max_size=6))
def test_any_secret_bytes_become_base64(data: dict[str, bytes]) -> None:
    decoded = decode(envelope("v1", "Secret", field(1, field(1, b"s")) + string_map(2, data)))
    assert {k: base64.b64decode(v) for k, v in decoded.get("data", {}).items()} == data


@given(replicas=st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_deployment_replicas_keep_their_value_and_sign(replicas: int) -> None:
    # spec.replicas is a pointer in Go: 0 is a value the user set, not an absent field.
    body = envelope("apps/v1", "Deployment", field(1, field(1, b"d")) + field(2, field(1, replicas)))
    assert decode(body)["spec"] == {"replicas": replicas}


def test_a_go_controllers_lease_keeps_its_micro_time_and_holder() -> None:
    renew = field(1, 1767225600) + field(2, 123456000)  # 2026-01-01T00:00:00.123456Z
    spec = field(1, b"controller-7d9f") + field(2, 15) + field(4, renew) + field(5, 0)
    body = envelope("coordination.k8s.io/v1", "Lease", field(1, field(1, b"leader")) + field(2, spec))
    assert decode(body)["spec"] == {
        "holderIdentity": "controller-7d9f",
        "leaseDurationSeconds": 15,
        "renewTime": "2026-01-01T00:00:00.123456Z",
        "leaseTransitions": 0,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"kind": "ConfigMap"}', "magic"),
        (MAGIC + field(1, field(2, b"Widget")) + field(2, b""), "Widget"),
        (captured("create configmap settings --from-literal=a=b")[:-5], "truncated"),
    ],
)
def test_rejects_what_is_not_a_known_protobuf_object(body: bytes, reason: str) -> None:
    with pytest.raises(ProtobufError, match=reason):
        decode(body)


def test_custom_resources_in_protobuf_get_415(sandbox: Any, relearn_crds: None, namespace: str) -> None:
    """As from a real server: CRs have no protobuf form; client-go only falls back to JSON for CBOR."""
    body = envelope("relearn.dev/v1alpha1", "ModelVersion", field(1, field(1, b"mv")))
    request = urllib.request.Request(
        f"{sandbox.api_url}/apis/relearn.dev/v1alpha1/namespaces/{namespace}/modelversions",
        data=body,
        method="POST",
        headers={"Content-Type": MEDIA_TYPE},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10)
    assert raised.value.code == 415
    assert json.loads(raised.value.read())["reason"] == "UnsupportedMediaType"

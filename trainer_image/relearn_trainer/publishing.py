"""Publishing a trained version: its files under ``<output>/<version>/``,
each written to a temporary name then renamed, the manifest (sha256 and size
of every file) written last, so a reader that finds a manifest finds every
file it names complete. The compact result for the operator goes to the
termination-message file (4096 bytes at most, as Kubernetes keeps)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec

MAX_TERMINATION_MESSAGE = 4096
MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def publish(output_uri: str, version: str, files: Mapping[str, bytes]) -> tuple[str, str]:
    """Write ``files`` and the manifest; return (version URI, manifest sha256)."""
    protocol, _, root = output_uri.rpartition("://")
    fs = fsspec.filesystem(protocol or "file")
    directory = f"{root.rstrip('/')}/{version}"
    fs.makedirs(directory, exist_ok=True)
    entries = {}
    for name, data in files.items():
        temporary = f"{directory}/.{name}.tmp"
        fs.pipe_file(temporary, data)
        fs.mv(temporary, f"{directory}/{name}")
        entries[name] = {"sha256": sha256(data), "bytes": len(data)}
    manifest = json.dumps(
        {"version": version, "created": datetime.datetime.now(datetime.UTC).isoformat(), "files": entries},
        indent=2,
        sort_keys=True,
    ).encode()
    fs.pipe_file(f"{directory}/.{MANIFEST}.tmp", manifest)
    fs.mv(f"{directory}/.{MANIFEST}.tmp", f"{directory}/{MANIFEST}")
    uri = f"{protocol}://{directory}" if protocol else directory
    return uri, sha256(manifest)


def verify(version_uri: str) -> dict[str, Any]:
    """The manifest, after checking every file it names against its sha256."""
    protocol, _, directory = version_uri.rpartition("://")
    fs = fsspec.filesystem(protocol or "file")
    manifest = json.loads(fs.cat_file(f"{directory}/{MANIFEST}"))
    for name, entry in manifest["files"].items():
        if sha256(fs.cat_file(f"{directory}/{name}")) != entry["sha256"]:
            raise ValueError(f"{name} does not match its sha256 in the manifest")
    return dict(manifest)


def compact(result: Mapping[str, Any], optional: tuple[str, ...] = ("baseline",)) -> str:
    """The result as JSON within the termination-message limit, dropping the
    optional parts (largest first) when it would not fit."""
    body = dict(result)
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    for key in optional:
        if len(text.encode()) <= MAX_TERMINATION_MESSAGE:
            break
        if key in body:
            body.pop(key)
            body[f"{key}Omitted"] = True
            text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_TERMINATION_MESSAGE:
        raise ValueError(f"the result does not fit in {MAX_TERMINATION_MESSAGE} bytes")
    return text


def termination_path() -> Path:
    """Where Kubernetes reads the termination message (the sandbox maps it)."""
    return Path(os.environ.get("RELEARN_TERMINATION_MESSAGE_PATH", "/dev/termination-log"))


def write_termination_message(text: str) -> None:
    path = termination_path()
    with contextlib.suppress(OSError):  # outside a pod there may be nowhere to write it; stdout has it
        path.write_text(text)

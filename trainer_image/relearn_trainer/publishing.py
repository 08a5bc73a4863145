"""Publishing a trained version: its files under ``<output>/<version>/``,
each written to a temporary name then renamed, the manifest (sha256 and size
of every file) written last, so a reader that finds a manifest finds every
file it names complete. A publish that fails removes what it wrote. The
compact result for the operator goes to the termination-message file (4096
bytes at most, as Kubernetes keeps). Called by :mod:`relearn_trainer.pipeline`
(publishing), :mod:`relearn_trainer.serve` (verifying) and the CLI
(termination messages)."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec

from relearn_trainer.failures import ArtifactError, OutputError

MAX_TERMINATION_MESSAGE = 4096
MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _filesystem(uri: str) -> tuple[Any, str, str]:
    """(filesystem, the URI's protocol, path); a local path (plain, ``file://``,
    ``pvc://``: a mounted volume) is made absolute."""
    protocol, _, root = uri.rpartition("://")
    if protocol in ("", "file", "pvc"):
        root = str(Path("/" + root.lstrip("/") if protocol else root).resolve())
        return fsspec.filesystem("file"), protocol, root
    return fsspec.filesystem(protocol), protocol, root


def check_writable(output_uri: str) -> None:
    """Fail before training, not after it, when the output cannot be written."""
    fs, _, root = _filesystem(output_uri)
    probe = f"{root.rstrip('/')}/.relearn-write-probe-{uuid.uuid4().hex}"
    try:
        fs.makedirs(root, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except OSError as error:
        raise OutputError(f"cannot write to the output {output_uri} ({root}): {error}") from None


def publish(output_uri: str, version: str, files: Mapping[str, bytes]) -> tuple[str, str]:
    """Write ``files`` and the manifest; return (version URI, manifest sha256).

    An existing published version (its manifest is there) is never overwritten;
    on any failure, the files this call wrote are removed again."""
    fs, protocol, root = _filesystem(output_uri)
    directory = f"{root.rstrip('/')}/{version}"
    written: list[str] = []
    created = False
    try:
        if fs.exists(f"{directory}/{MANIFEST}"):
            raise OutputError(f"{directory} already holds a published version {version}: not overwriting it")
        created = not fs.exists(directory)
        fs.makedirs(directory, exist_ok=True)
        entries = {}
        for name, data in files.items():
            temporary = f"{directory}/.{name}.tmp"
            written.append(temporary)
            fs.pipe_file(temporary, data)
            written.append(f"{directory}/{name}")
            fs.mv(temporary, f"{directory}/{name}")
            entries[name] = {"sha256": sha256(data), "bytes": len(data)}
        manifest = json.dumps(
            {"version": version, "created": datetime.datetime.now(datetime.UTC).isoformat(), "files": entries},
            indent=2,
            sort_keys=True,
        ).encode()
        written.append(f"{directory}/.{MANIFEST}.tmp")
        fs.pipe_file(f"{directory}/.{MANIFEST}.tmp", manifest)
        written.append(f"{directory}/{MANIFEST}")
        fs.mv(f"{directory}/.{MANIFEST}.tmp", f"{directory}/{MANIFEST}")
    except BaseException as error:  # SIGTERM (Interrupted) too: a half-published version must not stay
        _remove(fs, written, directory if created else None)
        if isinstance(error, OSError):
            raise OutputError(f"cannot publish {version} to {output_uri}: {error}; nothing was left there") from None
        raise
    uri = f"{protocol}://{directory}" if protocol else directory
    return uri, sha256(manifest)


def _remove(fs: Any, paths: list[str], directory: str | None) -> None:
    for path in reversed(paths):
        with contextlib.suppress(OSError):
            if fs.exists(path):
                fs.rm_file(path)
    if directory is not None:
        with contextlib.suppress(OSError):
            fs.rm(directory, recursive=True)


def verify(version_uri: str, expected_sha256: str | None = None) -> dict[str, Any]:
    """The manifest, after checking it against ``expected_sha256`` (the
    ModelVersion's) when given, every file it names against its sha256, and
    that the folder holds no file it does not name. Raises ArtifactError."""
    fs, _, directory = _filesystem(version_uri)
    try:
        raw = fs.cat_file(f"{directory}/{MANIFEST}")
    except OSError as error:
        raise ArtifactError(f"adapter {version_uri} has no readable {MANIFEST}: {error}") from None
    if expected_sha256 is not None and sha256(raw) != expected_sha256:
        raise ArtifactError(
            f"adapter {version_uri} does not match its ModelVersion: {MANIFEST} sha256 {sha256(raw)}, "
            f"expected {expected_sha256}"
        )
    try:
        manifest = json.loads(raw)
        entries = dict(manifest["files"])
        listed = {str(name): str(entry["sha256"]) for name, entry in entries.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ArtifactError(f"adapter {version_uri}: {MANIFEST} is not a manifest ({error!r})") from None
    present = {
        str(path)[len(directory.rstrip("/")) + 1 :] for path in fs.find(directory) if not str(path).endswith(MANIFEST)
    }
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise ArtifactError(f"adapter {version_uri} holds files its manifest does not name: {unlisted[:10]}")
    for name, digest in sorted(listed.items()):
        try:
            data = fs.cat_file(f"{directory}/{name}")
        except OSError as error:
            raise ArtifactError(f"adapter {version_uri}: {name} is in the manifest but unreadable: {error}") from None
        if sha256(data) != digest:
            raise ArtifactError(
                f"adapter {version_uri}: {name} does not match its sha256 in the manifest "
                f"({sha256(data)}, manifest says {digest})"
            )
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


def failure_message(reason: str, message: str, limit: int = MAX_TERMINATION_MESSAGE) -> str:
    """``{"error": reason, "message": message}`` as JSON of at most ``limit``
    bytes once encoded: the message is cut by characters (never inside a
    UTF-8 sequence), measured after JSON escaping, with "…" marking a cut."""

    def encoded(text: str) -> str:
        return json.dumps({"error": reason, "message": text}, ensure_ascii=False)

    if len(encoded(message).encode()) <= limit:
        return encoded(message)
    low, high = 0, len(message)  # the longest prefix that fits, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        if len(encoded(message[:middle] + "…").encode()) <= limit:
            low = middle
        else:
            high = middle - 1
    return encoded(message[:low] + "…")


def termination_path() -> Path:
    """Where Kubernetes reads the termination message (the sandbox maps it)."""
    return Path(os.environ.get("RELEARN_TERMINATION_MESSAGE_PATH", "/dev/termination-log"))


def write_termination_message(text: str) -> None:
    """The pod's message; under torchrun only from its local rank 0 (the
    processes of a pod's GPUs share the file: one message, not the last)."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return
    path = termination_path()
    with contextlib.suppress(OSError):  # outside a pod there may be nowhere to write it; stdout has it
        path.write_bytes(text.encode())

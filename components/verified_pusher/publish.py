"""Publishing a verified model as a new version of a push base directory, so that no consumer ever
reads a partial version, on local disks and on object stores (``gs://``, ``s3://``) alike.

What a consumer reads (the contract, README "Deploying"):

- ``<base>/<version>/PUSH_COMPLETE.json``: written *last*, after every file of the version was
  copied and read back to its sha256. A version without it is incomplete (being written, or left
  by a killed job) and is never referenced; the next push removes it once it is stale.
- ``<base>/LATEST.json``: the newest complete version (``version``, ``sha256``, ``files``), one
  small object replaced whole. An app update service polls this file, downloads
  ``<base>/<version>/tflite`` and checks its sha256.

How each filesystem gets there:

- Local disks: the version is copied into a hidden ``.<version>.<push id>.incomplete`` directory,
  verified, completed with its marker and renamed to ``<version>`` with ``os.rename``, which is
  atomic and fails when another push already took that version; the push then tries the next one.
- Object stores have no atomic directory rename (a "rename" is copy-then-delete), so nothing is
  renamed: a push claims ``<version>`` by writing ``<version>/.claim-<push id>`` and listing the
  prefix — if anything but its own claim is there, it withdraws and tries the next version (two
  claimers both see each other and both move on; one that listed before the other wrote wins
  alone, as listings are strongly consistent on GCS and S3). Files are copied with the model file
  after the others, so a loader that waits for ``tflite`` gets whole bytes (single objects appear
  atomically), then the marker.

Concurrent pushes never share a staging directory (each stages under its own push id) or a version.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import random
import time
import uuid
from typing import Dict, List, Optional, Tuple

from tfx.dsl.io import fileio

log = logging.getLogger(__name__)

MARKER_FILE = "PUSH_COMPLETE.json"
LATEST_FILE = "LATEST.json"
CLAIM_PREFIX = ".claim-"
INCOMPLETE_SUFFIX = ".incomplete"
STALE_SECONDS = 3600  # an incomplete version older than this was left by a dead push
MAX_VERSION_TRIES = 64


class PushError(RuntimeError):
    """A push could not be completed; the message names the path and the true reason."""


@dataclasses.dataclass(frozen=True)
class PushMarker:
    """The one owner of ``PUSH_COMPLETE.json``'s and ``LATEST.json``'s keys."""

    version: str
    sha256: str                # of the model file (what QuantEvaluator evaluated)
    files: Dict[str, str]      # relative path -> sha256, every file of the version
    push_id: str
    pushed_at: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PushMarker":
        return cls(**json.loads(text))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with fileio.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_local(path: str) -> bool:
    return "://" not in path


def _files(root: str) -> List[str]:
    """Relative paths of every file under ``root``."""
    out = []
    for dirpath, _, names in fileio.walk(root):
        rel = os.path.relpath(dirpath, root)
        out += [n if rel == "." else os.path.join(rel, n) for n in names]
    return sorted(out)


def _copy_verified(src_root: str, dst_root: str, model_file: str) -> Dict[str, str]:
    """Copies every file of ``src_root`` to ``dst_root``, the model file after the others, and
    reads each copy back: returns relative path -> sha256, or raises PushError on a mismatch."""
    names = sorted(_files(src_root), key=lambda n: (n == model_file, n))
    hashes = {}
    for name in names:
        src, dst = os.path.join(src_root, name), os.path.join(dst_root, name)
        expected = sha256_file(src)
        fileio.makedirs(os.path.dirname(dst))
        fileio.copy(src, dst, overwrite=True)
        copied = sha256_file(dst)
        if copied != expected:
            raise PushError(f"the copy {dst} hashes to {copied}, not {expected} as {src} does")
        hashes[name] = copied
    return hashes


def _write(path: str, text: str) -> None:
    """One small file written whole: a single object on object stores, temp + os.replace locally."""
    if is_local(path):
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        return
    with fileio.open(path, "w") as f:
        f.write(text)


def read_marker(path: str, tries: int = 5) -> Optional[PushMarker]:
    """The marker at ``path`` (a version's PUSH_COMPLETE.json or the base's LATEST.json).

    A read racing a replacement of LATEST.json can come back cut (seen through TF's gs:// on
    fake-gcs-server: the new generation's bytes at the old one's length) or be refused by TF's
    gs:// reader ("File contents are inconsistent": the object changed under the read), so such
    a read is made again before it is an error."""
    for attempt in range(tries):
        if not fileio.exists(path):
            return None
        try:
            with fileio.open(path, "r") as f:
                text = f.read()
            return PushMarker.from_json(text)
        except Exception as e:  # noqa: BLE001  (ValueError: torn JSON; tf InternalError: changed)
            if not isinstance(e, ValueError) and "inconsistent" not in str(e):
                raise
            if attempt == tries - 1:
                raise PushError(f"{path} could not be read whole as a push marker {tries} times: "
                                f"{type(e).__name__}: {str(e)[:200]}") from e
            time.sleep(0.1 * (attempt + 1))
    return None


def complete_versions(base: str) -> List[str]:
    """The base's complete versions (those with a marker), oldest first."""
    if not fileio.exists(base):
        return []
    names = [n.rstrip("/") for n in fileio.listdir(base)]
    return sorted((n for n in names if n.isdigit()
                   and fileio.exists(os.path.join(base, n, MARKER_FILE))), key=int)


def prepare(base: str) -> None:
    """Creates ``base`` (a clear PushError when it cannot be) and removes stale leftovers of dead
    pushes; called before anything is copied."""
    try:
        fileio.makedirs(base)
    except Exception as e:  # noqa: BLE001  (OSError locally, tf.errors.OpError elsewhere)
        hint = " (permission denied: fix its permissions or point the Pusher at a directory " \
               "this job can write)" if _denied(e) else ""
        raise PushError(f"cannot create the push base directory {base!r}: "
                        f"{type(e).__name__}: {e}{hint}") from e
    _clean_stale(base)


def _denied(e: BaseException) -> bool:
    return isinstance(e, PermissionError) or type(e).__name__ == "PermissionDeniedError"


def publish(staged: str, base: str, model_file: str, sha256: str) -> Tuple[str, str]:
    """Publishes the verified directory ``staged`` (outside ``base``, prepared) as a new version
    of ``base``; returns (version path, version). The model file must hash to ``sha256``."""
    push_id = uuid.uuid4().hex[:12]
    first = max([int(time.time())] + [int(v) + 1 for v in complete_versions(base)])
    put = _publish_local if is_local(base) else _publish_object_store
    for version in range(first, first + MAX_VERSION_TRIES):
        done = put(staged, base, str(version), model_file, sha256, push_id)
        if done:
            _update_latest(base, done)
            return os.path.join(base, done.version), done.version
        log.info("version %d of %s was taken by another push; trying the next", version, base)
    raise PushError(f"{MAX_VERSION_TRIES} versions of {base} from {first} on were all taken by "
                    "concurrent pushes; retry the push")


def _marker(hashes: Dict[str, str], version: str, model_file: str, sha256: str,
            push_id: str) -> PushMarker:
    if hashes.get(model_file) != sha256:
        raise PushError(f"{model_file} of the version hashes to {hashes.get(model_file)}, not the "
                        f"evaluated {sha256}")
    return PushMarker(version=version, sha256=sha256, files=hashes, push_id=push_id,
                      pushed_at=time.time())


def _publish_local(staged, base, version, model_file, sha256, push_id) -> Optional[PushMarker]:
    final = os.path.join(base, version)
    if os.path.exists(final):
        return None
    tmp = os.path.join(base, f".{version}.{push_id}{INCOMPLETE_SUFFIX}")
    try:
        marker = _marker(_copy_verified(staged, tmp, model_file), version, model_file, sha256,
                         push_id)
        _write(os.path.join(tmp, MARKER_FILE), marker.to_json())
        try:
            os.rename(tmp, final)  # atomic; fails if another push renamed into this version
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY) and os.path.isdir(final):
                return None
            raise
        return marker
    except PushError:
        raise
    except Exception as e:  # noqa: BLE001  (OSError, or the filesystem plugin's own errors)
        raise PushError(f"could not write version {version} under {base!r}: "
                        f"{type(e).__name__}: {e}") from e
    finally:
        if os.path.isdir(tmp):
            fileio.rmtree(tmp)


def _publish_object_store(staged, base, version, model_file, sha256,
                          push_id) -> Optional[PushMarker]:
    final = os.path.join(base, version)
    claim = os.path.join(final, CLAIM_PREFIX + push_id)
    # No makedirs: TF's gs:// would leave a ``<version>/`` marker object that outlives a
    # withdrawn claim; an object store needs no parent for the claim.
    _write(claim, json.dumps({"push_id": push_id, "claimed_at": time.time()}))
    others = [n for n in fileio.listdir(final) if n.rstrip("/") != CLAIM_PREFIX + push_id]
    if others:
        fileio.remove(claim)
        time.sleep(random.uniform(0, 0.2))  # two claimers that saw each other: not in lockstep
        return None
    marker = _marker(_copy_verified(staged, final, model_file), version, model_file, sha256,
                     push_id)
    _write(os.path.join(final, MARKER_FILE), marker.to_json())
    fileio.remove(claim)
    return marker


def _update_latest(base: str, marker: PushMarker) -> None:
    """Points LATEST.json at the newest complete version (``marker``'s or a newer one).

    Read-compare-write alone lost to concurrent pushes: two pushers read the old pointer and the
    older one wrote last. So each pusher re-reads after its write and rewrites from the newest
    complete version's own marker until the two agree: the last writer leaves the newest."""
    path = os.path.join(base, LATEST_FILE)
    for _ in range(100):
        current = read_marker(path)
        newest = max([int(marker.version)] + [int(v) for v in complete_versions(base)])
        if current is not None and int(current.version) >= newest:
            return
        target = marker if newest == int(marker.version) else read_marker(
            os.path.join(base, str(newest), MARKER_FILE))
        _write(path, target.to_json())
    raise PushError(f"{path} kept changing under 100 rewrites: concurrent pushers to {base}?")


def _age(path: str) -> float:
    """Seconds since ``path`` was written; 0 (young: never removed) when that is unknown."""
    try:
        st = fileio.stat(path)  # TF's FileStatistics, or os.stat_result from the local plugin
        ns = getattr(st, "mtime_nsec", None) or getattr(st, "st_mtime_ns", 0)
    except Exception:  # noqa: BLE001  (gone meanwhile)
        return 0.0
    return time.time() - ns / 1e9 if ns else 0.0


def _clean_stale(base: str) -> None:
    """Removes what dead pushes left: versions without a marker and hidden staging directories,
    once older than STALE_SECONDS (a younger one may be a push in progress)."""
    for name in (n.rstrip("/") for n in fileio.listdir(base)):
        path = os.path.join(base, name)
        leftover = (name.isdigit() and not fileio.exists(os.path.join(path, MARKER_FILE))) or (
            name.startswith(".") and name.endswith(INCOMPLETE_SUFFIX))
        if leftover and fileio.isdir(path) and _newest_age(path) > STALE_SECONDS:
            log.warning("removing %s: an incomplete version left by a push that did not finish",
                        path)
            fileio.rmtree(path)


def _newest_age(path: str) -> float:
    """Age of the newest file under ``path``; an empty one's own age on local disk. On an object
    store a "directory" has no time of its own (TF's gs:// stats it as written at 0): seen empty,
    it is a version whose claim was just withdrawn or a listing racing a new claim — young."""
    ages = [_age(os.path.join(path, n)) for n in _files(path)]
    if ages:
        return min(ages)
    return _age(path) if is_local(path) else 0.0

"""Read and write local paths and ``s3://bucket/key`` objects through one small interface.

``convert`` takes either kind for every input and output; S3 goes through boto3 (the deploy
package's ``Clients``, so ``--endpoint-url`` points it at a local stand-in such as moto).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from training.errors import StorageError


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise StorageError(f"{uri!r} has no bucket (expected s3://bucket/key)")
    return bucket, key


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        return posixpath.join(base, *parts)
    return str(Path(base).joinpath(*parts))


def parent(uri: str) -> str:
    if is_s3(uri):
        return uri.rstrip("/").rsplit("/", 1)[0] + "/"
    return str(Path(uri).resolve().parent)


def name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def resolve(ref: str, relative_to: str) -> str:
    """``ref`` as written in a manifest: absolute (s3:// or /path) as is, else relative to a folder."""
    if is_s3(ref) or Path(ref).is_absolute():
        return ref
    return join(relative_to, ref)


class Storage:
    def __init__(self, clients: Any = None) -> None:
        self._clients = clients

    def _s3(self) -> Any:
        if self._clients is None:
            from deploy.sagemaker.manage import Clients

            self._clients = Clients()
        return self._clients("s3")

    def _fail(self, exc: Exception, what: str) -> StorageError:
        from deploy.errors import DeployError
        from deploy.sagemaker.manage import explain_aws_error

        if isinstance(exc, DeployError):
            return StorageError(f"{what}: {exc}")
        return StorageError(str(explain_aws_error(exc, what)))

    def read(self, uri: str) -> bytes:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            try:
                body: bytes = self._s3().get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                raise self._fail(exc, f"read {uri}") from exc
            return body
        try:
            return Path(uri).read_bytes()
        except OSError as exc:
            raise StorageError(f"read {uri}: {exc.strerror or exc}") from exc

    def read_text(self, uri: str) -> str:
        data = self.read(uri)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise StorageError(f"read {uri}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc

    def write(self, uri: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if is_s3(uri):
            bucket, key = split_s3(uri)
            try:
                self._s3().put_object(Bucket=bucket, Key=key, Body=raw)
            except Exception as exc:
                raise self._fail(exc, f"write {uri}") from exc
            return
        p = Path(uri)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(raw)
        except OSError as exc:
            raise StorageError(f"write {uri}: {exc.strerror or exc}") from exc

    def exists(self, uri: str) -> bool:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            try:
                res = self._s3().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            except Exception as exc:
                raise self._fail(exc, f"look up {uri}") from exc
            return any(
                o["Key"] == key or o["Key"].startswith(key.rstrip("/") + "/") for o in res.get("Contents", [])
            )
        return Path(uri).exists()

    def listdir(self, uri: str) -> tuple[list[str], list[str]]:
        """Immediate children of a folder: (sub-folder names, file names), each sorted."""
        if is_s3(uri):
            bucket, key = split_s3(uri)
            prefix = key.rstrip("/") + "/" if key else ""
            dirs: set[str] = set()
            files: set[str] = set()
            try:
                pages = (
                    self._s3()
                    .get_paginator("list_objects_v2")
                    .paginate(Bucket=bucket, Prefix=prefix, Delimiter="/")
                )
                for page in pages:
                    dirs.update(
                        p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", [])
                    )
                    files.update(o["Key"][len(prefix) :] for o in page.get("Contents", []))
            except Exception as exc:
                raise self._fail(exc, f"list {uri}") from exc
            files.discard("")
            return sorted(dirs), sorted(files)
        p = Path(uri)
        if not p.is_dir():
            raise StorageError(f"{uri} is not a folder")
        children = list(p.iterdir())
        return sorted(c.name for c in children if c.is_dir()), sorted(c.name for c in children if c.is_file())

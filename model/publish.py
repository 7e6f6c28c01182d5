"""Publish: dist/<name>-<version>/ -> s3://<bucket>/models/<name>/<version>/ and the model registry.

A published version is immutable and exists exactly when its manifest.json does:
  1. check the local release against its own manifest (every sha256);
  2. if the version's manifest is already in S3: same files -> nothing to do, other files -> refuse;
  3. refuse a schema change without a MAJOR bump against the highest published lower version;
  4. upload every file (skipping ones already there with the same sha256, so a rerun is cheap),
     then manifest.json last: an interrupted publish leaves no visible version, a rerun completes it;
  5. register a Model Package (metrics, drift-check baselines) in the group, once per version.
Fetch is the way back: a published version into dist/<name>-<version>/, every file checked against
the published manifest, e.g. to publish the same bytes into another stack's bucket (promotion).
Transient S3 and SageMaker errors (throttling, 5xx, dropped connections) are retried with
exponential backoff by botocore's standard retry mode.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from mlship.errors import UserError
from model.files import atomic_dir, sha256_file
from model.package import MANIFEST, TARBALL
from model.settings import Version
from model.versioning import check_bump

log = logging.getLogger(__name__)

SKLEARN_CONTAINER_VERSION = "1.9-0"  # AWS's scikit-learn image matching scikit-learn 1.9
RETRIES = Config(retries={"mode": "standard", "max_attempts": 6}, connect_timeout=10, read_timeout=60)
CONTENT_TYPES = {".json": "application/json", ".gz": "application/gzip"}
VERSION_KEY = "mlship:version"


@dataclass
class Registry:
    """Where versions are published: the artifacts bucket and SageMaker's model registry."""

    bucket: str
    s3: object
    sagemaker: object
    region: str

    @classmethod
    def connect(cls, bucket: str, region: str | None, endpoint_url: str | None) -> Registry:
        session = boto3.session.Session(region_name=region)
        if not session.region_name:
            raise UserError("no AWS region: pass --region or set AWS_REGION")
        try:
            s3 = session.client("s3", endpoint_url=endpoint_url, config=RETRIES)
            sagemaker = session.client("sagemaker", endpoint_url=endpoint_url, config=RETRIES)
        except (NoRegionError, ValueError) as error:
            raise UserError(f"cannot connect to AWS: {error}") from None
        return cls(bucket, s3, sagemaker, session.region_name)

    def key(self, name: str, version: str, path: str = "") -> str:
        return f"models/{name}/{version}/{path}"

    def read_json(self, key: str) -> dict | None:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise _aws_error(error, f"s3://{self.bucket}/{key}") from None

    def sha256_of(self, key: str) -> str | None:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)["Metadata"].get("sha256")
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise _aws_error(error, f"s3://{self.bucket}/{key}") from None

    def upload(self, key: str, path: Path, sha256: str) -> None:
        with path.open("rb") as body:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata={"sha256": sha256},
                               ContentType=CONTENT_TYPES.get(path.suffix, "application/octet-stream"))

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


@dataclass(frozen=True)
class Published:
    version: str
    created: str
    metrics: dict
    tarball_sha256: str
    approval: str | None


@dataclass(frozen=True)
class Outcome:
    summary: str
    uploaded: list[str]
    model_package_arn: str | None


def publish(registry: Registry, release_dir: Path, group: str | None = None, approve: bool = False) -> Outcome:
    manifest = verified_manifest(release_dir)
    name, version = manifest["name"], manifest["version"]
    where = registry.uri(registry.key(name, version))
    try:
        existing = registry.read_json(registry.key(name, version, MANIFEST))
        if existing is not None:
            differ = sorted(path for path in manifest["files"].keys() | existing["files"].keys()
                            if manifest["files"].get(path) != existing["files"].get(path))
            if differ and not _restated(manifest, existing, differ):
                raise UserError(f"{name} {version} is already published at {where} with different content "
                                f"({', '.join(differ)} differ); versions are immutable: package a new version")
            arn = _register(registry, group, manifest, approve) if group else None
            same = ("the same model from the same data (its baseline and evaluation files differ only in sketch "
                    "randomness and time stamps; the published ones stay)" if differ else "the same bytes")
            return Outcome(f"{name} {version} is already published at {where} with {same}: nothing to do"
                           + (f"\n  model package {arn}" if arn else ""), [], arn)
        previous, note = check_bump(manifest, published_manifests(registry, name), f"published in s3://{registry.bucket}")
        uploaded = []
        for path, digest in sorted(manifest["files"].items()):
            key = registry.key(name, version, path)
            if registry.sha256_of(key) != digest:
                log.info("uploading %s", registry.uri(key))
                registry.upload(key, release_dir / path, digest)
                uploaded.append(path)
        registry.upload(registry.key(name, version, MANIFEST), release_dir / MANIFEST, sha256_file(release_dir / MANIFEST))
        uploaded.append(MANIFEST)
        arn = _register(registry, group, manifest, approve) if group else None
    except (ClientError, BotoCoreError) as error:
        raise _aws_error(error, where) from None
    lines = [f"published {name} {version} to {where} ({len(uploaded)} files uploaded, manifest last)"]
    if previous:
        lines.append(f"  schema vs {previous}: {note}")
    if arn:
        lines.append(f"  model package {arn} ({'Approved' if approve else 'PendingManualApproval'})")
    return Outcome("\n".join(lines), uploaded, arn)


def fetch(registry: Registry, name: str, version: str, release_dir: Path) -> Outcome:
    """Downloads a published version into release_dir, checking every file against the published manifest."""
    where = registry.uri(registry.key(name, version))
    try:
        published = registry.read_json(registry.key(name, version, MANIFEST))
        if published is None:
            versions = sorted(published_manifests(registry, name), key=Version.parse)
            raise UserError(f"{name} {version} is not published at {where}; published versions: {', '.join(versions) or 'none'}")
        if release_dir.exists():
            local = release_dir / MANIFEST
            if local.is_file() and json.loads(local.read_text())["files"] == published["files"]:
                verified_manifest(release_dir)
                return Outcome(f"{release_dir}/ already holds {name} {version} as published: nothing to do", [], None)
            raise UserError(f"{release_dir} exists and is not {name} {version} as published at {where}; move it away first")
        with atomic_dir(release_dir) as out:
            for path, digest in sorted(published["files"].items()):
                key = registry.key(name, version, path)
                log.info("downloading %s", registry.uri(key))
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                registry.s3.download_file(registry.bucket, key, str(out / path))
                if sha256_file(out / path) != digest:
                    raise UserError(f"{registry.uri(key)} does not match its sha256 in the published manifest; "
                                    "the published copy is damaged: publish the version again from its release folder")
            registry.s3.download_file(registry.bucket, registry.key(name, version, MANIFEST), str(out / MANIFEST))
    except (ClientError, BotoCoreError) as error:
        raise _aws_error(error, where) from None
    files = sorted(published["files"])
    return Outcome(f"fetched {name} {version} from {where} into {release_dir}/ ({len(files) + 1} files, "
                   "every sha256 checked against the published manifest)", files, None)


def _restated(local: dict, published: dict, differ: list[str]) -> bool:
    """True when only what is computed from the model and its data differs. A baseline's KLL sketches are
    randomised and an evaluation carries its time, so packaging the same model from the same data again
    (a rerun CI job) writes other bytes that say the same thing."""
    return (all(path.startswith(("baseline/", "evaluation/")) for path in differ)
            and local["model_sha256"] == published["model_sha256"]
            and local["training_data"]["fingerprint"] == published["training_data"]["fingerprint"])


def verified_manifest(release_dir: Path) -> dict:
    """The release manifest, after checking every file it lists against its sha256."""
    path = release_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"no packaged release at {release_dir}; run `mlship model package` first (same --version)")
    manifest = json.loads(path.read_text())
    for relative, digest in manifest["files"].items():
        file = release_dir / relative
        if not file.is_file():
            raise UserError(f"{file} is missing from the release; package it again")
        if sha256_file(file) != digest:
            raise UserError(f"{file} does not match its sha256 in {path}; the release was modified, package it again")
    return manifest


def published_manifests(registry: Registry, name: str) -> dict[str, dict]:
    """Manifests of every published (that is: manifest present) version of a model, by version."""
    found = {}
    paginator = registry.s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=registry.bucket, Prefix=f"models/{name}/", Delimiter="/"):
        for prefix in page.get("CommonPrefixes", []):
            version = prefix["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            manifest = registry.read_json(f"{prefix['Prefix']}{MANIFEST}")
            if manifest is not None:
                found[version] = manifest
    return found


def list_versions(registry: Registry, name: str, group: str | None = None) -> list[Published]:
    try:
        manifests = published_manifests(registry, name)
        approvals = _approvals(registry, group) if group else {}
    except (ClientError, BotoCoreError) as error:
        raise _aws_error(error, f"s3://{registry.bucket}/models/{name}/") from None
    return [
        Published(version, manifest["created"], manifest["metrics"], manifest["files"][TARBALL], approvals.get(version))
        for version, manifest in sorted(manifests.items(), key=lambda item: Version.parse(item[0]))
    ]


def _approvals(registry: Registry, group: str) -> dict[str, str]:
    """Approval status of each version registered in the group, by mlship version."""
    approvals = {}
    for summary in _packages(registry, group):
        described = registry.sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        version = (described.get("CustomerMetadataProperties") or {}).get(VERSION_KEY)
        if version:
            approvals[version] = described["ModelApprovalStatus"]
    return approvals


def _packages(registry: Registry, group: str) -> list[dict]:
    try:
        paginator = registry.sagemaker.get_paginator("list_model_packages")
        return [s for page in paginator.paginate(ModelPackageGroupName=group) for s in page["ModelPackageSummaryList"]]
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ValidationException", "ResourceNotFound"):
            return []
        raise


def _register(registry: Registry, group: str, manifest: dict, approve: bool) -> str:
    """Create the group if needed and register this version once; returns its model package ARN."""
    name, version = manifest["name"], manifest["version"]
    for summary in _packages(registry, group):
        described = registry.sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
        if (described.get("CustomerMetadataProperties") or {}).get(VERSION_KEY) == version:
            return summary["ModelPackageArn"]
    try:
        registry.sagemaker.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("ValidationException", "ResourceNotFound"):
            raise
        registry.sagemaker.create_model_package_group(
            ModelPackageGroupName=group, ModelPackageGroupDescription=f"mlship model {name}")

    def s3_file(path: str) -> dict:
        return {"ContentType": "application/json", "S3Uri": registry.uri(registry.key(name, version, path))}

    quality = {"Statistics": s3_file("evaluation/model_quality_statistics.json"),
               "Constraints": s3_file("evaluation/model_quality_constraints.json")}
    data_quality = {"Statistics": s3_file("baseline/statistics.json"), "Constraints": s3_file("baseline/constraints.json")}
    response = registry.sagemaker.create_model_package(
        ModelPackageGroupName=group,
        ModelPackageDescription=f"{name} {version}: " + ", ".join(f"{k} {v:.4f}" for k, v in manifest["metrics"].items()),
        InferenceSpecification={
            "Containers": [{
                "Image": sklearn_image(registry.region),
                "ModelDataUrl": registry.uri(registry.key(name, version, TARBALL)),
                "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
                "Framework": "SAGEMAKER-SCIKIT-LEARN",
                "FrameworkVersion": SKLEARN_CONTAINER_VERSION,
            }],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"],
        },
        ModelMetrics={"ModelQuality": quality, "ModelDataQuality": data_quality},
        DriftCheckBaselines={"ModelQuality": quality, "ModelDataQuality": data_quality},
        ModelApprovalStatus="Approved" if approve else "PendingManualApproval",
        CustomerMetadataProperties={
            VERSION_KEY: version,
            "mlship:model-sha256": manifest["model_sha256"],
            "mlship:git-commit": manifest["git"]["commit"] or "none",
            **{f"mlship:{metric}": f"{value:.6f}" for metric, value in manifest["metrics"].items()},
        },
    )
    return response["ModelPackageArn"]


def sklearn_image(region: str) -> str:
    """AWS's scikit-learn inference image for the region, as the SageMaker SDK resolves it (offline)."""
    from sagemaker.core import image_uris  # ~2 s to import: only publish pays for it

    return image_uris.retrieve("sklearn", region=region, version=SKLEARN_CONTAINER_VERSION,
                               instance_type="ml.m5.large", image_scope="inference")


def _aws_error(error: Exception, where: str) -> UserError:
    if isinstance(error, ClientError):
        code = error.response["Error"]["Code"]
        message = error.response["Error"].get("Message") or code
        if code in ("NoSuchBucket", "AccessDenied", "403", "InvalidAccessKeyId", "ExpiredToken"):
            return UserError(f"{where}: {code}: {message}")
        return UserError(f"{where}: AWS error {code}: {message}")
    if isinstance(error, NoCredentialsError):
        return UserError(f"{where}: no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY), or run `aws configure`")
    return UserError(f"{where}: {error}")

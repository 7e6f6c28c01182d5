"""publish and list against moto: immutability, manifest-last atomicity, retries, the model registry."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from model_support import build_release, mlship
from moto import mock_aws

from mlship.errors import UserError
from model.publish import Registry, list_versions, publish

BUCKET = "mlship-artifacts"
REGION = "eu-west-1"
GROUP = "churn-models"


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("publish")
    return root, build_release(root), build_release(root, "--version", "1.1.0")


@pytest.fixture
def registry(monkeypatch):
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        yield Registry.connect(BUCKET, REGION, None)


def keys(registry) -> list[str]:
    return sorted(o["Key"] for o in registry.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_publish_uploads_manifest_last_and_registers_with_metrics(registry, releases, capsys):
    _, release, _ = releases
    order = []
    registry.s3.meta.events.register("provide-client-params.s3.PutObject", lambda params, **_: order.append(params["Key"]))
    outcome = publish(registry, release, group=GROUP)
    assert order[-1] == "models/churn/1.0.0/manifest.json" and len(order) == len(set(order))
    manifest = json.loads((release / "manifest.json").read_text())
    assert keys(registry) == sorted(f"models/churn/1.0.0/{p}" for p in [*manifest["files"], "manifest.json"])
    described = registry.sagemaker.describe_model_package(ModelPackageName=outcome.model_package_arn)
    assert described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["ModelPackageGroupName"] == GROUP
    container = described["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/models/churn/1.0.0/model.tar.gz"
    assert "sagemaker-scikit-learn:1.9-0" in container["Image"]
    assert described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("evaluation/model_quality_statistics.json")
    assert described["DriftCheckBaselines"]["ModelDataQuality"]["Constraints"]["S3Uri"] == \
        f"s3://{BUCKET}/models/churn/1.0.0/baseline/constraints.json"
    assert float(described["CustomerMetadataProperties"]["mlship:auc_roc"]) == pytest.approx(manifest["metrics"]["auc_roc"])
    [listed] = list_versions(registry, "churn", GROUP)
    assert (listed.version, listed.approval, listed.tarball_sha256) == ("1.0.0", "PendingManualApproval", manifest["files"]["model.tar.gz"])
    assert listed.metrics["auc_roc"] >= 0.85


def test_same_bytes_again_is_a_noop_and_registers_once(registry, releases):
    _, release, _ = releases
    first = publish(registry, release, group=GROUP, approve=True)
    again = publish(registry, release, group=GROUP, approve=True)
    assert again.uploaded == [] and "same bytes: nothing to do" in again.summary
    assert again.model_package_arn == first.model_package_arn
    assert len(registry.sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]) == 1
    assert list_versions(registry, "churn", GROUP)[0].approval == "Approved"


def test_different_bytes_under_a_published_version_are_refused(registry, releases, tmp_path):
    root, release, _ = releases
    publish(registry, release)
    other = build_release(tmp_path, "--seed", "8")  # same version 1.0.0, another model
    before = {k: registry.s3.get_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys(registry)}
    with pytest.raises(UserError, match=r"already published .* with different content \(.*model.tar.gz.*\); versions are immutable"):
        publish(registry, other)
    assert {k: registry.s3.get_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys(registry)} == before


def test_the_same_model_packaged_again_is_already_published(registry, releases, tmp_path):
    # A rerun CI job trains the same model from the same data; its baseline sketches and evaluation
    # time differ, its model does not: publishing it again succeeds and changes nothing.
    _, release, _ = releases
    publish(registry, release)
    again = build_release(tmp_path)
    assert (again / "baseline/statistics.json").read_bytes() != (release / "baseline/statistics.json").read_bytes()
    before = {k: registry.s3.get_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys(registry)}
    outcome = publish(registry, again)
    assert outcome.uploaded == [] and "the same model from the same data" in outcome.summary
    assert {k: registry.s3.get_object(Bucket=BUCKET, Key=k)["ETag"] for k in keys(registry)} == before


def test_failure_between_uploads_leaves_no_version_and_a_rerun_completes(registry, releases):
    _, release, _ = releases
    calls = []

    def fail_on_third(params, **_):
        calls.append(params["Key"])
        if len(calls) == 3:
            raise ConnectionAbortedError("network dropped")  # not retried by botocore: the process dies here

    registry.s3.meta.events.register("provide-client-params.s3.PutObject", fail_on_third)
    with pytest.raises(ConnectionAbortedError):
        publish(registry, release)
    assert "models/churn/1.0.0/manifest.json" not in keys(registry)
    assert 0 < len(keys(registry)) < 7
    assert list_versions(registry, "churn") == []
    registry.s3.meta.events.unregister("provide-client-params.s3.PutObject", fail_on_third)
    outcome = publish(registry, release)
    assert "manifest.json" in outcome.uploaded and len(outcome.uploaded) < len(calls) + 6  # finished parts are skipped
    assert [v.version for v in list_versions(registry, "churn")] == ["1.0.0"]


def test_transient_s3_errors_are_retried_with_backoff(registry, releases, monkeypatch):
    _, release, _ = releases
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0.01)
    answered = []

    def slow_down_twice(request, **_):
        if request.method == "PUT" and len(answered) < 2:
            answered.append(request.url)
            return AWSResponse(request.url, 503, {}, _Raw(b"<Error><Code>SlowDown</Code><Message>Reduce your request rate</Message></Error>"))
        return None

    registry.s3.meta.events.register_first("before-send.s3.PutObject", slow_down_twice)
    publish(registry, release)
    assert len(answered) == 2 and answered[0] == answered[1]
    assert [v.version for v in list_versions(registry, "churn")] == ["1.0.0"]


def test_schema_change_against_a_published_version_needs_a_major_bump(registry, releases, tmp_path):
    root, release, minor = releases
    publish(registry, release)
    local = tmp_path / "elsewhere"
    fewer = ["--version", "1.2.0", "--set", "features=[tenure_months,monthly_charges,contract,payment_method,support_calls_90d,satisfaction_score]"]
    changed = build_release(local, *fewer)  # packages fine here: this dist folder has no 1.x yet
    with pytest.raises(UserError, match=r"changes the schema of 1\.0\.0 \(published in s3://mlship-artifacts\).*MAJOR"):
        publish(registry, changed)
    assert "models/churn/1.2.0/manifest.json" not in keys(registry)
    assert publish(registry, minor).uploaded  # 1.1.0 keeps the schema
    shutil.rmtree(local)


def test_cli_publish_and_list_print_what_was_done(registry, releases, capsys, monkeypatch):
    root, release, _ = releases
    monkeypatch.chdir(root)  # dist/ and build/ of the release are here
    assert mlship("publish", "--bucket", BUCKET, "--region", REGION, "--group", GROUP) == 0
    out = capsys.readouterr().out
    assert f"published churn 1.0.0 to s3://{BUCKET}/models/churn/1.0.0/" in out and "PendingManualApproval" in out
    assert mlship("list", "--bucket", BUCKET, "--region", REGION, "--group", GROUP) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:2] == ["version", "created"] and listing[1].startswith("1.0.0")
    assert "PendingManualApproval" in listing[1]


def test_publish_refuses_a_modified_release(registry, releases, tmp_path, capsys):
    _, release, _ = releases
    copy = tmp_path / "dist/churn-1.0.0"
    shutil.copytree(release, copy)
    (copy / "baseline/constraints.json").write_text("{}")
    with pytest.raises(UserError, match="constraints.json does not match its sha256"):
        publish(registry, copy)
    assert keys(registry) == []


class _Raw:
    """The minimal raw-body object botocore reads an AWSResponse's content from."""

    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


def test_cli_registers_in_the_models_own_group_unless_told_not_to(registry, releases, capsys, monkeypatch):
    root, _, _ = releases
    monkeypatch.chdir(root)
    assert mlship("publish", "--bucket", BUCKET, "--region", REGION, "--no-register") == 0
    assert registry.sagemaker.list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    assert mlship("publish", "--bucket", BUCKET, "--region", REGION) == 0
    assert "model package arn:aws:sagemaker:eu-west-1:123456789012:model-package/churn/1" in capsys.readouterr().out


def test_list_and_publish_without_credentials_say_so_in_one_line(releases, capsys, monkeypatch, tmp_path):
    root, _, _ = releases
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(key, str(tmp_path / "absent"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.chdir(root)
    # Port 9 (discard) is never reached: signing fails first, without credentials.
    where = ["--bucket", BUCKET, "--region", REGION, "--endpoint-url", "http://127.0.0.1:9"]
    for command in ("list", "publish"):
        assert mlship(command, *where) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no AWS credentials found" in err and "Traceback" not in err


def test_fetch_brings_back_the_published_bytes_to_publish_them_elsewhere(registry, releases, tmp_path, capsys, monkeypatch):
    # Promotion: a version published into dev's bucket is fetched and published into prod's, byte for byte.
    _, release, _ = releases
    publish(registry, release, group=GROUP)
    registry.s3.create_bucket(Bucket="prod-artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    monkeypatch.chdir(tmp_path)
    fetched = tmp_path / "dist" / "churn-1.0.0"
    assert mlship("fetch", "--bucket", BUCKET, "--region", REGION, "--version", "1.0.0") == 0
    assert "fetched churn 1.0.0" in capsys.readouterr().out
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    assert {p.relative_to(fetched).as_posix() for p in fetched.rglob("*") if p.is_file()} == files
    assert all((fetched / f).read_bytes() == (release / f).read_bytes() for f in files)
    assert mlship("fetch", "--bucket", BUCKET, "--region", REGION, "--version", "1.0.0") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert mlship("publish", "--bucket", "prod-artifacts", "--region", REGION, "--version", "1.0.0",
                  "--group", "prod-churn", "--approve") == 0
    assert "Approved" in capsys.readouterr().out
    prod = Registry.connect("prod-artifacts", REGION, None)
    assert [v.version for v in list_versions(prod, "churn", "prod-churn")] == ["1.0.0"]


def test_fetch_refuses_what_is_not_published_or_damaged(registry, releases, tmp_path, capsys, monkeypatch):
    _, release, _ = releases
    publish(registry, release)
    monkeypatch.chdir(tmp_path)
    where = ["--bucket", BUCKET, "--region", REGION]
    assert mlship("fetch", *where, "--version", "9.9.9") == 2
    err = capsys.readouterr().err
    assert "churn 9.9.9 is not published" in err and "published versions: 1.0.0" in err
    registry.s3.put_object(Bucket=BUCKET, Key="models/churn/1.0.0/baseline/statistics.json", Body=b"{}")
    assert mlship("fetch", *where, "--version", "1.0.0") == 2
    assert "statistics.json does not match its sha256" in capsys.readouterr().err
    assert not (tmp_path / "dist" / "churn-1.0.0").exists()  # nothing partial

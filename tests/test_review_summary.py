"""`mlship review` on preview documents written to `pulumi preview --json`'s schema (PreviewDigest)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from infra.review.changes import SECRET_SIG_KEY, SECRET_SIG_VALUE, changes_from_preview
from infra.review.cli import main
from infra.review.render import GITHUB_COMMENT_LIMIT, Review, render
from infra.review.risks import find_risks

PROJECT = "mlship"


def urn(stack: str, type_: str, name: str, parent: str = "") -> str:
    chain = f"{parent}${type_}" if parent else type_
    return f"urn:pulumi:{stack}::{PROJECT}::{chain}::{name}"


def state(urn_: str, type_: str, inputs: dict, id_: str = "") -> dict:
    return {"urn": urn_, "custom": True, "id": id_, "type": type_, "inputs": inputs, "outputs": {**inputs, "id": id_},
            "parent": f"urn:pulumi:dev::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-dev", "protect": False,
            "provider": f"urn:pulumi:dev::{PROJECT}::pulumi:providers:aws::default_7_51_1::0"}


def step(op: str, type_: str, name: str, old: dict | None = None, new: dict | None = None, stack: str = "dev",
         diff: dict | None = None, replace: list | None = None, parent: str = "") -> dict:
    u = urn(stack, type_, name, parent)
    result = {"op": op, "urn": u, "provider": f"urn:pulumi:{stack}::{PROJECT}::pulumi:providers:aws::default::0",
              "detailedDiff": None}
    if old is not None:
        result["oldState"] = state(u, type_, old, id_=f"{name}-id")
    if new is not None:
        result["newState"] = state(u, type_, new)
    if diff:
        result["diffReasons"] = sorted({re.split(r"[.\[]", k)[0] for k in diff})
        result["detailedDiff"] = {k: {"kind": v, "inputDiff": True} for k, v in diff.items()}
    if replace:
        result["replaceReasons"] = replace
    return result


def replace_steps(type_: str, name: str, old: dict, new: dict, diff: dict, replace: list, stack: str = "dev") -> list:
    """The three steps the engine emits for a create-before-delete replacement."""
    return [step(op, type_, name, old, new, stack, diff, replace)
            for op in ("create-replacement", "replace", "delete-replaced")]


def document(*steps: dict, diagnostics: list | None = None) -> dict:
    summary: dict[str, int] = {}
    for s in steps:
        summary[s["op"]] = summary.get(s["op"], 0) + 1
    stack_urn = urn("dev", "pulumi:pulumi:Stack", f"{PROJECT}-dev")
    return {"config": {"aws:region": "us-east-1", "mlship:model": "churn@1.3.0"},
            "steps": [{"op": "same", "urn": stack_urn, "oldState": {"urn": stack_urn, "type": "pulumi:pulumi:Stack"},
                       "newState": {"urn": stack_urn, "type": "pulumi:pulumi:Stack"}, "detailedDiff": None}, *steps],
            "diagnostics": diagnostics or [], "duration": 1_234_000_000, "changeSummary": {"same": 1, **summary}}


def attention(markdown: str) -> list[str]:
    """The top-level bullets of the attention section."""
    section = markdown.split("### Needs attention", 1)[1].split("### Every change", 1)[0]
    return [line[2:] for line in section.splitlines() if line.startswith("- ")]


def review(doc: dict, tmp_path, *extra: str) -> str:
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(doc))
    out = tmp_path / "review.md"
    assert main([str(path), "--output", str(out), *extra]) == 0
    return out.read_text()


BUCKET = "aws:s3/bucketV2:BucketV2"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
MODEL = "aws:sagemaker/model:Model"
SG = "aws:ec2/securityGroup:SecurityGroup"
INSTANCE = "aws:ec2/instance:Instance"


def test_bucket_deletion_is_the_only_attention_item(tmp_path):
    doc = document(step("delete", BUCKET, "artifacts", old={"bucket": "mlship-artifacts-dev", "forceDestroy": False}),
                   step("create", "aws:sns/topic:Topic", "alerts", new={"name": "alerts"}))
    markdown = review(doc, tmp_path)
    assert attention(markdown) == [f"[dev] Deletes `{BUCKET}` **artifacts**"]
    assert "its objects are deleted with it" in markdown
    assert "**dev** (preview): 1 to delete, 1 to create" in markdown
    # deletion comes first in the table too
    table = markdown.split("### Every change (2)", 1)[1]
    assert table.index("artifacts") < table.index("alerts")


def test_endpoint_replacement_says_why(tmp_path):
    old = {"name": "churn-dev", "endpointConfigName": "churn-config-1"}
    new = {"name": "churn-dev-v2", "endpointConfigName": "churn-config-1"}
    variant = {"variantName": "primary", "modelName": "churn-1", "instanceType": "ml.m5.large",
               "initialInstanceCount": 1}
    doc = document(*replace_steps(ENDPOINT, "endpoint", old, new, {"name": "update-replace"}, ["name"]),
                   *replace_steps(CONFIG, "endpoint-config", {"productionVariants": [variant], "kmsKeyArn": "k1"},
                                  {"productionVariants": [variant], "kmsKeyArn": "k2"},
                                  {"kmsKeyArn": "update-replace"}, ["kmsKeyArn"]))
    markdown = review(doc, tmp_path)
    # the endpoint's configuration is replaced too, but that is how an endpoint moves: not an attention item
    assert attention(markdown) == [f"[dev] Replaces `{ENDPOINT}` **endpoint**"]
    assert '  - why replaced: `name`: churn-dev → churn-dev-v2' in markdown
    assert "the endpoint stops answering" in markdown
    assert "2 to replace" in markdown  # three engine steps per resource count once


def test_ingress_opened_to_the_internet(tmp_path):
    private = {"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "cidrBlocks": ["10.0.0.0/16"],
               "description": "serving from the VPC"}
    ssh = {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"], "description": "ssh"}
    doc = document(step("update", SG, "server-sg", old={"ingress": [private], "egress": []},
                        new={"ingress": [private, ssh], "egress": []},
                        diff={"ingress[1]": "add"}))
    markdown = review(doc, tmp_path)
    assert attention(markdown) == [f"Opens port 22/tcp from **the whole internet** on `{SG}` **server-sg** (ssh)"
                                   .join(["[dev] ", ""])]
    assert '+ ingress[1].cidrBlocks[0]: "0.0.0.0/0"' in markdown


def test_model_version_bump(tmp_path):
    old_model = {"primaryContainer": {"image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sklearn:1.2-1",
                                      "modelDataUrl": "s3://mlship-artifacts/models/churn/1.2.0/model.tar.gz"},
                 "tags": {"mlship:model": "churn@1.2.0"}}
    new_model = json.loads(json.dumps(old_model).replace("1.2.0", "1.3.0"))
    doc = document(*replace_steps(MODEL, "churn-model", old_model, new_model,
                                  {"primaryContainer.modelDataUrl": "update-replace", "tags": "update"},
                                  ["primaryContainer"]))
    markdown = review(doc, tmp_path)
    assert attention(markdown) == ["[dev] Model **churn** 1.2.0 → **1.3.0**"]
    assert f"carried by `{MODEL}` **churn-model**" in markdown


def test_a_version_at_the_end_of_a_sentence_is_the_same_version(tmp_path):
    # The dashboard's text says "... model churn@1.2.0." : the full stop is not part of the version.
    old = {"dashboardBody": json.dumps({"widgets": [{"properties": {"markdown": "Serving model churn@1.2.0."}}]})}
    new = {"dashboardBody": old["dashboardBody"].replace("1.2.0", "1.3.0")}
    doc = document(step("update", "aws:cloudwatch/dashboard:Dashboard", "dashboard", old, new, diff={"dashboardBody": "update"}))
    assert attention(review(doc, tmp_path)) == ["[dev] Model **churn** 1.2.0 → **1.3.0**"]


def test_instance_type_change_shows_monthly_cost(tmp_path):
    doc = document(step("update", INSTANCE, "server", old={"instanceType": "t3.small", "ami": "ami-1"},
                        new={"instanceType": "t3.large", "ami": "ami-1"}, diff={"instanceType": "update"}))
    markdown = review(doc, tmp_path)
    # (0.0832 - 0.0208) $/h x 730 h
    assert attention(markdown) == [f"[dev] `{INSTANCE}` **server**: t3.small ×1 → t3.large ×1, **+$45.55/month**"]
    assert "$15.18 → $60.74 per month at us-east-1 on-demand prices of 2026-11-22" in markdown


def test_iam_wildcard_and_policy_errors_are_flagged():
    narrow = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}]})
    wide = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    doc = document(step("update", "aws:iam/rolePolicy:RolePolicy", "server-policy", old={"policy": narrow},
                        new={"policy": wide}, diff={"policy": "update"}),
                   diagnostics=[{"urn": "", "prefix": "error: ", "severity": "error",
                                 "message": "[mandatory] mlship-policies v0.0.1 iam-no-wildcard-admin: grants *:*"},
                                {"severity": "info", "message": "ignored"}])
    findings = find_risks(changes_from_preview(doc))
    assert [(f.category, f.title) for f in findings] == [
        ("policy", "**error**: [mandatory] mlship-policies v0.0.1 iam-no-wildcard-admin: grants *:*"),
        ("security", "Grants 1 new permission in `aws:iam/rolePolicy:RolePolicy` **server-policy** — **includes wildcards**"),
    ]
    assert findings[1].details == ["`* on *`"]


def test_nothing_to_flag_says_so(tmp_path):
    doc = document(step("update", "aws:sns/topic:Topic", "alerts", old={"displayName": "a"}, new={"displayName": "b"},
                        diff={"displayName": "update"}))
    markdown = review(doc, tmp_path)
    assert attention(markdown) == []
    assert "### Needs attention (0)" in markdown


def test_secrets_never_appear(tmp_path):
    envelope = {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": "hunter2-plaintext"}
    cipher = {SECRET_SIG_KEY: SECRET_SIG_VALUE, "ciphertext": "v1:abcdef-ciphertext"}
    doc = document(step("update", "aws:ssm/parameter:Parameter", "token", old={"value": cipher, "type": "SecureString"},
                        new={"value": envelope, "type": "SecureString", "description": "[secret]"},
                        diff={"value": "update"}),
                   step("create", "github:index/actionsSecret:ActionsSecret", "ec2-key",
                        new={"secretName": "EC2_SSH_KEY", "plaintextValue": envelope}))
    markdown = review(doc, tmp_path)
    assert "hunter2" not in markdown and "ciphertext" not in markdown
    assert '+ plaintextValue: "[secret]"' in markdown


def test_two_thousand_resources_are_cut_to_fit(tmp_path):
    objects = [step("create", "aws:s3/bucketObjectv2:BucketObjectv2", f"report-{i:04d}",
                    new={"bucket": "mlship-reports", "key": f"reports/{i:04d}.html", "contentType": "text/html",
                         "tags": {"owner": "monitoring", "index": str(i)}})
               for i in range(1997)]
    doc = document(*objects,
                   step("delete", BUCKET, "captures", old={"bucket": "mlship-captures-dev"}),
                   step("update", SG, "server-sg", old={"ingress": []},
                        new={"ingress": [{"protocol": "tcp", "fromPort": 8080, "toPort": 8080,
                                          "cidrBlocks": ["0.0.0.0/0"], "description": "serving"}]},
                        diff={"ingress[0]": "add"}),
                   step("update", INSTANCE, "server", old={"instanceType": "t3.small"}, new={"instanceType": "t3.medium"},
                        diff={"instanceType": "update"}))
    markdown = review(doc, tmp_path, "--full-report-hint", "The full review is in the run's artifacts.")
    assert len(markdown) <= GITHUB_COMMENT_LIMIT - 536
    assert "Cut to fit GitHub's 65,536-character comment limit" in markdown
    assert "The full review is in the run's artifacts." in markdown
    assert attention(markdown) == [
        f"[dev] Deletes `{BUCKET}` **captures**",
        f"[dev] Opens port 8080/tcp from **the whole internet** on `{SG}` **server-sg** (serving)",
        f"[dev] `{INSTANCE}` **server**: t3.small ×1 → t3.medium ×1, **+$15.18/month**",
    ]
    # the important rows and diffs survive; creations are what was cut, and the cut is summed up
    table = markdown.split("### Every change (2000)", 1)[1]
    for name in ("captures", "server-sg", "| server |"):
        assert name in table
    assert "more rows (" in table and "`aws:s3/bucketObjectv2:BucketObjectv2` ×" in table
    assert "<summary>dev · delete · <code>aws:s3/bucketV2:BucketV2</code> · captures</summary>" in markdown


def test_everything_fits_when_small():
    doc = document(step("create", "aws:sns/topic:Topic", "alerts", new={"name": "alerts"}))
    markdown = render(Review.of([changes_from_preview(doc)]))
    assert "Cut to fit" not in markdown
    assert markdown.startswith("<!-- mlship-review -->")
    assert "<details><summary>dev · create · <code>aws:sns/topic:Topic</code> · alerts</summary>" in markdown


@pytest.mark.parametrize("content, message", [
    ("not json at all", "holds no JSON document"),
    ('{"steps": [', "is not valid JSON"),
    ('{"resources": []}', "is not `pulumi preview --json` output"),
])
def test_bad_preview_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "preview.json"
    path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "mlship", "review", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert result.stdout == ""


def test_missing_file_and_bad_options(tmp_path, capsys):
    result = subprocess.run([sys.executable, "-m", "mlship", "review", str(tmp_path / "nope.json")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "cannot read" in result.stderr
    result = subprocess.run([sys.executable, "-m", "mlship", "review", "--offline"], capture_output=True, text=True)
    assert result.returncode == 2 and "--offline needs --base REF" in result.stderr
    result = subprocess.run([sys.executable, "-m", "mlship", "review", "--max-chars", "many", "x.json"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--max-chars" in result.stderr


def test_readme_shows_a_sample_review():
    from conftest import REPO
    section = (REPO / "README.md").read_text().split("<!-- section: delivery (issue 7) -->", 1)[1]
    section = section.split("<!-- section:", 1)[0]
    for needle in ("<!-- mlship-review -->", "### Needs attention", "#### Can lose data", "/month**",
                   "### Every change", "<details><summary>"):
        assert needle in section

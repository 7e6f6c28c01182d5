"""Every validation rule of the stack settings refuses a wrong value with a message naming key, value and what is allowed."""

from __future__ import annotations

import copy

import pytest

from infra import offline, plan
from infra.settings import SettingsError, load
from infra_support import REPO, compose_overrides


@pytest.fixture
def config(tmp_path) -> dict:
    """The prod stack file (production rules on), with the compose file this checkout has."""
    return copy.deepcopy({**offline.stack_config("prod"), **compose_overrides("prod", tmp_path)})


def refused(config: dict, stack: str = "prod") -> str:
    with pytest.raises(SettingsError) as error:
        load(config, stack, REPO)
    return str(error.value)


def test_stack_files_are_valid(config):
    settings = load(config, "prod", REPO)
    assert settings.production and settings.model.name == "churn"


def test_serverless_memory_must_be_a_step_of_1024(config):
    config["mlship:serverless"]["memoryMb"] = 1000
    assert refused(config) == ("mlship:serverless.memoryMb = 1000: must be one of 1024, 2048, 3072, 4096, 5120, 6144 "
                               "(1024..6144 in steps of 1024)")


def test_canary_at_most_half_the_capacity(config):
    config["mlship:realtime"]["rollout"]["size"] = 60
    assert refused(config) == "mlship:realtime.rollout.size = 60: a canary step must be 1-50 percent of the instances"


def test_canary_instance_count_at_most_half_the_instances(config):
    config["mlship:realtime"]["rollout"].update(sizeType="INSTANCE_COUNT", size=2)
    assert refused(config) == ("mlship:realtime.rollout.size = 2 instances: a canary step may be at most 50% of the "
                               "2 instances (1 or fewer)")


def test_linear_step_between_10_and_50_percent(config):
    config["mlship:realtime"]["rollout"].update(type="LINEAR", size=5)
    assert refused(config) == "mlship:realtime.rollout.size = 5: a linear step must be 10-50 percent of the instances"


def test_ssh_from_the_internet_refused_in_production(config):
    config["mlship:ec2"]["sshCidrs"] = ["203.0.113.0/24", "0.0.0.0/0"]
    assert refused(config) == ("mlship:ec2.sshCidrs contains 0.0.0.0/0: SSH open to the whole internet is refused "
                               "in a production stack; list your VPN or office CIDRs")
    config["mlship:ec2"]["sshCidrs"] = ["::/0"]
    assert refused(config).startswith("mlship:ec2.sshCidrs contains ::/0: SSH open to the whole internet is refused")


def test_ssh_from_the_internet_allowed_outside_production(config):
    config["mlship:ec2"]["sshCidrs"] = ["0.0.0.0/0"]
    config["mlship:production"] = False
    assert load(config, "dev", REPO).ec2.ssh_cidrs == ("0.0.0.0/0",)


def test_data_capture_on_serverless_refused(config):
    config["mlship:serverless"]["dataCapture"] = {"enabled": True}
    assert refused(config).startswith(
        "mlship:serverless.dataCapture = {'enabled': True}: serverless endpoints cannot capture data")


def test_production_needs_two_real_time_instances(config):
    config["mlship:realtime"]["instanceCount"] = 1
    config["mlship:realtime"]["autoscaling"]["minInstances"] = 1
    assert refused(config) == ("mlship:realtime.instanceCount = 1: a production real-time endpoint needs at least "
                               "2 instances")


def test_production_refuses_all_at_once(config):
    config["mlship:realtime"]["rollout"] = {"type": "ALL_AT_ONCE"}
    assert refused(config) == ("mlship:realtime.rollout.type = 'ALL_AT_ONCE': a production stack shifts traffic "
                               "gradually; use CANARY or LINEAR")


def test_rollout_type_must_be_known(config):
    config["mlship:realtime"]["rollout"]["type"] = "BLUE"
    assert refused(config) == "mlship:realtime.rollout.type = 'BLUE': must be one of ALL_AT_ONCE, CANARY, LINEAR"


def test_model_must_name_a_version(config):
    config["mlship:model"] = "churn"
    assert refused(config).startswith("mlship:model = 'churn': must be <name>@<version>, e.g. churn@1.0.0")


def test_unknown_key_is_refused(config):
    config["mlship:realtime"]["instanceCont"] = 3
    assert refused(config).startswith("mlship:realtime.instanceCont is not a known setting; known keys in mlship:realtime:")


def test_unknown_container_version(config):
    config["mlship:containerVersion"] = "0.1-0"
    message = refused(config)
    assert message.startswith("mlship:containerVersion = '0.1-0': must be one of ") and "1.9-0" in message


def test_region_must_be_an_aws_region(config):
    config["aws:region"] = "europe"
    assert refused(config) == "aws:region = 'europe': must be an AWS region such as eu-west-1"


def test_secret_in_plain_text_refused(config):
    config["mlship:githubToken"] = "ghp_plaintext"
    assert refused(config).startswith("mlship:githubToken is stored in plain text: set it with "
                                      "`pulumi config set --secret mlship:githubToken`")
    config["mlship:githubToken"] = {"secure": "v1:abc"}
    load(config, "prod", REPO)


def test_targets_must_be_known(config):
    config["mlship:targets"] = ["ec2", "lambda"]
    assert refused(config) == ("mlship:targets = ['ec2', 'lambda']: must be a non-empty list of "
                               "ec2, realtime, serverless, async, batch")


def test_enabled_target_needs_its_settings(config):
    del config["mlship:batch"]
    assert refused(config) == "mlship:batch is missing: target 'batch' is enabled in mlship:targets"


def test_cidr_must_be_a_cidr(config):
    config["mlship:ec2"]["servingCidrs"] = ["10.0.0.1/8"]
    assert refused(config) == "mlship:ec2.servingCidrs contains '10.0.0.1/8': not a CIDR block (write e.g. 203.0.113.7/32)"


def test_instance_count_within_autoscaling_bounds(config):
    config["mlship:realtime"]["autoscaling"]["maxInstances"] = 1
    assert refused(config) == "mlship:realtime.autoscaling: minInstances 2 <= instanceCount 2 <= maxInstances 1 must hold"


def test_async_min_not_above_max(config):
    config["mlship:async"]["minInstances"] = 5
    assert refused(config) == "mlship:async.minInstances = 5: must not exceed maxInstances 4"


def test_serverless_provisioned_concurrency_within_max(config):
    config["mlship:serverless"]["provisionedConcurrency"] = 50
    assert refused(config) == "mlship:serverless.provisionedConcurrency = 50: must be between 0 and 20"


def test_batch_schedule_syntax(config):
    config["mlship:batch"]["schedule"] = "0 2 * * *"
    assert refused(config).startswith("mlship:batch.schedule = '0 2 * * *': must match ")


def test_batch_content_type(config):
    config["mlship:batch"]["contentType"] = "text/plain"
    assert refused(config) == ("mlship:batch.contentType = 'text/plain': must be one of text/csv, application/json, "
                               "application/jsonlines")


def test_whole_numbers(config):
    config["mlship:ec2"]["dataVolumeGb"] = "lots"
    assert refused(config) == "mlship:ec2.dataVolumeGb = 'lots': must be a whole number"


def test_compose_file_must_exist(config):
    config["mlship:ec2"]["composeFile"] = "nowhere/compose.yml"
    assert refused(config) == (f"mlship:ec2.composeFile = '{REPO}/nowhere/compose.yml': file not found; the EC2 "
                               "host's user data embeds the serving container's compose file")


def test_serving_port_must_be_published_by_the_compose_file(config):
    config["mlship:ec2"]["servingPort"] = 9090
    message = refused(config)
    assert message.startswith("mlship:ec2.servingPort = 9090: the compose file ")
    assert message.endswith(" publishes 8080 on the host; open one of those")


def test_image_reference_format(config):
    config["mlship:ec2"]["image"] = "Not An Image"
    assert refused(config).startswith("mlship:ec2.image = 'Not An Image': must match ")


def test_vpc_and_subnet_together(config):
    config["mlship:ec2"]["vpcId"] = "vpc-0123456789abcdef0"
    assert refused(config) == "mlship:ec2.vpcId and mlship:ec2.subnetId: set both or neither (neither = default VPC)"


def test_ssh_public_key_format(config):
    config["mlship:ec2"]["sshPublicKey"] = "-----BEGIN OPENSSH PRIVATE KEY-----"
    assert refused(config).startswith("mlship:ec2.sshPublicKey = '-----BEGIN OPENSSH PRIVATE KEY-----': must match ")


def test_a_wrong_value_stops_the_program_before_any_resource(config, tmp_path):
    overrides = {**compose_overrides("prod", tmp_path), "mlship:serverless": {"memoryMb": 512}}
    with pytest.raises(SettingsError, match=r"mlship:serverless.memoryMb = 512"):
        offline.run("prod", overrides=overrides)


@pytest.fixture
def plan_command(monkeypatch, tmp_path):
    """`mlship plan` with the compose file this checkout has."""
    real = offline.run
    monkeypatch.setattr(plan, "run", lambda stack: real(stack, overrides=compose_overrides(stack, tmp_path)))
    return plan.main


def test_plan_prints_every_resource(capsys, plan_command):
    for stack in offline.stack_files():
        assert plan_command(["--stack", stack]) == 0
        text = capsys.readouterr().out
        assert text.startswith(f"stack {stack}: ")
        assert "aws-native:sagemaker:Endpoint  realtime  (parent: realtime)" in text
        assert "aws:ec2/instance:Instance  host  (parent: host)  [ignores changes to ami]" in text
        assert '"httpTokens": "required"' in text
        assert f"model_package_group: \"mlship-{stack}-churn\"" in text


def test_plan_json_and_unknown_stack(capsys, plan_command):
    import json

    assert plan_command(["--stack", "dev", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stack"] == "dev" and len(document["resources"]) > 50
    with pytest.raises(Exception, match="stack 'staging' has no Pulumi.staging.yaml; stacks here: dev, prod"):
        offline.run("staging")

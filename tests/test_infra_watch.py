"""Watching (issue 6), offline for every Pulumi.<stack>.yaml: Model Monitor schedules, alerts, alarms,
the dashboard, the EC2 host's agent and monitor, drift-triggered retraining, and the GitHub wiring."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pandas
import pytest
import yaml

from infra import offline
from infra.baseline import drift_metrics
from infra.offline import Plan, local_artifact
from infra.plan import render
from infra.settings import load
from infra_support import COMPOSE, REPO, compose_overrides, policy
from monitoring import formats
from monitoring.baseline import write_baseline

STACKS = sorted(offline.stack_files())
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SCHEDULE = "aws:sagemaker/monitoringSchedule:MonitoringSchedule"
DATA_QUALITY = "aws:sagemaker/dataQualityJobDefinition:DataQualityJobDefinition"
MODEL_QUALITY = "aws-native:sagemaker:ModelQualityJobDefinition"
ENDPOINT = "aws-native:sagemaker:Endpoint"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
INSTANCE = "aws:ec2/instance:Instance"
TOPIC_ARN = "arn:aws:sns:eu-west-1:123456789012:alerts-topic"
SECRET_SIG = "4dabf18193072939515e22adb298388d"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cache: dict = {}

    def get(stack: str):
        if stack not in cache:
            overrides = compose_overrides(stack, tmp_path_factory.mktemp(stack))
            config = {**offline.stack_config(stack), **overrides}
            cache[stack] = (offline.run(stack, overrides=overrides), load(config, stack, REPO))
        return cache[stack]
    return get


@pytest.fixture(params=STACKS)
def run(request, runs):
    return runs(request.param)


def baseline_features(s) -> list[str]:
    """The deployed version's features, read the way a reviewer would: from its statistics.json."""
    path = local_artifact(REPO, s.model.key("baseline/statistics.json"))
    return [f.name for f in formats.read_statistics(path).features]


def real_time_endpoints(plan: Plan) -> dict[str, str]:
    """endpoint name -> kind (realtime, serverless, async), from each endpoint's configuration."""
    configs = {c.name: c.inputs for c in plan.of_type(ENDPOINT_CONFIG)}
    kinds = {}
    for endpoint in plan.of_type(ENDPOINT):
        config = configs[endpoint.inputs["endpointConfigName"]]
        variant = config["productionVariants"][0]
        kinds[endpoint.inputs["endpointName"]] = ("serverless" if "serverlessConfig" in variant else
                                                  "async" if "asyncInferenceConfig" in config else "realtime")
    return kinds


def schedules_by_endpoint(plan: Plan) -> dict[str, dict[str, dict]]:
    """endpoint name -> monitoring type -> the schedule's inputs, following schedule -> job definition -> endpoint."""
    definitions = {d.name: d.inputs["dataQualityJobInput"]["endpointInput"]["endpointName"] for d in plan.of_type(DATA_QUALITY)}
    definitions.update({d.name: d.inputs["endpointName"] for d in plan.of_type(MODEL_QUALITY)})
    found: dict[str, dict[str, dict]] = {}
    for schedule in plan.of_type(SCHEDULE):
        config = schedule.inputs["monitoringScheduleConfig"]
        endpoint = definitions[config["monitoringJobDefinitionName"]]
        found.setdefault(endpoint, {})[config["monitoringType"]] = schedule.inputs
    return found


def user_data(plan: Plan) -> str:
    return plan.one(INSTANCE).inputs["userData"]


def env_file(script: str) -> dict[str, str]:
    body = re.search(r"<<'ENV'\n(.*?)\nENV\n", script, re.S).group(1)
    return dict(line.split("=", 1) for line in body.splitlines())


def test_a_data_and_a_model_quality_schedule_per_real_time_endpoint_none_for_serverless(run):
    plan, s = run
    kinds = real_time_endpoints(plan)
    schedules = schedules_by_endpoint(plan)
    real_time = {name for name, kind in kinds.items() if kind == "realtime"}
    assert real_time == {f"mlship-{s.stack}-realtime"}
    assert set(schedules) == real_time  # nothing watches the serverless or the asynchronous endpoint
    for endpoint in real_time:
        assert set(schedules[endpoint]) == {"DataQuality", "ModelQuality"}
        for kind, schedule in schedules[endpoint].items():
            assert schedule["monitoringScheduleConfig"]["scheduleConfig"]["scheduleExpression"] == s.monitoring.schedule
            assert schedule["tags"]["mlship-endpoint"] == endpoint
        assert schedules[endpoint]["DataQuality"]["name"] == f"{endpoint}-data-quality"
    assert plan.outputs["realtime_monitoring_schedules"] == [f"mlship-{s.stack}-realtime-data-quality",
                                                             f"mlship-{s.stack}-realtime-model-quality"]


def test_baselines_are_the_deployed_versions_files_and_results_are_encrypted(run):
    plan, s = run
    artifacts = f"s3://storage-artifacts/models/{s.model.name}/{s.model.version}/baseline"
    (data,) = plan.of_type(DATA_QUALITY)
    baseline = data.inputs["dataQualityBaselineConfig"]
    assert baseline["statisticsResource"]["s3Uri"] == f"{artifacts}/statistics.json"
    assert baseline["constraintsResource"]["s3Uri"] == f"{artifacts}/constraints.json"
    key_arn = plan.outputs["kms_key_arn"]
    output = data.inputs["dataQualityJobOutputConfig"]
    assert output["kmsKeyId"] == key_arn
    assert output["monitoringOutputs"]["s3Output"]["s3Uri"] == "s3://storage-reports/monitoring"
    assert data.inputs["jobResources"]["clusterConfig"]["volumeKmsKeyId"] == key_arn
    assert data.inputs["stoppingCondition"]["maxRuntimeInSeconds"] == s.monitoring.max_runtime_seconds
    image = data.inputs["dataQualityAppSpecification"]["imageUri"]
    assert s.monitoring.image is None and re.fullmatch(r"\d{12}\.dkr\.ecr\.eu-west-1\.amazonaws\.com/sagemaker-model-monitor-analyzer", image)
    assert "environment" not in data.inputs["dataQualityAppSpecification"]  # AWS's analyzer needs nothing more

    (quality,) = plan.of_type(MODEL_QUALITY)
    assert quality.inputs["modelQualityAppSpecification"] == {"imageUri": image, "problemType": "BinaryClassification"}
    endpoint_input = quality.inputs["modelQualityJobInput"]["endpointInput"]
    assert (endpoint_input["probabilityAttribute"], endpoint_input["inferenceAttribute"]) == ("0", "1")  # "<probability>,<label>"
    truth = quality.inputs["modelQualityJobInput"]["groundTruthS3Input"]["s3Uri"]
    assert truth == f"s3://storage-capture/{s.monitoring.ground_truth_prefix}mlship-{s.stack}-realtime" == plan.outputs["ground_truth_uri"]
    assert quality.inputs["modelQualityJobOutputConfig"]["kmsKeyId"] == key_arn
    constraints_uri = quality.inputs["modelQualityBaselineConfig"]["constraintsResource"]["s3Uri"]
    (constraints,) = plan.of_type("aws:s3/bucketObjectv2:BucketObjectv2")
    assert constraints_uri == f"s3://storage-artifacts/{constraints.inputs['key']}"
    assert constraints.inputs["serverSideEncryption"] == "aws:kms"
    parsed = formats.model_quality_constraints_from_json(json.loads(constraints.inputs["content"]))
    assert {name: (c.threshold, c.comparison_operator) for name, c in parsed.items()} == {
        "accuracy": (s.monitoring.alarms.min_accuracy, "LessThanThreshold"),
        "f1": (s.monitoring.alarms.min_f1, "LessThanThreshold")}


def test_the_monitor_role_reads_only_its_endpoints_data(run):
    plan, s = run
    document = policy(next(p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
                           if p.name == "realtime-monitor-role-permissions").inputs["policy"])
    by_sid = {statement["Sid"]: statement for statement in document["Statement"]}
    endpoint = f"mlship-{s.stack}-realtime"
    assert by_sid["ReadBaselines"]["Resource"] == [
        f"arn:aws:s3:eu-west-1:123456789012:storage-artifacts/models/{s.model.name}/{s.model.version}/baseline/*",
        f"arn:aws:s3:eu-west-1:123456789012:storage-artifacts/monitoring/{endpoint}/*"]
    assert by_sid["WriteReports"]["Resource"] == [f"arn:aws:s3:eu-west-1:123456789012:storage-reports/monitoring/{endpoint}/*"]
    assert by_sid["PullMonitorImage"]["Resource"][0].endswith(":repository/sagemaker-model-monitor-analyzer")


def test_one_drift_alarm_per_baseline_feature_on_each_monitored_endpoint(run):
    plan, s = run
    features = baseline_features(s)
    assert len(features) >= 10
    alarms = [a.inputs for a in plan.of_type(ALARM) if a.inputs.get("namespace") == "aws/sagemaker/Endpoints/data-metrics"]
    schedules = {f"mlship-{s.stack}-realtime": f"mlship-{s.stack}-realtime-data-quality",
                 f"mlship-{s.stack}-ec2": env_file(user_data(plan))["MLSHIP_SCHEDULE_NAME"]}
    for endpoint, schedule in schedules.items():
        mine = [a for a in alarms if a["dimensions"]["Endpoint"] == endpoint]
        assert sorted(a["metricName"] for a in mine) == sorted(f"feature_baseline_drift_{f}" for f in features)
        assert all(a["dimensions"]["MonitoringSchedule"] == schedule for a in mine)
        assert all(a["threshold"] == s.monitoring.alarms.drift_threshold and a["comparisonOperator"] == "GreaterThanThreshold"
                   for a in mine)
    assert len(alarms) == 2 * len(features)
    assert sorted(plan.outputs["drift_alarms"]) == sorted(a["name"] for a in alarms)


def test_drift_alarms_follow_a_packaged_release(tmp_path):
    """A release packaged here (dist/<name>-<version>/) wins over the example: its features make the alarms."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "infra"):
        (repo / name).symlink_to(REPO / name)
    frame = pandas.DataFrame({"tenure": [1, 5, 9, 12], "plan": ["basic", "pro", "basic", "plus"]})
    write_baseline(frame, repo / "dist" / "churn-1.0.0" / "baseline")
    plan = offline.run("dev", repo=repo, overrides={**compose_overrides("dev", tmp_path), "mlship:targets": ["realtime"]})
    drift = sorted(a.inputs["metricName"] for a in plan.of_type(ALARM) if a.name.startswith("alarms-realtime-drift-"))
    assert drift == ["feature_baseline_drift_plan", "feature_baseline_drift_tenure"]
    assert plan.notes == ["s3://storage-artifacts/models/churn/1.0.0/baseline/statistics.json read offline from "
                          "dist/churn-1.0.0/baseline/statistics.json"]


def test_a_baseline_without_features_or_release_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lists no features"):
        drift_metrics(json.dumps({"version": 0.0, "dataset": {"item_count": 0}, "features": []}), "s3://b/k")
    with pytest.raises(ValueError, match="is not a Model Monitor statistics.json"):
        drift_metrics("not json", "s3://b/k")
    with pytest.raises(Exception, match=r"package fraud@2\.0\.0 \(mlship model package\) or add infra/examples/fraud/"):
        local_artifact(tmp_path, "models/fraud/2.0.0/baseline/statistics.json")


def test_every_alarm_notifies_the_alerts_topic(run):
    plan, s = run
    alarms = plan.of_type(ALARM)
    scaling = [a for a in alarms if any(re.match(r"arn:aws:(app)?autoscaling:", action) for action in a.inputs["alarmActions"])]
    # The asynchronous endpoint's scale-from-zero trigger scales, and tells the topic once per wake-up;
    # it fires on ordinary traffic, so it does not also announce the return to normal.
    assert [a.inputs["name"] for a in scaling] == [f"mlship-{s.stack}-async-backlog-without-capacity"]
    for alarm in alarms:
        assert TOPIC_ARN in alarm.inputs["alarmActions"], alarm.name
        assert alarm.inputs["alarmDescription"], alarm.name
        if alarm not in scaling:
            assert alarm.inputs["okActions"] == [TOPIC_ARN], alarm.name
    names = {a.inputs["name"] for a in alarms}
    realtime, ec2 = f"mlship-{s.stack}-realtime", f"mlship-{s.stack}-ec2"
    assert {f"{realtime}-5xx-errors", f"{realtime}-p99-latency",  # the rollback alarms
            f"{realtime}-primary-4xx-rate", f"{realtime}-primary-cpu", f"{realtime}-primary-memory", f"{realtime}-primary-disk",
            f"{realtime}-accuracy", f"{realtime}-f1", f"{ec2}-accuracy", f"{ec2}-f1",
            f"mlship-{s.stack}-serverless-model-setup-time", f"mlship-{s.stack}-serverless-5xx-errors",
            f"mlship-{s.stack}-async-backlog", f"mlship-{s.stack}-async-failed-invocations",
            f"{ec2}-cpu", f"{ec2}-memory", f"{ec2}-disk-root", f"{ec2}-disk-data", f"{ec2}-system-status"} <= names
    status = next(a.inputs for a in alarms if a.inputs["name"] == f"{ec2}-system-status")
    assert "arn:aws:automate:eu-west-1:ec2:recover" in status["alarmActions"]
    accuracy = next(a.inputs for a in alarms if a.inputs["name"] == f"{realtime}-accuracy")
    assert accuracy["comparisonOperator"] == "LessThanThreshold" and accuracy["threshold"] == s.monitoring.alarms.min_accuracy
    assert accuracy["dimensions"] == {"Endpoint": realtime, "MonitoringSchedule": f"{realtime}-model-quality"}
    rate = next(a.inputs for a in alarms if a.inputs["name"] == f"{realtime}-primary-4xx-rate")
    assert {q["id"] for q in rate["metricQueries"]} == {"rate", "errors", "invocations"}


def test_alerts_topic_is_encrypted_with_a_key_cloudwatch_may_use(run):
    plan, s = run
    topic = plan.one("aws:sns/topic:Topic", "alerts-topic")
    key = plan.one("aws:kms/key:Key", "alerts-key")
    assert topic.inputs["kmsMasterKeyId"] == "arn:aws:kms:eu-west-1:123456789012:alerts-key"
    assert key.inputs["enableKeyRotation"] is True
    services = {statement["Sid"]: statement for statement in policy(key.inputs["policy"])["Statement"]}
    assert "cloudwatch.amazonaws.com" in services["AlarmsEncryptMessages"]["Principal"]["Service"]
    subscriptions = {(t.inputs["protocol"], t.inputs["endpoint"]) for t in plan.of_type("aws:sns/topicSubscription:TopicSubscription")}
    assert subscriptions == {("email", email) for email in s.monitoring.alert_emails} and subscriptions
    assert plan.outputs["alerts_topic_arn"] == TOPIC_ARN


def test_dashboard_names_the_real_endpoints_and_instance(run):
    plan, s = run
    dashboard = plan.one("aws:cloudwatch/dashboard:Dashboard")
    assert dashboard.inputs["dashboardName"] == f"mlship-{s.stack}"
    widgets = json.loads(dashboard.inputs["dashboardBody"])["widgets"]
    titles = [w["properties"].get("title", "") for w in widgets]
    metrics = [tuple(m[:-1] if isinstance(m[-1], dict) else m) for w in widgets for m in w["properties"].get("metrics", [])]
    for kind in ("realtime", "serverless", "async"):
        assert ("AWS/SageMaker", "Invocations", "EndpointName", f"mlship-{s.stack}-{kind}", "VariantName",
                plan.outputs[f"{kind}_variants"][0]) in metrics
    assert ("AWS/EC2", "CPUUtilization", "InstanceId", plan.outputs["ec2_instance_id"]) in metrics
    assert ("CWAgent", "disk_used_percent", "InstanceId", "host-id", "path", "/data") in metrics
    for endpoint, schedule in ((f"mlship-{s.stack}-realtime", f"mlship-{s.stack}-realtime-data-quality"),
                               (f"mlship-{s.stack}-ec2", f"mlship-{s.stack}-ec2-hourly")):
        drift = {m[1] for m in metrics if m[0] == "aws/sagemaker/Endpoints/data-metrics" and m[3] == endpoint}
        assert drift == {f"feature_baseline_drift_{f}" for f in baseline_features(s)}
        assert all(m[5] == schedule for m in metrics if m[0] == "aws/sagemaker/Endpoints/data-metrics" and m[3] == endpoint)
        assert ("aws/sagemaker/Endpoints/model-metrics", "accuracy", "Endpoint", endpoint) == next(
            m[:4] for m in metrics if m[0] == "aws/sagemaker/Endpoints/model-metrics" and m[3] == endpoint)
    latency = [m[-1].get("stat") for w in widgets for m in w["properties"].get("metrics", []) if m[1] == "ModelLatency"]
    assert "p99" in latency and "p50" in latency
    assert any(f"mlship-{s.stack}-realtime" in t for t in titles)


def test_user_data_configures_the_cloudwatch_agent_and_ships_monitor_results(run):
    plan, s = run
    script = user_data(plan)
    agent = json.loads(re.search(r"<<'AGENT'\n(.*?)\nAGENT\n", script, re.S).group(1))
    collected = agent["metrics"]["metrics_collected"]
    assert collected["mem"]["measurement"] == ["mem_used_percent"]
    assert collected["disk"]["resources"] == ["/", "/data"]
    assert ["InstanceId", "path"] in agent["metrics"]["aggregation_dimensions"]
    assert agent["metrics"]["append_dimensions"] == {"InstanceId": "${aws:InstanceId}"}
    files = {f["file_path"]: f["log_group_name"] for f in agent["logs"]["logs_collected"]["files"]["collect_list"]}
    assert files["/var/lib/docker/containers/*/*-json.log"] == f"/mlship-{s.stack}/ec2/containers"
    groups = {g.inputs["name"]: g.inputs["retentionInDays"] for g in plan.of_type("aws:cloudwatch/logGroup:LogGroup")}
    assert set(files.values()) <= set(groups) and set(groups.values()) == {s.monitoring.log_retention_days}
    assert "amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:" in script
    env = env_file(script)
    endpoint = f"mlship-{s.stack}-ec2"
    assert env["MLSHIP_SCHEDULE_NAME"] == plan.outputs["ec2_monitor_schedule"] == f"{endpoint}-hourly"
    assert env["MLSHIP_PUBLISH_CLOUDWATCH"] == "true"
    assert env["MLSHIP_REPORTS_S3"] == f"s3://storage-reports/monitoring/{endpoint}"
    assert env["MLSHIP_GROUND_TRUTH_S3"] == f"s3://storage-capture/{s.monitoring.ground_truth_prefix}{endpoint}"
    assert f"aws s3 sync /data/monitoring/{endpoint} ${{MLSHIP_REPORTS_S3}}" in script
    assert "systemctl enable --now mlship-reports.timer" in script
    host = policy(next(p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
                       if p.name == "host-instance-permissions").inputs["policy"])
    by_sid = {statement["Sid"]: statement for statement in host["Statement"]}
    assert by_sid["PublishMonitorMetrics"]["Condition"] == {"StringLike": {"cloudwatch:namespace": "aws/sagemaker/Endpoints/*"}}
    assert by_sid["WriteReports"]["Resource"] == [f"arn:aws:s3:eu-west-1:123456789012:storage-reports/monitoring/{endpoint}/*"]


def test_compose_monitor_publishes_under_the_alarms_names():
    """One turn of the compose file's monitor loop, with the .env the user data writes."""
    if not COMPOSE.is_file() or shutil.which("sh") is None or subprocess.run(["date", "-u", "-d", "@0"], capture_output=True).returncode:
        pytest.skip("needs the serving compose file, sh and GNU date")
    monitor = yaml.safe_load(COMPOSE.read_text())["services"]["monitor"]
    assert {"MLSHIP_SCHEDULE_NAME", "MLSHIP_PUBLISH_CLOUDWATCH", "MLSHIP_GROUND_TRUTH_S3"} <= set(monitor["environment"])
    once = monitor["command"][0].replace("$$", "$").replace("while true; do", "for turn in 1; do", 1)
    env = {**os.environ, "MLSHIP_ENDPOINT": "mlship-dev-ec2", "MLSHIP_SCHEDULE_NAME": "mlship-dev-ec2-hourly",
           "MLSHIP_PUBLISH_CLOUDWATCH": "true", "MLSHIP_GROUND_TRUTH_S3": "s3://capture/ground-truth/mlship-dev-ec2"}
    result = subprocess.run(["sh", "-c", 'sleep() { :; }; python() { echo "ran $*"; }; ' + once],
                            capture_output=True, text=True, timeout=10, env=env)
    ran = re.search(r"ran (.*)", result.stdout).group(1).split()
    assert "--publish-cloudwatch" in ran
    arguments = dict(zip(ran[4::2], ran[5::2]))
    assert arguments["--endpoint-name"] == "mlship-dev-ec2" and arguments["--schedule-name"] == "mlship-dev-ec2-hourly"
    assert arguments["--ground-truth"] == "s3://capture/ground-truth/mlship-dev-ec2"
    assert re.fullmatch(r"/data/monitoring/mlship-dev-ec2/mlship-dev-ec2-hourly/\d{4}/\d\d/\d\d/\d\d", arguments["--out"])
    quiet = subprocess.run(["sh", "-c", 'sleep() { :; }; python() { echo "ran $*"; }; ' + once], capture_output=True,
                           text=True, timeout=10, env={**os.environ, "MLSHIP_ENDPOINT": "churn"})
    assert "--publish-cloudwatch" not in quiet.stdout and "--ground-truth" not in quiet.stdout  # a laptop publishes nothing


def test_retraining_is_off_unless_enabled(run):
    plan, _ = run
    assert not plan.of_type("aws:cloudwatch/eventRule:EventRule") and "retraining_rule" not in plan.outputs


def test_drift_alarm_sends_repository_dispatch_when_enabled(tmp_path):
    config = offline.stack_config("dev")
    monitoring = {**config["mlship:monitoring"], "retraining": {"enabled": True}}
    plan = offline.run("dev", overrides={**compose_overrides("dev", tmp_path), "mlship:monitoring": monitoring,
                                         "mlship:githubToken": {"secure": "v1:offline"}})
    rule = plan.one("aws:cloudwatch/eventRule:EventRule")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern["detail-type"] == ["CloudWatch Alarm State Change"] and pattern["detail"]["state"] == {"value": ["ALARM"]}
    prefixes = [p["prefix"] for p in pattern["detail"]["alarmName"]]
    drift = plan.outputs["drift_alarms"]
    assert drift and all(any(name.startswith(p) for p in prefixes) for name in drift)
    others = [a.inputs["name"] for a in plan.of_type(ALARM) if a.inputs["name"] not in drift]
    assert not any(name.startswith(p) for p in prefixes for name in others)  # only drift retrains
    destination = plan.one("aws:cloudwatch/eventApiDestination:EventApiDestination")
    assert destination.inputs["invocationEndpoint"] == "https://api.github.com/repos/example-org/mlship/dispatches"
    assert destination.inputs["httpMethod"] == "POST"
    target = plan.one("aws:cloudwatch/eventTarget:EventTarget")
    assert target.inputs["arn"] == f"arn:aws:cloudwatch:eu-west-1:123456789012:{destination.name}"  # the mock's ARN of it
    assert target.inputs["rule"] == rule.inputs["name"]
    body = json.loads(target.inputs["inputTransformer"]["inputTemplate"])
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "model.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))
    assert body["event_type"] in triggers["repository_dispatch"]["types"]  # the model workflow starts on it
    assert body["client_payload"]["model"] == "churn@1.0.0"
    connection = plan.one("aws:cloudwatch/eventConnection:EventConnection")
    auth = connection.inputs["authParameters"]
    assert auth[SECRET_SIG]  # the token makes the whole block a secret: never plain in the state or the plan
    assert auth["value"]["apiKey"]["key"] == "Authorization" and auth["value"]["apiKey"]["value"].startswith("Bearer ")
    role_policy = policy(next(p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
                              if p.name == "retraining-invoke-permissions").inputs["policy"])
    assert role_policy["Statement"][0]["Action"] == ["events:InvokeApiDestination"]
    assert role_policy["Statement"][0]["Resource"] == [target.inputs["arn"]]
    assert plan.outputs["retraining_rule"] == "mlship-dev-drift-retrain"
    text = render(plan)  # what `mlship plan` shows a reviewer
    assert "aws:cloudwatch/eventRule:EventRule  retraining-drift" in text
    assert "invocationEndpoint: https://api.github.com/repos/example-org/mlship/dispatches" in text
    assert "v1:offline" not in text  # the token's ciphertext is not shown either


def test_github_delivery_is_composed_from_the_stack(run):
    plan, s = run
    environment = plan.one("github:index/repositoryEnvironment:RepositoryEnvironment")
    assert environment.inputs["environment"] == s.github.environment == plan.outputs["github_environment"]
    assert environment.inputs["repository"] == s.github.repository.split("/")[1]
    provider = plan.one("pulumi:providers:github")
    assert provider.inputs["owner"] == s.github.owner
    secrets = {x.inputs["secretName"]: x.inputs["value"]["value"]
               for x in plan.of_type("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret")}
    assert secrets == {"EC2_HOST": plan.outputs["ec2_host"], "EC2_USER": s.ec2.ssh_user,
                       "DOCKER_COMPOSE_DIR": s.ec2.compose_dir}
    # A job in this stack's environment publishes where this stack deploys from (the promote workflow).
    variables = {x.inputs["variableName"]: x.inputs["value"]
                 for x in plan.of_type("github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable")}
    assert variables.pop("AWS_ROLE_ARN").endswith("github-deploy")
    assert variables == {"ARTIFACTS_BUCKET": plan.outputs["artifacts_bucket"],
                         "MODEL_PACKAGE_GROUP": plan.outputs["model_package_group"]}
    if s.production:
        assert environment.inputs["reviewers"] == [{"users": list(s.github.reviewer_user_ids),
                                                    "teams": list(s.github.reviewer_team_ids)}]
        assert environment.inputs["canAdminsBypass"] is False
    deploy = policy(plan.one("aws:iam/role:Role", "github-deploy").inputs["assumeRolePolicy"])["Statement"][0]
    assert deploy["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] == [
        f"repo:{s.github.repository}:environment:{s.github.environment}"]


def test_the_policy_rule_sees_the_schedules(run):
    from pulumi_policy.policy import PolicyResource
    from pulumi_policy.proxy import unknown_checking_proxy

    from infra.policy.rules import RULES

    plan, _ = run
    (rule,) = [r for r in RULES if r.name == "sagemaker-monitoring-schedule"]
    resources = [PolicyResource(r.type, unknown_checking_proxy({**json.loads(json.dumps(r.inputs)), "id": f"{r.name}-id"}),
                                r.urn, r.name, None, None, None, [], {}) for r in plan.resources if r.custom]
    assert list(rule.stack_violations(resources, {})) == []
    unwatched = [r for r in resources if r.resource_type != SCHEDULE]
    assert [e.name for e, _ in rule.stack_violations(unwatched, {})] == ["realtime"]


def test_plan_shows_the_watching(run):
    plan, s = run
    text = render(plan)
    for shown in ("aws:sagemaker/monitoringSchedule:MonitoringSchedule  realtime-monitor-data-quality",
                  "aws-native:sagemaker:ModelQualityJobDefinition  realtime-monitor-model-quality",
                  "feature_baseline_drift_", "aws:cloudwatch/dashboard:Dashboard  dashboard",
                  "aws:sns/topicSubscription:TopicSubscription", f"alarmActions: [\"{TOPIC_ARN}\"]",
                  f"drift per feature (schedule mlship-{s.stack}-realtime-data-quality)",
                  f"EC2 host mlship-{s.stack}-ec2 (host-id): CPU, memory, disk",
                  "note: s3://storage-artifacts/models/churn/1.0.0/baseline/statistics.json read offline from "):
        assert shown in text, shown


def test_a_version_not_yet_published_has_no_drift_alarms_until_it_is(tmp_path):
    """The first `pulumi up --target` creates the buckets before anything is published: it must not fail."""
    plan = offline.run("dev", overrides={**compose_overrides("dev", tmp_path), "mlship:targets": ["realtime"],
                                         "mlship:model": "fraud@0.1.0"})
    assert plan.outputs["drift_alarms"] == [] and plan.notes == []
    assert plan.of_type(SCHEDULE)  # the schedules still point at where the baseline will be
    (data,) = plan.of_type(DATA_QUALITY)
    assert data.inputs["dataQualityBaselineConfig"]["statisticsResource"]["s3Uri"] == (
        "s3://storage-artifacts/models/fraud/0.1.0/baseline/statistics.json")
    widgets = json.loads(plan.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])["widgets"]
    assert not [w for w in widgets if "drift" in w["properties"].get("title", "")]


def test_mlships_own_monitor_image_instead_of_the_analyzer(tmp_path):
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlship-monitor:1.0.0"
    monitoring = {**offline.stack_config("prod")["mlship:monitoring"], "image": image}
    plan = offline.run("prod", overrides={**compose_overrides("prod", tmp_path), "mlship:targets": ["realtime"],
                                          "mlship:monitoring": monitoring})
    (data,) = plan.of_type(DATA_QUALITY)
    (quality,) = plan.of_type(MODEL_QUALITY)
    assert data.inputs["dataQualityAppSpecification"]["imageUri"] == image == plan.outputs["monitor_image"]
    assert quality.inputs["modelQualityAppSpecification"]["imageUri"] == image
    # mlship's monitor reads the deployed version's output baseline itself (SageMaker mounts only two files).
    statistics = data.inputs["dataQualityBaselineConfig"]["statisticsResource"]["s3Uri"]
    assert data.inputs["dataQualityAppSpecification"]["environment"] == {
        "MLSHIP_PREDICTION_BASELINE": statistics.replace("statistics.json", "prediction_statistics.json")}
    document = policy(next(p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")
                           if p.name == "realtime-monitor-role-permissions").inputs["policy"])
    pull = next(statement for statement in document["Statement"] if statement["Sid"] == "PullMonitorImage")
    assert pull["Resource"] == ["arn:aws:ecr:eu-west-1:123456789012:repository/mlship-monitor"]


def test_endpoint_cpu_threshold_counts_every_vcpu(run):
    """SageMaker sums CPUUtilization over the instance's vCPUs: 80% of an ml.m5.large is 160."""
    from infra.alarms import vcpus

    assert [vcpus(t) for t in ("ml.t2.medium", "ml.m5.large", "ml.m5.xlarge", "ml.c5.4xlarge")] == [2, 2, 4, 16]
    plan, s = run
    cpu = next(a.inputs for a in plan.of_type(ALARM) if a.inputs["name"] == f"mlship-{s.stack}-realtime-primary-cpu")
    assert cpu["namespace"] == "/aws/sagemaker/Endpoints"
    assert cpu["threshold"] == s.monitoring.alarms.cpu_percent * vcpus(s.realtime.instance_type)

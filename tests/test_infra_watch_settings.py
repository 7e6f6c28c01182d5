"""The watching and GitHub settings refuse wrong values with a message naming key, value and what is allowed."""

from __future__ import annotations

import copy

import pytest

from infra import offline
from infra.settings import SettingsError, load
from infra_support import REPO, compose_overrides


@pytest.fixture
def config(tmp_path) -> dict:
    return copy.deepcopy({**offline.stack_config("prod"), **compose_overrides("prod", tmp_path)})


def refused(config: dict) -> str:
    with pytest.raises(SettingsError) as error:
        load(config, "prod", REPO)
    return str(error.value)


def test_stack_files_give_every_watching_setting(config):
    s = load(config, "prod", REPO)
    assert s.monitoring.alert_emails and s.monitoring.schedule == "cron(0 * ? * * *)"
    assert s.monitoring.alarms.min_accuracy == 0.6 and not s.monitoring.retraining.enabled
    assert s.github.repository == "example-org/mlship" and s.github.environment == "production"


def test_defaults_when_the_section_is_absent(config):
    del config["mlship:monitoring"]
    s = load(config, "prod", REPO).monitoring
    assert (s.alert_emails, s.image, s.alarms.drift_threshold, s.retraining.event_type) == ((), None, 0.1, "drift-alarm")


@pytest.mark.parametrize("key, value, message", [
    ("alertEmails", ["oncall"], "mlship:monitoring.alertEmails = ['oncall']: must be a list of strings matching"),
    ("schedule", "rate(1 hour)", "mlship:monitoring.schedule = 'rate(1 hour)': must be a Model Monitor cron expression"),
    ("logRetentionDays", 10, "mlship:monitoring.logRetentionDays = 10: must be one of 1, 3, 5, 7, 14, 30"),
    ("maxRuntimeSeconds", 7200, "mlship:monitoring.maxRuntimeSeconds = 7200: must be between 60 and 3600"),
    ("image", "ghcr.io/x/monitor:1", "mlship:monitoring.image = 'ghcr.io/x/monitor:1': must match"),
    ("qualityStartOffset", "1 day", "mlship:monitoring.qualityStartOffset = '1 day': must match"),
    ("alarms", {"driftThreshold": 2}, "mlship:monitoring.alarms.driftThreshold = 2.0: must be between 0.0 and 1.0"),
    ("alarms", {"minAcuracy": 0.7}, "mlship:monitoring.alarms.minAcuracy is not a known setting"),
])
def test_wrong_monitoring_values(config, key, value, message):
    config["mlship:monitoring"][key] = value
    assert refused(config).startswith(message)


def test_retraining_needs_the_token_as_a_secret(config):
    config["mlship:monitoring"]["retraining"] = {"enabled": True}
    assert refused(config).startswith("mlship:monitoring.retraining.enabled = true needs mlship:githubToken: set it "
                                      "with `pulumi config set --secret mlship:githubToken`")
    config["mlship:githubToken"] = "ghp_plain"
    assert refused(config).startswith("mlship:githubToken is stored in plain text")
    config["mlship:githubToken"] = {"secure": "v1:abc"}
    assert load(config, "prod", REPO).monitoring.retraining.repository == "example-org/mlship"
    del config["mlship:github"]
    assert refused(config).startswith("mlship:monitoring.retraining.repository is missing")


def test_production_github_environment_needs_reviewers(config):
    config["mlship:github"]["reviewers"] = {"users": [], "teams": []}
    assert refused(config) == ("mlship:github.reviewers is empty: a production stack deploys only after a review; "
                               "list GitHub user ids (users) or team ids (teams), at most 6 of each")
    config["mlship:github"]["reviewers"] = {"users": ["octocat"]}
    assert refused(config) == "mlship:github.reviewers.users = ['octocat']: must be a list of numeric GitHub ids (not logins)"
    config["mlship:github"]["reviewers"] = {"users": list(range(1, 8))}
    assert refused(config).startswith("mlship:github.reviewers.users lists 7 ids: GitHub allows at most 6")
    config["mlship:github"] = {"repository": "mlship", "reviewers": {"users": [1]}}
    assert refused(config).startswith("mlship:github.repository = 'mlship': must match")


def test_real_time_capture_cannot_be_turned_off(config):
    config["mlship:realtime"]["dataCapture"]["enabled"] = False
    assert refused(config).startswith("mlship:realtime.dataCapture.enabled = false: Model Monitor watches every "
                                      "real-time endpoint through its captured requests")

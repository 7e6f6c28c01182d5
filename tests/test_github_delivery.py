"""The GitHub delivery component under Pulumi's mocks: OIDC provider, roles, environment, secrets."""

from __future__ import annotations

import json

import pulumi
import pytest


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ in ("aws:iam/role:Role", "aws:iam/openIdConnectProvider:OpenIdConnectProvider"):
            outputs["arn"] = f"arn:aws:iam::123456789012:{args.typ.rsplit(':', 1)[-1].lower()}/{args.name}"
            outputs.setdefault("name", args.name)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


MOCKS = Mocks()
pulumi.runtime.set_mocks(MOCKS, project="mlship", stack="prod", preview=False)

from infra.github import GitHubDelivery, GitHubDeliveryArgs  # noqa: E402  (mocks first)


def of_type(typ: str, created_after: int) -> list[pulumi.runtime.MockResourceArgs]:
    return [r for r in MOCKS.resources[created_after:] if r.typ == typ]


def build(name: str, args: GitHubDeliveryArgs) -> tuple[int, dict]:
    """Create the component under the mocks and wait until every resource is registered."""
    # Again per test: another module's offline plan (infra/offline.py) may have set its own mocks since.
    pulumi.runtime.set_mocks(MOCKS, project="mlship", stack="prod", preview=False)
    start = len(MOCKS.resources)
    resolved: dict = {}

    @pulumi.runtime.test
    def run():
        component = GitHubDelivery(name, args)
        outputs = {"oidc": component.oidc_provider_arn, "deploy": component.deploy_role_arn,
                   "preview": component.preview_role_arn, "environment": component.environment}
        return pulumi.Output.all(**outputs).apply(resolved.update)

    run()
    return start, resolved


def production(**overrides) -> GitHubDeliveryArgs:
    values = dict(repository="acme/mlship", environment="production", reviewer_user_ids=[1001, 1002],
                  reviewer_team_ids=[77], require_reviewers=True, ec2_host="203.0.113.10", ec2_user="ec2-user",
                  docker_compose_dir="/opt/mlship", ec2_ssh_key="-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n")
    values.update(overrides)
    return GitHubDeliveryArgs(**values)


def test_roles_trust_only_this_repository_and_environment():
    start, outputs = build("github", production())
    [provider] = of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider", start)
    assert provider.inputs["url"] == "https://token.actions.githubusercontent.com"
    assert provider.inputs["clientIdLists"] == ["sts.amazonaws.com"]
    roles = {r.name: json.loads(r.inputs["assumeRolePolicy"]) for r in of_type("aws:iam/role:Role", start)}
    assert set(roles) == {"github-preview", "github-deploy"}
    for name, subjects in (("github-preview", ["repo:acme/mlship:pull_request", "repo:acme/mlship:ref:refs/heads/main"]),
                           ("github-deploy", ["repo:acme/mlship:environment:production"])):
        [statement] = roles[name]["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"]["Federated"].endswith("openidconnectprovider/github-oidc")
        assert statement["Condition"]["StringEquals"] == {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": subjects}
    attached = {(r.name, r.inputs["policyArn"]) for r in
                of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment", start)}
    assert attached == {("github-preview-0", "arn:aws:iam::aws:policy/ReadOnlyAccess"),
                        ("github-deploy-0", "arn:aws:iam::aws:policy/PowerUserAccess")}
    [inline] = of_type("aws:iam/rolePolicy:RolePolicy", start)
    actions = json.loads(inline.inputs["policy"])["Statement"][0]["Action"]
    assert "iam:PassRole" in actions and "*" not in actions and "iam:*" not in actions
    assert outputs["deploy"].endswith("role/github-deploy")
    [variable] = of_type("github:index/actionsVariable:ActionsVariable", start)
    assert (variable.inputs["variableName"], variable.inputs["value"]) == ("PREVIEW_ROLE_ARN_PROD", outputs["preview"])
    [variable] = of_type("github:index/actionsVariable:ActionsVariable", start)
    assert (variable.inputs["variableName"], variable.inputs["value"]) == ("PREVIEW_ROLE_ARN_PROD", outputs["preview"])


def test_production_environment_requires_reviewers_and_gets_the_secrets():
    start, outputs = build("gh", production())
    [environment] = of_type("github:index/repositoryEnvironment:RepositoryEnvironment", start)
    assert environment.inputs["repository"] == "mlship"
    assert environment.inputs["environment"] == "production"
    assert environment.inputs["reviewers"] == [{"users": [1001, 1002], "teams": [77]}]
    assert environment.inputs["preventSelfReview"] is True
    assert environment.inputs["canAdminsBypass"] is False
    assert environment.inputs["deploymentBranchPolicy"] == {"protectedBranches": True,
                                                            "customBranchPolicies": False}
    secrets = {s.inputs["secretName"]: s for s in
               of_type("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret", start)}
    assert set(secrets) == {"EC2_HOST", "EC2_USER", "DOCKER_COMPOSE_DIR", "EC2_SSH_KEY"}
    assert all(s.inputs["environment"] == "production" and s.inputs["repository"] == "mlship"
               for s in secrets.values())
        # values reach the provider as Pulumi secrets (never plaintext in the state)
    for secret in secrets.values():
        assert secret.inputs["value"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"
    assert secrets["EC2_HOST"].inputs["value"]["value"] == "203.0.113.10"
    [variable] = of_type("github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable", start)
    assert variable.inputs["variableName"] == "AWS_ROLE_ARN"
    assert variable.inputs["value"].endswith("role/gh-deploy")
    assert outputs["environment"] == "production"


def test_dev_reuses_the_account_provider_and_skips_a_key_it_did_not_generate():
    arn = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
    start, outputs = build("dev", GitHubDeliveryArgs(
        repository="acme/mlship", environment="dev", existing_oidc_provider_arn=arn,
        ec2_host="198.51.100.7", ec2_user="ubuntu", docker_compose_dir="/srv/mlship"))
    assert outputs["oidc"] == arn
    assert of_type("aws:iam/openIdConnectProvider:OpenIdConnectProvider", start) == []
    [environment] = of_type("github:index/repositoryEnvironment:RepositoryEnvironment", start)
    assert environment.inputs.get("reviewers") in (None, [])
    names = {s.inputs["secretName"] for s in
             of_type("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret", start)}
    assert names == {"EC2_HOST", "EC2_USER", "DOCKER_COMPOSE_DIR"}
    deploy = next(r for r in of_type("aws:iam/role:Role", start) if r.name == "dev-deploy")
    subjects = json.loads(deploy.inputs["assumeRolePolicy"])["Statement"][0]["Condition"]["StringEquals"]
    assert subjects["token.actions.githubusercontent.com:sub"] == ["repo:acme/mlship:environment:dev"]


@pytest.mark.parametrize("overrides, message", [
    ({"repository": "mlship"}, "mlship:github.repository 'mlship' is not 'owner/name'"),
    ({"environment": "prod env"}, "mlship:github.environment 'prod env' is not a valid environment name"),
    ({"reviewer_user_ids": [], "reviewer_team_ids": []}, "mlship:github.reviewers is empty"),
    ({"reviewer_user_ids": list(range(7))}, "at most 6 users"),
])
def test_bad_settings_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        production(**overrides)

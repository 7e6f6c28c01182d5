"""GitHub side of delivery, from the stack: OIDC trust for GitHub Actions, roles, an environment, secrets.

One `GitHubDelivery` per stack. It creates (or reuses) the account's IAM OIDC provider for
GitHub Actions, a read-only role that pull-request previews assume, a deploy role that only
jobs running in this stack's GitHub environment can assume, that environment (with required
reviewers where the stack asks for them), and the Actions environment secrets and variables
the workflows read: EC2_HOST, EC2_USER, DOCKER_COMPOSE_DIR, EC2_SSH_KEY (when the stack
generated the key), AWS_ROLE_ARN and the stack's own values (ARTIFACTS_BUCKET and
MODEL_PACKAGE_GROUP, so a job in the environment publishes where that stack deploys from),
plus the repository variable PREVIEW_ROLE_ARN_<STACK>.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_github as github

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"
READ_ONLY = "arn:aws:iam::aws:policy/ReadOnlyAccess"
POWER_USER = "arn:aws:iam::aws:policy/PowerUserAccess"
REPOSITORY = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9_.-]+$")
ENVIRONMENT = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
# PowerUserAccess leaves IAM out; `pulumi up` manages the stack's roles and instance profiles.
DEPLOY_IAM_ACTIONS = [
    "iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:TagRole", "iam:UntagRole",
    "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy",
    "iam:ListRolePolicies", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:ListAttachedRolePolicies",
    "iam:CreatePolicy", "iam:DeletePolicy", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:CreatePolicyVersion",
    "iam:DeletePolicyVersion", "iam:ListPolicyVersions", "iam:TagPolicy",
    "iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile", "iam:TagInstanceProfile",
    "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile", "iam:ListInstanceProfilesForRole",
    "iam:PassRole", "iam:GetOpenIDConnectProvider", "iam:ListRoleTags",
]


@dataclass
class GitHubDeliveryArgs:
    """What the stack tells the GitHub side (stack config `mlship:github`, read by the settings)."""

    repository: str  # "owner/name"; the github provider's owner must be the same owner
    environment: str  # the GitHub environment this stack deploys through: "dev", "production"
    reviewer_user_ids: Sequence[int] = ()
    reviewer_team_ids: Sequence[int] = ()
    require_reviewers: bool = False  # production: refuse to create the environment without reviewers
    existing_oidc_provider_arn: Optional[str] = None  # one provider per account: the second stack reuses it
    preview_policy_arns: Sequence[str] = (READ_ONLY,)
    deploy_policy_arns: Sequence[str] = (POWER_USER,)
    ec2_host: Optional[pulumi.Input[str]] = None
    ec2_user: Optional[pulumi.Input[str]] = None
    docker_compose_dir: Optional[pulumi.Input[str]] = None
    ec2_ssh_key: Optional[pulumi.Input[str]] = None  # only when the stack generated the key pair
    # Actions variables of the environment, by name (the stack's artifacts bucket, its registry group).
    variables: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    main_branch: str = "main"
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not REPOSITORY.match(self.repository):
            raise ValueError(f"mlship:github.repository {self.repository!r} is not 'owner/name'")
        if not ENVIRONMENT.match(self.environment):
            raise ValueError(f"mlship:github.environment {self.environment!r} is not a valid environment name "
                             "(letters, digits, '-', '_', '.')")
        if self.require_reviewers and not (self.reviewer_user_ids or self.reviewer_team_ids):
            raise ValueError(f"mlship:github.reviewers is empty but environment {self.environment!r} requires "
                             "reviewers; give GitHub user or team ids")
        if len(self.reviewer_user_ids) > 6 or len(self.reviewer_team_ids) > 6:
            raise ValueError("mlship:github.reviewers: GitHub allows at most 6 users and 6 teams per environment")

    @property
    def owner(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.repository.split("/", 1)[1]


def preview_role_variable(stack: str) -> str:
    """The repository variable holding a stack's preview role ARN, e.g. PREVIEW_ROLE_ARN_PROD."""
    return "PREVIEW_ROLE_ARN_" + re.sub(r"[^A-Za-z0-9]", "_", stack).upper()


def github_trust_policy(provider_arn: pulumi.Input[str], subjects: Sequence[str]) -> pulumi.Output[str]:
    """Trust policy letting GitHub Actions tokens with exactly these `sub` claims assume the role."""
    return pulumi.Output.from_input(provider_arn).apply(lambda arn: json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE, f"{GITHUB_OIDC_HOST}:sub": list(subjects)},
            },
        }],
    }))


class GitHubDelivery(pulumi.ComponentResource):
    """OIDC provider, preview and deploy roles, one GitHub environment, and its Actions secrets."""

    oidc_provider_arn: pulumi.Output[str]
    preview_role_arn: pulumi.Output[str]
    deploy_role_arn: pulumi.Output[str]
    environment: pulumi.Output[str]

    def __init__(self, name: str, args: GitHubDeliveryArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("mlship:delivery:GitHubDelivery", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        repo = args.repository

        if args.existing_oidc_provider_arn:
            provider_arn: pulumi.Input[str] = args.existing_oidc_provider_arn
        else:
            provider = aws.iam.OpenIdConnectProvider(
                f"{name}-oidc", url=GITHUB_OIDC_URL, client_id_lists=[STS_AUDIENCE], tags=args.tags, opts=child)
            provider_arn = provider.arn
        self.oidc_provider_arn = pulumi.Output.from_input(provider_arn)

        # Previews may only read: pull requests from this repository's branches (forks get no
        # token at all) and the plan made on main before an environment's approval.
        preview = aws.iam.Role(
            f"{name}-preview", description=f"pulumi preview for {repo} (read-only)",
            assume_role_policy=github_trust_policy(
                provider_arn, [f"repo:{repo}:pull_request", f"repo:{repo}:ref:refs/heads/{args.main_branch}"]),
            max_session_duration=3600, tags=args.tags, opts=child)
        for index, arn in enumerate(args.preview_policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-preview-{index}", role=preview.name, policy_arn=arn, opts=child)
        github.ActionsVariable(f"{name}-preview-role-arn", repository=args.name,
                               variable_name=preview_role_variable(pulumi.get_stack()), value=preview.arn, opts=child)

        # Only a job bound to this environment (and so past its reviewers) can deploy.
        deploy = aws.iam.Role(
            f"{name}-deploy", description=f"pulumi up from {repo}, environment {args.environment}",
            assume_role_policy=github_trust_policy(provider_arn, [f"repo:{repo}:environment:{args.environment}"]),
            max_session_duration=3600, tags=args.tags, opts=child)
        for index, arn in enumerate(args.deploy_policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-deploy-{index}", role=deploy.name, policy_arn=arn, opts=child)
        aws.iam.RolePolicy(f"{name}-deploy-iam", role=deploy.name, opts=child, policy=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": DEPLOY_IAM_ACTIONS, "Resource": "*"}],
        }))

        reviewers = ([github.RepositoryEnvironmentReviewerArgs(users=list(args.reviewer_user_ids),
                                                               teams=list(args.reviewer_team_ids))]
                     if args.reviewer_user_ids or args.reviewer_team_ids else None)
        environment = github.RepositoryEnvironment(
            f"{name}-environment", repository=args.name, environment=args.environment, reviewers=reviewers,
            prevent_self_review=bool(reviewers), can_admins_bypass=not args.require_reviewers,
            deployment_branch_policy=github.RepositoryEnvironmentDeploymentBranchPolicyArgs(
                protected_branches=True, custom_branch_policies=False),
            opts=child)
        in_environment = pulumi.ResourceOptions(parent=self, depends_on=[environment])

        for variable_name, value in {"AWS_ROLE_ARN": deploy.arn, **args.variables}.items():
            github.ActionsEnvironmentVariable(
                f"{name}-{variable_name.lower().replace('_', '-')}", repository=args.name, environment=args.environment,
                variable_name=variable_name, value=value, opts=in_environment)
        secrets = {"EC2_HOST": args.ec2_host, "EC2_USER": args.ec2_user,
                   "DOCKER_COMPOSE_DIR": args.docker_compose_dir, "EC2_SSH_KEY": args.ec2_ssh_key}
        for secret_name, value in secrets.items():
            if value is None:
                continue
            github.ActionsEnvironmentSecret(
                f"{name}-{secret_name.lower().replace('_', '-')}", repository=args.name,
                environment=args.environment, secret_name=secret_name, value=pulumi.Output.secret(value),
                opts=in_environment)

        self.preview_role_arn = preview.arn
        self.preview_role_name = preview.name
        self.deploy_role_arn = deploy.arn
        self.environment = environment.environment
        self.register_outputs({"oidc_provider_arn": self.oidc_provider_arn, "preview_role_arn": preview.arn,
                               "deploy_role_arn": deploy.arn, "environment": environment.environment})

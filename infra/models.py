"""SageMaker models: AWS's prebuilt scikit-learn container running the packaged version's handlers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.settings import ModelRef


def sklearn_image(region: str, container_version: str) -> str:
    """AWS's scikit-learn inference image for the region, as the SageMaker SDK resolves it (offline)."""
    from sagemaker.core import image_uris

    return image_uris.retrieve("sklearn", region=region, version=container_version,
                               instance_type="ml.m5.large", image_scope="inference", py_version="py3")


def image_repository_arn(image_uri: str) -> str:
    """The ECR repository ARN of an image URI, so that pulling can be allowed on exactly that repository."""
    registry, _, path = image_uri.partition("/")
    account, _, _, region, *_ = registry.split(".")
    return f"arn:aws:ecr:{region}:{account}:repository/{path.split(':')[0]}"


@dataclass(frozen=True)
class ModelsArgs:
    prefix: str
    region: str
    account_id: pulumi.Input[str]
    image_uri: str
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    # role in the endpoint (primary, challenger, shadow) -> the version it serves
    versions: dict[str, ModelRef]
    tags: dict


class Models(pulumi.ComponentResource):
    """One SageMaker model per role and the execution role they share.

    The role starts with what every model needs (read its artifacts, pull its image, write its
    logs and metrics); each endpoint component grants the rest with `grant`, next to the
    resource that needs it.
    """

    def __init__(self, name: str, args: ModelsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:sagemaker:Models", name, None, opts)
        self._name = name
        account = args.account_id
        names = sorted({ref.name for ref in args.versions.values()})
        self.role = iam.service_role(
            f"{name}-execution", "sagemaker.amazonaws.com", parent=self, account_id=account, tags=args.tags,
            description=f"{args.prefix}: SageMaker models, endpoints and transform jobs",
            statements=[
                iam.statement(["s3:GetObject"], [iam.objects(args.artifacts_bucket_arn, f"models/{n}/") for n in names],
                              "ReadModelArtifacts"),
                iam.kms_use(args.kms_key_arn),
                iam.statement(["ecr:GetAuthorizationToken"], ["*"], "LogInToEcr"),
                iam.statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                              [image_repository_arn(args.image_uri)], "PullServingImage"),
                iam.statement(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                              [pulumi.Output.concat("arn:aws:logs:", args.region, ":", account, ":log-group:/aws/sagemaker/*")],
                              "WriteLogs"),
                iam.statement(["cloudwatch:PutMetricData"], ["*"], "PutSageMakerMetrics",
                              {"StringLike": {"cloudwatch:namespace": ["aws/sagemaker/*", "/aws/sagemaker/*"]}}),
            ])
        self.models: dict[str, aws.sagemaker.Model] = {}
        for role, ref in args.versions.items():
            # The logical name is the role, not the version: a version bump shows in the
            # preview as this model being replaced, with the model data URL as the reason.
            self.models[role] = aws.sagemaker.Model(
                f"{name}-{role}",
                execution_role_arn=self.role.arn,
                primary_container={
                    "image": args.image_uri,
                    "model_data_url": pulumi.Output.concat("s3://", args.artifacts_bucket, "/", ref.key()),
                    "environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                        "SAGEMAKER_REGION": args.region,
                        "MLSHIP_MODEL": str(ref),
                    },
                },
                tags={**args.tags, "mlship-model": str(ref)},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role]),
            )
        self.role_arn = self.role.arn
        self.register_outputs({"role_arn": self.role_arn,
                               **{f"{role}_model": model.name for role, model in self.models.items()}})

    def grant(self, name: str, statements: Sequence[dict], parent: pulumi.Resource) -> aws.iam.RolePolicy:
        """Add permissions one component needs (e.g. write capture) to the execution role."""
        return aws.iam.RolePolicy(f"{self._name}-{name}", role=self.role.id, policy=iam.document(statements),
                                  opts=pulumi.ResourceOptions(parent=parent))

"""The serverless endpoint: pay per request, memory and concurrency from the stack file, no data capture."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.endpoint_common import endpoint
from infra.settings import ServerlessSettings

VARIANT = "serverless"


@dataclass(frozen=True)
class ServerlessEndpointArgs:
    endpoint_name: str
    settings: ServerlessSettings
    model_name: pulumi.Input[str]
    tags: dict


class ServerlessEndpoint(pulumi.ComponentResource):
    """Serverless variants cannot capture data, so Model Monitor never watches this endpoint."""

    def __init__(self, name: str, args: ServerlessEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:sagemaker:ServerlessEndpoint", name, None, opts)
        s = args.settings
        serverless = {"memory_size_in_mb": s.memory_mb, "max_concurrency": s.max_concurrency}
        if s.provisioned_concurrency:
            serverless["provisioned_concurrency"] = s.provisioned_concurrency
        self.config = aws.sagemaker.EndpointConfiguration(
            f"{name}-config",
            production_variants=[{"variant_name": VARIANT, "model_name": args.model_name,
                                  "serverless_config": serverless}],
            tags=args.tags, opts=pulumi.ResourceOptions(parent=self))
        self.endpoint = endpoint(name, args.endpoint_name, self.config, self, args.tags)
        self.endpoint_name = args.endpoint_name
        self.variant_names = [VARIANT]
        self.register_outputs({"endpoint_name": self.endpoint.endpoint_name, "variant_names": self.variant_names})

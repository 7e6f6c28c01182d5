"""The model registry: the Model Package Group that `mlship model publish --group` registers versions into."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class ModelRegistryArgs:
    group_name: str
    model_name: str
    protect: bool
    tags: dict


class ModelRegistry(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:sagemaker:ModelRegistry", name, None, opts)
        self.group = aws.sagemaker.ModelPackageGroup(
            name, model_package_group_name=args.group_name,
            model_package_group_description=f"Published versions of the {args.model_name} model",
            tags=args.tags, opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        self.group_name = self.group.model_package_group_name
        self.group_arn = self.group.arn
        self.register_outputs({"group_name": self.group_name, "group_arn": self.group_arn})

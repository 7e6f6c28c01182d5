"""Storage: the stack's KMS key and its three buckets (model artifacts, data capture, monitoring reports)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.iam import document


@dataclass(frozen=True)
class BucketSpec:
    """What one bucket is for and how long its objects live."""

    purpose: str
    versioned: bool
    expire_days: int | None = None
    noncurrent_days: int | None = None


@dataclass(frozen=True)
class StorageArgs:
    prefix: str
    artifacts_noncurrent_days: int
    capture_expire_days: int
    reports_expire_days: int
    kms_deletion_window_days: int
    protect: bool
    tags: dict


class Bucket(pulumi.ComponentResource):
    """A private, KMS-encrypted, TLS-only bucket with its lifecycle rules."""

    def __init__(self, name: str, spec: BucketSpec, key: aws.kms.Key, protect: bool, tags: dict,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:storage:Bucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            name, force_destroy=not protect, tags={**tags, "purpose": spec.purpose},
            opts=pulumi.ResourceOptions(parent=self, protect=protect, retain_on_delete=protect),
        )
        aws.s3.BucketOwnershipControls(name, bucket=self.bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        public = aws.s3.BucketPublicAccessBlock(
            name, bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            name, bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                                "kms_master_key_id": key.arn},
                    "bucket_key_enabled": True}],
            opts=child)
        if spec.versioned:
            aws.s3.BucketVersioning(name, bucket=self.bucket.id,
                                    versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketLifecycleConfiguration(name, bucket=self.bucket.id, rules=self._rules(spec), opts=child)
        aws.s3.BucketPolicy(name, bucket=self.bucket.id, policy=self._tls_only(),
                            opts=pulumi.ResourceOptions(parent=self, depends_on=[public]))
        self.name = self.bucket.bucket
        self.arn = self.bucket.arn
        self.register_outputs({"name": self.name, "arn": self.arn})

    @staticmethod
    def _rules(spec: BucketSpec) -> list[dict]:
        rules = [{"id": "abort-incomplete-uploads", "status": "Enabled", "filter": {"prefix": ""},
                  "abort_incomplete_multipart_upload": {"days_after_initiation": 7}}]
        if spec.expire_days:
            rules.append({"id": "expire", "status": "Enabled", "filter": {"prefix": ""},
                          "expiration": {"days": spec.expire_days}})
        if spec.noncurrent_days:
            rules.append({"id": "expire-noncurrent-versions", "status": "Enabled", "filter": {"prefix": ""},
                          "noncurrent_version_expiration": {"noncurrent_days": spec.noncurrent_days}})
        return rules

    def _tls_only(self) -> pulumi.Output[str]:
        return document([{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [self.bucket.arn, pulumi.Output.concat(self.bucket.arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }])


class Storage(pulumi.ComponentResource):
    """The KMS key and the buckets every other component reads from or writes to."""

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:storage:Storage", name, None, opts)
        self.key = aws.kms.Key(
            f"{name}-key", description=f"{args.prefix}: model artifacts, captured data, reports",
            enable_key_rotation=True, deletion_window_in_days=args.kms_deletion_window_days, tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        aws.kms.Alias(f"{name}-key", name=f"alias/{args.prefix}", target_key_id=self.key.key_id,
                      opts=pulumi.ResourceOptions(parent=self))
        specs = {
            "artifacts": BucketSpec("model artifacts", True, noncurrent_days=args.artifacts_noncurrent_days),
            "capture": BucketSpec("data capture", False, expire_days=args.capture_expire_days),
            "reports": BucketSpec("monitoring reports", False, expire_days=args.reports_expire_days),
        }
        buckets = {purpose: Bucket(f"{name}-{purpose}", spec, self.key, args.protect, args.tags,
                                   pulumi.ResourceOptions(parent=self))
                   for purpose, spec in specs.items()}
        self.artifacts, self.capture, self.reports = buckets["artifacts"], buckets["capture"], buckets["reports"]
        self.kms_key_arn = self.key.arn
        self.register_outputs({
            "kms_key_arn": self.kms_key_arn,
            **{f"{purpose}_bucket": bucket.name for purpose, bucket in buckets.items()},
        })

"""The EC2 host: one instance running the serving container under docker compose, with its data on EBS."""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.settings import Ec2Settings, ModelRef

UBUNTU_OWNER = "099720109477"  # Canonical
UBUNTU_IMAGES = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"
DATA_DEVICE = "/dev/sdf"
DATA_MOUNT = "/data"
CAPTURE_PREFIX = "capture"
REPORTS_PREFIX = "monitoring"
AGENT_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/mlship.json"
LOG_GROUPS = {"containers": "/var/lib/docker/containers/*/*-json.log", "host": "/var/log/mlship-user-data.log"}


def log_group_name(prefix: str, kind: str) -> str:
    return f"/{prefix}/ec2/{kind}"


def monitor_schedule_name(endpoint_name: str) -> str:
    """The host monitor's MonitoringSchedule dimension (a SageMaker schedule's name, on SageMaker)."""
    return f"{endpoint_name}-hourly"


def agent_config(prefix: str) -> dict:
    """The CloudWatch agent: memory and disk (/ and the data volume) by instance, and the containers' logs.

    Metrics go to the CWAgent namespace with the dimensions the stack's alarms and dashboard name
    (InstanceId; InstanceId and path); the log groups are the stack's own (Pulumi sets retention).
    """
    return {
        "agent": {"metrics_collection_interval": 60, "run_as_user": "root"},  # Docker's logs are root's
        "metrics": {
            "namespace": "CWAgent",
            "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
            "aggregation_dimensions": [["InstanceId"], ["InstanceId", "path"]],
            "metrics_collected": {
                "mem": {"measurement": ["mem_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/", DATA_MOUNT], "drop_device": True},
            },
        },
        "logs": {"logs_collected": {"files": {"collect_list": [
            {"file_path": path, "log_group_name": log_group_name(prefix, kind), "log_stream_name": "{instance_id}",
             "timezone": "UTC"}
            for kind, path in LOG_GROUPS.items()]}}},
    }


@dataclass(frozen=True)
class HostConfig:
    """Everything the first boot needs, resolved."""

    region: str
    model: ModelRef
    artifacts_bucket: str
    capture_bucket: str
    reports_bucket: str
    ground_truth_prefix: str
    prefix: str
    data_volume_id: str
    endpoint_name: str
    ssh_user: str
    compose_dir: str
    compose_yaml: str
    image: str | None


def user_data(c: HostConfig) -> str:
    """The first-boot script: Docker with compose, the CloudWatch agent, the data volume, the model, the server.

    The server uploads closed capture files itself to MLSHIP_CAPTURE_S3 in SageMaker's layout
    (<prefix>/<endpoint>/<variant>/yyyy/mm/dd/hh/), so the same monitor reads EC2 and SageMaker traffic.
    """
    q = shlex.quote
    model_dir = f"{DATA_MOUNT}/models/{c.model.name}/{c.model.version}"
    capture_dir = f"{DATA_MOUNT}/capture"
    image = f"MLSHIP_IMAGE={c.image}\n" if c.image else ""
    agent_json = json.dumps(agent_config(c.prefix), indent=2, sort_keys=True)
    reports_dir = f"{DATA_MOUNT}/{REPORTS_PREFIX}/{c.endpoint_name}"
    compose_b64 = base64.b64encode(c.compose_yaml.encode()).decode()
    # On Nitro instances an EBS volume shows up as an NVMe disk whose serial is the volume id.
    device = f"/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{c.data_volume_id.replace('-', '')}"
    agent = f"https://amazoncloudwatch-agent-{c.region}.s3.{c.region}.amazonaws.com/ubuntu/amd64/latest/amazon-cloudwatch-agent.deb"
    return f"""#!/bin/bash
# mlship host bootstrap for {c.model} (written by the Pulumi program; rerun-safe).
set -euo pipefail
exec > >(tee -a /var/log/mlship-user-data.log) 2>&1
export DEBIAN_FRONTEND=noninteractive

apt-get update
apt-get install -y ca-certificates curl docker.io docker-compose-v2
snap install aws-cli --classic
curl -fsSL -o /tmp/amazon-cloudwatch-agent.deb {q(agent)}
dpkg -i -E /tmp/amazon-cloudwatch-agent.deb
systemctl enable --now docker
usermod -aG docker {q(c.ssh_user)}

# The data volume: formatted only when blank, so a replaced instance keeps the data.
DEVICE={q(device)}
for _ in $(seq 1 60); do [ -e "$DEVICE" ] && break; sleep 5; done
[ -e "$DEVICE" ] || {{ echo "data volume {c.data_volume_id} is not attached" >&2; exit 1; }}
blkid "$DEVICE" >/dev/null || mkfs.ext4 -L mlship-data "$DEVICE"
UUID=$(blkid -s UUID -o value "$DEVICE")
mkdir -p {DATA_MOUNT}
grep -q "$UUID" /etc/fstab || echo "UUID=$UUID {DATA_MOUNT} ext4 defaults,nofail 0 2" >> /etc/fstab
mount -a

# The CloudWatch agent: memory and disk metrics, the containers' and this script's logs.
cat > {AGENT_CONFIG} <<'AGENT'
{agent_json}
AGENT
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:{AGENT_CONFIG}

# The model release named in the stack file (model.tar.gz, manifest.json, baseline/), as published.
mkdir -p {q(model_dir)} {q(capture_dir)} {q(reports_dir)}
if [ ! -f {q(model_dir + '/manifest.json')} ]; then
  aws s3 cp --recursive {q(f's3://{c.artifacts_bucket}/models/{c.model.name}/{c.model.version}/')} {q(model_dir)} --region {q(c.region)}
fi

# The serving container and the hourly monitor (model/server/docker-compose.yml) and their settings.
install -d -m 0755 -o {q(c.ssh_user)} {q(c.compose_dir)}
echo {compose_b64} | base64 -d > {q(c.compose_dir + '/docker-compose.yml')}
cat > {q(c.compose_dir + '/.env')} <<'ENV'
MLSHIP_MODEL={c.model}
MLSHIP_MODEL_DIR={model_dir}
MLSHIP_DATA_DIR={DATA_MOUNT}
MLSHIP_ENDPOINT={c.endpoint_name}
MLSHIP_CAPTURE_S3=s3://{c.capture_bucket}/{CAPTURE_PREFIX}
MLSHIP_SCHEDULE_NAME={monitor_schedule_name(c.endpoint_name)}
MLSHIP_PUBLISH_CLOUDWATCH=true
MLSHIP_GROUND_TRUTH_S3=s3://{c.capture_bucket}/{c.ground_truth_prefix}{c.endpoint_name}
MLSHIP_REPORTS_S3=s3://{c.reports_bucket}/{REPORTS_PREFIX}/{c.endpoint_name}
AWS_DEFAULT_REGION={c.region}
{image}ENV
chown -R {q(c.ssh_user)}: {q(c.compose_dir)}
# The containers run as a non-root user; they write capture and monitoring results on the data volume.
chmod 0777 {q(capture_dir)} {DATA_MOUNT}/{REPORTS_PREFIX} {q(reports_dir)}

# The hourly monitor writes Model Monitor's report layout under {reports_dir}; this timer copies it
# to the reports bucket a quarter of an hour later (sync: a missed hour goes with the next one).
cat > /etc/systemd/system/mlship-reports.service <<'UNIT'
[Unit]
Description=Copy the hourly monitor's results to the reports bucket
Wants=network-online.target
After=network-online.target
[Service]
Type=oneshot
EnvironmentFile={c.compose_dir}/.env
ExecStart=/snap/bin/aws s3 sync {reports_dir} ${{MLSHIP_REPORTS_S3}} --only-show-errors --region ${{AWS_DEFAULT_REGION}}
UNIT
cat > /etc/systemd/system/mlship-reports.timer <<'UNIT'
[Unit]
Description=Hourly copy of the monitor's results to the reports bucket
[Timer]
OnCalendar=*-*-* *:20:00
Persistent=true
[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now mlship-reports.timer

# A private image needs the registry login that the deploy workflow performs; until then this may fail.
cd {q(c.compose_dir)} && (docker compose up -d --no-build || echo "compose up failed: the deploy workflow logs in to the registry and starts it")
"""


@dataclass(frozen=True)
class Ec2HostArgs:
    prefix: str
    region: str
    account_id: pulumi.Input[str]
    settings: Ec2Settings
    model: ModelRef
    artifacts_bucket: pulumi.Input[str]
    artifacts_bucket_arn: pulumi.Input[str]
    capture_bucket: pulumi.Input[str]
    capture_bucket_arn: pulumi.Input[str]
    reports_bucket: pulumi.Input[str]
    reports_bucket_arn: pulumi.Input[str]
    kms_key_arn: pulumi.Input[str]
    ground_truth_prefix: str
    log_retention_days: int
    protect: bool
    tags: dict


class Ec2Host(pulumi.ComponentResource):
    def __init__(self, name: str, args: Ec2HostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlship:ec2:Host", name, None, opts)
        s = args.settings
        child = pulumi.ResourceOptions(parent=self)
        self.endpoint_name = f"{args.prefix}-ec2"
        self.schedule_name = monitor_schedule_name(self.endpoint_name)
        self.log_groups = {kind: aws.cloudwatch.LogGroup(
            f"{name}-{kind}-logs", name=log_group_name(args.prefix, kind), retention_in_days=args.log_retention_days,
            tags=args.tags, opts=child) for kind in LOG_GROUPS}
        self.ssh_user = s.ssh_user
        self.compose_dir = s.compose_dir
        self.security_group = self._security_group(name, args)
        self.role = self._role(name, args)
        profile = aws.iam.InstanceProfile(name, role=self.role.name, tags=args.tags, opts=child)
        key = aws.ec2.KeyPair(name, public_key=s.ssh_public_key, tags=args.tags, opts=child)
        self.data_volume = aws.ebs.Volume(
            f"{name}-data", availability_zone=s.availability_zone, size=s.data_volume_gb, type="gp3",
            encrypted=True, kms_key_id=args.kms_key_arn, tags={**args.tags, "Name": f"{args.prefix}-data"},
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
        compose_yaml = s.compose_file.read_text()
        script = pulumi.Output.all(args.artifacts_bucket, args.capture_bucket, args.reports_bucket,
                                   self.data_volume.id).apply(
            lambda v: user_data(HostConfig(
                region=args.region, model=args.model, artifacts_bucket=v[0], capture_bucket=v[1], reports_bucket=v[2],
                ground_truth_prefix=args.ground_truth_prefix, prefix=args.prefix,
                data_volume_id=v[3], endpoint_name=self.endpoint_name, ssh_user=s.ssh_user,
                compose_dir=s.compose_dir, compose_yaml=compose_yaml, image=s.image)))
        ami = s.ami or aws.ec2.get_ami_output(most_recent=True, owners=[UBUNTU_OWNER], filters=[
            {"name": "name", "values": [UBUNTU_IMAGES]}, {"name": "virtualization-type", "values": ["hvm"]}]).id
        self.instance = aws.ec2.Instance(
            name, ami=ami, instance_type=s.instance_type, key_name=key.key_name, iam_instance_profile=profile.name,
            vpc_security_group_ids=[self.security_group.id], subnet_id=s.subnet_id,
            availability_zone=None if s.subnet_id else s.availability_zone,
            associate_public_ip_address=True, monitoring=True, ebs_optimized=True,
            metadata_options={"http_tokens": "required", "http_endpoint": "enabled",
                              # 2 hops: containers on the Docker bridge reach the metadata service too.
                              "http_put_response_hop_limit": 2, "instance_metadata_tags": "enabled"},
            root_block_device={"encrypted": True, "kms_key_id": args.kms_key_arn, "volume_type": "gp3",
                               "volume_size": 30, "delete_on_termination": True},
            user_data=script, user_data_replace_on_change=True,
            tags={**args.tags, "Name": args.prefix},
            # A newer Ubuntu image must not replace the host on an unrelated `pulumi up`;
            # roll to it on purpose with `pulumi up --replace <instance urn>`.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["ami"], depends_on=list(self.log_groups.values())))
        aws.ec2.VolumeAttachment(f"{name}-data", device_name=DATA_DEVICE, volume_id=self.data_volume.id,
                                 instance_id=self.instance.id, stop_instance_before_detaching=True, opts=child)
        address = self.instance.public_ip
        if s.elastic_ip:
            eip = aws.ec2.Eip(name, domain="vpc", instance=self.instance.id, tags=args.tags,
                              opts=pulumi.ResourceOptions(parent=self, protect=args.protect))
            address = eip.public_ip
        self.host_address = address
        self.instance_id = self.instance.id
        self.role_arn = self.role.arn
        self.register_outputs({"host_address": self.host_address, "ssh_user": self.ssh_user,
                               "compose_dir": self.compose_dir, "instance_id": self.instance_id,
                               "endpoint_name": self.endpoint_name, "role_arn": self.role_arn,
                               "schedule_name": self.schedule_name,
                               "security_group_id": self.security_group.id})

    def _security_group(self, name: str, args: Ec2HostArgs) -> aws.ec2.SecurityGroup:
        s = args.settings
        vpc_id = s.vpc_id or aws.ec2.get_vpc_output(default=True).id
        return aws.ec2.SecurityGroup(
            name, vpc_id=vpc_id, description=f"{args.prefix} model server",
            ingress=[
                {"description": "model server (SageMaker container contract)", "protocol": "tcp",
                 "from_port": s.serving_port, "to_port": s.serving_port, "cidr_blocks": list(s.serving_cidrs)},
                {"description": "SSH for the deploy workflow and operators", "protocol": "tcp",
                 "from_port": 22, "to_port": 22, "cidr_blocks": list(s.ssh_cidrs)},
            ],
            egress=[
                {"description": "HTTPS: AWS APIs, container registries, packages", "protocol": "tcp",
                 "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"]},
                {"description": "HTTP: Ubuntu package mirrors", "protocol": "tcp",
                 "from_port": 80, "to_port": 80, "cidr_blocks": ["0.0.0.0/0"]},
            ],
            tags={**args.tags, "Name": args.prefix}, opts=pulumi.ResourceOptions(parent=self))

    def _role(self, name: str, args: Ec2HostArgs) -> aws.iam.Role:
        account = args.account_id
        truth = f"{args.ground_truth_prefix}{self.endpoint_name}/"
        reports = f"{REPORTS_PREFIX}/{self.endpoint_name}/"
        arn = lambda service, rest: pulumi.Output.concat(f"arn:aws:{service}:{args.region}:", account, ":", rest)  # noqa: E731
        return iam.service_role(
            f"{name}-instance", "ec2.amazonaws.com", parent=self, tags=args.tags,
            description=f"{args.prefix}: the model server host",
            statements=[
                iam.statement(["s3:GetObject"], [iam.objects(args.artifacts_bucket_arn, f"models/{args.model.name}/")],
                              "ReadModelArtifacts"),
                iam.statement(["s3:PutObject"], [iam.objects(args.capture_bucket_arn, f"{CAPTURE_PREFIX}/{self.endpoint_name}/")],
                              "WriteCapture"),
                iam.statement(["s3:GetObject"], [iam.objects(args.capture_bucket_arn, truth)], "ReadGroundTruth"),
                iam.statement(["s3:ListBucket"], [args.capture_bucket_arn], "ListGroundTruth",
                              {"StringLike": {"s3:prefix": [f"{truth}*"]}}),
                iam.statement(["s3:PutObject"], [iam.objects(args.reports_bucket_arn, reports)], "WriteReports"),
                iam.statement(["s3:ListBucket"], [args.reports_bucket_arn], "ListReports",
                              {"StringLike": {"s3:prefix": [f"{reports}*"]}}),
                iam.statement(["cloudwatch:PutMetricData"], ["*"], "PublishMonitorMetrics",
                              {"StringLike": {"cloudwatch:namespace": "aws/sagemaker/Endpoints/*"}}),
                iam.kms_use(args.kms_key_arn),
                iam.statement(["ecr:GetAuthorizationToken"], ["*"], "LogInToEcr"),
                iam.statement(["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
                              [arn("ecr", "repository/mlship*")], "PullImages"),
                iam.statement(["cloudwatch:PutMetricData"], ["*"], "CloudWatchAgentMetrics",
                              {"StringEquals": {"cloudwatch:namespace": "CWAgent"}}),
                iam.statement(["ec2:DescribeTags", "ec2:DescribeVolumes"], ["*"], "CloudWatchAgentDescribe"),
                iam.statement(["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents",
                               "logs:PutRetentionPolicy"],
                              [arn("logs", f"log-group:/{args.prefix}/*")], "CloudWatchAgentLogs"),
                iam.statement(["ssm:UpdateInstanceInformation", "ssmmessages:CreateControlChannel",
                               "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel",
                               "ssmmessages:OpenDataChannel", "ec2messages:AcknowledgeMessage",
                               "ec2messages:DeleteMessage", "ec2messages:FailMessage", "ec2messages:GetEndpoint",
                               "ec2messages:GetMessages", "ec2messages:SendReply"], ["*"], "SessionManager"),
            ])

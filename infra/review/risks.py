"""What in a change set needs a reviewer's attention, most dangerous first.

Each rule looks at one `Change` (or all of a stack's changes) and returns `Finding`s:
data that can be lost, traffic that can be cut, access that widens, a model version that
moves, instances that change type or count (with the monthly cost difference).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from infra.review.changes import SECRET, Change, StackChanges
from infra.review.prices import PriceTable, load_prices

# Resources whose deletion loses data a reviewer cannot get back by re-running `pulumi up`.
STATEFUL = {
    "aws:s3/bucket:Bucket": "its objects are deleted with it",
    "aws:s3/bucketV2:BucketV2": "its objects are deleted with it",
    "aws:ebs/volume:Volume": "the data on the volume is lost",
    "aws:ec2/instance:Instance": "its root volume and local state are lost",
    "aws:kms/key:Key": "data encrypted with the key becomes unreadable once the key is deleted",
    "aws:sagemaker/modelPackageGroup:ModelPackageGroup": "the registered model versions go with it",
    "aws-native:sagemaker:ModelPackageGroup": "the registered model versions go with it",
    "aws:dynamodb/table:Table": "its items are lost",
    "aws:rds/instance:Instance": "the database is lost unless a final snapshot is taken",
    "aws:efs/fileSystem:FileSystem": "the files are lost",
    "aws:ecr/repository:Repository": "its images are lost",
    "aws:cloudwatch/logGroup:LogGroup": "its logs are lost",
    "aws:sqs/queue:Queue": "queued messages are lost",
}
# Resources that carry user traffic: deleting or replacing them interrupts serving.
TRAFFIC = {
    "aws:sagemaker/endpoint:Endpoint": "the endpoint stops answering until the new one is in service",
    "aws-native:sagemaker:Endpoint": "the endpoint stops answering until the new one is in service",
    "aws:ec2/instance:Instance": "the server is down while a new instance boots",
    "aws:ec2/eip:Eip": "the public address changes; clients and DNS pointing at it break",
    "aws:ec2/eipAssociation:EipAssociation": "the public address is detached while it is re-associated",
    "aws:lb/loadBalancer:LoadBalancer": "the load balancer's DNS name changes",
    "aws:lb/listener:Listener": "the listener stops accepting connections while it is recreated",
    "aws:route53/record:Record": "the DNS name stops resolving while it is recreated",
    "aws:apigateway/restApi:RestApi": "the API's URL changes",
}
WORLD = {"0.0.0.0/0", "::/0"}
IAM_DOCUMENTS = {
    "aws:iam/policy:Policy": ("policy",),
    "aws:iam/rolePolicy:RolePolicy": ("policy",),
    "aws:iam/userPolicy:UserPolicy": ("policy",),
    "aws:iam/groupPolicy:GroupPolicy": ("policy",),
    "aws:iam/role:Role": ("assumeRolePolicy", "inlinePolicies"),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy",),
}
POLICY_ATTACHMENTS = {"aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                      "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                      "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
                      "aws:iam/policyAttachment:PolicyAttachment"}
BROAD_MANAGED_POLICY = re.compile(r"(AdministratorAccess|PowerUserAccess|IAMFullAccess|FullAccess)$")
# A version ends in a letter or digit: "churn@1.0.0." at the end of a sentence names 1.0.0.
MODEL_REFERENCE = re.compile(r"models/(?P<name>[A-Za-z0-9_.-]+)/(?P<version>\d[\w.+-]*)/"
                             r"|(?P<name2>[A-Za-z][A-Za-z0-9_-]*)@(?P<version2>\d+(?:\.\d+)*(?:[\w.+-]*[A-Za-z0-9])?)")

# Attention categories, in the order a reviewer reads them.
CATEGORIES = {
    "policy": "Policy violations and errors",
    "data": "Can lose data",
    "traffic": "Can interrupt traffic",
    "security": "Widens access",
    "model": "Changes the model version",
    "cost": "Changes instances and cost",
}


@dataclass
class Finding:
    category: str  # a key of CATEGORIES
    stack: str
    title: str  # one line of Markdown
    details: list[str] = field(default_factory=list)  # sub-bullets
    urn: str = ""


def short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def get_path(values: dict[str, Any], path: str) -> Any:
    """Value at a Pulumi property path such as `ingress[0].cidrBlocks[1]`, or None."""
    current: Any = values
    for token in re.findall(r"[^.\[\]]+", path):
        if isinstance(current, dict):
            current = current.get(token)
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            return None
    return current


def describe(change: Change) -> str:
    return f"`{change.type}` **{change.name}**"


def replacement_reasons(change: Change) -> list[str]:
    reasons = change.replace_reasons or [p for p, kind in change.detailed_diff.items() if kind.endswith("-replace")]
    lines = []
    for path in reasons:
        before, after = get_path(change.old, path), get_path(change.new, path)
        lines.append(f"`{path}` changes (values not in the document)" if before is None and after is None
                     else f"`{path}`: {short(before)} → {short(after)}")
    return lines or ["the provider requires a replacement (no property named)"]


def destructive(change: Change) -> Iterator[Finding]:
    if change.op not in ("delete", "replace"):
        return
    why = [text for table in (STATEFUL, TRAFFIC) if (text := table.get(change.type))]
    if not why:
        return
    category = "data" if change.type in STATEFUL else "traffic"
    verb = "Deletes" if change.op == "delete" else "Replaces"
    details = [f"why replaced: {line}" for line in replacement_reasons(change)] if change.op == "replace" else []
    details.append("risk: " + "; ".join(why))
    yield Finding(category, change.stack, f"{verb} {describe(change)}", details, change.urn)


def _ingress_rules(change_values: dict[str, Any], type_: str) -> set[tuple[str, str, str, str]]:
    """(protocol, ports, source, description) for every ingress rule a resource defines."""
    rules: set[tuple[str, str, str, str]] = set()
    if type_ == "aws:ec2/securityGroup:SecurityGroup":
        entries = change_values.get("ingress") or []
    elif type_ == "aws:ec2/securityGroupRule:SecurityGroupRule":
        entries = [change_values] if change_values.get("type") == "ingress" else []
    elif type_ == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        entries = [change_values] if change_values else []
    else:
        return rules
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        protocol = str(entry.get("protocol", entry.get("ipProtocol", "")))
        low = entry.get("fromPort")
        high = entry.get("toPort", low)
        ports = "all ports" if protocol in ("-1", "all") or low is None else (
            f"port {low}" if low == high else f"ports {low}-{high}")
        sources = [*(entry.get("cidrBlocks") or []), *(entry.get("ipv6CidrBlocks") or []),
                   *([entry["cidrIpv4"]] if entry.get("cidrIpv4") else []),
                   *([entry["cidrIpv6"]] if entry.get("cidrIpv6") else []),
                   *(entry.get("securityGroups") or []), *(entry.get("prefixListIds") or []),
                   *([entry["referencedSecurityGroupId"]] if entry.get("referencedSecurityGroupId") else []),
                   *([entry["sourceSecurityGroupId"]] if entry.get("sourceSecurityGroupId") else [])]
        if entry.get("self"):
            sources.append("self")
        for source in sources or ["(no source)"]:
            rules.add((protocol, ports, str(source), str(entry.get("description") or "")))
    return rules


def ingress_widening(change: Change) -> Iterator[Finding]:
    if change.op == "delete":
        return
    added = _ingress_rules(change.new, change.type) - _ingress_rules(change.old, change.type)
    for protocol, ports, source, description in sorted(added):
        world = source in WORLD
        where = "**the whole internet**" if world else f"`{source}`"
        proto = "all protocols" if protocol in ("-1", "all") else protocol
        label = f" ({description})" if description else ""
        yield Finding("security", change.stack,
                      f"{'Opens' if world else 'Allows'} {ports}/{proto} from {where} on {describe(change)}{label}",
                      [f"ingress rule {'added' if change.op != 'create' else 'created'}: {source} → {ports}"],
                      change.urn)


def _documents(values: dict[str, Any], keys: Iterable[str]) -> list[Any]:
    documents = []
    for key in keys:
        value = values.get(key)
        if key == "inlinePolicies":
            documents += [item.get("policy") for item in value or [] if isinstance(item, dict)]
        elif value is not None:
            documents.append(value)
    return documents


def _grants(document: Any) -> set[str]:
    """Each Allow statement's (principal, action, resource) as one readable string."""
    if isinstance(document, str):
        if document == SECRET:
            return set()
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return set()
    if not isinstance(document, dict):
        return set()
    statements = document.get("Statement") or []
    grants = set()
    for statement in statements if isinstance(statements, list) else [statements]:
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        who = f"{short(principal, 60)} may " if principal else ""
        actions = statement.get("Action") or statement.get("NotAction") or []
        resources = statement.get("Resource") or statement.get("NotResource") or ["*" if principal is None else ""]
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in [resources] if isinstance(resources, str) else resources:
                condition = " (with conditions)" if statement.get("Condition") else ""
                grants.add(f"{who}{action}" + (f" on {resource}" if resource else "") + condition)
    return grants


def _is_wildcard(grant: str) -> bool:
    return bool(re.search(r"(^|may )(\*|[\w-]+:\*)( |$)", grant)) or grant.endswith(" on *")


def iam_widening(change: Change) -> Iterator[Finding]:
    if change.op == "delete":
        return
    if change.type in POLICY_ATTACHMENTS:
        arn = str(change.new.get("policyArn", ""))
        if change.op == "create" or arn != change.old.get("policyArn"):
            broad = " — **broad managed policy**" if BROAD_MANAGED_POLICY.search(arn) else ""
            yield Finding("security", change.stack, f"Attaches `{arn}` via {describe(change)}{broad}", [], change.urn)
        return
    keys = IAM_DOCUMENTS.get(change.type)
    if not keys:
        return
    before = set().union(*(_grants(d) for d in _documents(change.old, keys)))
    after = set().union(*(_grants(d) for d in _documents(change.new, keys)))
    added = sorted(after - before)
    if not added:
        return
    wildcard = [g for g in added if _is_wildcard(g)]
    title = f"Grants {len(added)} new permission{'s' if len(added) != 1 else ''} in {describe(change)}"
    if wildcard:
        title += " — **includes wildcards**"
    details = [f"`{g}`" for g in [*wildcard, *(g for g in added if g not in wildcard)][:12]]
    if len(added) > 12:
        details.append(f"… and {len(added) - 12} more")
    yield Finding("security", change.stack, title, details, change.urn)


def _model_refs(value: Any) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    if isinstance(value, dict):
        for item in value.values():
            found |= _model_refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= _model_refs(item)
    elif isinstance(value, str):
        for match in MODEL_REFERENCE.finditer(value):
            found.add((match["name"] or match["name2"], match["version"] or match["version2"]))
    return found


def model_versions(stack: StackChanges) -> Iterator[Finding]:
    """One finding per model whose version moves, naming the resources that carry it."""
    moves: dict[tuple[str, str, str], list[str]] = {}
    for change in stack.changes:
        if change.op not in ("update", "replace"):
            continue
        before, after = _model_refs(change.old), _model_refs(change.new)
        for name in sorted({n for n, _ in before} & {n for n, _ in after}):
            old_versions = ", ".join(sorted(v for n, v in before if n == name))
            new_versions = ", ".join(sorted(v for n, v in after if n == name))
            if old_versions != new_versions:
                moves.setdefault((name, old_versions, new_versions), []).append(describe(change))
    for (name, old, new), resources in moves.items():
        shown = resources[:6] + ([f"… and {len(resources) - 6} more"] if len(resources) > 6 else [])
        yield Finding("model", stack.stack, f"Model **{name}** {old} → **{new}**",
                      ["carried by " + ", ".join(shown)])


def _instances(change_values: dict[str, Any], type_: str) -> tuple[str, list[tuple[str, float]]]:
    """(service, [(instance type, count)]) that a resource keeps running."""
    if not change_values:
        return "", []
    if type_ == "aws:ec2/instance:Instance":
        return "ec2", [(str(change_values.get("instanceType", "?")), 1)]
    if type_ == "aws:sagemaker/endpointConfiguration:EndpointConfiguration":
        variants = [*(change_values.get("productionVariants") or []), *(change_values.get("shadowProductionVariants") or [])]
        return "sagemaker", [(str(v["instanceType"]), float(v.get("initialInstanceCount") or 1))
                             for v in variants if isinstance(v, dict) and v.get("instanceType")]
    return "", []


def _format_instances(items: list[tuple[str, float]]) -> str:
    return " + ".join(f"{kind} ×{count:g}" for kind, count in items) or "none"


def instance_costs(change: Change, prices: PriceTable) -> Iterator[Finding]:
    service_before, before = _instances(change.old if change.op != "create" else {}, change.type)
    service_after, after = _instances(change.new if change.op != "delete" else {}, change.type)
    service = service_after or service_before
    if not service or sorted(before) == sorted(after):
        return
    costs = [[prices.monthly(service, kind, count) for kind, count in side] for side in (before, after)]
    unknown = sorted({kind for side, cost in zip((before, after), costs) for (kind, _), c in zip(side, cost) if c is None})
    title = f"{describe(change)}: {_format_instances(before)} → {_format_instances(after)}"
    if unknown:
        details = [f"price unknown for {', '.join(unknown)} (not in the price table of {prices.as_of})"]
    else:
        delta = sum(costs[1]) - sum(costs[0])
        sign = "+" if delta >= 0 else "−"
        title += f", **{sign}${abs(delta):,.2f}/month**"
        details = [f"${sum(costs[0]):,.2f} → ${sum(costs[1]):,.2f} per month at {prices.region} on-demand "
                   f"prices of {prices.as_of}, {prices.hours_per_month:g} h/month"]
    yield Finding("cost", change.stack, title, details, change.urn)


PER_CHANGE: list[Callable[[Change], Iterator[Finding]]] = [destructive, ingress_widening, iam_widening]


def find_risks(stack: StackChanges, prices: PriceTable | None = None) -> list[Finding]:
    prices = prices or load_prices()
    findings = [Finding("policy", stack.stack, f"**{d.severity}**: {short(d.message, 400)}", [], d.urn)
                for d in stack.diagnostics]
    for change in stack.changes:
        for rule in PER_CHANGE:
            findings.extend(rule(change))
        findings.extend(instance_costs(change, prices))
    findings.extend(model_versions(stack))
    order = list(CATEGORIES)
    return sorted(findings, key=lambda f: order.index(f.category))

"""`mlship model ...`: train, evaluate, package, publish and list model versions."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mlship.errors import UserError
from model.settings import Settings, load_settings, parse_assignment


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, through the router, like every other bad input
        raise UserError(message)


def _settings_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", type=Path, help="settings YAML (default: model/settings.yaml)")
    parser.add_argument("--name", help="model name (default from settings: churn)")
    parser.add_argument("--version", dest="model_version", help="semantic version MAJOR.MINOR.PATCH")
    parser.add_argument("--data", help="a CSV with a header row, or 'synthetic'")
    parser.add_argument("--target", help="the binary target column of --data")
    parser.add_argument("--seed", type=int, help="seed for data, split and classifier")
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting, e.g. --set gates.auc_roc=0.9 (repeatable)")


def _settings(args: argparse.Namespace) -> Settings:
    overrides = dict(parse_assignment(text) for text in args.assignments)
    for key, value in (("name", args.name), ("version", args.model_version), ("data.source", args.data),
                       ("target", args.target), ("seed", args.seed)):
        if value is not None:
            overrides[key] = value
    return load_settings(args.settings, overrides)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlship model", description="Train, evaluate, package, publish and list model versions.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, help_text in (("train", "train the model into build/<name>-<version>/"),
                            ("evaluate", "score the hold-out set and apply the quality gate"),
                            ("package", "write dist/<name>-<version>/ (model.tar.gz, manifest, baseline)")):
        _settings_options(commands.add_parser(name, help=help_text))
    for name, help_text in (("publish", "upload a packaged version to S3 and register it"),
                            ("fetch", "download a published version into dist/<name>-<version>/ (to publish it elsewhere)"),
                            ("list", "show the published versions")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--bucket", required=True, help="artifacts bucket")
        sub.add_argument("--region", default=None, help="AWS region (default: the AWS configuration's)")
        sub.add_argument("--endpoint-url", default=None, help="S3/SageMaker endpoint, for emulators such as moto")
        if name != "fetch":
            sub.add_argument("--group", default=None, help="Model Package Group to register in / read approvals from (default: the model's name)")
        if name == "publish":
            _settings_options(sub)
            sub.add_argument("--approve", action="store_true", help="register as Approved (default PendingManualApproval)")
            sub.add_argument("--no-register", action="store_true", help="upload to S3 only, no Model Package")
        elif name == "fetch":
            _settings_options(sub)
        else:
            sub.add_argument("--name", help="model name (default: churn)")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    for noisy in ("botocore", "boto3", "sagemaker"):  # their INFO lines ("Found credentials ...") are not ours
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return COMMANDS[args.command](args)


def _train(args: argparse.Namespace) -> int:
    from model.train import train

    settings = _settings(args)
    result = train(settings)
    training = result.identity["training"]
    kinds = [feature["type"] for feature in result.identity["features"]]
    print(f"trained {settings.release}: {kinds.count('numeric')} numeric + {kinds.count('categorical')} categorical features, "
          f"{result.train_rows} training rows, {result.holdout_rows} held out (positive rate {training['positive_rate']:.2f})")
    print(f"  data    {training['source']}  sha256 {training['fingerprint'][:12]}")
    print(f"  model   {result.workdir / 'model.joblib'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from model.evaluate import evaluate

    settings = _settings(args)
    result = evaluate(settings)
    print(f"evaluated {settings.release} on the hold-out set:")
    for metric, value in result.metrics.items():
        threshold = settings.gates.get(metric)
        verdict = "" if threshold is None else f"  (gate >= {threshold:.2f}: {'pass' if value >= threshold else 'FAIL'})"
        print(f"  {metric:<10}{value:.4f}{verdict}")
    if not result.passed:
        print(f"mlship model: error: quality gate failed: {'; '.join(result.failures)}; nothing will be packaged", file=sys.stderr)
        return 1
    print("quality gate passed")
    return 0


def _package(args: argparse.Namespace) -> int:
    from model.package import package

    settings = _settings(args)
    release = package(settings)
    print(f"packaged {settings.release} into {release.directory}/")
    for path, digest in release.manifest["files"].items():
        print(f"  {path:<44}sha256 {digest[:12]}")
    print(f"  {'manifest.json':<44}git {release.manifest['git']['commit'] or 'none'}{' (dirty)' if release.manifest['git']['dirty'] else ''}")
    if release.previous:
        print(f"  schema vs {release.previous}: {release.schema_note}")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from model.publish import Registry, publish

    settings = _settings(args)
    registry = Registry.connect(args.bucket, args.region, args.endpoint_url)
    group = None if args.no_register else args.group or settings.name
    outcome = publish(registry, settings.distdir, group=group, approve=args.approve)
    print(outcome.summary)
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from model.publish import Registry, fetch

    settings = _settings(args)
    registry = Registry.connect(args.bucket, args.region, args.endpoint_url)
    print(fetch(registry, settings.name, settings.version, settings.distdir).summary)
    return 0


def _list(args: argparse.Namespace) -> int:
    from model.publish import Registry, list_versions

    registry = Registry.connect(args.bucket, args.region, args.endpoint_url)
    name = args.name or load_settings().name
    versions = list_versions(registry, name, args.group or name)
    if not versions:
        print(f"no published versions of {name} in s3://{args.bucket}/models/{name}/")
        return 0
    print(f"{'version':<10}{'created':<22}{'auc_roc':>8}{'precision':>10}  {'approval':<22}sha256(model.tar.gz)")
    for entry in versions:
        print(f"{entry.version:<10}{entry.created[:19]:<22}{entry.metrics.get('auc_roc', float('nan')):>8.4f}"
              f"{entry.metrics.get('precision', float('nan')):>10.4f}  {entry.approval or '-':<22}{entry.tarball_sha256[:12]}")
    return 0


COMMANDS = {"train": _train, "evaluate": _evaluate, "package": _package, "publish": _publish, "fetch": _fetch,
            "list": _list}

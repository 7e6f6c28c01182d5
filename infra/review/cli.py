"""`mlship review`: a risk-first Markdown review of what `pulumi up` would change.

    mlship review preview-dev.json preview-prod.json > review.md
    mlship review --offline --base origin/main            # fork pull requests: no cloud, no secrets
    mlship review --offline --before base.json --after head.json --stack dev
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlship.errors import UserError
from infra.review.changes import changes_between_plans, read_plan, read_preview
from infra.review.offline import review_offline
from infra.review.render import GITHUB_COMMENT_LIMIT, Review, render


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, through the router, like every other bad input
        raise UserError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlship review", description=__doc__.split("\n")[0])
    parser.add_argument("previews", nargs="*", type=Path, metavar="PREVIEW.json",
                        help="output of `pulumi preview --json`, one file per stack")
    parser.add_argument("--offline", action="store_true",
                        help="compare offline plans (`mlship plan --json`) instead of reading previews")
    parser.add_argument("--base", metavar="REF", help="with --offline: the commit to compare the working tree with")
    parser.add_argument("--before", type=Path, metavar="PLAN.json", help="with --offline: the base plan, as a file")
    parser.add_argument("--after", type=Path, metavar="PLAN.json", help="with --offline: the new plan, as a file")
    parser.add_argument("--stack", action="append", dest="stacks", metavar="NAME",
                        help="stack to review (repeatable; default: every Pulumi.<stack>.yaml)")
    parser.add_argument("--repo", type=Path, default=Path.cwd(), help="the checkout to review (default: here)")
    parser.add_argument("--output", "-o", type=Path, help="write the Markdown here instead of standard output")
    parser.add_argument("--max-chars", type=int, default=GITHUB_COMMENT_LIMIT - 536,
                        help="longest review to write (default fits a GitHub comment)")
    parser.add_argument("--title", default="Infrastructure review")
    parser.add_argument("--full-report-hint", default="",
                        help="sentence added when parts are cut, e.g. where the full review is")
    return parser


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.max_chars < 2_000:
        raise UserError(f"--max-chars {args.max_chars} is too small; allowed: 2000 or more")
    if args.offline:
        if args.previews:
            raise UserError("--offline compares plans; give either PREVIEW.json files or --offline, not both")
        if args.before or args.after:
            if not (args.before and args.after) or args.base:
                raise UserError("--offline needs both --before and --after plan files, or --base REF alone")
            stack = (args.stacks or [None])[0]
            stacks = [changes_between_plans(read_plan(args.before), read_plan(args.after), stack=stack)]
        elif args.base:
            stacks = review_offline(args.repo.resolve(), args.base, args.stacks)
        else:
            raise UserError("--offline needs --base REF (or --before and --after plan files)")
        title = f"{args.title} (offline plan, no cloud credentials)"
    else:
        if not args.previews:
            raise UserError("give one or more `pulumi preview --json` files, or --offline --base REF")
        if args.stacks and len(args.stacks) != len(args.previews):
            raise UserError(f"--stack was given {len(args.stacks)} times for {len(args.previews)} preview files; "
                            "give it once per file, in the same order, or not at all")
        names = args.stacks or [None] * len(args.previews)
        stacks = [read_preview(path, stack=name) for path, name in zip(args.previews, names)]
        title = args.title
    markdown = render(Review.of(stacks), limit=args.max_chars, title=title, full_report_hint=args.full_report_hint)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown, encoding="utf-8")
    else:
        print(markdown, end="")
    return 0

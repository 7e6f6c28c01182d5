"""The mlship policy pack (entry file: the only place the PolicyPack, and its gRPC server, is built).

    pulumi preview --stack prod --policy-pack infra/policy --policy-pack-config infra/policy/config/prod.json
"""

import sys
from pathlib import Path

# Pulumi runs the pack from this folder; the rules live in the repository's `infra` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from infra.policy.rules import policies  # noqa: E402

PolicyPack(name="mlship", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())

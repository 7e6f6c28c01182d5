"""Risk-first review of infrastructure changes: `pulumi preview --json` or two offline plans to Markdown."""

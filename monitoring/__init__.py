"""Watching a deployed model: capture reading, baselines, checks, drift, model quality, alerts, reports."""

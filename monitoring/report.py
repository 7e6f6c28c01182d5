"""One self-contained HTML report (images embedded) from one or more monitoring runs.

For the latest window: the summary, violations, the drift table sorted by distance, and
each feature's baseline and current distributions. Across the windows given: model
quality and the largest drift distances over time.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from mlship.errors import UserError
from monitoring import formats
from monitoring.sketches import WeightedCdf


def _figure_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _read_run(folder: Path) -> dict:
    if not (folder / formats.SUMMARY_FILE).is_file():
        raise UserError(f"{folder} is not a monitoring run's output (no {formats.SUMMARY_FILE}); give folders written by `mlship monitor run`")
    run = {
        "folder": folder,
        "summary": formats.read_json(folder / formats.SUMMARY_FILE, "summary"),
        "statistics": formats.read_statistics(folder / formats.STATISTICS_FILE),
        "violations": formats.read_violations(folder / formats.VIOLATIONS_FILE),
        "drift": formats.read_json(folder / formats.DRIFT_FILE, "drift detail"),
        "quality": None,
    }
    quality = folder / formats.MODEL_QUALITY_STATISTICS_FILE
    if quality.is_file():
        run["quality"] = formats.model_quality_metrics_from_json(formats.read_json(quality, "model quality statistics"))
        quality_violations = folder / formats.MODEL_QUALITY_VIOLATIONS_FILE
        if quality_violations.is_file():
            raw = formats.read_json(quality_violations, "model quality violations")
            run["violations"] = run["violations"] + [formats.Violation(v["metric_name"], v["constraint_check_type"], v["description"]) for v in raw["violations"]]
    return run


def _distribution_plot(name: str, baseline: formats.FeatureStatistics | None, current: formats.FeatureStatistics) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.2, 2.4))
    if current.is_numeric:
        sides = [(label, WeightedCdf.from_layout(f.sketch)) for label, f in (("baseline", baseline), ("current", current)) if f is not None and f.sketch is not None]
        sides = [(label, cdf) for label, cdf in sides if not cdf.empty]
        if not sides:
            plt.close(figure)
            return None
        low = min(cdf.items[0] for _, cdf in sides)
        high = max(cdf.items[-1] for _, cdf in sides)
        edges = np.linspace(low, high if high > low else low + 1, 31)
        for (label, cdf), color in zip(sides, ("#7f8c8d", "#d35400")):
            share = np.diff(cdf.at(edges))
            share[0] += cdf.at(edges[:1])[0]
            axis.step(edges[:-1], share, where="post", label=label, color=color)
        axis.set_ylabel("share of values")
    else:
        categories = sorted(set(current.categories) | set(baseline.categories if baseline else {}))[:20]
        positions = np.arange(len(categories))
        for offset, (label, feature, color) in zip((-0.2, 0.2), (("baseline", baseline, "#7f8c8d"), ("current", current, "#d35400"))):
            if feature is None or not feature.categories:
                continue
            total = sum(feature.categories.values())
            axis.bar(positions + offset, [feature.categories.get(c, 0) / total for c in categories], width=0.4, label=label, color=color)
        axis.set_xticks(positions, categories, rotation=30, fontsize=7)
        axis.set_ylabel("share of rows")
    axis.set_title(name, fontsize=10)
    axis.legend(fontsize=7)
    return _figure_uri(figure)


def _trend_plot(runs: list[dict]) -> str | None:
    """Model quality and the largest drift distances, window by window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(runs) < 2:
        return None
    labels = [r["summary"]["window"]["end"] or r["folder"].name for r in runs]
    figure, axes = plt.subplots(1, 2, figsize=(9, 2.8))
    for metric in ("accuracy", "precision", "recall", "f1", "auc"):
        values = [(r["quality"] or {}).get(metric) for r in runs]
        if any(v is not None for v in values):
            axes[0].plot(labels, [np.nan if v is None else v for v in values], marker="o", label=metric)
    axes[0].set_title("model quality", fontsize=10)
    axes[0].legend(fontsize=7)
    latest = sorted(runs[-1]["drift"]["features"], key=lambda d: -d["linf_simple"])[:5]
    for feature in latest:
        series = [next((d["linf_simple"] for d in r["drift"]["features"] if d["name"] == feature["name"]), np.nan) for r in runs]
        axes[1].plot(labels, series, marker="o", label=feature["name"])
    axes[1].set_title("L-inf drift (top 5 features)", fontsize=10)
    axes[1].legend(fontsize=7)
    for axis in axes:
        axis.tick_params(axis="x", labelrotation=30, labelsize=7)
    return _figure_uri(figure)


def _table(headers: list[str], rows: list[list], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f"<tr class='{(classes or [''] * len(rows))[i]}'>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>"
        for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_report(inputs: list[Path], out: Path, baseline_folder: Path | None = None) -> Path:
    runs = [_read_run(Path(folder)) for folder in inputs]
    baseline = formats.read_statistics(baseline_folder / formats.STATISTICS_FILE) if baseline_folder else None
    latest = runs[-1]
    summary = latest["summary"]
    sections = [f"<h1>mlship monitoring report: {html.escape(str(summary['endpoint']))}</h1>",
                f"<p>Schedule {html.escape(str(summary['monitoring_schedule']))}; {len(runs)} window(s); latest window "
                f"{html.escape(str(summary['window']['start'] or 'open'))} to {html.escape(str(summary['window']['end'] or 'open'))}, "
                f"{summary['records']:,} records.</p>"]
    verdict = "Retraining recommended: drift crossed its threshold." if summary["retrain_recommended"] else "No drift past its threshold."
    sections.append(f"<p class='{'bad' if summary['violations'] else 'good'}'><b>{summary['violations']} violations.</b> {verdict}</p>")
    if summary["skipped"]:
        sections.append("<p>Skipped input: " + html.escape(", ".join(f"{k}: {v}" for k, v in sorted(summary["skipped"].items()))) + "</p>")

    sections.append("<h2>Violations (latest window)</h2>")
    sections.append(_table(["feature or metric", "check", "description"], [[v.feature_name, v.constraint_check_type, v.description] for v in latest["violations"]])
                    if latest["violations"] else "<p>None.</p>")

    drift = sorted(latest["drift"]["features"] + latest["drift"]["prediction"], key=lambda d: -d["distance"] if d["kind"] == "numeric" else -d["linf_simple"])
    sections.append("<h2>Drift (latest window, largest first)</h2>")
    sections.append(_table(["feature", "kind", "L-inf", "L-inf robust", "PSI", "p-value", "test", "threshold", "drifted"],
                           [[d["name"], d["kind"], d["linf_simple"], d["linf_robust"], d["psi"], d["p_value"], d["p_value_test"], d["threshold"], "yes" if d["drifted"] else "no"] for d in drift],
                           ["bad" if d["drifted"] else "" for d in drift]))
    multivariate = latest["drift"].get("multivariate")
    if multivariate and multivariate.get("rows"):
        sections.append(f"<p>Multivariate (PCA reconstruction error over {len(multivariate['features'])} numeric features, {multivariate['components']} components): "
                        f"score {multivariate['score']:.3g} (1.0 = as in training), L-inf robust {multivariate['linf_robust']:.3g}"
                        f"{' — DRIFTED' if multivariate['drifted'] else ''}.</p>")

    quality_runs = [r for r in runs if r["quality"]]
    if quality_runs:
        sections.append("<h2>Model quality</h2>")
        metrics = ["accuracy", "precision", "recall", "f1", "auc"]
        sections.append(_table(["window end", *metrics], [[r["summary"]["window"]["end"] or r["folder"].name, *[r["quality"].get(m) for m in metrics]] for r in quality_runs]))
    trend = _trend_plot(runs)
    if trend:
        sections.append(f"<h2>Over time</h2><img src='{trend}' alt='model quality and drift over windows'>")

    sections.append("<h2>Distributions (baseline vs latest window)</h2><div class='grid'>")
    order = {d["name"]: i for i, d in enumerate(drift)}
    for feature in sorted(latest["statistics"].features, key=lambda f: order.get(f.name, len(order))):
        image = _distribution_plot(feature.name, baseline.feature(feature.name) if baseline else None, feature)
        if image:
            sections.append(f"<img src='{image}' alt='distribution of {html.escape(feature.name)}'>")
    sections.append("</div>")

    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}tr.bad td,p.bad{color:#b03a2e}"
             "p.good{color:#1e8449}.grid{display:flex;flex-wrap:wrap;gap:8px}")
    document = f"<!doctype html><html><head><meta charset='utf-8'><title>mlship monitoring report</title><style>{style}</style></head><body>{''.join(sections)}</body></html>"
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp")
    temporary.write_text(document)
    temporary.replace(out)
    return out


__all__ = ["write_report"]

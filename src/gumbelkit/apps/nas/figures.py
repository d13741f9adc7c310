"""Figures and tables of the architecture-search application (matplotlib's object API)."""
from __future__ import annotations

from typing import Any


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def teacher_table(s: dict[str, Any]) -> str:
    """Markdown: recovery rates and the teacher x student confusion matrix."""
    ops = s["ops"]
    lines = [
        f"# Teacher-student: {s['teachers']} teachers, {s['edges']} edges",
        "",
        f"Commit `{s['commit'][:10]}`; command `{s['command']}`.",
        "",
        "| edges | recovered % |",
        "|---|---:|",
        f"| all | {_pct(s['recovered_all'])} |",
        f"| teacher op parametric | {_pct(s['recovered_parametric'])} |",
        f"| teacher op parameter-free ({', '.join(s['parameter_free'])}) | {_pct(s['recovered_parameter_free'])} |",
        f"| teacher op parameter-free, student op parameter-free | {_pct(s['parameter_free_as_parameter_free'])} |",
        "",
        "Confusion (rows: teacher's operation, columns: student's):",
        "",
        "| teacher \\ student | " + " | ".join(ops) + " |",
        "|---|" + "---:|" * len(ops),
    ]
    for name, row in zip(ops, s["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"

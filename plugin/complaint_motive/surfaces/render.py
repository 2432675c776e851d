"""How results look to a person in a terminal (``--format text``)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..analysis.schema import LabelCall, MotiveAnalysis, NamedLabel

_RISK_STYLE = {"high": "bold red", "medium": "yellow", "low": "green"}


def render_card(result: MotiveAnalysis, console: Console | None = None) -> None:
    """A readable card: motive, stage, risk, steps, reply, citations. Names follow the
    complaint's language; every text is escaped, so brackets in a complaint print as typed."""
    console = console or Console()
    motive, stage, risk = result.primary_motive, result.stage, result.risk
    english = result.reply.language == "en"

    def name(label: LabelCall | NamedLabel) -> str:
        return escape(label.en if english else label.zh)

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # Chinese has no spaces to wrap at
    secondary = ", ".join(f"{m.id} ({name(m)})" for m in result.secondary_motives)
    table.add_row("motive", f"{motive.id} ({name(motive)}) {motive.confidence:.2f} "
                  + escape(f"[{motive.level} → {motive.action}]")
                  + (f"  also: {secondary}" if secondary else ""))
    if motive.evidence:
        table.add_row("", "evidence: " + " | ".join(escape(e.quote) for e in motive.evidence))
    if stage is not None:
        table.add_row("stage", f"{stage.id} ({name(stage)}) {stage.confidence:.2f} "
                      + escape(f"[{stage.level}]"))
    table.add_row("risk", f"[{_RISK_STYLE[risk.level]}]{risk.level}[/] "
                  + (", ".join(risk.flags) or "no flags"))
    table.add_row("needs", ", ".join(name(n) for n in result.needs.items) +
                  f" (leading: {result.needs.leading})")
    # Chinese list marks carry no space: rich wraps at spaces, and a long unspaced Chinese
    # line after "3. " would leave the number alone on its line.
    number, bullet = ("{}. ", "- ") if english else ("{}、", "·")
    table.add_row("steps", "\n".join(number.format(i) + escape(s) for i, s in
                                     enumerate(result.handling.steps, 1)))
    table.add_row("avoid", "\n".join(bullet + escape(s) for s in result.handling.avoid))
    table.add_row("reply", f"[italic]{escape(result.reply.text)}[/] (draft)")
    table.add_row("cites", "\n".join(escape(f"{c.chunk_id}  {c.title} › {c.section}")
                                     for c in result.citations))
    meta = result.meta
    footer = (f"{meta.backend} · {meta.model} · prompt {meta.prompt_version} · "
              f"{meta.latency_ms:.0f} ms" + (" · DEGRADED" if meta.degraded else ""))
    console.print(Panel(table, title="complaint-motive", subtitle=footer))
    for warning in meta.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")

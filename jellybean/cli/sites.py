"""Starting the site brokers of `up --isolate`, and saying what was made."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from jellybean.tables import fit

err = Console(stderr=True)


def start_sites(dep, directory: Path, agents: dict[str, str], outage_budget: float):
    """Started `SiteBrokers` (namespaces when this machine allows, else loopback), printed."""
    from jellybean.sites.brokers import SiteBrokers

    with err.status("starting the sites: namespaces, links, brokers and bridges"):
        sites = SiteBrokers(dep, directory, agents, outage_budget_s=outage_budget).start()
    if sites.network is None:
        err.print(f"[yellow]sites on loopback[/]: {sites.fallback}. One broker per site on its own port, bridged; "
                  "links are neither shaped nor measured on a wire.", highlight=False, soft_wrap=True)
    table = Table(title="sites" + (f" (namespaces of run {sites.network.run_id})" if sites.network else ""),
                  title_justify="left")
    for col in ("site", "namespace", "broker", "agents"):
        table.add_column(col)
    for site, cfg in sites.configs.sites.items():
        ns = sites.network.namespace(site) if sites.network else "-"
        who = ", ".join(n for n, s in agents.items() if s == site) or "-"
        mark = " (controller)" if site == sites.controller_at else ""
        table.add_row(site + mark, ns, cfg.url, who)
    err.print(fit(table))
    if sites.network is not None:
        links = Table(title="links", title_justify="left")
        for col in ("link", "bandwidth Mbit/s", "latency ms", "interfaces"):
            links.add_column(col, justify="right" if col[0] in "bl" and col != "link" else "left")
        for v in sites.network.links:
            links.add_row(v.name, "unlimited" if v.bandwidth_mbps is None else f"{v.bandwidth_mbps:g}",
                          f"{v.latency_ms:g}", f"{v.from_if}@{v.from_site}, {v.to_if}@{v.to_site}")
        err.print(fit(links))
        err.print(f"[dim]{sites.network.latency_note}[/]", highlight=False, soft_wrap=True)
    return sites

"""Sites on one machine: one network namespace per site, shaped veth pairs for the links (`up --isolate`)."""

from jellybean.sites.netns import (
    LinkCounters,
    LanVeth,
    LinkVeth,
    SiteNamespace,
    SiteNetwork,
    SiteNetworkError,
    TbfParameters,
    available,
    destroy_run,
    netem_available,
    run_namespaces,
    shortest_paths,
    tbf_parameters,
)

__all__ = [
    "LinkCounters",
    "LanVeth",
    "LinkVeth",
    "SiteNamespace",
    "SiteNetwork",
    "SiteNetworkError",
    "TbfParameters",
    "available",
    "destroy_run",
    "netem_available",
    "run_namespaces",
    "shortest_paths",
    "tbf_parameters",
]

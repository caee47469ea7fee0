"""How `jellybean.replay.sampling` names association decisions and counts the ones that match."""

from __future__ import annotations

from jellybean.replay.sampling import Branch, Comparison


def branch(name: str, final: list[tuple[tuple[str, int], int]]) -> Branch:
    b = Branch(name)
    for key, gid in final:   # in the order the tracklets were first seen
        b.final_gid[key] = gid
    return b


def test_a_decision_names_the_identity_by_the_tracklet_that_started_it():
    b = branch("x", [(("c1", 1), 7), (("c2", 4), 9), (("c2", 5), 7), (("c3", 2), 7)])
    assert b.decisions() == {("c1", 1): None, ("c2", 4): None, ("c2", 5): ("c1", 1), ("c3", 2): ("c1", 1)}


def test_one_different_link_is_one_different_decision_whatever_the_global_ids():
    exact = branch("exact", [(("c1", 1), 1), (("c2", 1), 2), (("c2", 2), 1), (("c3", 1), 1)])
    # Other global ids, the same links, except that c3/1 started an identity of its own.
    approx = branch("approx", [(("c1", 1), 40), (("c2", 1), 41), (("c2", 2), 40), (("c3", 1), 42)])
    c = Comparison("S01", exact, approx, frames=10)
    assert (c.matching, c.decisions) == (3, 4)

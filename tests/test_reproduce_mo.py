"""The multi-objective reproduce entries (``scripts/reproduce_mo.py``): exact convex-hull membership on
hand fronts, matching found points to the true front, the table rendering on synthetic rows, bad
arguments refused, and one ``--quick`` run (Envelope Q on both DST maps, one program per map)."""
import json

import numpy as np
import pytest

from jaxrl import envs
from scripts import reproduce_mo as rm


# ----------------------------------------------------------------------------------------------
# Convex hull membership (exact answers by hand)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("middle, expected", [
    ((0.4, 0.4), False),    # below the segment (0,1)-(1,0): w·v <= 0.4 < max(w0, w1) for every w
    ((0.5, 0.5), True),     # on the segment: ties with both ends at w = (1/2, 1/2)
    ((0.6, 0.6), True),     # above it: the best point at w = (1/2, 1/2)
])
def test_hull_membership_2d(middle, expected):
    front = np.array([[0.0, 1.0], middle, [1.0, 0.0]])
    np.testing.assert_array_equal(rm.on_convex_hull(front), [True, expected, True])


def test_hull_membership_2d_inner_point_between_two_hull_points():
    # At w = (1/2, 1/2) the utilities are 1.5, 1.95, 2, 1.95, 1.5: (2, 2) is the best point there; (1, 2.9)
    # ties with (0, 3) at w = (1/11, 10/11), where it beats (2, 2) (2.73 > 2): every point is on the hull.
    front = np.array([[0.0, 3.0], [1.0, 2.9], [2.0, 2.0], [2.9, 1.0], [3.0, 0.0]])
    np.testing.assert_array_equal(rm.on_convex_hull(front), [True, True, True, True, True])
    # (1.9, 1.9): w·v = 1.9 < 1.95 at w = (1/2, 1/2), and away from it a neighbour is better still.
    front[2] = [1.9, 1.9]
    np.testing.assert_array_equal(rm.on_convex_hull(front), [True, True, False, True, True])


@pytest.mark.parametrize("inner, expected", [((0.3, 0.3, 0.3), False), ((0.4, 0.4, 0.4), True)])
def test_hull_membership_3d(inner, expected):
    # the corners win at the simplex's vertices; the inner point's best weight is (1/3, 1/3, 1/3),
    # where its utility is 0.3 (< 1/3: not on the hull) or 0.4 (> 1/3: on it)
    front = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], inner])
    np.testing.assert_array_equal(rm.on_convex_hull(front), [True, True, True, expected])


def test_concave_dst_has_only_its_two_ends_on_the_hull():
    env, _ = envs.make("DeepSeaTreasureConcave-v0")
    front = env.pareto_front(0.99)
    hull = rm.on_convex_hull(front)
    order = np.argsort(front[:, 1])
    np.testing.assert_array_equal(hull[order], [True] + [False] * 8 + [True])
    convex, _ = envs.make("DeepSeaTreasure-v0")
    assert rm.on_convex_hull(convex.pareto_front(0.99)).all()


def test_hull_membership_refuses_bad_fronts():
    with pytest.raises(ValueError, match="non-empty"):
        rm.on_convex_hull(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="finite"):
        rm.on_convex_hull([[0.0, np.nan]])


def test_matched_points_within_float32_error():
    true = np.array([[1.0, -1.0], [2.0, -3.0], [124.0, -17.38]])
    found = np.array([[1.0000004, -1.0], [124.0001, -17.38001], [2.1, -3.0]])
    np.testing.assert_array_equal(rm.matched(found, true), [True, False, True])
    np.testing.assert_array_equal(rm.matched(np.zeros((0, 2)), true), [False, False, False])


# ----------------------------------------------------------------------------------------------
# Rendering on synthetic rows
# ----------------------------------------------------------------------------------------------
TRUTH = {"front": [[1.0, -1.0], [2.0, -3.0], [5.0, -4.0]], "on_hull": [True, False, True],
         "hypervolume": 100.0, "expected_utility": 1.5, "cardinality": 3, "off_hull": 1}


def _run(hv, found, off, front):
    return {"hypervolume": hv, "expected_utility": 1.0, "igd": 0.5, "cardinality": 2, "found": found,
            "found_off_hull": off, "front": front, "front_returns": front}


CELLS = [
    {"agent": "envelope_q", "runs": [_run(50.0, 2, 0, [[1.0, -1.0], [5.0, -4.0]])] * 2},
    {"agent": "pcn", "runs": [_run(90.0, 3, 1, TRUTH["front"]), _run(70.0, 2, 1, [[1.0, -1.0], [2.0, -3.0]])]},
]


def test_table_rows():
    lines = rm.table_lines("Env-v0", TRUTH, CELLS)
    assert lines[0] == ("| agent | seeds | hypervolume | expected utility | IGD | cardinality | "
                        "points found / 3 on the true front | non-convex-hull points found / 1 |")
    assert lines[2] == "| true front | exact | 100.0 | 1.50 | 0 | 3 | 3 | 1 |"
    assert lines[3] == ("| Envelope Q | 2 | 50.0 [50.0, 50.0] | 1.00 [1.00, 1.00] | 0.50 [0.50, 0.50] | "
                        "2.0 [2.0, 2.0] | 2.0 [2.0, 2.0] | 0.0 [0.0, 0.0] |")
    assert lines[4].startswith("| PCN | 2 | 80.0 [70.0, 90.0] |") and lines[4].endswith("| 2.5 [2.0, 3.0] | 1.0 [1.0, 1.0] |")
    # no known front: no IGD, found or true-front columns
    unknown = rm.table_lines("Env-v0", None, CELLS[:1])
    assert unknown[0] == "| agent | seeds | hypervolume | expected utility | cardinality |" and len(unknown) == 3


def test_findings_name_who_reaches_the_points_off_the_hull():
    text = "\n".join(rm.findings("Env-v0", TRUTH, CELLS))
    assert "highest mean hypervolume PCN" in text and "Envelope Q 0.50, PCN 0.80" in text
    assert "Envelope Q (optimizes linear scalarizations only: the optimal policy of no weight reaches them" in text
    assert "Envelope Q" in text and "): 0.0 of the 1 points off the convex hull" in text
    assert "PCN (is conditioned on returns, so it can aim at them): 1.0 of the 1 points off the convex hull per " \
           "seed on average, 1 in the union of its seeds" in text


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["mo-nothing"], "invalid choice"),
    (["mo-dst", "--agents", "dqn"], "--agents must be distinct names"),
    (["mo-dst", "--agents", "pcn,pcn"], "--agents must be distinct names"),
    (["mo-fruit-tree", "--agents", "gpi_ls"], "gpi_ls not applicable to mo-fruit-tree"),
    (["mo-dst", "--seeds", "0"], "--seeds must be >= 1"),
])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        rm.parse_args(argv)
    assert message in capsys.readouterr().err


def test_entries_cover_the_issue_and_their_configs_are_valid():
    assert set(rm.ENTRIES) == {"mo-dst", "mo-fruit-tree", "mo-resource-gathering", "mo-mountaincar"}
    assert {c.env for c in rm.ENTRIES["mo-dst"].cases} == {"DeepSeaTreasure-v0", "DeepSeaTreasureConcave-v0"}
    assert rm.ENTRIES["mo-fruit-tree"].gamma == 1.0 and rm.ENTRIES["mo-fruit-tree"].ref_point == (0.0,) * 6
    for entry in rm.ENTRIES.values():
        for case in entry.cases:
            for quick in (False, True):
                module, config = rm.case_config(case, quick)
                module.validate(config)
                gamma = config.front_gamma if case.agent == "pcn" else config.gamma
                assert gamma == entry.gamma, (case, quick)


# ----------------------------------------------------------------------------------------------
# One --quick run (numbers mean nothing): the files and their shape
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mo-dst")
    md = rm.main(["mo-dst", "--quick", "--agents", "envelope_q", "--out", str(out)])
    return out, md


def test_quick_run_writes_table_plot_and_json(quick_run):
    out, md = quick_run
    text = md.read_text()
    assert "## DeepSeaTreasureConcave-v0" in text and "| true front | exact | 1101.4 | 44.25 | 0 | 10 | 10 | 8 |" in text
    assert "| true front | exact | 360.4 | 5.56 | 0 | 10 | 10 | 0 |" in text
    assert text.count("| Envelope Q | 2 |") == 2 and "--quick run" in text
    assert (out / "mo-dst.png").stat().st_size > 0
    store = json.loads((out / "mo-dst.json").read_text())
    assert [c["env"] for c in store["cases"]] == ["DeepSeaTreasure-v0", "DeepSeaTreasureConcave-v0"]
    for case in store["cases"]:
        assert [r["seed"] for r in case["runs"]] == [0, 1]
        for r in case["runs"]:
            assert 0 <= r["found_off_hull"] <= r["found"] <= r["cardinality"] and r["hypervolume"] >= 0


def test_quick_run_is_reused(quick_run, capsys):
    out, _ = quick_run
    rm.main(["mo-dst", "--quick", "--agents", "envelope_q", "--out", str(out)])
    assert capsys.readouterr().out.count(": reused") == 2

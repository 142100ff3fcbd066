"""The benchmarks' own arithmetic: percentiles, linear fits, linearity and how budgets and reports read."""

from __future__ import annotations

import json
import math

import pytest

from bench.fanout_scale import marginal_growth
from bench.figures import linear_fit, percentile, ratio
from bench.report import BenchError, Budget, Report, Scale
from bench.summary import BEGIN, END, budget_lines, markdown_summary, replace_generated


def test_percentile_interpolates_between_closest_ranks():
    # Given four samples
    values = [4.0, 1.0, 3.0, 2.0]

    # Then the median falls between the middle two and the extremes are the min and max
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 75) == pytest.approx(3.25)


def test_p99_of_a_hundred_samples_rests_on_the_two_largest():
    # Given the samples 1..100
    values = [float(n) for n in range(1, 101)]

    # Then p99 lies between 99 and 100, as numpy's default computes it
    assert percentile(values, 99) == pytest.approx(99.01)


@pytest.mark.parametrize("q", [-1, 101])
def test_a_percentile_outside_0_100_is_refused(q: float):
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], q)


def test_no_percentile_of_nothing():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_linear_fit_recovers_an_exact_line():
    # Given points on y = 3x + 2
    xs = [1.0, 10.0, 100.0, 1000.0]
    ys = [3 * x + 2 for x in xs]

    # When fitted
    fit = linear_fit(xs, ys)

    # Then slope and intercept are found and the line explains everything
    assert fit.slope == pytest.approx(3.0)
    assert fit.intercept == pytest.approx(2.0)
    assert fit.r_squared == pytest.approx(1.0)
    assert fit.at(50) == pytest.approx(152.0)


def test_linear_fit_of_scattered_points_explains_less():
    # Given points that do not lie on a line
    fit = linear_fit([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 2.0, 5.0])

    # Then the best line y = x + 0.5 leaves half the variance unexplained
    assert fit.slope == pytest.approx(1.0)
    assert fit.intercept == pytest.approx(0.5)
    assert fit.r_squared == pytest.approx(0.5)


def test_a_line_needs_two_distinct_xs():
    with pytest.raises(ValueError):
        linear_fit([1.0, 1.0], [2.0, 3.0])
    with pytest.raises(ValueError):
        linear_fit([1.0, 2.0], [2.0])


def test_marginal_growth_is_one_for_a_line_and_ten_for_a_square():
    # Given time growing linearly, then quadratically, over 10, 100 and 1,000 deliveries
    line = marginal_growth((10, 25.0), (100, 115.0), (1000, 1015.0))
    square = marginal_growth((10, 100.0), (100, 10_000.0), (1000, 1_000_000.0))

    # Then the line's marginal cost is constant and the square's grows tenfold
    assert line == pytest.approx(1.0)
    assert square == pytest.approx(10.0)


def test_marginal_growth_cannot_judge_a_flat_start():
    # Given no growth at all from the small to the middle size (noise, or one page for both)
    assert marginal_growth((1, 20.0), (10, 19.0), (100, 60.0)) is None


def test_ratio_of_nothing_to_nothing_is_zero_and_of_something_to_nothing_infinite():
    assert ratio(0, 0) == 0.0
    assert ratio(1, 0) == math.inf
    assert ratio(3, 2) == 1.5


def test_a_budget_holds_up_to_its_limit():
    assert Budget("at limit", 1.5, 1.5).holds
    assert not Budget("over", 1.51, 1.5).holds


def test_an_at_least_budget_holds_from_its_limit_up_and_reads_so_in_the_summary():
    # Given a floor of 30 per second, met once and missed once
    met = Budget("accepted", 30.0, 30, unit="/s", at_least=True)
    missed = Budget("accepted", 29.9, 30, unit="/s", at_least=True)

    # Then it holds at and above its limit only
    assert met.holds and not missed.holds

    # ...and the summary and the docs block say which way it is judged
    results = [Report("throughput", Scale.FULL, budgets=[missed]).as_json()]
    [line] = budget_lines(results)
    assert ">= 30/s" in line and line.endswith("DOES NOT HOLD")
    assert "| throughput | accepted | 29.90/s | at least 30/s | **no** |" in markdown_summary(results)


def test_a_report_holds_only_when_every_budget_does_and_judges_nothing_without_budgets():
    # Given reports with budgets that hold, one that does not, and none
    holding = Report("x", Scale.TINY, budgets=[Budget("a", 1, 2)])
    failing = Report("x", Scale.TINY, budgets=[Budget("a", 1, 2), Budget("b", 3, 2)])
    figures_only = Report("cost", Scale.TINY)

    # Then
    assert holding.holds is True
    assert failing.holds is False
    assert figures_only.holds is None


def test_the_json_line_is_one_line_with_the_keys_the_summary_reads():
    # Given a report with a budget that could not be judged (infinite)
    report = Report("priority", Scale.FULL, figures={"p99": 0.5}, budgets=[Budget("b", math.inf, 1.5)])

    # When it is rendered as its JSON line
    line = report.json_line()

    # Then it is one line of strict JSON (no Infinity) with the summary's keys
    assert "\n" not in line
    data = json.loads(line)
    assert {"bench", "scale", "holds", "budgets", "figures", "notes", "headline", "seconds"} <= set(data)
    assert data["budgets"] == [
        {"name": "b", "value": None, "limit": 1.5, "unit": "x", "holds": False, "at_least": False}
    ]


def test_a_json_line_with_a_figure_that_is_not_a_number_names_where_it_is():
    # Given a report whose figures hold an infinite ratio and a NaN deep inside
    report = Report("priority", Scale.TINY)
    report.figures = {"ratios": {"intake": 0.5, "queue": math.inf}, "runs": [{"p99_s": math.nan}]}

    # When its JSON line is written, Then the error names each one, not only "out of range"
    with pytest.raises(BenchError) as refused:
        report.json_line()
    assert str(refused.value) == (
        "bench.priority: figures that are not finite numbers: .figures.ratios.queue = inf, .figures.runs[0].p99_s = nan"
    )


def test_the_summary_lists_every_budget_and_replaces_only_its_block():
    # Given two benchmarks' JSON and a document with the markers
    results = [
        Report("requests", Scale.FULL, budgets=[Budget("calls vs floor", 1.1, 1.25)], headline=["10 calls"]).as_json(),
        Report("priority", Scale.FULL, budgets=[Budget("p99 vs idle", 2.0, 1.5)]).as_json(),
    ]
    document = f"# Performance\n\nprose\n\n{BEGIN}\nold figures\n{END}\n\nmore prose\n"

    # When the block is generated and put in place
    block = markdown_summary(results)
    updated = replace_generated(document, block)

    # Then both budgets appear with their verdicts, the headline is quoted, and the prose is untouched
    assert "| requests | calls vs floor | 1.10x | 1.25x | yes |" in block
    assert "| priority | p99 vs idle | 2.00x | 1.5x | **no** |" in block
    assert "- 10 calls" in block
    assert "old figures" not in updated
    assert updated.startswith("# Performance\n\nprose\n\n")
    assert updated.endswith(f"{END}\n\nmore prose\n")
    assert [line.split()[-1] for line in budget_lines(results)] == ["holds", "HOLD"]


def test_a_document_without_markers_is_refused():
    with pytest.raises(ValueError):
        replace_generated("no markers here", "block")


def test_re_running_one_benchmark_keeps_the_others_figures(tmp_path):
    # Given a results file of a full run
    from bench.__main__ import merged

    path = tmp_path / "results.jsonl"
    earlier = [Report(name, Scale.FULL, figures={"run": 1}).as_json() for name in ("cold_start", "requests", "cost")]
    path.write_text("".join(json.dumps(r) + "\n" for r in earlier))

    # When only `requests` is re-run
    fresh = Report("requests", Scale.FULL, figures={"run": 2}).as_json()
    results = merged(path, [fresh])

    # Then the others are kept, the re-run one replaced, in the usual order
    assert [(r["bench"], r["figures"]["run"]) for r in results] == [("cold_start", 1), ("requests", 2), ("cost", 1)]

    # And a run at another scale does not mix with them
    tiny = Report("requests", Scale.TINY, figures={"run": 3}).as_json()
    assert merged(path, [tiny]) == [tiny]

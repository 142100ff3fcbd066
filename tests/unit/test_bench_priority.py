"""bench.priority's ratios: a hop below the timestamps' millisecond resolution never divides by zero."""

from __future__ import annotations

import json
import math

from bench.priority import RESOLUTION_S, ratio


def test_a_ratio_to_a_hop_of_zero_is_finite_and_reads_it_as_the_resolution():
    # Given an idle hop read as 0 s (or a hair below: two clocks' milliseconds), and a flood hop of 3 ms
    # When they are compared, Then the ratio is finite, the idle time read as 1 ms, and it goes into JSON
    assert ratio(0.003, 0.0) == ratio(0.003, -0.0004) == 0.003 / RESOLUTION_S == 3.0
    assert math.isfinite(ratio(0.0, 0.0)) and ratio(0.0, 0.0) == 1.0
    assert json.loads(json.dumps({"r": ratio(0.003, 0.0)}, allow_nan=False)) == {"r": 3.0}


def test_a_ratio_of_measurable_times_is_their_quotient():
    assert ratio(0.050, 0.040) == 0.050 / 0.040

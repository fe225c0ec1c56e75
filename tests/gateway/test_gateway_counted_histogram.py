"""gateway.metrics.CountedHistogram: counts kept by the gateway, exposed exactly as
prometheus_client's Histogram exposes the same observations (less its `_created` sample; the
sum up to float rounding: it is added per scrape, not per observation)."""

from __future__ import annotations

import bisect
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from gateway.metrics import LATENCY_BUCKETS, CountedHistogram

values = st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), max_size=50)


@settings(max_examples=40, deadline=None)
@given(values, values)
def test_it_exposes_what_a_histogram_would(first: list[float], second: list[float]) -> None:
    reference, ours = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("x_seconds", "doc", buckets=LATENCY_BUCKETS, registry=reference)
    counted = CountedHistogram("x_seconds", "doc", LATENCY_BUCKETS)
    ours.register(counted)
    for batch in (first, second):  # two scrapes' worth of counts
        counts = [0] * (len(LATENCY_BUCKETS) + 1)
        for v in batch:
            histogram.observe(v)
            counts[bisect.bisect_left(counted.bounds, v)] += 1
        counted.add(counts, sum(batch))
    expected = [line for line in generate_latest(reference).decode().splitlines()
                if "_created" not in line]
    got = generate_latest(ours).decode().splitlines()
    assert [line for line in got if "_sum" not in line] == \
        [line for line in expected if "_sum" not in line]
    (got_sum,), (expected_sum,) = ([float(line.split()[1]) for line in lines if "_sum " in line]
                                   for lines in (got, expected))
    assert math.isclose(got_sum, expected_sum, rel_tol=1e-9)

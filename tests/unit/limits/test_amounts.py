"""Worst-case amounts: exact micro-dollars, never less than what any real usage costs."""

from __future__ import annotations

import itertools
from decimal import Decimal

from adaptive_plugin.billing import FeeRates, Usage, compute_fee
from adaptive_plugin.limits import cost_micros, worst_case

RATES = FeeRates()


def test_worst_case_of_a_pooled_and_a_byok_attempt() -> None:
    pooled = worst_case(input_tokens=1000, max_output_tokens=500, input_cost_per_token=0.15e-6,
                        output_cost_per_token=0.6e-6, rates=RATES, pooled=True)
    assert (pooled.key_cost_micros, pooled.bill_micros, pooled.tokens) == (450, 650, 1500)
    byok = worst_case(input_tokens=1000, max_output_tokens=500, input_cost_per_token=0.15e-6,
                      output_cost_per_token=0.6e-6, rates=RATES, pooled=False)
    assert (byok.key_cost_micros, byok.bill_micros) == (450, 200)  # the project pays only the fee


def test_costs_round_up_to_the_micro_dollar() -> None:
    assert cost_micros(1, 0.15e-6) == 1
    assert cost_micros(3, 2.5e-6) == 8  # 7.5
    assert cost_micros(0, 1.0) == 0 and cost_micros(10, 0.0) == 0


def test_no_real_usage_costs_more_than_its_worst_case() -> None:
    for inp, out, real_in, real_out, cached in itertools.product((1, 37, 1000), (1, 64, 4096), (0, 1, 30), (0, 5, 64), (0, 7)):
        if real_in > inp or real_out > out:
            continue
        worst = worst_case(input_tokens=inp, max_output_tokens=out, input_cost_per_token=0.15e-6,
                           output_cost_per_token=0.6e-6, rates=RATES, pooled=True)
        fee = compute_fee(Usage(input_tokens=real_in, output_tokens=real_out, cached_tokens=min(cached, real_in)),
                          key_source="pooled", cache="miss", rates=RATES, model_cost_usd=None)
        model = cost_micros(real_in, 0.15e-6) + cost_micros(real_out, 0.6e-6)
        assert fee.overhead_micros + model <= worst.bill_micros
        assert Decimal(model) <= worst.key_cost_micros

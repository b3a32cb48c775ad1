"""The claims of Paper B on a small but honest run (K = 12, m = 128, M = 100)."""

import json
import math
import re

import numpy as np
import pytest
from scipy import stats

from infomoe import channel_information
from infomoe.bank import DEFAULT_ALPHAS, BankResult, gibbs_selection, run_experiment, write_results
from infomoe.bounds import union_bound, xu_raginsky


def test_grid_spans_data_free_to_near_erm(small_result):
    r = small_result
    assert tuple(r.alphas) == DEFAULT_ALPHAS
    assert r.alphas[0] == 0.0 and r.mi_bits[0] == 0.0   # data-free: I(S;W) = 0 exactly
    assert r.mi_bits[-1] > 1.0                          # (near-ERM: see the recomputation test)


def test_information_at_most_log_k_and_nondecreasing(small_result):
    r = small_result
    assert np.all(r.mi_nats <= math.log(r.n_experts) + 1e-12)
    np.testing.assert_allclose(r.mi_bits, r.mi_nats / math.log(2))
    # Monte Carlo error scale of the plug-in I^: its bias, (K - 1) / (2M) nats
    tol = (r.n_experts - 1) / (2 * r.n_sets)
    assert np.all(np.diff(r.mi_nats) >= -tol)
    assert r.mi_nats[-1] > r.mi_nats[1] + 10 * tol


def test_xu_raginsky_above_gap_and_union_above_xu_raginsky(small_result):
    r = small_result
    expected = [xu_raginsky(i, r.m, sigma=0.5) for i in r.mi_nats]
    np.testing.assert_allclose(r.xu_raginsky, expected)
    np.testing.assert_allclose(r.xu_raginsky, np.sqrt(r.mi_nats / (2 * r.m)))
    assert np.all(r.xu_raginsky >= r.gap)
    assert r.union == pytest.approx(math.sqrt(math.log(r.n_experts) / (2 * r.m)))
    assert np.all(r.union > r.xu_raginsky)
    assert r.union_high_probability == pytest.approx(union_bound(r.n_experts, r.m, delta=0.05,
                                                                 two_sided=True))


def test_information_tracks_the_gap(small_result):
    r = small_result
    rho = stats.spearmanr(r.mi_bits, r.gap).statistic
    assert rho >= 0.9
    assert r.rank_correlation == pytest.approx(rho)
    assert r.gap[-1] > 5 * (r.gap_high[-1] - r.gap_low[-1]) / 2  # a resolved, positive gap
    # the soft and sampled rules estimate the same expected gap
    assert np.all(np.abs(r.gap - r.gap_sampled) <= (r.gap_sampled_high - r.gap_sampled_low))


def test_gap_is_exactly_zero_for_the_data_free_rule(small_result):
    # q = prior ignores S: the control-variate estimate is exactly the true value, 0
    assert small_result.gap[0] == 0.0


def test_aminian_identity(small_result):
    r = small_result
    # algebra: with the plug-in I^ and L^, predicted = raw gap + Monte Carlo term, exactly
    np.testing.assert_allclose(r.aminian_predicted, r.gap_raw + r.aminian_mc_term, atol=1e-12)
    # statistics: predicted agrees with the measured gap within its interval
    pos = r.alphas > 0
    half = (r.gap_high - r.gap_low)[pos] / 2
    assert np.all(np.abs(r.aminian_predicted[pos] - r.gap[pos]) <= half + 1e-4)
    # and the bias of the plug-in prediction, E[predicted] = (1 - 1/M) E gen, is below that
    assert np.all(r.gap[pos] / r.n_sets < half + 1e-4)


def test_closed_form_information_from_the_rows(bank_cache, digits_splits, small_result):
    """Recompute I^ at one alpha from the bank, the sets and the rule, independently."""
    from infomoe.bank import draw_training_sets, empirical_risks, train_bank
    r = small_result
    bank = train_bank(digits_splits.bank, n_experts=r.n_experts, seed=0, cache_dir=bank_cache,
                      progress=False)
    assert bank.loaded_from_cache  # the experiment's bank, not a retrain
    pool_loss = bank.losses(digits_splits.pool)
    np.testing.assert_allclose(pool_loss.mean(0), r.pool_risk)
    risks = empirical_risks(pool_loss, draw_training_sets(len(digits_splits.pool), r.m, r.n_sets,
                                                          seed=0))
    i = list(r.alphas).index(0.2)
    q = gibbs_selection(risks, 0.2, r.m)
    qbar = q.mean(0)
    h = lambda p: -np.sum(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0), axis=-1)
    assert r.mi_bits[i] == pytest.approx(h(qbar) - h(q).mean(), rel=1e-9)
    assert r.mi_bits[i] == pytest.approx(channel_information(q).mutual_information, rel=1e-9)
    # the top of the grid is near ERM: its I^ is within 10 % of the ERM rule's
    erm = gibbs_selection(risks, 1e6, r.m)
    i_erm = channel_information(erm).mutual_information
    assert 0.9 * i_erm <= r.mi_bits[-1] <= i_erm + 1e-9


def test_gate_and_accuracy_rate_curve(small_result):
    r = small_result
    c = r.curve
    acc, rate = np.asarray(c.accuracy), np.asarray(c.rate)
    assert acc.max() == pytest.approx(r.oracle_accuracy, abs=1e-6)
    assert acc.min() == pytest.approx(1 - r.test_risk.min(), abs=1e-6)  # best on the test data
    assert r.selected_accuracy <= acc.min() + 1e-12
    assert r.selected_accuracy <= r.gate_accuracy <= r.oracle_accuracy
    assert r.oracle_accuracy > r.best_test_accuracy + 0.05  # routing matters
    # no gate beats the curve: accuracy at the gate's rate is at most that of the
    # first computed curve point at a rate >= the gate's (the curve is increasing)
    order = np.argsort(rate)
    for g_rate, g_acc in ((r.gate_rate_bits, r.gate_accuracy),
                          (r.oracle_rate_bits, r.oracle_accuracy)):
        above = rate[order] >= g_rate - 1e-9
        if above.any():
            assert g_acc <= acc[order][above][0] + 1e-6
    assert 0 <= r.gate_rate_bits <= math.log2(r.n_experts)
    assert 0 <= r.oracle_rate_bits <= math.log2(r.n_experts)


def test_the_two_single_expert_accuracies_are_defined_by_their_risks(small_result):
    r = small_result
    # chosen on the pool (no test data), evaluated on the test data
    assert r.selected_expert == int(np.argmin(r.pool_risk))
    assert r.selected_accuracy == pytest.approx(1 - r.test_risk[r.selected_expert])
    # best on the test data, in hindsight: the curve's rate-0 end
    assert r.best_test_expert == int(np.argmin(r.test_risk)) == r.curve.best_expert
    assert r.best_test_accuracy == pytest.approx(1 - r.test_risk.min())
    assert r.best_test_accuracy == pytest.approx(r.curve.accuracy[0])
    assert r.best_test_accuracy >= r.selected_accuracy
    assert r.oracle_accuracy == pytest.approx(r.curve.accuracy[-1])
    # this fixture is a case where the two differ (the reason they need two names)
    assert r.selected_expert != r.best_test_expert


def test_summary_words_each_single_expert_accuracy_once(small_result):
    r = small_result
    text = r.summary()
    lines = r.accuracy_labels()
    for line in lines.values():
        assert line in text
    # the phrase "best single expert" names one number only: the best on the test data
    (number,) = set(re.findall(r"best single expert\D*?(\d\.\d+)", text))
    assert float(number) == pytest.approx(1 - r.test_risk.min(), abs=5e-4 + 1e-12)  # 3 decimals
    (number,) = re.findall(r"(\d\.\d+) \(expert (\d+)\)", lines["selected"])
    assert int(number[1]) == np.argmin(r.pool_risk)
    assert float(number[0]) == pytest.approx(1 - r.test_risk[np.argmin(r.pool_risk)], abs=5e-4)


def test_deprecated_single_expert_names_warn(small_result):
    with pytest.warns(DeprecationWarning, match="selected_expert"):
        assert small_result.best_expert == small_result.selected_expert
    with pytest.warns(DeprecationWarning, match="selected_accuracy"):
        assert small_result.best_single_accuracy == small_result.selected_accuracy


def test_experts_differ_in_what_they_get_wrong(small_result):
    r = small_result
    # similar risks, so the choice among them depends on S ...
    assert r.pool_risk.max() - r.pool_risk.min() < 0.15
    # ... but different mistakes: routing to the right expert fixes almost everything
    assert r.oracle_accuracy > 0.97


def test_results_json_and_figures(small_result, tmp_path):
    paths = write_results(small_result, tmp_path / "out")
    data = json.loads(open(paths["json"]).read())
    assert data["m"] == 128 and len(data["mi_bits"]) == len(DEFAULT_ALPHAS)
    np.testing.assert_allclose(data["gap"], small_result.gap)
    assert {"rate", "accuracy", "rate_at_d_min", "best_expert"} <= set(data["curve"])
    for key in ("selected_expert", "selected_accuracy", "best_test_expert", "best_test_accuracy"):
        assert data[key] == getattr(small_result, key)
    for key in ("bounds", "accuracy_rate"):
        with open(paths[key], "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_deterministic_from_seed(small_result, bank_cache):
    again = run_experiment(n_experts=12, m=128, n_sets=100, seed=0, cache_dir=bank_cache,
                           progress=False)
    for name in ("mi_nats", "gap", "gap_sampled", "gap_test", "xu_raginsky", "pool_risk"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small_result, name))
    assert isinstance(again, BankResult)
    with pytest.raises(Exception):
        again.m = 3  # frozen


def test_summary_and_repr(small_result):
    text = small_result.summary()
    assert "Xu-Rag." in text and "Spearman" in text and "oracle" in text
    assert len(small_result.table().splitlines()) == 2 + len(DEFAULT_ALPHAS)
    assert "BankResult(K=12" in repr(small_result)


@pytest.mark.parametrize("kw, err, match", [
    (dict(alphas=[0.0, -1.0]), ValueError, "alphas"),
    (dict(alphas=[1.0, 0.5]), ValueError, "increasing"),
    (dict(n_sets=1), ValueError, "n_sets"),
    (dict(m=0), ValueError, "`m`"),
    (dict(data=np.zeros((10, 8, 8))), TypeError, "`data`"),
    (dict(confidence_level=1.5), ValueError, "confidence_level"),
])
def test_validation(kw, err, match):
    with pytest.raises(err, match=match):
        run_experiment(progress=False, **kw)

"""Paper B end to end: bank, Gibbs selection over resampled sets, information, gaps, bounds.

The population convention.  Training sets ``S`` are drawn i.i.d. (with
replacement) from the *pool*, so the uniform distribution on the pool is the
data distribution ``mu`` of every theorem used here, and the pool risk
``L_pool(w)`` is the exact population risk.  The headline gap
``E[L_pool(W) - L_S(W)]`` is therefore the quantity that the Xu–Raginsky and
union bounds control and that the Aminian identity predicts.  The gap against
the held-out test data (``gap_test``) is reported beside it: it adds the
difference between the pool and the wider digit distribution, which no bound
here is about.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from infomoe._repr import json_ready
from infomoe._softmax import softmax
from infomoe._validate import (as_float_array, check_positive_float, check_positive_int,
                               check_unit_interval)
from infomoe.bank._data import Dataset, load_digits, split_dataset
from infomoe._progress import progress_bar
from infomoe.bank._experts import train_bank
from infomoe.bank._selection import (draw_training_sets, empirical_risks, gibbs_selection,
                                     sample_selection)

__all__ = ["BankResult", "DEFAULT_ALPHAS", "run_experiment", "write_results"]

#: Default grid of the data dependence ``alpha`` (inverse temperature ``gamma = alpha m``):
#: from the data-free rule (0) to near-ERM (3, i.e. ``gamma = 768`` for ``m = 256``).
DEFAULT_ALPHAS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 3.0)


@dataclass(frozen=True, eq=False)
class BankResult:
    """Everything the finite-bank experiment measured.

    Arrays indexed by the alpha grid have shape ``(A,)``; loss quantities
    are 0/1 risks (fractions); information is in the unit named.

    Attributes
    ----------
    alphas : ndarray
        Data-dependence grid; the Gibbs inverse temperature is ``alpha * m``.
    m, n_sets, n_experts, seed : int
        Training-set size, number of resampled sets ``M``, bank size ``K``, seed.
    dataset : str
        Data source (``"digits"`` or ``"mnist:..."``).
    n_bank, n_pool, n_test : int
        Sizes of the three disjoint splits.
    mi_bits, mi_nats : ndarray
        Closed-form ``I^(S;W) = H(qbar) - mean_j H(q(.|S_j))``.
    lautum_nats : ndarray
        Lautum information ``L^(S;W) = mean_j KL(qbar || q(.|S_j))`` (inf if a
        posterior underflows to 0).
    gap, gap_low, gap_high : ndarray
        Soft rule, pool as population: ``E[L_pool(W) - L_S(W)]`` with
        ``W ~ q(.|S)`` integrated exactly; t interval over the ``M`` sets.
        Estimated as ``mean_j sum_w (q_j(w) - pi(w)) (L_pool(w) - L_{S_j}(w))``:
        the prior term has mean exactly zero (``pi`` ignores ``S`` and
        ``E_S L_S = L_pool``), so it serves as a control variate.
    gap_raw : ndarray
        The plain estimate ``mean_j sum_w q_j(w) (L_pool(w) - L_{S_j}(w))``
        (same expectation, noisier).
    gap_sampled, gap_sampled_low, gap_sampled_high : ndarray
        The sampled rule (one ``W_j ~ q(.|S_j)`` per set), same control variate.
    gap_test, gap_test_low, gap_test_high : ndarray
        Soft rule with ``L_mu`` from the held-out test data (the interval
        ignores the test set's own sampling error, shared by all rows).
    train_risk : ndarray
        ``E[L_S(W)]`` under the soft rule.
    xu_raginsky : ndarray
        ``sqrt(2 sigma^2 I^ / m)`` (nats inside).
    union, union_high_probability : float
        ``sqrt(ln K / (2m))`` (expected gap) and the two-sided
        ``sqrt((ln K + ln(2/delta)) / (2m))``.
    aminian_predicted : ndarray
        ``(I^ + L^) / (alpha m)`` (Aminian et al. identity; 0 at ``alpha = 0``,
        the limit; NaN where ``L^`` is infinite).
    aminian_mc_term : ndarray
        ``sum_w qbar(w) (mean_j L_{S_j}(w) - L_pool(w))``.  With the plug-in
        ``I^`` and ``L^`` the identity reads, as an algebraic fact,
        ``aminian_predicted = gap_raw + aminian_mc_term``; the term is Monte
        Carlo noise with mean ``-E gen / M``, so
        ``E[aminian_predicted] = (1 - 1/M) E gen``.
    rank_correlation : float
        Spearman correlation between ``mi_bits`` and ``gap`` over the grid.
    pool_risk, test_risk : ndarray of shape (K,)
        Each expert's 0/1 risk on the pool and on the test data.
    selected_expert : int
        The expert chosen on the pool: lowest pool risk (what selection
        without the test data would deploy).
    selected_accuracy : float
        Its test accuracy, ``1 - test_risk[selected_expert]``.
    best_test_expert : int
        The best single expert on the test data, ``argmin test_risk`` (chosen
        in hindsight): the rate-0 end of ``curve`` (``curve.best_expert``).
    best_test_accuracy : float
        Its test accuracy, ``1 - curve.d_max`` (at least ``selected_accuracy``).
    oracle_accuracy : float
        Test accuracy of oracle routing (any expert right counts as right),
        ``1 - curve.d_min``.
    oracle_rate_bits : float
        ``H(T)`` of the hard oracle gate on the test data (the best expert
        when it is right, else the first right one).  The curve reaches the
        same accuracy at a lower rate, ``curve.rate_at_d_min``.
    gate_rate_bits, gate_accuracy : float
        ``I(X;T)`` and expected test accuracy of the soft confidence gate
        ``g(t|x) ∝ conf_t(x)^gate_sharpness``.
    gate_sharpness : float
        Exponent of the confidence gate.
    curve : AccuracyRateCurve
        Blahut–Arimoto accuracy–rate curve of the bank on the test data.
    confidence_level, sigma, delta : float
        Interval coverage, sub-Gaussian parameter, union-bound ``delta``.
    """

    alphas: np.ndarray
    m: int
    n_sets: int
    n_experts: int
    seed: int
    dataset: str
    n_bank: int
    n_pool: int
    n_test: int
    mi_bits: np.ndarray
    mi_nats: np.ndarray
    lautum_nats: np.ndarray
    gap: np.ndarray
    gap_low: np.ndarray
    gap_high: np.ndarray
    gap_raw: np.ndarray
    gap_sampled: np.ndarray
    gap_sampled_low: np.ndarray
    gap_sampled_high: np.ndarray
    gap_test: np.ndarray
    gap_test_low: np.ndarray
    gap_test_high: np.ndarray
    train_risk: np.ndarray
    xu_raginsky: np.ndarray
    union: float
    union_high_probability: float
    aminian_predicted: np.ndarray
    aminian_mc_term: np.ndarray
    rank_correlation: float
    pool_risk: np.ndarray
    test_risk: np.ndarray
    selected_expert: int
    selected_accuracy: float
    best_test_expert: int
    best_test_accuracy: float
    oracle_accuracy: float
    oracle_rate_bits: float
    gate_rate_bits: float
    gate_accuracy: float
    gate_sharpness: float
    curve: object = field(repr=False)
    confidence_level: float = 0.95
    sigma: float = 0.5
    delta: float = 0.05

    def __repr__(self) -> str:
        return (f"BankResult(K={self.n_experts}, m={self.m}, M={self.n_sets}, "
                f"alphas={len(self.alphas)}, I^ max={np.max(self.mi_bits):.3f} bits, "
                f"gap max={np.max(self.gap):.4f}, spearman={self.rank_correlation:.3f})")

    @property
    def best_expert(self) -> int:
        """Deprecated: use ``selected_expert`` (or ``best_test_expert``)."""
        warnings.warn("BankResult.best_expert is deprecated; use selected_expert (lowest pool "
                      "risk) or best_test_expert (best on the test data).", DeprecationWarning,
                      stacklevel=2)
        return self.selected_expert

    @property
    def best_single_accuracy(self) -> float:
        """Deprecated: use ``selected_accuracy`` (or ``best_test_accuracy``)."""
        warnings.warn("BankResult.best_single_accuracy is deprecated; use selected_accuracy "
                      "(expert chosen on the pool) or best_test_accuracy (best single expert on "
                      "the test data).", DeprecationWarning, stacklevel=2)
        return self.selected_accuracy

    def accuracy_labels(self) -> dict:
        """The test-accuracy figures, worded once for the summary and the figure.

        Returns
        -------
        dict
            ``{"best_test", "selected", "gate", "oracle_curve", "oracle_gate"}``
            -> one line each, e.g. ``"best single expert on the test data:
            0.885 (expert 13)"``.  :meth:`summary` prints these lines and
            :func:`infomoe.plot.bank_accuracy_rate` uses them as its legend,
            so the two always agree.
        """
        c = self.curve
        return {
            "best_test": (f"best single expert on the test data: {self.best_test_accuracy:.3f} "
                          f"(expert {self.best_test_expert})"),
            "selected": (f"expert chosen on the pool: {self.selected_accuracy:.3f} "
                         f"(expert {self.selected_expert})"),
            "gate": (f"soft confidence gate: {self.gate_accuracy:.3f} at "
                     f"I(X;T) = {self.gate_rate_bits:.3f} bits"),
            "oracle_curve": (f"oracle routing on the curve: {self.oracle_accuracy:.3f} at "
                             f"{float(c.rate_at_d_min):.3f} bits"),
            "oracle_gate": (f"hard oracle gate: {self.oracle_accuracy:.3f} at "
                            f"H(T) = {self.oracle_rate_bits:.3f} bits"),
        }

    def table(self) -> str:
        """The per-alpha results as a fixed-width text table."""
        head = (f"{'alpha':>7} {'I^ bits':>8} {'gap (pool)':>22} {'gap (test)':>10} "
                f"{'Xu-Rag.':>8} {'union':>7} {'Aminian':>8}")
        lines = [head, "-" * len(head)]
        for a in range(len(self.alphas)):
            ci = f"[{self.gap_low[a]:+.4f},{self.gap_high[a]:+.4f}]"
            am = self.aminian_predicted[a]
            am_s = f"{am:>+8.4f}" if np.isfinite(am) else f"{'n/a':>8}"
            lines.append(f"{self.alphas[a]:>7g} {self.mi_bits[a]:>8.4f} "
                         f"{self.gap[a]:>+7.4f} {ci:>15} {self.gap_test[a]:>+10.4f} "
                         f"{self.xu_raginsky[a]:>8.4f} {self.union:>7.4f} {am_s}")
        return "\n".join(lines)

    def summary(self) -> str:
        """The table plus the bank, gate and curve figures, as text."""
        c = self.curve
        acc = self.accuracy_labels()
        return "\n".join([
            f"finite expert bank on {self.dataset}: K = {self.n_experts} experts, m = {self.m}, "
            f"M = {self.n_sets} training sets; splits bank/pool/test = "
            f"{self.n_bank}/{self.n_pool}/{self.n_test}",
            f"expert pool risks: min {self.pool_risk.min():.3f}, median "
            f"{np.median(self.pool_risk):.3f}, max {self.pool_risk.max():.3f}; "
            f"log2 K = {math.log2(self.n_experts):.3f} bits",
            "gap = E[L_pool(W) - L_S(W)] (pool = population, soft rule, "
            f"{self.confidence_level:.0%} CI); gap (test) uses the held-out data; "
            f"Aminian = (I^ + L^)/(alpha m)",
            self.table(),
            f"Spearman(I^, gap) over the grid = {self.rank_correlation:.3f}",
            f"union bound: expected {self.union:.4f}, two-sided delta = {self.delta:g}: "
            f"{self.union_high_probability:.4f}",
            "test accuracy (held-out data; the same lines label accuracy_rate.png):",
            f"  {acc['best_test']}  <- the curve's rate-0 end (D_max)",
            f"  {acc['selected']}  <- selection without the test data",
            f"  {acc['gate']}",
            f"  {acc['oracle_curve']}  <- the curve's other end (D_min)",
            f"  {acc['oracle_gate']}",
            f"Blahut-Arimoto accuracy-rate curve: {len(np.atleast_1d(c.rate))} points, accuracy "
            f"{np.min(c.accuracy):.3f}..{np.max(c.accuracy):.3f} over rate "
            f"{np.min(c.rate):.3f}..{np.max(c.rate):.3f} bits",
        ])

    def to_dict(self) -> dict:
        """A JSON-ready dict (arrays as lists, non-finite numbers as None)."""
        out = {}
        for name in self.__dataclass_fields__:
            if name == "curve":
                continue
            out[name] = json_ready(getattr(self, name))
        c = self.curve
        out["curve"] = {k: json_ready(getattr(c, k)) for k in
                        ("rate", "distortion", "accuracy", "beta", "d_max", "d_min",
                         "rate_at_d_min", "best_expert", "converged")
                        if hasattr(c, k)}
        out["curve"]["unit"] = getattr(c, "unit", "bits")
        out["units"] = {"mi_bits": "bits", "mi_nats": "nats", "lautum_nats": "nats",
                        "gap": "0/1 risk", "rates": "bits"}
        out["population"] = ("training sets are drawn i.i.d. with replacement from the pool; "
                             "L_mu = pool risk (exact); gap_test uses held-out test data")
        return out


def _check_alphas(alphas) -> np.ndarray:
    a = as_float_array(alphas, "alphas", ndim=1)
    if (a < 0).any():
        raise ValueError(f"`alphas` must be >= 0, got {a[a < 0][0]!r}.")
    if np.any(np.diff(a) <= 0):
        raise ValueError("`alphas` must be strictly increasing (e.g. 0, 0.01, 0.1, 1).")
    return a


def _confidence_gate(proba: np.ndarray, sharpness: float) -> np.ndarray:
    """g(t|x) ∝ (max_c p_t(c|x))^sharpness, shape (n, K), in the log domain."""
    return softmax(np.log(np.clip(proba.max(axis=-1), 1e-30, 1.0)).T * sharpness)  # (n, K)


def _oracle_routing(losses: np.ndarray, best: int) -> np.ndarray:
    """Hard oracle gate: the best single expert when it is right, else the first right one."""
    right = losses < 0.5
    t = np.where(right[:, best], best, np.argmax(right, axis=1))
    t = np.where(right.any(axis=1), t, best)
    return t


def run_experiment(*, n_experts: int = 25, m: int = 256, n_sets: int = 300,
                   alphas: Sequence[float] = DEFAULT_ALPHAS, seed: int = 0,
                   data: Optional[Dataset] = None, n_bank: Optional[int] = None,
                   n_pool: Optional[int] = None, n_test: Optional[int] = None,
                   cache_dir=None, progress: bool = True, confidence_level: float = 0.95,
                   sigma: float = 0.5, delta: float = 0.05, gate_sharpness: float = 4.0,
                   betas=None) -> BankResult:
    """Run Paper B's finite-bank experiment end to end.

    Parameters
    ----------
    n_experts : int
        Bank size ``K``.
    m : int
        Training-set size.
    n_sets : int
        Number ``M`` of resampled training sets (the same sets serve every alpha).
    alphas : sequence of float
        Strictly increasing data-dependence grid, ``alpha >= 0``.
    seed : int
        Seeds the splits, the bank, the training sets and the sampled rule.
    data : Dataset, optional
        Images and labels; default the embedded :func:`load_digits`.
    n_bank, n_pool, n_test : int, optional
        Split sizes (default :func:`~infomoe.bank._data.default_split_sizes`).
    cache_dir : str or os.PathLike, optional
        Expert cache folder (``None``: no cache).
    progress : bool
        Show tqdm progress bars.
    confidence_level : float
        Coverage of the gap intervals.
    sigma : float
        Sub-Gaussian parameter for Xu–Raginsky (0.5 for 0/1 losses).
    delta : float
        Confidence parameter of the high-probability union bound.
    gate_sharpness : float
        Exponent of the soft confidence gate.
    betas : array_like, optional
        Slopes for the Blahut–Arimoto curve (default: the solver's).

    Returns
    -------
    BankResult

    Notes
    -----
    For each alpha, with ``q_j = q_alpha(.|S_j)``, ``qbar = mean_j q_j``:
    ``I^ = H(qbar) - mean_j H(q_j)``, ``L^ = mean_j KL(qbar || q_j)``
    (:func:`infomoe.channel_information`); the soft gap is the mean over
    ``j`` of ``sum_w q_j(w) (L_pool(w) - L_{S_j}(w))`` (minus the mean-zero
    prior term, see :class:`BankResult`) with a t interval
    (:func:`infomoe.bounds.generalization_gap` on the weighted per-sample
    losses); Xu–Raginsky ``sqrt(2 sigma^2 I^/m)``; union ``sqrt(ln K/(2m))``;
    Aminian ``(I^ + L^)/(alpha m)``.  Because ``S`` is drawn i.i.d. from the
    pool, ``L_pool`` is the exact population risk and the identity holds in
    expectation; for the plug-in estimates one can show
    ``E[(I^ + L^)/(alpha m)] = (1 - 1/M) E gen`` exactly.  The gate and the
    accuracy–rate curve use the 0/1 losses of the experts on the test data.

    References
    ----------
    Paper B, arXiv 2605.05278 (setting; its selection rule is reconstructed);
    Xu & Raginsky (2017), arXiv 1705.07809, Thm. 1; Aminian et al. (2021),
    arXiv 2107.13656, Thm. 1; Blahut (1972); Cover & Thomas (2006), §10.8.

    Examples
    --------
    >>> from infomoe.bank import run_experiment
    >>> r = run_experiment(n_experts=3, m=32, n_sets=20, alphas=[0, 1], progress=False,
    ...                    betas=[0.0, 1.0, 10.0])  # doctest: +SKIP
    >>> r.mi_bits[0]  # doctest: +SKIP
    0.0
    """
    from scipy import stats

    from infomoe.bounds import union_bound

    K = check_positive_int(n_experts, "n_experts")
    m = check_positive_int(m, "m")
    M = check_positive_int(n_sets, "n_sets", minimum=2)
    a_grid = _check_alphas(alphas)
    cl = check_unit_interval(confidence_level, "confidence_level")
    sigma = check_positive_float(sigma, "sigma")
    delta = check_unit_interval(delta, "delta")
    gate_sharpness = check_positive_float(gate_sharpness, "gate_sharpness", allow_zero=True)
    if data is None:
        data = load_digits()
    elif not isinstance(data, Dataset):
        raise TypeError(f"`data` must be an infomoe.bank.Dataset, got {type(data).__name__}.")
    splits = split_dataset(data, n_bank=n_bank, n_pool=n_pool, n_test=n_test, seed=seed)
    bar = progress_bar(enabled=progress, desc="finite bank", total=len(a_grid) + 3, leave=True)
    bar.set_postfix_str("experts")
    bank = train_bank(splits.bank, n_experts=K, seed=seed, cache_dir=cache_dir, progress=progress)
    bar.update()
    bar.set_postfix_str("losses")
    losses = _bank_losses(bank, splits, m=m, n_sets=M, seed=seed)
    bar.update()
    rows = []
    for i, alpha in enumerate(a_grid.tolist()):
        bar.set_postfix_str(f"alpha = {alpha:g}")
        rows.append(_alpha_fields(losses, alpha, m=m, seed=seed + 1000 * i, confidence_level=cl,
                                  sigma=sigma))
        bar.update()
    per_alpha = {name: np.array([row[name] for row in rows], dtype=np.float64) for name in rows[0]}
    bar.set_postfix_str("gate, Blahut-Arimoto")
    on_test = _test_fields(losses, gate_sharpness=gate_sharpness, betas=betas)
    bar.update()
    bar.close()
    rho = (float(stats.spearmanr(per_alpha["mi_nats"], per_alpha["gap"]).statistic)
           if len(a_grid) >= 3 else math.nan)
    return BankResult(
        alphas=a_grid, m=m, n_sets=M, n_experts=K, seed=int(seed), dataset=data.name,
        n_bank=len(splits.bank), n_pool=len(splits.pool), n_test=len(splits.test),
        mi_bits=per_alpha["mi_nats"] / math.log(2), **per_alpha,
        union=union_bound(K, m), union_high_probability=union_bound(K, m, delta=delta, two_sided=True),
        rank_correlation=rho, pool_risk=losses.pool_risk, test_risk=losses.test_risk,
        gate_sharpness=gate_sharpness, confidence_level=cl, sigma=sigma, delta=delta, **on_test)


@dataclass(frozen=True, eq=False)
class _BankLosses:
    """The bank's 0/1 losses that every stage of :func:`run_experiment` reads (``K`` experts).

    Attributes
    ----------
    pool, test : ndarray of shape (n_pool, K), (n_test, K)
        Per-sample losses on the pool and on the test data.
    pool_risk, test_risk : ndarray of shape (K,)
        Their means: each expert's pool and test risk.
    test_proba : ndarray of shape (K, n_test, C)
        Class probabilities of each expert on the test images.
    set_losses : ndarray of shape (M, m, K)
        Losses on the samples of each resampled training set.
    set_risks : ndarray of shape (M, K)
        Empirical risk of each expert on each set.
    """

    pool: np.ndarray
    test: np.ndarray
    pool_risk: np.ndarray
    test_risk: np.ndarray
    test_proba: np.ndarray
    set_losses: np.ndarray
    set_risks: np.ndarray


def _bank_losses(bank, splits, *, m: int, n_sets: int, seed: int) -> _BankLosses:
    """Evaluate the bank on the pool and the test data and draw the ``n_sets`` training sets."""
    pool = bank.losses(splits.pool)
    test_proba = bank.predict_proba(splits.test.images)
    test = (test_proba.argmax(-1) != splits.test.labels[None, :]).T.astype(np.float64)
    sets = draw_training_sets(pool.shape[0], m, n_sets, seed=seed)
    return _BankLosses(pool=pool, test=test, pool_risk=pool.mean(0), test_risk=test.mean(0),
                       test_proba=test_proba, set_losses=pool[sets],
                       set_risks=empirical_risks(pool, sets))


def _interval(name: str, estimate) -> dict:
    """``{name, name_low, name_high}`` of a :class:`~infomoe.bounds.GapEstimate`."""
    return {name: estimate.gap, f"{name}_low": estimate.low, f"{name}_high": estimate.high}


def _alpha_fields(losses: _BankLosses, alpha: float, *, m: int, seed: int,
                  confidence_level: float, sigma: float) -> dict:
    """The per-alpha fields of :class:`BankResult` at one grid point, each a float.

    ``seed`` seeds the sampled rule's draws.  The gaps subtract the prior term
    ``sum_w pi(w) (L_pool(w) - L_S(w))``, which has mean exactly 0 (``pi``
    ignores ``S`` and ``E_S L_S = L_pool``), per set as a control variate:
    same expectation, far less noise (exactly 0 at ``alpha = 0``).
    """
    from infomoe import channel_information
    from infomoe.bounds import generalization_gap, gibbs_generalization, xu_raginsky

    n_sets, K = losses.set_risks.shape
    prior = np.full(K, 1.0 / K)
    q = gibbs_selection(losses.set_risks, alpha, m)              # (M, K)
    ci = channel_information(q, base=math.e)
    mi, lautum = max(float(ci.mutual_information), 0.0), float(ci.lautum_information)
    dq = q - prior
    soft = generalization_gap(np.einsum("jsk,jk->js", losses.set_losses, dq), dq @ losses.pool.T,
                              confidence_level=confidence_level)
    raw_train = np.einsum("jsk,jk->js", losses.set_losses, q)
    on_test = generalization_gap(raw_train, q @ losses.test.T, confidence_level=confidence_level)
    w = sample_selection(q, seed=seed)                           # one W_j ~ q(.|S_j) per set
    sampled = generalization_gap(
        losses.set_losses[np.arange(n_sets), :, w] - losses.set_losses @ prior,
        (losses.pool[:, w] - (losses.pool @ prior)[:, None]).T, confidence_level=confidence_level)
    if alpha == 0.0:
        aminian = 0.0
    elif math.isfinite(lautum):
        aminian = gibbs_generalization(mi, lautum, alpha * m)
    else:
        aminian = math.nan
    return {
        "mi_nats": mi,
        "lautum_nats": lautum,
        **_interval("gap", soft),
        "gap_raw": float(np.mean(q @ losses.pool_risk) - np.mean(raw_train)),
        **_interval("gap_sampled", sampled),
        **_interval("gap_test", on_test),
        "train_risk": float(np.mean(np.sum(q * losses.set_risks, axis=1))),
        "xu_raginsky": xu_raginsky(mi, m, sigma=sigma),
        "aminian_predicted": aminian,
        # = aminian_predicted - gap_raw
        "aminian_mc_term": float(q.mean(axis=0) @ (losses.set_risks.mean(axis=0) - losses.pool_risk)),
    }


def _test_fields(losses: _BankLosses, *, gate_sharpness: float, betas) -> dict:
    """The test-data fields of :class:`BankResult`: selected expert, gates and the curve."""
    from infomoe import accuracy_rate_curve, channel_information

    K = losses.test.shape[1]
    selected = int(np.argmin(losses.pool_risk))
    gate = _confidence_gate(losses.test_proba, gate_sharpness)
    oracle = _oracle_routing(losses.test, selected)
    curve = accuracy_rate_curve(losses.test, base=2, **({} if betas is None else {"betas": betas}))
    return {
        "selected_expert": selected,
        "selected_accuracy": float(1.0 - losses.test_risk[selected]),
        # the best single expert on the test data and oracle routing are the curve's two ends:
        # taken from it, so the table and the figure cannot disagree
        "best_test_expert": int(curve.best_expert),
        "best_test_accuracy": float(1.0 - curve.d_max),
        "oracle_accuracy": float(1.0 - curve.d_min),
        "oracle_rate_bits": float(channel_information(np.eye(K)[oracle], base=2).mutual_information),
        "gate_rate_bits": float(channel_information(gate, base=2).mutual_information),
        "gate_accuracy": float(np.mean(np.sum(gate * (1.0 - losses.test), axis=1))),
        "curve": curve,
    }


def write_results(result: BankResult, out_dir="results", *, figures: bool = True) -> dict:
    """Write ``finite_bank.json`` and the two PNG figures into ``out_dir``.

    Parameters
    ----------
    result : BankResult
        From :func:`run_experiment`.
    out_dir : str or os.PathLike
        Output folder (created if needed).
    figures : bool
        Also write ``bank_bounds.png`` and ``accuracy_rate.png``.

    Returns
    -------
    dict
        ``{"json": path, "bounds": path, "accuracy_rate": path}`` (figures
        only when written).

    Examples
    --------
    >>> from infomoe.bank import write_results  # doctest: +SKIP
    >>> write_results(result, "results")        # doctest: +SKIP
    """
    if not isinstance(result, BankResult):
        raise TypeError(f"`result` must be a BankResult, got {type(result).__name__}.")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "finite_bank.json")}
    with open(paths["json"], "w") as fh:
        json.dump(result.to_dict(), fh, indent=1, allow_nan=False)
    if figures:
        from matplotlib.figure import Figure  # no pyplot: works headless, leaves no open figure

        from infomoe.plot import bank_accuracy_rate, bank_bounds

        for key, fn, name in (("bounds", bank_bounds, "bank_bounds.png"),
                              ("accuracy_rate", bank_accuracy_rate, "accuracy_rate.png")):
            fig = Figure(figsize=(6.4, 4.4))
            fn(result, ax=fig.add_subplot())
            fig.tight_layout()
            paths[key] = os.path.join(out_dir, name)
            fig.savefig(paths[key], dpi=120)
    return paths

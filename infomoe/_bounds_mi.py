"""Information-theoretic generalization bounds and the estimators they need.

Every information quantity here is in **nats** (the argument names say so:
``mi_nats``, ``cmi_nats``); convert bits with ``bits * ln 2``.  Bounds are in
the units of the loss.  The generalization error is
``gen = L_mu(W) - L_S(W)`` (population risk minus empirical risk on the
training set ``S`` of ``n`` i.i.d. samples), and "in expectation" means over
``S`` and the learning rule's randomness.
"""

from __future__ import annotations

import math

import numpy as np

from infomoe._bounds_gap import _as_masks, _check_pairs
from infomoe._validate import (
    as_float_array,
    as_labels,
    check_positive_float,
    check_positive_int,
    check_unit_interval,
)

__all__ = [
    "xu_raginsky",
    "union_bound",
    "individual_sample_bound",
    "individual_sample_mi",
    "loss_pattern_labels",
    "gibbs_generalization",
    "gibbs_generalization_from_posteriors",
    "cmi_bound",
    "samplewise_cmi_bound",
    "functional_cmi",
    "evaluated_cmi",
    "loss_difference_cmi",
]


# ----------------------------------------------------------------- helpers
def _nonneg_info(x, name: str) -> float:
    return check_positive_float(x, name, allow_zero=True)


def _nonneg_info_array(x, name: str, ndim=(1,)) -> np.ndarray:
    a = as_float_array(x, name, ndim=ndim)
    if (a < 0).any():
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise ValueError(
            f"`{name}` must be >= 0 (mutual information in nats); got {a[idx]!r} at index {idx}. "
            "A negative value is an estimator artefact: clip it with np.maximum(x, 0).")
    return a


def _batched_mi_nats(x: np.ndarray, y: np.ndarray, estimator: str) -> np.ndarray:
    """MI in nats between label arrays ``x[b], y[b]`` (shape (B, R)) for every ``b``.

    The joint tables are counted with ``np.bincount`` (one pass for the whole
    batch) and evaluated by :func:`infomoe.mutual_information_table`, so all
    estimators of the package are available.  Values are clipped at 0.
    """
    from infomoe._information import mutual_information_table

    x = np.atleast_2d(x)
    y = np.atleast_2d(y)
    nb = x.shape[0]
    kx, ky = int(x.max()) + 1, int(y.max()) + 1
    idx = (np.arange(nb)[:, None] * kx + x) * ky + y
    table = np.bincount(idx.ravel(), minlength=nb * kx * ky).reshape(nb, kx, ky)
    est = mutual_information_table(table, estimator=estimator, base=math.e)
    return np.maximum(np.asarray(est.value, dtype=float).reshape(nb), 0.0)


def _row_labels(values: np.ndarray) -> np.ndarray:
    """Integer label of every row of a 2-D array (identical rows, same label)."""
    _, inv = np.unique(values, axis=0, return_inverse=True)
    return inv.reshape(-1).astype(np.int64)


# ------------------------------------------------------------ MI bounds
def xu_raginsky(mi_nats, n, *, sigma=0.5) -> float:
    """Xu-Raginsky bound on the expected generalization error.

    Parameters
    ----------
    mi_nats : float
        ``I(S; W)`` between the training set and the learned hypothesis, in
        nats (``>= 0``).
    n : int
        Number of i.i.d. training samples.
    sigma : float, default 0.5
        Sub-Gaussian parameter of ``loss(w, Z)`` under the data distribution,
        for every ``w``.  A loss with values in ``[a, b]`` is
        ``(b - a) / 2``-sub-Gaussian (Hoeffding's lemma), so 0.5 for losses in
        ``[0, 1]``; arXiv:2602.15091 writes the bound with ``sigma = 1``.

    Returns
    -------
    float
        ``sqrt(2 sigma^2 I(S; W) / n)`` in loss units; bounds ``|E gen|``.

    Notes
    -----
    Assumptions: i.i.d. samples; ``loss(w, Z)`` sigma-sub-Gaussian for every
    ``w``.  For ``[0, 1]`` losses this is ``sqrt(I / (2 n))``.

    References
    ----------
    Xu & Raginsky, "Information-theoretic analysis of generalization
    capability of learning algorithms", NeurIPS 2017, arXiv:1705.07809,
    Thm. 1.

    Examples
    --------
    >>> round(xu_raginsky(math.log(25), 256), 4)
    0.0793
    """
    i = _nonneg_info(mi_nats, "mi_nats")
    n = check_positive_int(n, "n")
    s = check_positive_float(sigma, "sigma")
    return math.sqrt(2.0 * s * s * i / n)


def union_bound(n_hypotheses, n, *, delta=None, two_sided=False) -> float:
    """Finite-class (Hoeffding + union) bound for losses in ``[0, 1]``.

    Parameters
    ----------
    n_hypotheses : int
        ``K``, the number of hypotheses the rule may select from.
    n : int
        Number of i.i.d. training samples.
    delta : float or None, default None
        ``None``: the bound on the expected gap.  A number in ``(0, 1)``: the
        high-probability bound, holding with probability ``>= 1 - delta``
        over ``S`` simultaneously for all ``K`` hypotheses.
    two_sided : bool, default False
        Bound ``|L_mu(w) - L_S(w)|`` instead of ``L_mu(w) - L_S(w)``.

    Returns
    -------
    float
        In loss units:

        ==========  =====================================  ===============================
        delta       one-sided                              two-sided
        ==========  =====================================  ===============================
        None        ``sqrt(ln K / (2n))``                  ``sqrt(ln(2K) / (2n))``
        number      ``sqrt((ln K + ln(1/delta)) / (2n))``  ``sqrt((ln K + ln(2/delta)) / (2n))``
        ==========  =====================================  ===============================

    Notes
    -----
    Assumptions: losses in ``[0, 1]``, i.i.d. samples, the ``K`` hypotheses
    fixed before seeing ``S``; valid for *any* selection rule.  Each
    ``L_mu(w) - L_S(w)`` is ``1/(4n)``-sub-Gaussian-variance (Hoeffding);
    the expected maximum of ``N`` such variables is at most
    ``sqrt(2 ln N / (4n))`` with ``N = K`` (one-sided) or ``2K``
    (two-sided), and Hoeffding's tail plus a union bound over ``K`` gives the
    high-probability forms.  ``K = 25, n = 256``: 0.0793 (expected), 0.1162
    (two-sided, ``delta = 0.05``).

    References
    ----------
    Shalev-Shwartz & Ben-David, *Understanding Machine Learning* (2014),
    Cor. 4.6 (two-sided high-probability form); Boucheron, Lugosi & Massart,
    *Concentration Inequalities* (2013), Thm. 2.5 (expected maximum of
    sub-Gaussian variables).

    Examples
    --------
    >>> round(union_bound(25, 256), 4), round(union_bound(25, 256, delta=0.05, two_sided=True), 4)
    (0.0793, 0.1162)
    """
    k = check_positive_int(n_hypotheses, "n_hypotheses")
    n = check_positive_int(n, "n")
    if not isinstance(two_sided, (bool, np.bool_)):
        raise TypeError(f"`two_sided` must be True or False, got {two_sided!r}.")
    if delta is None:
        log_term = math.log(2 * k) if two_sided else math.log(k)
    else:
        d = check_unit_interval(delta, "delta")
        log_term = math.log(k) + (math.log(2.0 / d) if two_sided else math.log(1.0 / d))
    return math.sqrt(log_term / (2.0 * n))


# --------------------------------------------------- individual-sample MI
def individual_sample_bound(mi_nats_per_sample, *, sigma=0.5) -> float:
    """Individual-sample MI bound of Bu, Zou & Veeravalli.

    Parameters
    ----------
    mi_nats_per_sample : array_like, shape (n,)
        ``I(W; Z_i)`` for every training sample ``i``, in nats (``>= 0``).
    sigma : float, default 0.5
        Sub-Gaussian parameter of ``loss(W~, Z~)`` under ``P_W x P_Z``
        (0.5 for losses in ``[0, 1]``).

    Returns
    -------
    float
        ``(1/n) sum_i sqrt(2 sigma^2 I(W; Z_i))`` in loss units; bounds
        ``|E gen|``.

    Notes
    -----
    Assumptions: i.i.d. samples; ``loss(W~, Z~)`` sigma-sub-Gaussian with
    ``W~, Z~`` independent copies.  Never looser than :func:`xu_raginsky`:
    ``sum_i I(W; Z_i) <= I(W; S)`` for independent ``Z_i``, then Jensen.

    References
    ----------
    Bu, Zou & Veeravalli, "Tightening mutual information based bounds on
    generalization error", IEEE JSAIT 1(1), 2020, arXiv:1901.04609, Thm. 2
    (bound) and Prop. 1 (comparison with Xu-Raginsky); numbering as recalled,
    not verified here.

    Examples
    --------
    >>> round(individual_sample_bound([0.02, 0.02, 0.02]), 4)
    0.1
    """
    mi = _nonneg_info_array(mi_nats_per_sample, "mi_nats_per_sample")
    s = check_positive_float(sigma, "sigma")
    return float(np.mean(np.sqrt(2.0 * s * s * mi)))


def loss_pattern_labels(losses) -> np.ndarray:
    """Label each sample by the vector of losses every bank member has on it.

    Parameters
    ----------
    losses : array_like, shape (..., K)
        ``losses[..., k] = loss(w_k, z)`` of each of the ``K`` hypotheses on a
        sample (e.g. shape ``(repetitions, n, K)`` for the training samples of
        every repetition).  Values must be discrete (e.g. 0/1 errors).

    Returns
    -------
    ndarray of int64, shape (...)
        Equal loss vectors get equal labels (``0 .. P-1``).

    Notes
    -----
    For any selection rule whose output depends on ``S`` only through the
    bank's losses on ``S`` (e.g. the Gibbs rule), ``W`` is conditionally
    independent of ``Z_i`` given its loss vector ``Lambda_i``, so
    ``I(W; Z_i) = I(W; Lambda_i)``: these labels are a sufficient statistic
    for :func:`individual_sample_mi`.

    Examples
    --------
    >>> loss_pattern_labels([[0, 1], [1, 1], [0, 1]]).tolist()
    [0, 1, 0]
    """
    a = as_float_array(losses, "losses", min_ndim=1)
    lead = a.shape[:-1]
    labels = _row_labels(a.reshape(-1, a.shape[-1]))
    return labels.reshape(lead)


def individual_sample_mi(selected, sample_labels, *, pooled=False, estimator="plugin"):
    """Estimate ``I(W; Z_i)`` for a finite bank from resampled training sets.

    Parameters
    ----------
    selected : array_like of int, shape (repetitions,)
        Index of the hypothesis selected in each repetition (each repetition
        draws a fresh i.i.d. training set).
    sample_labels : array_like of int, shape (repetitions, n)
        A discrete label of the ``i``-th training sample of each repetition
        that is *sufficient* for the selection (the pool index of the sample,
        or :func:`loss_pattern_labels` of the bank's losses on it).
    pooled : bool, default False
        If True, pool the ``repetitions * n`` pairs ``(W_r, label_ri)`` into
        one estimate, valid when the rule is invariant to the order of ``S``
        (then every ``I(W; Z_i)`` is the same); much less variance.
    estimator : str, default "plugin"
        MI estimator passed to :func:`infomoe.mutual_information`.

    Returns
    -------
    ndarray, shape (n,)
        Estimated ``I(W; Z_i)`` in nats, clipped at 0 (bias-corrected
        estimators can dip below); with ``pooled`` every entry is the pooled
        value.  Feed it to :func:`individual_sample_bound`.

    Notes
    -----
    Pairs ``(W_r, Z_ri)`` over repetitions ``r`` are i.i.d. draws from the
    joint law of ``(W, Z_i)``, so the plug-in estimate is consistent with bias
    about ``(K - 1)(P - 1) / (2 R)`` nats under independence (Panzeri & Treves
    1996), ``P`` the number of distinct labels.  If the labels are *not*
    sufficient, the estimate targets ``I(W; label_i) <= I(W; Z_i)`` (data
    processing) and the resulting bound is not guaranteed.

    References
    ----------
    Bu, Zou & Veeravalli (2020), arXiv:1901.04609 (the quantity); no
    estimator is given there.

    Examples
    --------
    >>> w = np.array([0, 1, 0, 1])
    >>> z = np.array([[0, 1], [1, 1], [0, 0], [1, 0]])
    >>> mi = individual_sample_mi(w, z)
    >>> np.round(mi, 4).tolist()
    [0.6931, 0.0]
    """
    w = as_labels(selected, "selected")
    z = np.asarray(sample_labels)
    if z.ndim != 2:
        raise ValueError(f"`sample_labels` must be 2-D (repetitions, n), got shape {z.shape}.")
    if z.shape[0] != w.shape[0]:
        raise ValueError(f"`sample_labels` must have one row per repetition ({w.shape[0]}), "
                         f"got {z.shape[0]} rows.")
    if not isinstance(pooled, (bool, np.bool_)):
        raise TypeError(f"`pooled` must be True or False, got {pooled!r}.")
    zl = as_labels(z.reshape(-1), "sample_labels").reshape(z.shape)
    n = zl.shape[1]
    if pooled:
        v = _batched_mi_nats(np.repeat(w, n)[None], zl.reshape(1, -1), estimator)[0]
        return np.full(n, v)
    return _batched_mi_nats(np.broadcast_to(w, zl.T.shape), zl.T, estimator)


# ------------------------------------------------------------- Gibbs rule
def gibbs_generalization(mi_nats, lautum_nats, gamma) -> float:
    """Exact expected generalization error of a Gibbs rule (Aminian et al.).

    Parameters
    ----------
    mi_nats : float
        ``I(S; W)`` in nats (``>= 0``).
    lautum_nats : float
        Lautum information ``L(S; W) = D(P_S x P_W || P_{S,W})`` in nats
        (``>= 0``).
    gamma : float
        Inverse temperature ``gamma > 0`` of the rule
        ``P(w | s) ∝ pi(w) exp(-gamma L_s(w))`` with ``L_s`` the *average*
        empirical loss.  In the parametrisation
        ``q ∝ exp(-alpha m L_S)`` of Paper B, ``gamma = alpha * m``.

    Returns
    -------
    float
        ``E gen = (I(S; W) + L(S; W)) / gamma`` in loss units (an equality,
        not a bound).

    Notes
    -----
    ``I + L`` is the symmetrized KL information ``I_SKL(S; W)``.  Assumptions:
    i.i.d. samples and the prior ``pi`` not depending on ``S``; the loss need
    not be bounded (only integrable).  Estimate ``I`` and ``L`` from posterior
    rows with :func:`gibbs_generalization_from_posteriors`.

    References
    ----------
    Aminian, Bu, Toni, Rodrigues & Wornell, "An exact characterization of the
    generalization error for the Gibbs algorithm", NeurIPS 2021,
    arXiv:2107.13656, Thm. 1.

    Examples
    --------
    >>> gibbs_generalization(0.2, 0.3, gamma=10.0)
    0.05
    """
    i = _nonneg_info(mi_nats, "mi_nats")
    lam = _nonneg_info(lautum_nats, "lautum_nats")
    g = check_positive_float(gamma, "gamma")
    return (i + lam) / g


def gibbs_generalization_from_posteriors(posteriors, gamma, *, weights=None) -> float:
    """Aminian identity evaluated from Gibbs posterior rows ``q(w | S_j)``.

    Parameters
    ----------
    posteriors : array_like, shape (sets, K)
        Row ``j`` is the Gibbs posterior over the ``K`` hypotheses for
        training set ``S_j`` (each row sums to 1).
    gamma : float
        Inverse temperature (see :func:`gibbs_generalization`).
    weights : array_like, shape (sets,), optional
        Probabilities of the training sets (exact enumeration); default
        uniform (``S_j`` drawn i.i.d.).

    Returns
    -------
    float
        ``(I^ + L^) / gamma`` in loss units, with ``I^`` and the lautum
        information ``L^`` from :func:`infomoe.channel_information` in nats.

    Notes
    -----
    ``I^ = H(qbar) - mean_j H(q_j)`` and
    ``L^ = mean_j sum_w qbar(w) ln(qbar(w) / q_j(w))`` with
    ``qbar = mean_j q_j``.  With exact weights over all training sets the
    result is exact; with ``M`` sampled sets both are consistent with
    ``O(1/M)`` bias.

    References
    ----------
    Aminian et al. (2021), arXiv:2107.13656, Thm. 1; lautum information:
    Palomar & Verdú, "Lautum information", IEEE Trans. IT 54(3), 2008, Def. 1
    as recalled.

    Examples
    --------
    >>> q = np.array([[0.9, 0.1], [0.1, 0.9]])
    >>> round(gibbs_generalization_from_posteriors(q, gamma=4.0), 4)
    0.2197
    """
    from infomoe._information import channel_information

    g = check_positive_float(gamma, "gamma")
    ci = channel_information(posteriors, weights=weights, base=math.e)
    return (max(float(ci.mutual_information), 0.0) + max(float(ci.lautum_information), 0.0)) / g


# ------------------------------------------------------------------ CMI
def cmi_bound(cmi_nats, n) -> float:
    """Steinke-Zakynthinou conditional-MI bound for losses in ``[0, 1]``.

    Parameters
    ----------
    cmi_nats : float
        ``CMI = I(W; U | Z~)`` in nats, ``Z~`` the ``n x 2`` supersample and
        ``U`` the ``n`` mask bits choosing the training set.  It never exceeds
        ``n ln 2`` nor ``H(W)`` (``ln K`` for a bank of ``K``).
    n : int
        Training-set size (number of supersample pairs).

    Returns
    -------
    float
        ``sqrt(2 CMI / n)`` in loss units; bounds ``|E gen|``.

    Notes
    -----
    Assumptions: loss in ``[0, 1]``; i.i.d. supersample; ``U`` uniform and
    independent of ``Z~``.  Derivation (constant checked):
    ``gen = (1/n) sum_i (-1)^{U_i} Delta_i`` in expectation, ``Delta_i`` the
    loss difference of pair ``i``; under ``P_{W,Z~} x P_U`` this is a sum of
    ``n`` independent terms in ``[-1/n, 1/n]`` with mean 0, hence
    ``1/n``-sub-Gaussian, and the Donsker-Varadhan inequality gives
    ``sqrt(2 I(W, Z~; U) / n) = sqrt(2 CMI / n)``.

    References
    ----------
    Steinke & Zakynthinou, "Reasoning about generalization via conditional
    mutual information", COLT 2020, arXiv:2001.09122 (the expected
    generalization bound of §1, Thm. 1.1/2 in the arXiv version; the number
    is not verified here, the constant is by the derivation above).

    Examples
    --------
    >>> round(cmi_bound(math.log(2), 100), 4)
    0.1177
    """
    c = _nonneg_info(cmi_nats, "cmi_nats")
    n = check_positive_int(n, "n")
    return math.sqrt(2.0 * c / n)


def samplewise_cmi_bound(mi_nats_per_pair) -> float:
    """Samplewise supersample bound ``mean sqrt(2 I_i)`` (f-, e-, ld-CMI).

    Parameters
    ----------
    mi_nats_per_pair : array_like, shape (n,) or (supersamples, n)
        Per-pair information in nats from :func:`functional_cmi`,
        :func:`evaluated_cmi` or :func:`loss_difference_cmi`; a 2-D array
        holds the conditional (per fixed supersample) values, one row per
        supersample.

    Returns
    -------
    float
        ``(1/n) sum_i sqrt(2 I_i)`` (averaged over rows for 2-D input, i.e.
        ``E_{Z~}`` outside the square root) in loss units; bounds ``|E gen|``.

    Notes
    -----
    Assumptions: loss in ``[0, 1]``, i.i.d. supersample, uniform masks.
    Derivation (constant checked): ``E gen = (1/n) sum_i E[(-1)^{U_i} Delta_i]``
    with ``Delta_i in [-1, 1]`` the loss difference of pair ``i``; under the
    product of the marginals ``(-1)^{U'} Delta`` has mean 0 and is
    1-sub-Gaussian, so Donsker-Varadhan gives ``sqrt(2 I(Delta_i; U_i))``,
    and ``I(Delta_i; U_i) <= I(L_i; U_i) <= I(f_i; U_i | Z~_i)`` by data
    processing (``L_i`` the loss pair, ``f_i`` the model's outputs on the
    pair).  Hence, in order of tightness: ld-CMI <= e-CMI <= f-CMI.

    References
    ----------
    Harutyunyan, Raginsky, Ver Steeg & Galstyan, "Information-theoretic
    generalization bounds for black-box learning algorithms", NeurIPS 2021,
    arXiv:2110.01584, Thm. 2.2 (samplewise f-CMI); Hellström & Durisi, "A
    new family of generalization bounds using samplewise evaluated CMI",
    NeurIPS 2022, arXiv:2210.06422 (e-CMI); Wang & Mao, "Tighter
    information-theoretic generalization bounds from supersamples", ICML 2023,
    arXiv:2302.02432, Thm. 3.1 (ld-CMI).  Theorem numbers as recalled, not
    verified here; the constant 2 follows from the derivation above and
    matches the reference code of Harutyunyan et al. (``np.sqrt(2 * mi)``).

    Examples
    --------
    >>> round(samplewise_cmi_bound([0.005, 0.005]), 4)
    0.1
    """
    mi = _nonneg_info_array(mi_nats_per_pair, "mi_nats_per_pair", ndim=(1, 2))
    return float(np.mean(np.sqrt(2.0 * mi)))


def _pairwise_mask_mi(masks, symbols_fn, values, name, supersample_ids, pooled, estimator):
    u = _as_masks(masks)
    _check_pairs(values, u, name)
    reps, n = u.shape
    if not isinstance(pooled, (bool, np.bool_)):
        raise TypeError(f"`pooled` must be True or False, got {pooled!r}.")
    # one symbol per (repetition, pair), labelled over a common alphabet
    sym = _row_labels(symbols_fn(values).reshape(reps * n, -1)).reshape(reps, n)
    if supersample_ids is None:
        groups = [np.arange(reps)]
    else:
        ids = as_labels(supersample_ids, "supersample_ids")
        if ids.shape[0] != reps:
            raise ValueError(f"`supersample_ids` must have one entry per repetition ({reps}), "
                             f"got {ids.shape[0]}.")
        groups = [np.flatnonzero(ids == g) for g in np.unique(ids)]
    out = np.empty((len(groups), n))
    for gi, rows in enumerate(groups):
        if rows.size < 2:
            raise ValueError("every supersample needs at least 2 repetitions (mask draws); "
                             f"supersample {gi} has {rows.size}.")
        if pooled:
            out[gi, :] = _batched_mi_nats(sym[rows].reshape(1, -1), u[rows].reshape(1, -1),
                                          estimator)[0]
        else:
            out[gi, :] = _batched_mi_nats(sym[rows].T, u[rows].T, estimator)
    return out[0] if supersample_ids is None else out


def _unit_losses(losses) -> np.ndarray:
    vals = as_float_array(losses, "losses", ndim=3)
    if ((vals < 0) | (vals > 1)).any():
        bad = vals[(vals < 0) | (vals > 1)][0]
        raise ValueError(
            f"`losses` must lie in [0, 1] (the supersample bounds assume it), got {bad!r}; "
            "rescale a loss with range [a, b] by (loss - a) / (b - a) and the bound by (b - a).")
    return vals


def _pair_symbols(pairs: np.ndarray) -> np.ndarray:
    return pairs


def _difference_symbols(pairs: np.ndarray) -> np.ndarray:
    return pairs[:, :, 1] - pairs[:, :, 0]


_CMI_PARAMS = """
    supersample_ids : array_like of int, shape (repetitions,), optional
        Which supersample ``Z~`` each repetition used.  If given, the
        information is estimated *conditionally* on ``Z~`` (separately for
        every supersample, needing several mask draws each) and a
        ``(supersamples, n)`` array is returned; if omitted, the
        unconditional ``I(. ; U_i)`` over all repetitions is returned.
    pooled : bool, default False
        Pool the ``n`` pairs into one estimate (valid when the learning rule
        is invariant to the order of the training set, so every pair has the
        same information); every entry then holds the pooled value.
    estimator : str, default "plugin"
        MI estimator passed to :func:`infomoe.mutual_information`."""


def functional_cmi(masks, outputs, *, supersample_ids=None, pooled=False, estimator="plugin"):
    """Per-pair f-CMI ``I(f(W, Z~_i); U_i [| Z~_i])`` from supersample runs.

    Parameters
    ----------
    masks : array_like of {0, 1}, shape (repetitions, n)
        Mask bits ``U``; repetition ``r`` trained on ``Z~_{i, U_ri}``.
    outputs : array_like, shape (repetitions, n, 2, ...)
        Discrete outputs of the trained model on both members of every pair
        (e.g. predicted classes).  Each pair's block is one joint symbol.
    %(params)s

    Returns
    -------
    ndarray, shape (n,) or (supersamples, n)
        Per-pair information in nats (clipped at 0); pass it to
        :func:`samplewise_cmi_bound`.

    Notes
    -----
    Plug-in MI between the mask bit and the joint output symbol over the
    repetitions, as in the reference code of Harutyunyan et al. (their
    ``estimate_fcmi_bound_classification``).  The conditional form (with
    ``supersample_ids``) is the paper's quantity; the unconditional form is
    ``I(f_i; U_i) <= I(f_i; U_i | Z~_i)`` and still valid for the
    loss-based bounds (see :func:`samplewise_cmi_bound`) whenever the loss
    pair is a function of the output pair alone.  Plug-in bias is about
    ``(A - 1) / (2 R)`` nats for ``A`` distinct symbols and ``R`` draws.

    References
    ----------
    Harutyunyan et al. (2021), arXiv:2110.01584, §2 (f-CMI), Thm. 2.2 as
    recalled.

    Examples
    --------
    >>> u = np.array([[0], [1], [0], [1]])
    >>> preds = np.array([[[1, 0]], [[0, 1]], [[1, 0]], [[0, 1]]])
    >>> round(float(functional_cmi(u, preds)[0]), 4)
    0.6931
    """
    vals = np.asarray(outputs)
    if vals.ndim < 3:
        raise ValueError(f"`outputs` must have shape (repetitions, n, 2, ...), got {vals.shape}.")
    vals = as_float_array(vals, "outputs")
    return _pairwise_mask_mi(masks, _pair_symbols, vals, "outputs", supersample_ids, pooled,
                             estimator)


def evaluated_cmi(masks, losses, *, supersample_ids=None, pooled=False, estimator="plugin"):
    """Per-pair evaluated CMI ``I(L_i; U_i)`` (e-CMI) of the loss pairs.

    Parameters
    ----------
    masks : array_like of {0, 1}, shape (repetitions, n)
        Mask bits ``U``.
    losses : array_like, shape (repetitions, n, 2)
        Discrete losses in ``[0, 1]`` (e.g. 0/1 errors) of the trained model
        on both members of every pair; the pair ``L_i`` is one joint symbol.
    %(params)s

    Returns
    -------
    ndarray, shape (n,) or (supersamples, n)
        Per-pair information in nats; pass it to :func:`samplewise_cmi_bound`.

    Notes
    -----
    Assumptions for the bound: losses in ``[0, 1]``.  The estimator needs
    discrete losses (a few distinct values); bin continuous losses first.

    References
    ----------
    Hellström & Durisi (2022), arXiv:2210.06422 (samplewise e-CMI; theorem
    number not verified here); Harutyunyan et al. (2021), arXiv:2110.01584.

    Examples
    --------
    >>> u = np.array([[0], [1], [0], [1]])
    >>> l = np.array([[[0, 1]], [[1, 0]], [[0, 0]], [[0, 0]]])
    >>> round(float(evaluated_cmi(u, l)[0]), 4)
    0.3466
    """
    vals = _unit_losses(losses)
    return _pairwise_mask_mi(masks, _pair_symbols, vals, "losses", supersample_ids, pooled,
                             estimator)


def loss_difference_cmi(masks, losses, *, supersample_ids=None, pooled=False, estimator="plugin"):
    """Per-pair loss-difference information ``I(Delta_i; U_i)`` (ld-CMI).

    Parameters
    ----------
    masks : array_like of {0, 1}, shape (repetitions, n)
        Mask bits ``U``.
    losses : array_like, shape (repetitions, n, 2)
        Discrete losses in ``[0, 1]`` on both members of every pair;
        ``Delta_i = losses[:, i, 1] - losses[:, i, 0]``.
    %(params)s

    Returns
    -------
    ndarray, shape (n,) or (supersamples, n)
        Per-pair information in nats; never larger than
        :func:`evaluated_cmi` on the same data (data processing holds exactly
        for the plug-in estimate).  Pass it to :func:`samplewise_cmi_bound`.

    References
    ----------
    Wang & Mao, "Tighter information-theoretic generalization bounds from
    supersamples", ICML 2023, arXiv:2302.02432, Thm. 3.1 as recalled (not
    verified here).

    Examples
    --------
    >>> u = np.array([[0], [1], [0], [1]])
    >>> l = np.array([[[0, 1]], [[1, 0]], [[0, 0]], [[1, 1]]])
    >>> round(float(loss_difference_cmi(u, l)[0]), 4)
    0.3466
    """
    vals = _unit_losses(losses)
    return _pairwise_mask_mi(masks, _difference_symbols, vals, "losses", supersample_ids, pooled,
                             estimator)


for _f in (functional_cmi, evaluated_cmi, loss_difference_cmi):
    _f.__doc__ = _f.__doc__.replace("    %(params)s", _CMI_PARAMS.strip("\n"))
del _f

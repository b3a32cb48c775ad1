"""Paper B by hand: the library calls behind ``infomoe demo``.

Trains (or loads from the expert cache that ``infomoe demo`` uses too:
$INFOMOE_CACHE or ~/.cache/infomoe) a bank of CNN experts on the bundled digits, applies the Gibbs selection rule to resampled training sets, and
compares I^(S;W), the measured generalization gap and the bounds.  Writes
``results/finite_bank_example.png``.  Run:  python examples/finite_bank.py
"""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from infomoe import accuracy_rate_curve, channel_information  # noqa: E402
from infomoe.bank import (draw_training_sets, empirical_risks, gibbs_selection,  # noqa: E402
                          default_cache_dir, load_digits, split_dataset, train_bank)
from infomoe.bounds import (generalization_gap, gibbs_generalization, union_bound,  # noqa: E402
                            xu_raginsky)
from infomoe.plot import accuracy_rate  # noqa: E402

K, m, M = 12, 256, 200

# 1. data: three disjoint splits (bank training / pool to draw S from / held-out test)
splits = split_dataset(load_digits(), seed=0)

# 2. the bank, cached on disk: a second run loads it instead of retraining
bank = train_bank(splits.bank, n_experts=K, seed=0, cache_dir=default_cache_dir())
pool_loss = bank.losses(splits.pool)            # (n_pool, K) 0/1 losses
test_loss = bank.losses(splits.test)            # (n_test, K)
pool_risk = pool_loss.mean(axis=0)              # exact population risk: S is drawn from the pool

# 3. M training sets of m samples, i.i.d. from the pool, and their empirical risks
sets = draw_training_sets(len(splits.pool), m, M, seed=0)
risks = empirical_risks(pool_loss, sets)        # (M, K)

print(f"{'alpha':>6} {'I^ bits':>8} {'gap':>8} {'Aminian':>8} {'Xu-Rag.':>8} {'union':>7}")
for alpha in (0.0, 0.02, 0.1, 0.5, 3.0):
    q = gibbs_selection(risks, alpha, m)                        # rows q(W | S_j)
    info = channel_information(q, base=math.e)                  # I^(S;W) and lautum, nats
    train_q = np.einsum("jsk,jk->js", pool_loss[sets], q)       # q-weighted training losses
    gap = generalization_gap(train_q, q @ pool_loss.T)          # E[L_pool(W) - L_S(W)]
    predicted = (gibbs_generalization(info.mutual_information, info.lautum_information,
                                      alpha * m) if alpha > 0 else 0.0)
    print(f"{alpha:>6g} {info.mutual_information / math.log(2):>8.4f} {gap.gap:>+8.4f} "
          f"{predicted:>+8.4f} {xu_raginsky(info.mutual_information, m):>8.4f} "
          f"{union_bound(K, m):>7.4f}")

# 4. routing: the accuracy-rate curve of the bank on held-out data (Blahut-Arimoto)
curve = accuracy_rate_curve(test_loss)
# Two different "single expert" numbers; say which is which (as `infomoe demo` does):
test_risk = test_loss.mean(axis=0)
chosen = int(np.argmin(pool_risk))             # selection without the test data
print(f"best single expert on the test data: {1 - test_risk.min():.3f} "
      f"(expert {int(np.argmin(test_risk))}), the curve's rate-0 end")
print(f"expert chosen on the pool: {1 - test_risk[chosen]:.3f} (expert {chosen})")
print(f"oracle routing on the curve: {1 - curve.d_min:.3f} at {curve.rate_at_d_min:.3f} bits")
fig, ax = plt.subplots()
accuracy_rate(curve, ax=ax)
os.makedirs("results", exist_ok=True)
fig.savefig("results/finite_bank_example.png", dpi=110)
print("wrote results/finite_bank_example.png")

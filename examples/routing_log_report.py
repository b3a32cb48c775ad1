"""Record a Hugging Face MoE model's routing and analyse it: the routing-log workflow.

Builds a tiny random-initialised OLMoE on the CPU (no download), feeds it token
ids from two synthetic "domains", records every router decision with
:class:`infomoe.logs.export.RoutingRecorder` (forward hooks; the model is not
modified), then streams the log once with :func:`infomoe.logs.analyze_log` and
prints per-layer load balance and information.  For a real model, replace
``tiny_model`` by ``AutoModelForCausalLM.from_pretrained(...)``.

Needs the ``torch`` extra:  pip install "infomoe[torch]"
Run:  python examples/routing_log_report.py
"""

import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from infomoe.logs import analyze_log, open_log  # noqa: E402
from infomoe.logs.export import RoutingRecorder, tiny_model  # noqa: E402
from infomoe.plot import layer_information, load_heatmap  # noqa: E402

model = tiny_model("olmoe", seed=0)
vocab = model.config.vocab_size
rng = np.random.default_rng(0)
log_dir = os.path.join(tempfile.mkdtemp(), "olmoe.log")

# two domains that use different halves of the vocabulary: routing should depend on the domain
with RoutingRecorder(model, log_dir, flush_tokens=4096) as rec, torch.no_grad():
    for step in range(8):
        domain = rng.integers(0, 2, size=16)                       # one label per sequence
        low = np.where(domain[:, None] == 0, 0, vocab // 2)
        ids = torch.as_tensor(low + rng.integers(0, vocab // 2, size=(16, 64)))
        rec.set_batch(label=domain)
        model(input_ids=ids)

log = open_log(log_dir, verify=True)
print(f"recorded {log.num_tokens} tokens over {len(log.layers)} MoE layers "
      f"in {len(log.shards)} shards")
report = analyze_log(log, progress=False)
# every information value with its 95% interval; * = above its permutation null, ns = noise
print(f"{'layer':>5} {'load CV':>8} {'MaxVio':>7} {'I(X;T) gate':>16} {'I(token;E)':>16} {'I(label;E)':>16}"
      f"  [{report.unit}]")
for i, layer in enumerate(log.layers):
    print(f"{layer.layer_id:>5} {report.load_cv[i]:>8.3f} {report.max_violation[i]:>7.2f} "
          f"{report.info_cell('gate_information', i):>16} {report.info_cell('mi_token', i):>16} "
          f"{report.info_cell('mi_label', i):>16}")
print("I(expert_l; expert_l+1):", [report.info_cell("mi_transition", i) for i in range(len(report.mi_transition))])

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
load_heatmap(report, ax=axes[0])
layer_information(report, ax=axes[1])
os.makedirs("results", exist_ok=True)
fig.tight_layout()
fig.savefig("results/routing_log_report.png", dpi=110)
print("wrote results/routing_log_report.png")

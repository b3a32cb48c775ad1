"""Paper B: a finite bank of CNN experts, a Gibbs selection rule, and the experiment.

Facade convention (:mod:`infomoe._facade`): eager.  Importing this package is
cheap; JAX and optax load only when experts are trained or evaluated.
"""

from infomoe import _facade
from infomoe.bank._data import Dataset as Dataset
from infomoe.bank._data import Splits as Splits
from infomoe.bank._data import load_digits as load_digits
from infomoe.bank._data import load_mnist as load_mnist
from infomoe.bank._data import split_dataset as split_dataset
from infomoe.bank._experts import ExpertBank as ExpertBank
from infomoe.bank._experts import ExpertSpec as ExpertSpec
from infomoe.bank._experts import default_cache_dir as default_cache_dir
from infomoe.bank._experts import default_specs as default_specs
from infomoe.bank._experts import train_bank as train_bank
from infomoe.bank._selection import draw_training_sets as draw_training_sets
from infomoe.bank._selection import empirical_risks as empirical_risks
from infomoe.bank._selection import gibbs_selection as gibbs_selection
from infomoe.bank._selection import sample_selection as sample_selection
from infomoe.bank._experiment import DEFAULT_ALPHAS as DEFAULT_ALPHAS
from infomoe.bank._experiment import BankResult as BankResult
from infomoe.bank._experiment import run_experiment as run_experiment
from infomoe.bank._experiment import write_results as write_results

__all__ = _facade.public_names(globals())

"""The calibration of the effect sizes of studies/mechanisms.yml, on the oracle alone (issue #24).

For each mechanism: the effect at which the oracle's population AUC is 0.85 (gigassl.cohorts.featsim.calibrated_effect, the
inverse of its closed form), then the check that the design asks for: a logistic regression on the oracle of 100
training slides, its AUC on 2,000 independent test slides, over 20 generator seeds (draws only: no tile, no method
under study). Prints the rows recorded in studies/mechanisms.yml (calibration). About 30 s on one core.

    python studies/calibrate_oracle.py
"""

import numpy as np

from gigassl.cohorts import featsim
from gigassl.config import MECHANISMS, FeatSimConfig

TARGET, N_TRAIN, N_TEST, SEEDS = 0.85, 100, 2000, range(20)

if __name__ == "__main__":
    for mechanism in MECHANISMS:
        effect = featsim.calibrated_effect(mechanism, TARGET)
        fitted = [featsim.oracle_fit_auc(FeatSimConfig(mechanism=mechanism, effect=effect, n_train=N_TRAIN,
                                                       n_test=N_TEST, seed=seed)) for seed in SEEDS]
        print(f"{mechanism}: {{effect: {effect:.4f}, population_auc: {featsim.oracle_auc(mechanism, effect):.3f}, "
              f"fitted_auc_mean: {np.mean(fitted):.4f}, fitted_auc_sd: {np.std(fitted, ddof=1):.4f}, "
              f"fitted_auc_range: [{min(fitted):.3f}, {max(fitted):.3f}]}}")

"""The results page a reader can read (issue #23, items 3, 5 and 6): the smallest effect the run can decide, the
compact tables, the figure of every claim, the book's first sentences, and the ImageNet arms set against the MoCo
arm that differs from them in one factor, with the AverageMIL controls beside them."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gigassl.book import experiments, paper, results, verdicts
from gigassl.book.figures import claims_figure


def _claims(protocol: str = "fair") -> pd.DataFrame:
    """Six claim rows of :func:`gigassl.book.paper.claim_row`, one not testable (its arm at chance) and a Speed row."""
    rows = [paper.claim_row("Table 2", "Giga-SSL - AverageMIL", "a", "100%", 0.05, 0.06, se=0.01, df=9,
                            protocol=protocol, ratio=0.5),
            paper.claim_row("Table 2", "Giga-SSL - DeepMIL", "a", "100%", 0.01, 0.0, se=0.02, df=9,
                            protocol=protocol, ratio=0.5),
            paper.claim_row("Table 3", "NS - Giga-SSL", "b", "100%", -0.03, -0.01, se=0.03, df=4, protocol=protocol,
                            ratio=0.5),
            paper.claim_row("Fig. 3C", "sparseconv: AUC(last) - AUC(first)", "b", "100%", "no decrease", 0.02,
                            se=0.005, df=4, protocol=protocol, ratio=0.5),
            paper.claim_row("Table 3", "Giga-SSLim - Giga-SSL", "c", "100%", -0.004, 0.2, se=0.001, df=9,
                            protocol=protocol, ratio=0.5, arms={"imagenet": (0.5, 0.4, 0.6)})]
    claims = pd.DataFrame(rows)
    claims = verdicts.not_testable(claims, pd.DataFrame(columns=["representation", "effective_rank"]),
                                   lambda artefact, arm: None)
    speed = paper.claim_row("Speed", "DeepMIL / probe", "all", "100%", float(np.log(7200)), 4.0, se=0.1, df=9,
                            protocol=protocol, ratio=0.5, scale="log ratio")
    return verdicts.correct(pd.concat([claims, pd.DataFrame([speed])], ignore_index=True))


def test_the_smallest_decidable_effect_is_the_half_width_of_each_counted_interval():
    claims = _claims()
    assert claims.loc[4, "verdict"] == verdicts.NOT_TESTABLE and not claims.loc[4, "counted"]
    got = results.smallest_decidable(claims)
    counted = claims[claims["counted"] & (claims["scale"] == "AUC difference")]
    half = stats.t.ppf(0.975, counted["df"].astype(float)) * counted["se"].astype(float)  # direct
    assert got["n"] == 4 == len(half)
    assert got["median"] == pytest.approx(np.median(half), rel=1e-9)
    assert (got["low"], got["high"]) == pytest.approx((half.min(), half.max()), rel=1e-9)
    # the interval each row carries is run +- that half-width
    assert ((counted["ci_high"] - counted["run"]).to_numpy() == pytest.approx(half.to_numpy(), rel=1e-9))
    # the paper's numeric effects smaller than their row's half-width: 0.01 (half 0.045) and 0.03 (half 0.083)
    assert got["paper_numeric"] == 3 and got["paper_below"] == 2
    assert got["paper_median"] == pytest.approx(0.03)
    said = results.resolution_sentence(got, "fair")
    assert f"{np.median(half):.3f} AUC at the median over the 4 counted comparisons" in said
    assert "For 2 of the 3 whose paper claim is a number" in said and "SSL training seed" in said
    empty = results.smallest_decidable(claims.assign(counted=False))
    assert empty["n"] == 0 and "resolves nothing" in results.resolution_sentence(empty, "fair")


def test_the_first_page_says_what_was_found_and_what_cannot_be_resolved():
    result = results.Results(pd.DataFrame(), _claims(), pd.DataFrame(), pd.DataFrame())
    text = results.intro_text(result, "fair")
    counts = paper.verdict_counts(result.under("fair"))
    assert counts["counted"] == 5 and counts[verdicts.NOT_TESTABLE] == 1  # not testable: left out of the counts
    assert text.startswith(f"Of the {counts['counted']} comparisons with the paper that this run can test (fair "
                           f"probe protocol), {counts['agree']} agree")
    assert "1 more are not testable here" in text
    r = results.smallest_decidable(result.under("fair"))
    assert f"smaller than about {r['median']:.3f}" in text and "**" not in text  # plain text: pasted by glue:text
    assert text.count(". ") + text.endswith(".") >= 2


def test_the_compact_tables_fit_the_page_and_the_figure_draws_every_auc_claim():
    claims = _claims()
    result = results.Results(pd.DataFrame(), pd.concat([claims, _claims("paper")], ignore_index=True),
                             pd.DataFrame(), pd.DataFrame())
    table = result.compact("Table 3", "fair")
    assert list(table.columns) == list(results.COMPACT_COLUMNS) and len(table) == 2
    assert table["run [95% interval]"].iloc[0] == (f"{claims.loc[2, 'run']:+.3f} [{claims.loc[2, 'ci_low']:+.3f}, "
                                                  f"{claims.loc[2, 'ci_high']:+.3f}]")
    assert result.compact("Speed", "fair")["run [95% interval]"].iloc[0].endswith("x]")
    assert "also_differs" in results.CLAIM_COLUMNS and "also_differs" in claims
    fig = claims_figure(claims, title="fair")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 5 and not any("DeepMIL / probe" in t for t in labels)  # the Speed ratio: another scale
    assert "(paper: no decrease)" in labels[3]
    plt.close(fig)


def _augmentation_splits(n: int = 6) -> pd.DataFrame:
    """Per-split AUCs of the augmentation page: AverageMIL MoCo 0.70, ImageNet 0.75, random_init 0.80, imagenet
    0.78, full 0.82 (plus a split effect shared by all), fair and paper protocols."""
    rows = []
    means = {"full": 0.82, "random_init": 0.80, "imagenet": 0.78, "imagenet_ns": 0.77, "averagemil_moco": 0.70,
             "averagemil_imagenet": 0.75}
    for protocol in ("paper", "fair"):
        for budget in ("full", "12"):
            for k in range(n):
                for method, auc in means.items():
                    rows.append({"method": method, "protocol": protocol, "task": "nsclc_like", "budget": budget,
                                 "split": f"split_{k}", "auc": auc + 0.01 * k + 0.002 * (k % 2) * len(method),
                                 "n_train": 30, "n_test": 10})
    return pd.DataFrame(rows)


def test_table3_sets_the_imagenet_arms_against_the_random_start_and_says_what_else_differs():
    splits = _augmentation_splits()
    t3 = paper.table3(splits, "12", protocol="fair")
    imagenet = t3[t3["comparison"].str.startswith("Giga-SSLim (ImageNet")]
    assert (imagenet["comparison"] == "Giga-SSLim (ImageNet tile encoder) - Giga-SSL, random aggregator start").all()
    direct = (splits.query("method == 'imagenet' and protocol == 'fair' and budget == 'full'")["auc"].to_numpy()
              - splits.query("method == 'random_init' and protocol == 'fair' and budget == 'full'")["auc"].to_numpy())
    assert imagenet[imagenet["regime"].str.endswith("paper: 100%")]["run"].iloc[0] == pytest.approx(direct.mean())
    assert (imagenet["also_differs"] == experiments.FEATURE_DIMS).all()
    assert (t3[t3["comparison"].str.startswith("NS")]["also_differs"] == "").all()
    # without the random-start arm: against full, and the row says it differs in two factors
    old = paper.table3(splits[splits["method"] != "random_init"], "12", protocol="fair")
    old = old[old["comparison"].str.startswith("Giga-SSLim (ImageNet")]
    assert (old["comparison"] == "Giga-SSLim (ImageNet tile encoder) - Giga-SSL").all()
    assert old["also_differs"].str.contains("aggregator start").all()
    assert old["also_differs"].str.contains("1280-d").all()
    assert results.arm_run("Table 3", "random_init", 5) == "ssl_random_init"


def test_encoder_or_ssl_pairs_the_averagemil_controls_with_the_corrected_interval():
    splits = _augmentation_splits()
    rows = paper.encoder_or_ssl(splits, "12")
    assert set(rows["comparison"]) == {"averagemil_imagenet - averagemil_moco", "imagenet - averagemil_imagenet",
                                       "random_init - averagemil_moco"}
    assert len(rows) == 3 * 2 * 2 and set(rows["regime"]) == {"100%", "12 slides"}
    enc = rows[(rows["comparison"] == "averagemil_imagenet - averagemil_moco") & (rows["protocol"] == "fair")
               & (rows["regime"] == "100%")].iloc[0]
    part = splits[(splits["protocol"] == "fair") & (splits["budget"] == "full")]
    d = (part[part["method"] == "averagemil_imagenet"]["auc"].to_numpy()
         - part[part["method"] == "averagemil_moco"]["auc"].to_numpy())
    se = np.sqrt((1 / len(d) + 10 / 30) * d.var(ddof=1))  # Nadeau-Bengio, n_test / n_train = 1/3
    half = stats.t.ppf(0.975, len(d) - 1) * se
    assert enc["run"] == pytest.approx(d.mean()) and enc["ci_high"] == pytest.approx(d.mean() + half, rel=1e-6)
    assert enc["also_differs"] == experiments.FEATURE_DIMS
    table = results.Results(pd.DataFrame(), pd.DataFrame({"protocol": []}), pd.DataFrame(), pd.DataFrame(),
                            rows).controls_table("fair")
    assert len(table) == 6 and table.columns[-1] == "also differs"
    assert paper.encoder_or_ssl(splits[~splits["method"].str.startswith("averagemil")], "12").empty

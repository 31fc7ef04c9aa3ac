"""The baselines of Table 2 and Fig. 2, evaluated on the same splits and budgets as the linear probe.

- AverageMIL: the mean of a slide's plain tile embeddings, standard-scaled, then the same logistic
  regression (:class:`gigassl.evaluation.probe.LinearProbe` with ``preprocessing="standard"``): :func:`average_embeddings`,
  :func:`run_averagemil`.
- DeepMIL: gated attention MIL (Ilse, Tomczak & Welling, ICML 2018) trained from scratch on the bags of
  plain tile embeddings: :class:`gigassl.aggregators.GatedAttentionPool` and a linear classifier, class-
  balanced cross-entropy, Adam with weight decay, early stopping on a stratified, case-grouped validation
  part of each training split (the weights of the lowest validation loss are restored): :class:`DeepMIL`,
  :func:`run_deepmil`.

Bags are read once (:func:`load_bags`, from gigassl banks or TRIDENT/CLAM feature files through
:func:`gigassl.io.read_bank`), held as tensors on the device, and padded per mini-batch into (B, K, F)
with a mask. Randomness: model initialisation inside :func:`gigassl.seeding.torch_seeded`, dropout inside a
forked torch generator seeded from the same key, batch order from :func:`gigassl.seeding.rng`; the key is
``(seed, split index, budget)``, so a split's result does not depend on the other splits run.
"""

from __future__ import annotations

import copy
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..aggregators import GatedAttentionPool
from ..config import DeepMILConfig, ProbeConfig
from ..errors import ManifestError, suggest
from .labels import load_labels
from .protocol import evaluate_splits, probe_plan, resolve_budgets
from .splits import Split, budget_key, check_ids, plan_splits, validation_split
from ..errors import format_ids
from ..devices import limit_threads, resolve_device
from ..seeding import rng, torch_seeded
from ..files import write_csv_atomic

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- reading bags
def bank_paths(bank_dir: str | os.PathLike, slide_ids) -> dict[str, Path]:
    """The bank (or TRIDENT/CLAM tile-features) file of every slide; raises ManifestError listing the missing."""
    from ..io import features_file

    paths = {sid: features_file(bank_dir, sid) for sid in slide_ids}
    missing = [sid for sid, path in paths.items() if path is None]
    if missing:
        raise ManifestError(
            suggest(
                f"Slides of the splits have no bank file <slide_id>.h5 in {bank_dir} ({format_ids(missing)}).",
                "run `gigassl bank` for them (or point --bank to TRIDENT/CLAM features named <slide_id>.h5)",
                "or remove them from the label table / split files",
            )
        )
    return paths


def load_bags(bank_dir: str | os.PathLike, slide_ids, max_tiles: int | None = None,
              seed: int = 0, failures: dict | None = None) -> dict[str, np.ndarray]:
    """The plain tile embeddings of each slide, {slide_id: (M, F) float32}, read once.

    Bags larger than ``max_tiles`` are subsampled without replacement by ``rng(seed, crc32(slide_id))``.
    ``failures``: a dict that receives {slide_id: reason} for files without any tile (a slide with no tissue) or
    unreadable, which are then left out; None raises on the first.
    """
    bags = {}
    from ..errors import GigasslError
    from ..io import read_bank

    for sid, path in bank_paths(bank_dir, slide_ids).items():
        try:
            plain = read_bank(path, augmented=False).plain_features
            if len(plain) == 0:
                raise ManifestError(f"{path} holds no tile embedding (a slide without tissue tiles).")
        except GigasslError as err:
            if failures is None:
                raise
            failures[sid] = str(err)
            continue
        if max_tiles is not None and len(plain) > int(max_tiles):
            keep = np.sort(rng(seed, zlib.crc32(sid.encode())).choice(len(plain), int(max_tiles), replace=False))
            plain = plain[keep]
        bags[sid] = np.asarray(plain, np.float32)
    return bags


def _usable_bags(bank, slide_ids, max_tiles=None, seed: int = 0) -> tuple[dict, dict]:
    """The bags of ``slide_ids`` ({slide_id: (M, F)}) and the slides left out ({slide_id: reason}): a bank folder's
    empty or unreadable files; a dict of bags is used as it is."""
    if isinstance(bank, dict):
        return bank, {}
    failed: dict = {}
    bags = load_bags(bank, slide_ids, max_tiles, seed, failures=failed)
    if failed:
        log.warning("%d slide(s) left out (no usable tile features): %s", len(failed), ", ".join(failed))
    return bags, failed


def _report_failures(table: pd.DataFrame, failed: dict, out) -> pd.DataFrame:
    """Attach the slides left out to the table (``table.attrs["failures"]``) and, with ``out``, write them to
    ``<out>.failures.csv``."""
    from ..batch import write_failures

    table.attrs["failures"] = dict(failed)
    if out is not None:
        write_failures(Path(f"{out}.failures.csv"), failed)
    return table


def average_embeddings(bank_dir, slide_ids) -> tuple[list[str], np.ndarray]:
    """AverageMIL slide embeddings: the mean of each slide's plain tile embeddings (Table 2).

    Args:
        bank_dir: a folder of banks / TRIDENT / CLAM feature files ``<slide_id>.h5``, or a {slide_id: (M, F)} dict.
    Shape: -> (ids, (S, F) float32), rows in the order of ``slide_ids``.
    """
    slide_ids = [str(s) for s in slide_ids]
    bags = bank_dir if isinstance(bank_dir, dict) else load_bags(bank_dir, slide_ids)
    means = np.stack([np.asarray(bags[s], np.float64).mean(axis=0) for s in slide_ids]).astype(np.float32)
    return slide_ids, means


def _plan(labels, task, splits, n_splits, budgets, train_sizes, probe_config: ProbeConfig, left_out=()):
    frame = load_labels(labels, task)
    frame = frame[~frame["slide_id"].isin(set(left_out))]
    fractions, sizes = resolve_budgets(budgets, train_sizes, probe_config)
    plan = plan_splits(frame, splits=splits, n_splits=probe_config.n_splits if n_splits is None else n_splits,
                       test_fraction=probe_config.test_fraction, budgets=fractions, train_sizes=sizes,
                       seed=probe_config.seed)
    used = sorted({i for s in plan for i in (*s.train_ids, *s.test_ids)})
    return frame, plan, used


def run_averagemil(bank, labels, task: str, *, splits=None, n_splits: int | None = None, budgets=None,
                   train_sizes=None, allow_case_overlap: bool = False, config: ProbeConfig = ProbeConfig(),
                   out=None, protocol: str = "paper") -> pd.DataFrame:
    """The AverageMIL column of Table 2 (``gigassl probe --method averagemil --bank DIR``).

    Same arguments as :func:`gigassl.evaluation.protocol.run_probe`, with ``bank`` a folder of ``<slide_id>.h5`` or a dict of
    bags instead of slide embeddings. Returns the tidy table with method ``averagemil``.
    """
    frame, plan, used = _plan(labels, task, splits, n_splits, budgets, train_sizes, config)
    bags, failed = _usable_bags(bank, used)
    if failed:  # the splits without the slides that have no tile
        frame, plan, used = _plan(labels, task, splits, n_splits, budgets, train_sizes, config, left_out=failed)
    check_ids(plan, set(bags), what="the bags")
    table = probe_plan(average_embeddings(bags, used), frame, plan, task=task, preprocessing="standard",
                       method="averagemil", config=config, allow_case_overlap=allow_case_overlap, protocol=protocol)
    if out is not None:
        write_csv_atomic(table, out)
    return _report_failures(table, failed, out)


# ------------------------------------------------------------------------------------------------------ DeepMIL
class DeepMIL(nn.Module):
    """Gated attention MIL classifier: GatedAttentionPool (Ilse et al. 2018, Eq. 9) then a linear layer.

    Shape: x (B, K, F), mask (B, K) bool or None -> logits (B, n_classes), attention (B, K).
    """

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 128, attention: int = 128, dropout: float = 0.25):
        super().__init__()
        self.pool = GatedAttentionPool(in_dim, hidden, attention, dropout)
        self.classifier = nn.Linear(self.pool.out_dim, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        z, attention = self.pool(x, mask)
        return self.classifier(z), attention

    def forward_packed(self, x: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` on bags stored end to end (:meth:`GatedAttentionPool.forward_packed`): the same logits
        at the cost of the real tiles only. Shape: x (N, F), sizes (B,) -> logits (B, n_classes), attention (N,)."""
        z, attention = self.pool.forward_packed(x, sizes)
        return self.classifier(z), attention


def _packed(bags: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags (M_i, F) end to end: (sum M_i, F) and their sizes (B,) (:meth:`DeepMIL.forward_packed`)."""
    return torch.cat(bags), torch.tensor([len(b) for b in bags], device=bags[0].device)


class DeepMILClassifier:
    """Train a :class:`DeepMIL` from scratch with early stopping; predict class probabilities.

    Training follows the field's practice for attention MIL (CLAM, TransMIL): tile features standardised with the
    mean and std of all tiles of the training bags (``config.standardize``), Adam, class-balanced cross-entropy, a
    budget of ``max_steps`` optimizer steps of ``batch_size`` bags, the validation loss every ``eval_every`` steps,
    and early stopping ``patience`` steps after the best one (whose state is kept); as in CLAM, neither the best
    state nor the stop is taken before ``min_steps`` (CLAM: 50 epochs).

    Args:
        config: hidden, attention, dropout, lr, weight_decay, batch_size, max_steps, eval_every, patience,
            standardize, val_fraction, device, seed (``max_tiles`` applies when bags are read: :func:`load_bags`).
        key: extra integers of the seed key (e.g. split index and budget), see :func:`gigassl.seeding.rng`.
        num_threads: torch CPU threads during fit and predict (restored afterwards); 1 costs the fewest
            CPU-seconds for bags of this size and is the fastest on a busy 2-core machine; None: unchanged.

    Attributes (after fit): classes_, model_, best_step_, steps_ (run), history_ (one row per evaluation: step,
    train_loss (mean over the steps since the last evaluation), val_loss), mean_, std_ (the standardisation).
    """

    def __init__(self, config: DeepMILConfig = DeepMILConfig(), key: tuple[int, ...] = (), num_threads: int | None = 1):
        self.config = config
        self.key = tuple(int(k) for k in key)
        self.num_threads = num_threads

    def _threads(self, device: str):
        return limit_threads(self.num_threads if torch.device(device).type == "cpu" else None)

    def _scaled(self, bags: list) -> list[torch.Tensor]:
        return [(torch.as_tensor(b, dtype=torch.float32, device=self.device_) - self.mean_) / self.std_ for b in bags]

    def _batch_loss(self, model, bags, targets, weights, idx) -> tuple[torch.Tensor, torch.Tensor]:
        target = targets[torch.as_tensor(idx, device=targets.device)]
        logits, _ = model.forward_packed(*_packed([bags[i] for i in idx]))
        loss = nn.functional.cross_entropy(logits, target, weight=weights, reduction="sum")
        return loss, weights[target].sum()

    @torch.no_grad()
    def _eval_loss(self, model, bags, targets, weights) -> float:
        total, norm = 0.0, 0.0
        for start in range(0, len(bags), 64):
            loss, n = self._batch_loss(model, bags, targets, weights, np.arange(start, min(start + 64, len(bags))))
            total, norm = total + float(loss), norm + float(n)
        return total / max(norm, 1e-12)

    def fit(self, bags: list, y, val_bags: list | None = None, val_y=None) -> "DeepMILClassifier":
        """Train on bags (list of (M_i, F) arrays or tensors) and labels y; early-stop on (val_bags, val_y)."""
        self.device_ = resolve_device(self.config.device)
        with self._threads(self.device_):
            return self._fit(bags, y, val_bags, val_y)

    def _fit(self, bags, y, val_bags, val_y) -> "DeepMILClassifier":
        cfg, device = self.config, self.device_
        y = np.asarray(y).astype(str)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ManifestError(f"DeepMIL needs at least two classes in a training split; got {list(self.classes_)}.")
        index = {c: i for i, c in enumerate(self.classes_)}
        raw = [torch.as_tensor(b, dtype=torch.float32, device=device) for b in bags]
        if cfg.standardize:
            tiles = torch.cat(raw)
            self.mean_, self.std_ = tiles.mean(0), tiles.std(0).clamp(min=1e-6)
        else:
            dim = raw[0].shape[1]
            self.mean_, self.std_ = torch.zeros(dim, device=device), torch.ones(dim, device=device)
        fit_bags = self._scaled(raw)
        targets = torch.tensor([index[c] for c in y], device=device)
        counts = torch.bincount(targets, minlength=len(self.classes_)).float()
        weights = (len(y) / (len(self.classes_) * counts.clamp(min=1))).to(device)  # "balanced", as the probe
        val = val_bags is not None and len(val_bags) > 0
        if val:
            val_known = np.isin(np.asarray(val_y).astype(str), self.classes_)
            val_list = [b for b, k in zip(self._scaled(val_bags), val_known) if k]
            val_t = torch.tensor([index[c] for c in np.asarray(val_y).astype(str)[val_known]], device=device)
            val = len(val_list) > 0
        seed, train_seed = (int(s) for s in rng(cfg.seed, *self.key).integers(2**62, size=2))
        with torch_seeded(seed):
            model = DeepMIL(fit_bags[0].shape[1], len(self.classes_), cfg.hidden, cfg.attention, cfg.dropout)
        model = model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, self.best_step_, self.history_ = float("inf"), None, 0, []
        size = min(int(cfg.batch_size), len(fit_bags))
        order, cursor, epoch, running, step = np.empty(0, int), 0, 0, [], 0
        with torch_seeded(train_seed, device):
            model.train()
            while step < int(cfg.max_steps):
                if cursor + size > len(order):  # a new pass over the training bags, keyed by its index
                    order, cursor, epoch = rng(cfg.seed, *self.key, 2, epoch).permutation(len(fit_bags)), 0, epoch + 1
                idx = order[cursor:cursor + size]
                cursor += size
                loss, norm = self._batch_loss(model, fit_bags, targets, weights, idx)
                optimizer.zero_grad(set_to_none=True)
                (loss / norm).backward()
                optimizer.step()
                step += 1
                running.append(float(loss.detach()) / float(norm))
                if step % int(cfg.eval_every) == 0 or step == int(cfg.max_steps):
                    val_loss = float("nan")
                    if val:
                        model.eval()
                        val_loss = self._eval_loss(model, val_list, val_t, weights)
                        model.train()
                        if val_loss < best and step >= int(cfg.min_steps):
                            best, self.best_step_ = val_loss, step
                            best_state = copy.deepcopy(model.state_dict())
                    self.history_.append({"step": step, "epoch": step * size / len(fit_bags),
                                          "train_loss": float(np.mean(running)), "val_loss": val_loss})
                    running = []
                    if val and step >= int(cfg.min_steps) and step - max(self.best_step_, int(cfg.min_steps)) \
                            >= int(cfg.patience):
                        break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            self.best_step_ = step
        self.steps_ = step
        self.model_ = model.eval()
        return self

    @torch.no_grad()
    def predict_proba(self, bags: list) -> np.ndarray:
        """Class probabilities (S, n_classes), columns following ``classes_``."""
        out = []
        with self._threads(self.device_):
            for start in range(0, len(bags), 64):
                chunk = self._scaled(bags[start:start + 64])
                logits, _ = self.model_.forward_packed(*_packed(chunk))
                out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)

    @torch.no_grad()
    def attention(self, bag) -> np.ndarray:
        """The attention weight of each tile of one bag (M, F) -> (M,), summing to 1."""
        with self._threads(self.device_):
            _, weights = self.model_(self._scaled([bag])[0][None])
        return weights[0].cpu().numpy()


def run_deepmil(bank, labels, task: str, *, splits=None, n_splits: int | None = None, budgets=None, train_sizes=None,
                allow_case_overlap: bool = False, config: DeepMILConfig = DeepMILConfig(),
                probe_config: ProbeConfig = ProbeConfig(), num_threads: int | None = 1, out=None,
                curves: list | None = None) -> pd.DataFrame:
    """The DeepMIL column of Table 2 and Fig. 2 (``gigassl probe --method deepmil --bank DIR``).

    Same splits and budgets as :func:`gigassl.evaluation.protocol.run_probe` (``probe_config`` gives n_splits, test_fraction,
    budgets and the split seed); ``bank`` is a folder of ``<slide_id>.h5`` or a {slide_id: (M, F)} dict.
    The validation part (``config.val_fraction`` of each training split, stratified, grouped by case) is
    used for early stopping only. ``config.n_splits`` (when set) runs DeepMIL on the first k splits only (the same
    splits as the probe's first k). Returns the tidy table with method ``deepmil`` plus columns best_step and
    steps; cpu_seconds / wall_seconds cover training and prediction, not reading the bags.

    ``num_threads``: torch CPU threads while training and predicting (see :class:`DeepMILClassifier`).
    ``curves``: a list that receives the learning curves (task, budget, split, step, epoch, train_loss, val_loss).
    """
    if config.n_splits is not None and splits is None:
        n_splits = min(int(probe_config.n_splits if n_splits is None else n_splits), int(config.n_splits))
    frame, plan, used = _plan(labels, task, splits, n_splits, budgets, train_sizes, probe_config)
    bags, failed = _usable_bags(bank, used, config.max_tiles, config.seed)
    if failed:  # the splits without the slides that have no tile
        frame, plan, used = _plan(labels, task, splits, n_splits, budgets, train_sizes, probe_config, left_out=failed)
    device = resolve_device(config.device)
    check_ids(plan, set(bags), what="the bags")
    tensors = {sid: torch.as_tensor(bags[sid], dtype=torch.float32).to(device) for sid in used}
    label_of = dict(zip(frame["slide_id"], frame["label"]))

    def fit_predict(split: Split, index: int):
        key = (index, budget_key(split.budget))
        fit_ids, val_ids = validation_split(frame, split.train_ids, config.val_fraction, rng(config.seed, *key, 1))
        clf = DeepMILClassifier(config, key, num_threads).fit(
            [tensors[i] for i in fit_ids], [label_of[i] for i in fit_ids],
            [tensors[i] for i in val_ids], [label_of[i] for i in val_ids],
        )
        proba = clf.predict_proba([tensors[i] for i in split.test_ids])
        if curves is not None:
            curves.extend({"task": task, "budget": split.budget, "split": split.name, **row} for row in clf.history_)
        return clf.classes_, proba, {"best_step": clf.best_step_, "steps": clf.steps_}

    table = evaluate_splits(plan, frame, fit_predict, method="deepmil", task=task, device=device,
                     allow_case_overlap=allow_case_overlap, seed=config.seed)
    if out is not None:
        write_csv_atomic(table, out)
    return _report_failures(table, failed, out)


def few_tile_task(n_bags: int = 120, tiles: int = 64, dim: int = 32, positive_tiles: int = 2, shift: float = 4.0,
                  seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """A MIL task whose label is carried by a few tiles: the check that DeepMIL trains (its attention should find
    them, where a mean of the tiles dilutes them).

    Every bag has ``tiles`` tile features N(0, I) in ``dim`` dimensions; in the positive bags (half of them,
    alternating) ``positive_tiles`` tiles are moved by ``shift`` along one fixed direction. Returns
    ({slide_id: (tiles, dim) float32}, a label table with slide_id, case_id and the task ``few_tiles``).
    """
    g = rng(seed, 17)
    direction = g.normal(size=dim)
    direction /= np.linalg.norm(direction)
    bags, labels = {}, []
    for i in range(n_bags):
        x = g.normal(size=(tiles, dim))
        positive = i % 2 == 1
        if positive:
            x[g.choice(tiles, positive_tiles, replace=False)] += shift * direction
        sid = f"B{i:04d}"
        bags[sid] = x.astype(np.float32)
        labels.append({"slide_id": sid, "case_id": sid, "few_tiles": "positive" if positive else "negative"})
    return bags, pd.DataFrame(labels)


def average_halves(bags: dict, slide_ids, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two independent AverageMIL embeddings of each slide: the means of two disjoint random halves of its tiles
    (``rng(seed, crc32(slide_id))``), for the alignment diagnostic. Bags of one tile give it twice.

    Shape: -> two (S, F) float32 arrays, rows in the order of ``slide_ids``.
    """
    first, second = [], []
    for sid in slide_ids:
        bag = np.asarray(bags[sid], np.float64)
        order = rng(seed, zlib.crc32(str(sid).encode())).permutation(len(bag))
        half = max(1, len(bag) // 2)
        first.append(bag[order[:half]].mean(0))
        second.append(bag[order[half:]].mean(0) if len(bag) > 1 else bag.mean(0))
    return np.stack(first).astype(np.float32), np.stack(second).astype(np.float32)

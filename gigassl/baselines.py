"""The baselines of Table 2 and Fig. 2, evaluated on the same splits and budgets as the linear probe.

- AverageMIL: the mean of a slide's plain tile embeddings, standard-scaled, then the same logistic
  regression (:class:`gigassl.probe.LinearProbe` with ``preprocessing="standard"``): :func:`average_embeddings`,
  :func:`run_averagemil`.
- DeepMIL: gated attention MIL (Ilse, Tomczak & Welling, ICML 2018) trained from scratch on the bags of
  plain tile embeddings: :class:`gigassl.aggregators.GatedAttentionPool` and a linear classifier, class-
  balanced cross-entropy, Adam with weight decay, early stopping on a stratified, case-grouped validation
  part of each training split (the weights of the lowest validation loss are restored): :class:`DeepMIL`,
  :func:`run_deepmil`.

Bags are read once (:func:`load_bags`, from gigassl banks or TRIDENT/CLAM feature files through
:func:`gigassl.io.read_bank`), held as tensors on the device, and padded per mini-batch into (B, K, F)
with a mask. Randomness: model initialisation inside :func:`gigassl.utils.torch_seeded`, dropout inside a
forked torch generator seeded from the same key, batch order from :func:`gigassl.utils.rng`; the key is
``(seed, split index, budget)``, so a split's result does not depend on the other splits run.
"""

from __future__ import annotations

import contextlib
import copy
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .aggregators import GatedAttentionPool
from .config import DeepMILConfig, ProbeConfig
from .errors import ManifestError, suggest
from .probe import evaluate, probe_plan, resolve_budgets
from .splits import Split, budget_key, check_ids, load_labels, plan_splits, validation_split
from .utils import resolve_device, rng, torch_seeded, write_csv_atomic


# ------------------------------------------------------------------------------------------------- reading bags
def bank_paths(bank_dir: str | os.PathLike, slide_ids) -> dict[str, Path]:
    """``<bank_dir>/<slide_id>.h5`` of every slide; raises ManifestError listing the missing files."""
    bank_dir = Path(bank_dir)
    paths = {sid: bank_dir / f"{sid}.h5" for sid in slide_ids}
    missing = [sid for sid, path in paths.items() if not path.is_file()]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise ManifestError(
            suggest(
                f"{len(missing)} slide(s) of the splits have no bank file <slide_id>.h5 in {bank_dir}: {shown}.",
                "run `gigassl bank` for them (or point --bank to TRIDENT/CLAM features named <slide_id>.h5)",
                "or remove them from the label table / split files",
            )
        )
    return paths


def load_bags(bank_dir: str | os.PathLike, slide_ids, max_tiles: int | None = None,
              seed: int = 0) -> dict[str, np.ndarray]:
    """The plain tile embeddings of each slide, {slide_id: (M, F) float32}, read once.

    Bags larger than ``max_tiles`` are subsampled without replacement by ``rng(seed, crc32(slide_id))``.
    """
    bags = {}
    from .io import read_bank

    for sid, path in bank_paths(bank_dir, slide_ids).items():
        plain = read_bank(path, augmented=False).plain_features
        if len(plain) == 0:
            raise ManifestError(f"Bank {path} holds no tile embedding; re-run `gigassl bank` for {sid!r}.")
        if max_tiles is not None and len(plain) > int(max_tiles):
            keep = np.sort(rng(seed, zlib.crc32(sid.encode())).choice(len(plain), int(max_tiles), replace=False))
            plain = plain[keep]
        bags[sid] = np.asarray(plain, np.float32)
    return bags


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


def _plan(labels, task, splits, n_splits, budgets, train_sizes, probe_config: ProbeConfig):
    frame = load_labels(labels, task)
    fractions, sizes = resolve_budgets(budgets, train_sizes, probe_config)
    plan = plan_splits(frame, splits=splits, n_splits=n_splits or probe_config.n_splits,
                       test_fraction=probe_config.test_fraction, budgets=fractions, train_sizes=sizes,
                       seed=probe_config.seed)
    used = sorted({i for s in plan for i in (*s.train_ids, *s.test_ids)})
    return frame, plan, used


def run_averagemil(bank, labels, task: str, *, splits=None, n_splits: int | None = None, budgets=None,
                   train_sizes=None, allow_case_overlap: bool = False, config: ProbeConfig = ProbeConfig(),
                   out=None) -> pd.DataFrame:
    """The AverageMIL column of Table 2 (``gigassl probe --method averagemil --bank DIR``).

    Same arguments as :func:`gigassl.probe.run_probe`, with ``bank`` a folder of ``<slide_id>.h5`` or a dict of
    bags instead of slide embeddings. Returns the tidy table with method ``averagemil``.
    """
    frame, plan, used = _plan(labels, task, splits, n_splits, budgets, train_sizes, config)
    if isinstance(bank, dict):
        check_ids(plan, set(bank), what="the bags")
    table = probe_plan(average_embeddings(bank, used), frame, plan, task=task, preprocessing="standard",
                       method="averagemil", config=config, allow_case_overlap=allow_case_overlap)
    if out is not None:
        write_csv_atomic(table, out)
    return table


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


@contextlib.contextmanager
def _seeded(seed: int, device: str):
    """Fork the torch generator of ``device`` (and the CPU one), seed it, restore it on exit (dropout)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index]):
            torch.random.default_generator.manual_seed(int(seed))
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
            yield
    else:
        with torch_seeded(seed):
            yield


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` (None: unchanged) and restore the previous value."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batch(bags: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pad bags (M_i, F) into (B, K, F) and a mask (B, K) (None when all bags have the same size)."""
    sizes = [len(b) for b in bags]
    if min(sizes) == max(sizes):
        return torch.stack(bags), None
    x = nn.utils.rnn.pad_sequence(bags, batch_first=True)
    mask = torch.arange(x.shape[1], device=x.device)[None, :] < torch.tensor(sizes, device=x.device)[:, None]
    return x, mask


class DeepMILClassifier:
    """Train a :class:`DeepMIL` from scratch with early stopping; predict class probabilities.

    Args:
        config: hidden, attention, dropout, lr, weight_decay, batch_size, max_epochs, patience, val_fraction,
            device, seed (``max_tiles`` applies when bags are read: :func:`load_bags`).
        key: extra integers of the seed key (e.g. split index and budget), see :func:`gigassl.utils.rng`.
        num_threads: torch CPU threads during fit and predict (restored afterwards); 1 costs the fewest
            CPU-seconds for bags of this size and is the fastest on a busy 2-core machine; None: unchanged.

    Attributes (after fit): classes_, model_, best_epoch_, epochs_ (run), history_ (train/val loss per epoch).
    """

    def __init__(self, config: DeepMILConfig = DeepMILConfig(), key: tuple[int, ...] = (), num_threads: int | None = 1):
        self.config = config
        self.key = tuple(int(k) for k in key)
        self.num_threads = num_threads

    def _threads(self, device: str):
        return torch_threads(self.num_threads if torch.device(device).type == "cpu" else None)

    def _loss(self, model, bags, targets, weights, train: bool, gen=None) -> float:
        cfg = self.config
        order = gen.permutation(len(bags)) if gen is not None else np.arange(len(bags))
        size = cfg.batch_size if train else max(cfg.batch_size, 64)
        total = 0.0
        for start in range(0, len(bags), size):
            idx = order[start:start + size]
            x, mask = _batch([bags[i] for i in idx])
            target = targets[torch.as_tensor(idx, device=targets.device)]
            logits, _ = model(x, mask)
            loss = nn.functional.cross_entropy(logits, target, weight=weights, reduction="sum")
            norm = weights[target].sum()
            if train:
                self.optimizer_.zero_grad(set_to_none=True)
                (loss / norm).backward()
                self.optimizer_.step()
            total += float(loss.detach())
        return total / float(weights[targets].sum())

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
        fit_bags = [torch.as_tensor(b, dtype=torch.float32, device=device) for b in bags]
        targets = torch.tensor([index[c] for c in y], device=device)
        counts = torch.bincount(targets, minlength=len(self.classes_)).float()
        weights = (len(y) / (len(self.classes_) * counts.clamp(min=1))).to(device)  # "balanced", as the probe
        val = val_bags is not None and len(val_bags) > 0
        if val:
            val_list = [torch.as_tensor(b, dtype=torch.float32, device=device) for b in val_bags]
            val_known = np.isin(np.asarray(val_y).astype(str), self.classes_)
            val_list = [b for b, k in zip(val_list, val_known) if k]
            val_t = torch.tensor([index[c] for c in np.asarray(val_y).astype(str)[val_known]], device=device)
            val = len(val_list) > 0
        seed, train_seed = (int(s) for s in rng(cfg.seed, *self.key).integers(2**62, size=2))
        with torch_seeded(seed):
            model = DeepMIL(fit_bags[0].shape[1], len(self.classes_), cfg.hidden, cfg.attention, cfg.dropout)
        model = model.to(device)
        self.optimizer_ = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, self.best_epoch_, self.history_ = float("inf"), None, -1, []
        with _seeded(train_seed, device):
            for epoch in range(int(cfg.max_epochs)):
                model.train()
                train_loss = self._loss(model, fit_bags, targets, weights, True, rng(cfg.seed, *self.key, 2, epoch))
                val_loss = float("nan")
                if val:
                    model.eval()
                    with torch.no_grad():
                        val_loss = self._loss(model, val_list, val_t, weights, False)
                    if val_loss < best:
                        best, self.best_epoch_ = val_loss, epoch
                        best_state = copy.deepcopy(model.state_dict())
                self.history_.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
                if val and epoch - self.best_epoch_ >= int(cfg.patience):
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.history_) - 1
        self.epochs_ = len(self.history_)
        self.model_ = model.eval()
        del self.optimizer_
        return self

    @torch.no_grad()
    def predict_proba(self, bags: list) -> np.ndarray:
        """Class probabilities (S, n_classes), columns following ``classes_``."""
        out = []
        with self._threads(self.device_):
            for start in range(0, len(bags), 64):
                chunk = [torch.as_tensor(b, dtype=torch.float32, device=self.device_) for b in bags[start:start + 64]]
                logits, _ = self.model_(*_batch(chunk))
                out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        return np.concatenate(out).astype(np.float64)


def run_deepmil(bank, labels, task: str, *, splits=None, n_splits: int | None = None, budgets=None, train_sizes=None,
                allow_case_overlap: bool = False, config: DeepMILConfig = DeepMILConfig(),
                probe_config: ProbeConfig = ProbeConfig(), num_threads: int | None = 1, out=None) -> pd.DataFrame:
    """The DeepMIL column of Table 2 and Fig. 2 (``gigassl probe --method deepmil --bank DIR``).

    Same splits and budgets as :func:`gigassl.probe.run_probe` (``probe_config`` gives n_splits, test_fraction,
    budgets and the split seed); ``bank`` is a folder of ``<slide_id>.h5`` or a {slide_id: (M, F)} dict.
    The validation part (``config.val_fraction`` of each training split, stratified, grouped by case) is
    used for early stopping only. Returns the tidy table with method ``deepmil`` plus columns best_epoch and
    epochs; cpu_seconds / wall_seconds cover training and prediction, not reading the bags.

    ``num_threads``: torch CPU threads while training and predicting (see :class:`DeepMILClassifier`).
    """
    frame, plan, used = _plan(labels, task, splits, n_splits, budgets, train_sizes, probe_config)
    device = resolve_device(config.device)
    if isinstance(bank, dict):
        check_ids(plan, set(bank), what="the bags")
        bags = bank
    else:
        bags = load_bags(bank, used, config.max_tiles, config.seed)
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
        return clf.classes_, proba, {"best_epoch": clf.best_epoch_, "epochs": clf.epochs_}

    table = evaluate(plan, frame, fit_predict, method="deepmil", task=task, device=device,
                     allow_case_overlap=allow_case_overlap, seed=config.seed)
    if out is not None:
        write_csv_atomic(table, out)
    return table

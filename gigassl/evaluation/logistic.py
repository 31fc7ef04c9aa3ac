"""The linear probe's logistic regression along a path of C, solved in kernel form (for the fair protocol's inner CV).

The fair protocol (:class:`gigassl.evaluation.probe.TunedLinearProbe`) fits the same L2-penalised, class-weighted logistic
regression as :class:`gigassl.evaluation.probe.LinearProbe` (scikit-learn's objective: ``0.5 ||W||^2 + C sum_i s_i
loss_i``, intercept not penalised; binary: one weight vector and the logistic loss; 3+ classes: the multinomial
loss) for 6 values of C x 3 preprocessings x 3 inner folds of every split: about 50 fits of a few dozen slides in
256-1280 dimensions. With so few rows the solution lies in the span of the rows (the representer theorem,
``W = X^T A``), so Newton's method runs on ``(A, b)`` with the Gram matrix ``K = X X^T``: an (n K + K) linear
system per iteration instead of scikit-learn's per-fit overhead, the path warm-started along increasing C.

Same objective, so the same optimum as scikit-learn's lbfgs up to its tolerance (the test compares the
probabilities); the refit on a split's whole training set stays scikit-learn's (:class:`LinearProbe`).

Why by hand and not scikit-learn's solvers (``benchmarks/logistic.py``, BENCHMARKS.md; demo sizes: 100 slides x
512 dims, 10 values of C, 5 inner folds, binary, one thread): the path takes 0.2 CPU-seconds for 10 training sets
against 1.6 for ``LogisticRegression(lbfgs)`` warm-started along C at the probe's tol (1e-4), 1.6 for
``LogisticRegressionCV``, 3.0 for lbfgs at tol 1e-8 and 8.6 for newton-cholesky; and it is the exact optimum (the
weights within 1e-9 of a newton-cholesky fit at tol 1e-12), where lbfgs at tol 1e-4 is 7% off in the weights,
up to 0.04 off in a fold's AUC, and picks another best C on 5 of 10 training sets (the inner AUCs of neighbouring
Cs are close on a weak signal). The Newton system is (n k + k)-square and costs (n k)^3, so the gain shrinks with
rows and classes: 1.3x with 3 classes, and with 600 slides (inner folds of 480 rows, a paper-sized split) the path
takes 0.73 s against 0.48 for lbfgs and 0.25 for ``LogisticRegressionCV``; the kernel form is for the demo's and
small budgets' inner folds (tens to about a hundred rows, fewer than the dimensions).
"""

from __future__ import annotations

import numpy as np


def _scores(K: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return K @ A + b


def _loss(f: np.ndarray, t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, float]:
    """Probabilities and the weighted loss sum_i s_i loss_i; binary: f (n, 1), t (n, 1) in {0, 1};
    multinomial: f (n, K), t one-hot (n, K)."""
    if f.shape[1] == 1:
        p = 1 / (1 + np.exp(-f))
        loss = np.logaddexp(0, f) - t * f  # -t log p - (1 - t) log(1 - p)
        return p, float(s @ loss[:, 0])
    m = f.max(1, keepdims=True)
    log_z = m + np.log(np.exp(f - m).sum(1, keepdims=True))
    p = np.exp(f - log_z)
    return p, float(s @ (log_z[:, 0] - (f * t).sum(1)))


def _objective(K, A, b, t, s, C) -> tuple[np.ndarray, float]:
    p, loss = _loss(_scores(K, A, b), t, s)
    return p, 0.5 * float(np.einsum("ik,ij,jk->", A, K, A)) + C * loss


def _newton_step(K, A, b, p, t, s, C) -> tuple[np.ndarray, np.ndarray]:
    """The Newton direction (dA, db) of the objective in (A, b) (see the module docstring):
    (I + H K) dA + H 1 db = -(A + G) and 1^T dA = -1^T A, with G, H the gradient and Hessian of the loss in the
    scores."""
    n, k = A.shape
    G = C * s[:, None] * (p - t)
    if k == 1:
        H = (C * s * p[:, 0] * (1 - p[:, 0]))[:, None, None]
    else:
        H = C * s[:, None, None] * (np.einsum("ik,kl->ikl", p, np.eye(k)) - np.einsum("ik,il->ikl", p, p))
    top = np.einsum("ikl,ij->ikjl", H, K).reshape(n * k, n * k) + np.eye(n * k)
    M = np.zeros((n * k + k, n * k + k))
    M[: n * k, : n * k] = top
    M[: n * k, n * k:] = H.reshape(n * k, k)
    M[n * k:, : n * k] = np.tile(np.eye(k), n)
    if k > 1:  # softmax scores are unchanged by b + c: pin that direction (mean of b kept at 0)
        M[n * k:, n * k:] = -1e-9 * np.eye(k)
    rhs = np.concatenate([-(A + G).ravel(), -A.sum(0)])
    step = np.linalg.solve(M, rhs)
    return step[: n * k].reshape(n, k), step[n * k:]


def logistic_path(K: np.ndarray, y: np.ndarray, Cs, sample_weight: np.ndarray, max_iter: int = 100,
                  tol: float = 1e-9) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fit the probe's logistic regression for each C of ``Cs`` (in the order given, each warm-started from the
    previous solution) on rows whose Gram matrix is ``K`` (n, n).

    ``y``: class indices (n,) in 0..n_classes-1 (2 classes: the binary model of scikit-learn, one score; more:
    multinomial). ``sample_weight``: (n,), e.g. the "balanced" class weights. Returns one (A, b) per C, A (n, k) and
    b (k,), k = 1 for two classes else n_classes; the scores of new rows X' are ``(X' X^T) A + b``
    (:func:`predict_proba`).
    """
    y = np.asarray(y)
    n_classes = int(y.max()) + 1
    k = 1 if n_classes <= 2 else n_classes
    t = (y == 1).astype(float)[:, None] if k == 1 else np.eye(k)[y]
    s = np.asarray(sample_weight, dtype=float)
    A, b = np.zeros((len(y), k)), np.zeros(k)
    path = []
    for C in Cs:
        C = float(C)
        p, J = _objective(K, A, b, t, s, C)
        for _ in range(max_iter):
            dA, db = _newton_step(K, A, b, p, t, s, C)
            alpha = 1.0
            while True:  # backtracking: the objective must not increase
                A_new, b_new = A + alpha * dA, b + alpha * db
                p_new, J_new = _objective(K, A_new, b_new, t, s, C)
                if J_new <= J + 1e-12 * abs(J) or alpha < 1e-8:
                    break
                alpha /= 2
            # softmax probabilities and the objective do not change when b moves by a constant: keep mean(b) = 0
            A, b = A_new, b_new - (b_new.mean() if k > 1 else 0.0)
            improvement, p, J = J - J_new, p_new, J_new
            if improvement <= tol * max(1.0, abs(J)):
                break
        path.append((A.copy(), b.copy()))
    return path


def predict_proba(K_new: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Class probabilities (n', n_classes) of rows whose kernel with the training rows is ``K_new`` (n', n)."""
    p, _ = _loss(_scores(K_new, A, b), np.zeros((len(K_new), A.shape[1])), np.zeros(len(K_new)))
    return np.hstack([1 - p, p]) if A.shape[1] == 1 else p


def balanced_weights(y: np.ndarray) -> np.ndarray:
    """scikit-learn's ``class_weight="balanced"`` as sample weights: n / (n_classes * count of the row's class)."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    return (len(y) / (len(classes) * counts))[inverse]

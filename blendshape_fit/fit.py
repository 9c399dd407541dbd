"""Per-frame fit of paper Eq. 1 to detected 2D landmarks, vectorized over frames.

Model: ``y_i = s . P . R . (mean_i + B_exp,i . beta + B_eye,i . e) + t`` with P the
orthographic projection (drop z), beta in [0, 1]^51 and |e| <= ``eye_bound_rad``.

Solver: joint Gauss-Newton over pose and coefficients, for all frames of a chunk at once.

* The translation is eliminated exactly by centring (weighted) landmarks and basis.
* Everything the normal equations need is a weighted moment that is linear or quadratic
  in the coefficients c, so it comes from tensors precomputed once per basis:
  ``C_ab = sum_i w_i B_i,a B_i,b^T`` (3 x 3 x 55 x 55) and, per chunk, the data-basis
  correlation ``U = sum_i w_i y_i B_i^T``. One iteration costs O(55^2) per frame, no
  pass over the 478 points.
* Pose (rotation increment omega, scale) is eliminated by a Schur complement; the reduced
  box-constrained QP in c is solved by projected Gauss-Seidel sweeps vectorized across
  frames, warm-started from the previous iteration (and, across chunks, from the previous
  frame). An optional temporal smoothing term ``smooth_cm2 * ||c_t - c_{t-1}||^2`` couples
  neighbouring frames (Jacobi in time).

Units: landmarks in pixels; internally image heights (isotropic) with y up. Regularization
weights are in cm^2 of model-space residual per unit coefficient^2 (pose-independent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from blendshape_fit.face_model import FaceModel, matrix_to_euler
from shards.codes import (
    CODE_DIM,
    DEPTH_INDEX,
    EXPRESSION_SLICE,
    EYE_SLICE,
    N_EXPRESSION,
    N_EYE,
    ROTATION_SLICE,
    TRANSLATION_SLICE,
)

# Bounds of the fit, per column group.
EXPRESSION_BOUNDS = (0.0, 1.0)  # blendshape weights
EYE_BOUND_RAD = 0.6  # |eye yaw|, |eye pitch| <= 0.6 rad (~34 degrees)


@contextlib.contextmanager
def limit_blas_threads(n_threads: int | None) -> Iterator[None]:
    """Cap BLAS threads (threadpoolctl, when installed) for the many small matrix products here.

    Multi-threaded BLAS on ~1000 x 55 products costs far more in hand-offs than it saves,
    and several times more on a busy machine; ``None`` leaves the library's setting alone.
    """
    if n_threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the process-wide setting applies
        yield
        return
    with threadpool_limits(limits=n_threads, user_api="blas"):
        yield


@dataclass
class FitOptions:
    """Solver settings."""

    n_iterations: int = 4  # joint Gauss-Newton iterations
    n_sweeps_first: int = 8  # Gauss-Seidel sweeps in the first iteration
    n_sweeps: int = 4  # sweeps in later iterations (warm-started)
    ridge_cm2: float = 0.02  # absolute pull of every coefficient towards 0
    ridge_rel: float = 0.05  # extra pull, as a fraction of each coefficient's own frontal weight
    # Gaussian prior on each blendshape, beta_k ~ N(0, rms_k^2) with rms_k the model's
    # ``score_rms`` floored at ``prior_floor``: adds noise_cm2 / rms_k^2 to the ridge, where
    # noise_cm2 is the expected per-coordinate landmark noise variance in model space.
    noise_cm2: float = 0.02
    prior_floor: float = 0.1
    smooth_cm2: float = 0.0  # temporal smoothing weight between consecutive frames
    eye_bound_rad: float = EYE_BOUND_RAD
    chunk_frames: int = 1024  # frames solved together
    blas_threads: int | None = 1  # BLAS threads while fitting (None = leave as configured)


@dataclass
class FitResult:
    """Codes and residuals; rows where ``valid`` is False are NaN."""

    codes: np.ndarray  # (T, 61) float64
    rmse_iod: np.ndarray  # (T,) reprojection RMSE / inter-ocular distance of the fitted face
    valid: np.ndarray  # (T,) bool


def skew_rotation(omega: np.ndarray) -> np.ndarray:
    """Rotation matrices (F, 3, 3) ``exp([omega]x)`` via Rodrigues."""
    theta = np.linalg.norm(omega, axis=-1)
    k = omega / np.maximum(theta, 1e-12)[:, None]
    kx = np.zeros(omega.shape[:-1] + (3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx[:, 1, 0], kx[:, 2, 0], kx[:, 2, 1] = k[:, 2], -k[:, 1], k[:, 0]
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + s * kx + (1.0 - c) * (kx @ kx)


def orthonormal_from_rows(m: np.ndarray) -> np.ndarray:
    """Nearest rotation (F, 3, 3) whose first two rows span the rows of ``m`` (F, 2, 3)."""
    u, _, vt = np.linalg.svd(m, full_matrices=False)
    r12 = u @ vt
    r3 = np.cross(r12[:, 0], r12[:, 1])
    return np.concatenate([r12, r3[:, None, :]], axis=1)


class BlendshapeFitter:
    """Fits 61-d codes to landmark tracks with one precomputed :class:`FaceModel`."""

    def __init__(self, model: FaceModel, options: FitOptions | None = None,
                 point_weights: np.ndarray | None = None) -> None:
        self.model = model
        self.options = options or FitOptions()
        n_pts = model.mean.shape[0]
        w = np.ones(n_pts) if point_weights is None else np.asarray(point_weights, dtype=np.float64)
        self.w = w / w.mean()
        self.wsum = float(self.w.sum())
        b3 = np.concatenate([model.exp_basis, model.eye_basis])  # (K, N, 3)
        self.k = b3.shape[0]
        self.b_flat = b3.reshape(self.k, -1)
        self.b_bar = np.einsum("i,kia->ka", self.w, b3) / self.wsum  # weighted centroid shift per coef
        self.bc3 = b3 - self.b_bar[:, None, :]
        self.bcw = (self.bc3 * self.w[None, :, None]).transpose(1, 2, 0).reshape(n_pts, 3 * self.k)
        c_ab = np.einsum("jia,kib,i->abjk", self.bc3, self.bc3, self.w)  # (3, 3, K, K)
        self.c_flat9 = c_ab.reshape(9, self.k * self.k)
        self.c_for_t = c_ab.transpose(2, 0, 1, 3).reshape(self.k, 9 * self.k)  # T_ab[j] += sum_k c_k C_ab[k, j]
        g_full = c_ab[0, 0] + c_ab[1, 1] + c_ab[2, 2]
        frontal = g_full - c_ab[2, 2]
        self.ridge = self.options.ridge_cm2 + self.options.ridge_rel * np.diag(frontal)
        if model.score_rms is not None and self.options.noise_cm2 > 0:
            rms = np.maximum(np.asarray(model.score_rms, dtype=np.float64), self.options.prior_floor)
            self.ridge[:N_EXPRESSION] += self.options.noise_cm2 / rms**2
        self.neg_c_flat9 = -self.c_flat9
        self.g_ridge_flat = (g_full + np.diag(self.ridge)).reshape(-1)
        eye = self.options.eye_bound_rad
        self.lower = np.concatenate([np.zeros(N_EXPRESSION), -eye * np.ones(N_EYE)])
        self.upper = np.concatenate([np.ones(N_EXPRESSION), eye * np.ones(N_EYE)])
        self.iod_cm = model.inter_ocular_cm

    # -- public API ---------------------------------------------------------------------

    def fit(self, points_px: np.ndarray, width_px: int, height_px: int, valid: np.ndarray | None = None,
            init_codes: np.ndarray | None = None, neutral: np.ndarray | None = None) -> FitResult:
        """Fit codes to landmarks (T, 478, 2+) in pixels of a ``width_px`` x ``height_px`` frame.

        ``valid`` (T,) marks frames with a face (default: rows without NaN). ``init_codes``
        (61,) warm-starts the first frame (e.g. the last frame of the previous segment).
        ``neutral`` (478, 3) cm is an optional per-clip identity offset added to the mean.
        """
        pts = np.asarray(points_px, dtype=np.float64)[..., :2]
        n = pts.shape[0]
        ok = np.isfinite(pts).all(axis=(1, 2))
        valid = ok if valid is None else np.asarray(valid, dtype=bool) & ok
        codes = np.full((n, CODE_DIM), np.nan)
        rmse = np.full(n, np.nan)
        idx = np.flatnonzero(valid)
        mean = self.model.mean if neutral is None else self.model.mean + neutral
        prepared = self.prepare_mean(mean)
        prev = None
        if init_codes is not None:
            prev = np.concatenate([init_codes[EXPRESSION_SLICE], init_codes[EYE_SLICE]])
        with limit_blas_threads(self.options.blas_threads):
            self.fit_chunks(pts, idx, width_px, height_px, mean, prepared, prev, codes, rmse)
        if idx.size:
            codes[idx, ROTATION_SLICE] = np.unwrap(codes[idx, ROTATION_SLICE], axis=0)
        return FitResult(codes=codes, rmse_iod=rmse, valid=valid)

    def fit_chunks(self, pts: np.ndarray, idx: np.ndarray, width_px: int, height_px: int, mean: np.ndarray,
                   prepared: dict[str, np.ndarray], prev: np.ndarray | None, codes: np.ndarray,
                   rmse: np.ndarray) -> None:
        """Solve the frames ``idx`` chunk by chunk, writing into ``codes`` and ``rmse``."""
        for start in range(0, idx.size, self.options.chunk_frames):
            sel = idx[start:start + self.options.chunk_frames]
            y = pts[sel] / float(height_px)
            y[..., 1] *= -1.0  # y up
            coef, rot, scale, trans = self.solve_chunk(y, prepared, prev)
            prev = coef[-1]
            codes[sel] = self.assemble_codes(coef, rot, scale, trans, width_px, height_px)
            rmse[sel] = self.measure_rmse(y, mean, coef, rot, scale, trans)

    # -- solver -----------------------------------------------------------------------

    def prepare_mean(self, mean: np.ndarray) -> dict[str, np.ndarray]:
        """Moments of a (possibly identity-adjusted) mean shape (478, 3) against the basis."""
        mean_bar = self.w @ mean / self.wsum
        mc = mean - mean_bar
        m0 = np.einsum("i,ia,ib->ab", self.w, mc, mc)
        t0 = np.einsum("i,ia,kib->abk", self.w, mc, self.bc3)  # (3, 3, K)
        return {"mean_bar": mean_bar, "mc": mc, "mcw": mc * self.w[:, None], "m0": m0, "t0": t0}

    def solve_chunk(self, y: np.ndarray, prep: dict[str, np.ndarray], warm: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Solve F frames (F, 478, 2) in height units, y up.

        Returns coefficients (F, 55), rotations (F, 3, 3), scales (F,) in image heights per
        cm and translations (F, 2).
        """
        opt = self.options
        f, k = y.shape[0], self.k
        ym = np.einsum("i,fik->fk", self.w, y) / self.wsum
        yc = y - ym[:, None, :]
        yt = yc.transpose(0, 2, 1).reshape(2 * f, -1)  # one BLAS call for all frames
        u = (yt @ self.bcw).reshape(f, 2, 3, k)  # sum_i w y_i Bc_i^T
        y0 = (yt @ prep["mcw"]).reshape(f, 2, 3)
        coef = np.zeros((f, k)) if warm is None else np.tile(warm, (f, 1))
        t0, m0 = prep["t0"], prep["m0"]

        def moments(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            t = t0[None] + (c @ self.c_for_t).reshape(f, 3, 3, k)  # T_ab[j] = sum_i w X_i,a Bc_i,b,j
            sxx = m0[None] + np.einsum("baj,fj->fab", t0, c) + np.einsum("fabj,fj->fab", t, c)
            syx = y0 + np.einsum("fkbj,fj->fkb", u, c)
            return t, sxx, syx

        _, sxx, syx = moments(coef)
        rot = orthonormal_from_rows(syx)
        mpp = rot @ sxx @ rot.transpose(0, 2, 1)
        myp = syx @ rot.transpose(0, 2, 1)
        scale = (myp[:, 0, 0] + myp[:, 1, 1]) / (mpp[:, 0, 0] + mpp[:, 1, 1])
        for it in range(opt.n_iterations):
            t, sxx, syx = moments(coef)
            coef, rot, scale = self.gauss_newton_step(coef, rot, scale, t, sxx, syx, u,
                                                      opt.n_sweeps_first if it == 0 else opt.n_sweeps)
        x_bar = prep["mean_bar"] + coef @ self.b_bar
        trans = ym - scale[:, None] * np.einsum("fkj,fj->fk", rot[:, :2, :], x_bar)
        return coef, rot, scale, trans

    def gauss_newton_step(self, c: np.ndarray, rot: np.ndarray, s: np.ndarray, t: np.ndarray, sxx: np.ndarray,
                          syx: np.ndarray, u: np.ndarray, n_sweeps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One joint step on (rotation, scale, coefficients); all terms divided by s^2."""
        f, k = c.shape
        mpp = rot @ sxx @ rot.transpose(0, 2, 1)  # moments of p = R x
        myp = syx @ rot.transpose(0, 2, 1)
        inv_s = 1.0 / s
        # Pose block (omega_x, omega_y, omega_z, ds), scaled by 1/s^2.
        a = np.zeros((f, 4, 4))
        a[:, 0, 0] = a[:, 1, 1] = mpp[:, 2, 2]
        a[:, 2, 2] = mpp[:, 0, 0] + mpp[:, 1, 1]
        a[:, 3, 3] = (mpp[:, 0, 0] + mpp[:, 1, 1]) * inv_s**2
        a[:, 0, 2] = a[:, 2, 0] = -mpp[:, 0, 2]
        a[:, 1, 2] = a[:, 2, 1] = -mpp[:, 1, 2]
        a[:, 0, 3] = a[:, 3, 0] = -mpp[:, 1, 2] * inv_s
        a[:, 1, 3] = a[:, 3, 1] = mpp[:, 0, 2] * inv_s
        a += 1e-9 * np.eye(4)
        gp = np.empty((f, 4))
        gp[:, 0] = -(myp[:, 1, 2] - s * mpp[:, 1, 2]) * inv_s
        gp[:, 1] = (myp[:, 0, 2] - s * mpp[:, 0, 2]) * inv_s
        gp[:, 2] = (myp[:, 1, 0] - myp[:, 0, 1]) * inv_s
        gp[:, 3] = (myp[:, 0, 0] + myp[:, 1, 1] - s * (mpp[:, 0, 0] + mpp[:, 1, 1])) * inv_s**2
        # Cross block: V_j = R T_j R^T.
        rt = np.matmul(rot, t.reshape(f, 3, 3 * k)).reshape(f, 3, 3, k)  # [a', b, j]
        v = np.matmul(rt.transpose(0, 1, 3, 2).reshape(f, 3 * k, 3), rot.transpose(0, 2, 1)).reshape(f, 3, k, 3)
        bm = np.empty((f, 4, k))  # v[:, a, j, b] = (R T_j R^T)[a, b]
        bm[:, 0] = -v[:, 2, :, 1]
        bm[:, 1] = v[:, 2, :, 0]
        bm[:, 2] = v[:, 0, :, 1] - v[:, 1, :, 0]
        bm[:, 3] = (v[:, 0, :, 0] + v[:, 1, :, 1]) * inv_s[:, None]
        # Coefficient block and gradient.
        r3 = rot[:, 2, :]
        outer = (r3[:, :, None] * r3[:, None, :]).reshape(f, 9)
        # h = G - sum_ab r3_a r3_b C_ab + ridge - Bm^T A^-1 Bm, built in one (F, K, K) buffer.
        h = outer @ self.neg_c_flat9
        h += self.g_ridge_flat
        h = h.reshape(f, k, k)
        t9 = t.reshape(f, 9, k)
        tr_t = t9[:, 0] + t9[:, 4] + t9[:, 8]
        gc = np.einsum("fkb,fkbj->fj", rot[:, :2, :], u) * inv_s[:, None] - tr_t + np.einsum("fa,fak->fk", outer, t9)
        # Schur complement of the pose block.
        sol = np.linalg.solve(a, np.concatenate([gp[..., None], bm], axis=2))
        ainv_gp, ainv_bm = sol[..., 0], sol[..., 1:]
        h -= np.einsum("fpj,fpk->fjk", bm, ainv_bm)
        # Linear term of the QP in c_new: reduced gradient + (Schur complement) c.
        g_red = gc - np.einsum("fpk,fp->fk", bm, ainv_gp) + np.einsum("fjk,fk->fj", h, c) - self.ridge * c
        c_new = self.solve_box_qp(h, g_red, c, n_sweeps)
        dp = ainv_gp - np.einsum("fpk,fk->fp", ainv_bm, c_new - c)
        rot = skew_rotation(dp[:, :3]) @ rot
        s = s + dp[:, 3]
        return c_new, rot, s

    def solve_box_qp(self, h: np.ndarray, g: np.ndarray, c0: np.ndarray, n_sweeps: int) -> np.ndarray:
        """min 1/2 c^T H c - g^T c within the bounds: projected Gauss-Seidel, frames in parallel."""
        smooth = self.options.smooth_cm2 if c0.shape[0] > 1 else 0.0
        c = c0.copy()
        n_nb = np.full(c.shape[0], 2.0)
        n_nb[0] = n_nb[-1] = 1.0
        diag = np.einsum("fjj->fj", h) + (smooth * n_nb[:, None] if smooth > 0 else 0.0)
        lower, upper = self.lower, self.upper
        nb = np.zeros_like(c)
        for _ in range(n_sweeps):
            if smooth > 0:
                nb[:] = 0.0
                nb[1:] += c[:-1]
                nb[:-1] += c[1:]
            for j in range(self.k):
                num = g[:, j] - np.einsum("fk,fk->f", h[:, j, :], c)
                if smooth > 0:
                    num += smooth * (nb[:, j] - n_nb * c[:, j])
                c[:, j] = np.clip(c[:, j] + num / diag[:, j], lower[j], upper[j])
        return c

    def measure_rmse(self, y: np.ndarray, mean: np.ndarray, coef: np.ndarray, rot: np.ndarray,
                     scale: np.ndarray, trans: np.ndarray) -> np.ndarray:
        """Per-frame RMSE over the 478 points, as a fraction of the fitted inter-ocular distance."""
        shape = mean + (coef @ self.b_flat).reshape(coef.shape[0], -1, 3)
        pred = scale[:, None, None] * np.matmul(shape, rot[:, :2, :].transpose(0, 2, 1)) + trans[:, None, :]
        return np.sqrt(((y - pred) ** 2).sum(-1).mean(-1)) / (scale * self.iod_cm)

    def assemble_codes(self, coef: np.ndarray, rot: np.ndarray, scale: np.ndarray, trans: np.ndarray,
                       width_px: int, height_px: int) -> np.ndarray:
        """Pack the 61-d codes (see :mod:`shards.codes`)."""
        out = np.zeros((coef.shape[0], CODE_DIM))
        out[:, EXPRESSION_SLICE] = coef[:, :N_EXPRESSION]
        out[:, EYE_SLICE] = coef[:, N_EXPRESSION:]
        out[:, ROTATION_SLICE] = matrix_to_euler(rot)
        out[:, TRANSLATION_SLICE.start] = trans[:, 0] * height_px / width_px
        out[:, TRANSLATION_SLICE.start + 1] = -trans[:, 1]
        out[:, DEPTH_INDEX] = -np.log(scale)
        return out

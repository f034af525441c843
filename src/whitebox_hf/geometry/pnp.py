"""Camera recovery from 2D-3D correspondences: Cupid's PnP (spec threed_and_motion.md §2.4, ``pose_utils.py``
"dlt"), with the Hartley normalisation Cupid skips and an optional Gauss-Newton refinement of the reprojection error.

The direct linear transform (Hartley & Zisserman, *Multiple View Geometry*, 2nd ed., §7.1, Algorithm 7.1) solves
``min_P Σ_i ‖π(P, x_i) − u_i‖²`` linearly: each correspondence gives the two rows ``[X̃ᵀ, 0ᵀ, −u·X̃ᵀ]`` and
``[0ᵀ, X̃ᵀ, −v·X̃ᵀ]`` of ``A ∈ R^{2N×12}`` and ``p`` is the right singular vector of A's smallest singular value.
The 11 degrees of freedom of P need N ≥ 6 points, and points on one plane leave P undetermined (H&Z §7.1.1: the
critical configurations). P is then factored as ``λ·K·[R | t]`` by RQ (H&Z §6.2.4).

Everything is computed in float64 whatever the inputs' dtype (the normal equations of a DLT square the condition
number); results come back in the inputs' dtype."""

from __future__ import annotations

from typing import NamedTuple

import roma
import torch

from ._checks import check_like, check_matrix, check_points, check_weights

__all__ = ["PnPSolution", "decompose_projection_matrix", "refine_pose", "solve_pnp_dlt"]

MIN_POINTS = 6


class PnPSolution(NamedTuple):
    """A recovered camera: ``x_cam = R·x + t``, ``uv ~ K·x_cam`` (OpenCV), and the weighted RMS reprojection error
    ``sqrt(Σ w_i ‖π(x_i) − u_i‖² / Σ w_i)`` in the units of the image coordinates."""

    intrinsics: torch.Tensor
    rotation: torch.Tensor
    translation: torch.Tensor
    rmse: torch.Tensor


def decompose_projection_matrix(projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factor a 3×4 camera matrix as ``P = λ·K·[R | t]`` (spec §2.4 "Decomposition"; H&Z §6.2.4).

    ``M = P[:, :3] = λ·K·R`` is split by RQ, done as the QR of ``M⁻¹ = Q·U`` (so ``K ∝ U⁻¹``, ``R = Qᵀ``); the signs
    ``D = diag(sign K_ii)`` move into R (``K ← K·D``, ``R ← D·R``) so the focal lengths are positive; ``t = (λK)⁻¹·P[:,
    3]`` is taken before ``K ← K / K₃₃``, which removes λ. P and −P are the same camera, so a P with ``det M < 0`` is
    negated first: that makes ``λ > 0`` and ``det R = +1``. Returns ``(K, R, t)`` with ``K₃₃ = 1``."""
    check_matrix("projection", projection, (3, 4))
    P = projection.to(torch.float64)
    det = torch.linalg.det(P[:, :3])
    scale = torch.linalg.matrix_norm(P[:, :3]) ** 3
    if not bool(det.abs() > 1e-12 * scale):
        raise ValueError(f"`projection` must have an invertible left 3×3 block (a finite camera), got det "
                         f"{det.item():.3g} for a block of norm³ {scale.item():.3g}")
    if det < 0:
        P = -P
    Q, U = torch.linalg.qr(torch.linalg.inv(P[:, :3]))
    K, R = torch.linalg.inv(U), Q.T
    signs = torch.sign(torch.diagonal(K))
    K, R = K * signs[None, :], signs[:, None] * R
    t = torch.linalg.solve(K, P[:, 3])
    K = K / K[2, 2]
    det_r = torch.linalg.det(R)
    if not bool((det_r - 1).abs() < 1e-6):  # cannot happen for det M > 0; a guard against a silent reflection
        raise ValueError(f"`projection` decomposed to a rotation with det {det_r.item():.6g}, expected +1")
    return (K.to(projection.dtype), R.to(projection.dtype), t.to(projection.dtype))


def _similarity_normaliser(points: torch.Tensor, target_rms: float) -> torch.Tensor:
    """Hartley's T (H&Z §4.4.4): translate the centroid to 0 and scale the RMS distance from it to ``target_rms``."""
    centre = points.mean(dim=0)
    rms = (points - centre).square().sum(dim=1).mean().sqrt()
    scale = target_rms / rms
    dim = points.shape[1]
    T = torch.eye(dim + 1, dtype=points.dtype, device=points.device)
    T[:dim, :dim] *= scale
    T[:dim, dim] = -scale * centre
    return T


def _homogeneous(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


def _weighted_rmse(points, uv, K, R, t, weights) -> torch.Tensor:
    camera = points @ R.T + t
    image = camera @ K.T
    residual = image[:, :2] / image[:, 2:] - uv
    return (weights * residual.square().sum(dim=1)).sum().div(weights.sum()).sqrt()


def _check_correspondences(points, uv, weights) -> torch.Tensor:
    """Validate and return float64 weights (ones when ``weights`` is None)."""
    check_points("points", points, 3)
    check_points("uv", uv, 2)
    check_like("uv", uv, "points", points)
    if uv.shape[0] != points.shape[0]:
        raise ValueError(f"`uv` must have one row per point of `points` ({points.shape[0]}), got {uv.shape[0]}")
    if weights is None:
        return torch.ones(points.shape[0], dtype=torch.float64, device=points.device)
    check_weights("weights", weights, points.shape[0], points)
    return weights.to(torch.float64)


def solve_pnp_dlt(points: torch.Tensor, uv: torch.Tensor, weights: torch.Tensor | None = None, *,
                  normalize: bool = True, refine_steps: int = 0, principal_point: tuple[float, float] | None = None,
                  planarity_tolerance: float = 1e-4) -> PnPSolution:
    """Recover ``K, R, t`` from 3D ``points`` ``(N, 3)`` and their image coordinates ``uv`` ``(N, 2)`` (spec §2.4).

    Args:
        points: world points (e.g. Cupid's voxel centres, `voxel_centers`).
        uv: their projections, in any image units (normalised uv as in Cupid's UV cube, or pixels); K comes back in
            the same units.
        weights: optional non-negative ``(N,)`` weights of the squared errors, ``min Σ w_i ‖·‖²``: the DLT rows of
            point i are scaled by ``√w_i``. (Cupid scales the rows by ``w_i``, i.e. weights ``w_i²``.) Points of
            weight 0 are ignored, also by the point count and the coplanarity check.
        normalize: Hartley normalisation (spec §2.4): 3D points centred and scaled to RMS √3, 2D points to RMS √2,
            undone by ``P = T₂⁻¹·P̂·T₃``. Cupid omits it; keep it on unless comparing with Cupid.
        refine_steps: Gauss-Newton steps on the reprojection error after the DLT (`refine_pose`); 0 for the plain DLT.
        principal_point: a known principal point ``(c_x, c_y)`` in the units of ``uv`` (0.5, 0.5 for a centred
            camera in normalised uv). The DLT's K is then replaced by one with zero skew and this principal point,
            and only the focal lengths, R and t are refined (needs ``refine_steps >= 1``). Worth it for compact
            objects: with all five entries of K free, a shift of the principal point trades against a rotation,
            and the rotation error at 1e-3 uv noise can exceed 1° (measured in tests/geometry/test_pnp.py).
        planarity_tolerance: the points count as coplanar (and raise) when the smallest singular value of the
            centred point cloud is below this fraction of the largest.

    Returns:
        `PnPSolution` ``(K, R, t, rmse)`` with positive focal lengths, ``K₃₃ = 1`` and ``det R = +1``.

    Raises:
        ValueError: fewer than 6 points of positive weight, (nearly) coplanar or collinear points, or a degenerate
            DLT solution; TypeError for non-float or mismatched tensors.
    """
    w = _check_correspondences(points, uv, weights)
    if isinstance(normalize, bool) is False:
        raise TypeError(f"`normalize` must be a bool, got {type(normalize).__name__}")
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"`refine_steps` must be a non-negative integer, got {refine_steps!r}")
    if not isinstance(planarity_tolerance, (int, float)) or not 0 < planarity_tolerance < 1:
        raise ValueError(f"`planarity_tolerance` must be a number in (0, 1), got {planarity_tolerance!r}")
    if principal_point is not None:
        if (not isinstance(principal_point, (tuple, list)) or len(principal_point) != 2
                or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in principal_point)):
            raise ValueError(f"`principal_point` must be a (c_x, c_y) pair of numbers or None, got {principal_point!r}")
        if refine_steps < 1:
            raise ValueError(f"`principal_point` needs `refine_steps` >= 1 (the DLT alone cannot impose it), got "
                             f"refine_steps={refine_steps}")
    used = w > 0
    count = int(used.sum())
    if count < MIN_POINTS:
        raise ValueError(f"`points` must hold at least {MIN_POINTS} correspondences of positive weight for the DLT "
                         f"(P has 11 degrees of freedom, 2 equations per point), got {count}")
    X, x, w = points.to(torch.float64)[used], uv.to(torch.float64)[used], w[used]
    spread = torch.linalg.svdvals(X - X.mean(dim=0))
    if not bool(spread[2] > planarity_tolerance * spread[0]):
        raise ValueError(f"`points` must not be coplanar (the DLT is undetermined for points on one plane): the "
                         f"centred points' singular values are {[round(v, 8) for v in spread.tolist()]}, the smallest "
                         f"below planarity_tolerance={planarity_tolerance} × the largest")
    if normalize:
        T3, T2 = _similarity_normaliser(X, 3 ** 0.5), _similarity_normaliser(x, 2 ** 0.5)
        Xh, xh = _homogeneous(X) @ T3.T, _homogeneous(x) @ T2.T
    else:
        Xh, xh = _homogeneous(X), _homogeneous(x)
    u, v = (xh[:, :2] / xh[:, 2:]).unbind(dim=1)
    zeros = torch.zeros_like(Xh)
    rows_u = torch.cat([Xh, zeros, -u[:, None] * Xh], dim=1)
    rows_v = torch.cat([zeros, Xh, -v[:, None] * Xh], dim=1)
    root_w = w.sqrt()[:, None]
    A = torch.cat([root_w * rows_u, root_w * rows_v], dim=0)
    Vh = torch.linalg.svd(A, full_matrices=False).Vh
    P = Vh[-1].reshape(3, 4)
    if normalize:
        P = torch.linalg.solve(T2, P @ T3)
    if torch.linalg.det(P[:, :3]) < 0:  # spec §2.4: P and −P project alike; keep the one with det M > 0
        P = -P
    try:
        K, R, t = decompose_projection_matrix(P)
    except ValueError as error:
        raise ValueError(f"`points`/`uv` give a degenerate DLT solution (no finite camera fits them): {error}") from None
    if principal_point is not None:
        K = K.clone()
        K[0, 1] = 0
        K[0, 2], K[1, 2] = float(principal_point[0]), float(principal_point[1])
        K, R, t, _ = refine_pose(X, x, K, R, t, w, steps=refine_steps, refine_intrinsics="focal")
    elif refine_steps:
        K, R, t, _ = refine_pose(X, x, K, R, t, w, steps=refine_steps)
    rmse = _weighted_rmse(X, x, K, R, t, w)
    dtype = points.dtype
    return PnPSolution(K.to(dtype), R.to(dtype), t.to(dtype), rmse.to(dtype))


def refine_pose(points: torch.Tensor, uv: torch.Tensor, intrinsics: torch.Tensor, rotation: torch.Tensor,
                translation: torch.Tensor, weights: torch.Tensor | None = None, *, steps: int = 10,
                refine_intrinsics: str = "all") -> PnPSolution:
    """Gauss-Newton on the weighted reprojection error ``Σ w_i ‖π(K, R, t; x_i) − u_i‖²`` (spec §2.4's objective;
    H&Z §A6.1), from an initial camera such as the DLT's.

    Parameters: the entries of K chosen by ``refine_intrinsics`` — ``"all"`` five of its upper triangle (``K₃₃ =
    1``), ``"focal"`` only ``f_x, f_y`` (skew and principal point kept as given), ``"none"`` none (the known-camera
    case) — a rotation increment ``R ← exp([ω]×)·R`` (``roma.rotvec_to_rotmat``) and t. Each step solves
    the linearised least squares ``J·δ ≈ −r`` (``torch.linalg.lstsq``, Jacobian by ``torch.func.jacrev``) and halves
    δ until the error decreases; it stops early when no halving helps. Computed in float64."""
    w = _check_correspondences(points, uv, weights)
    check_matrix("intrinsics", intrinsics, (3, 3))
    check_matrix("rotation", rotation, (3, 3))
    check_matrix("translation", translation, (3,))
    for name, value in (("intrinsics", intrinsics), ("rotation", rotation), ("translation", translation)):
        check_like(name, value, "points", points)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be a non-negative integer, got {steps!r}")
    if refine_intrinsics not in ("all", "focal", "none"):
        raise ValueError(f"`refine_intrinsics` must be 'all', 'focal' or 'none', got {refine_intrinsics!r}")
    X, x = points.to(torch.float64), uv.to(torch.float64)
    K0, R0, t0 = intrinsics.to(torch.float64), rotation.to(torch.float64), translation.to(torch.float64)
    if refine_intrinsics == "all":
        rows, cols = torch.triu_indices(3, 3, offset=0)
        keep = ~((rows == 2) & (cols == 2))
        rows, cols = rows[keep], cols[keep]
    else:
        rows = cols = torch.arange(2 if refine_intrinsics == "focal" else 0)
    size = rows.numel()
    root_w = w.sqrt()[:, None]

    def unpack(theta, K_base, R_base):
        if size:
            K = K_base.index_put((rows, cols), theta[:size])
            theta = theta[size:]
        else:
            K = K_base
        R = roma.rotvec_to_rotmat(theta[:3]) @ R_base
        return K, R, theta[3:6]

    def residual(theta, K_base, R_base):
        K, R, t = unpack(theta, K_base, R_base)
        image = (X @ R.T + t) @ K.T
        return (root_w * (image[:, :2] / image[:, 2:] - x)).flatten()

    def cost(r):
        return r.square().sum() if bool(torch.isfinite(r).all()) else torch.tensor(float("inf"), dtype=r.dtype)

    K, R, t = K0, R0, t0
    for _ in range(steps):
        theta = torch.cat([K[rows, cols], torch.zeros(3, dtype=torch.float64, device=X.device), t])
        r = residual(theta, K, R)
        J = torch.func.jacrev(residual)(theta, K, R)
        delta = torch.linalg.lstsq(J, -r[:, None]).solution[:, 0]
        current, improved = cost(r), False
        for _ in range(20):
            candidate = theta + delta
            if cost(residual(candidate, K, R)) < current:
                K, R, t = unpack(candidate, K, R)
                improved = True
                break
            delta = delta / 2
        if not improved:
            break
    R = roma.special_procrustes(R)  # re-project onto SO(3): the composed exponentials drift by rounding only
    rmse = _weighted_rmse(X, x, K, R, t, w)
    dtype = points.dtype
    return PnPSolution(K.to(dtype), R.to(dtype), t.to(dtype), rmse.to(dtype))

"""Frames/s of the learned renderer's per-frame work, with torch alone (no MediaPipe, OpenCV or media):
shared by ``bench/render.py`` and ``bench/gpu_check.py`` (which runs where only torch is installed)."""

from __future__ import annotations

import time


def measure_learned_fps(config: str, batch: int, device: str, n_frames: int, threads: int | None = None,
                        bf16: bool = False) -> float:
    """Frames/s of the learned renderer's per-frame work (random init; source features encoded once)."""
    import torch

    from model.renderer.warpgan import WarpGanRenderer, paper_config, tiny_config

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = WarpGanRenderer(tiny_config() if config == "tiny" else paper_config()).to(device).eval()
        s = model.cfg.image_size
        src = torch.rand(1, 3, s, s, device=device)
        src_codes = torch.zeros(1, 61, device=device)
        drv = torch.zeros(batch, 61, device=device)
        drv[:, 24] = 0.4  # jawOpen
        drv[:, 52] = 0.1  # yaw, radians
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device == "cuda")
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        with torch.no_grad(), autocast:
            feats = model.encode_source(src)
            src_b, feats_b = src.expand(batch, -1, -1, -1), [f.expand(batch, -1, -1, -1) for f in feats]
            codes_b = src_codes.expand(batch, -1)

            def step() -> None:
                model.render_from_features(src_b, feats_b, codes_b, drv)["image"].clamp(0, 1)

            for _ in range(2 if device == "cuda" else 1):  # warm-up (allocator, cuDNN autotune)
                step()
            sync()
            n_iter = max(1, n_frames // batch)
            t0 = time.perf_counter()
            for _ in range(n_iter):
                step()
            sync()
        return n_iter * batch / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)

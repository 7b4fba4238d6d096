"""A small PNG grid of samples (for MLflow trial runs, `autofr-sample` and the report)."""

from __future__ import annotations

import io
import math

import torch


def sample_grid_png(images: torch.Tensor, count: int = 16) -> bytes:
    """A PNG grid of the first ``count`` samples (images in [0, 1]), upscaled to about 128 px a cell."""
    from PIL import Image

    images = images[:count].clamp(0, 1)
    n, channels, height, width = images.shape
    columns = min(8, n)
    rows = math.ceil(n / columns)
    grid = torch.zeros(channels, rows * (height + 2), columns * (width + 2))
    for index in range(n):
        r, c = divmod(index, columns)
        grid[
            :, r * (height + 2) + 1 : r * (height + 2) + 1 + height, c * (width + 2) + 1 : c * (width + 2) + 1 + width
        ] = images[index]
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[..., 0] if channels == 1 else array)
    scale = max(1, 128 // max(height, 1))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

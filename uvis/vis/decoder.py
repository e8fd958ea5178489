"""Mask2Former's multi-scale masked-attention transformer decoder, frame level (MinVIS).

State-dict names (under ``sem_seg_head.predictor.``): ``transformer_self_attention_layers.{i}``
(``self_attn`` = ``nn.MultiheadAttention``, ``norm``), ``transformer_cross_attention_layers.{i}``
(``multihead_attn``, ``norm``), ``transformer_ffn_layers.{i}`` (``linear1``, ``linear2``, ``norm``),
``decoder_norm``, ``query_feat`` and ``query_embed`` (``nn.Embedding`` (Q, D)), ``level_embed``
(``nn.Embedding`` (3, D)), ``class_embed`` (D -> C + 1), ``mask_embed.layers.{0,1,2}`` (3-layer MLP).
No input projections (the pixel decoder already has D channels), dropout 0.

Forward over B images: memory level l = [1/32, 1/16, 1/8][l] flattened to (h_l w_l, B, D) plus
``level_embed[l]``, with a sine position embedding for the keys. Queries start as ``query_feat``
(Q, B, D) with position ``query_embed``. Prediction heads (applied to ``decoder_norm(x)``):
class logits (B, Q, C + 1) and mask logits ``mask_embed(x) . mask_features`` (B, Q, H/4, W/4); the
attention mask of the next layer is ``sigmoid(bilinear(mask, size of that layer's level)) < 0.5``
(a query whose mask would hide every position attends everywhere). Attention runs through
``F.scaled_dot_product_attention`` with the ``nn.MultiheadAttention`` modules' weights (the mask is
shared by the heads). Layer i (level i % 3):
masked cross-attention -> self-attention -> FFN, each residual + post LayerNorm.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uvis.vis.position import sine_position_embedding

NUM_LEVELS = 3
"""Feature levels the decoder cycles through (always 3 in Mask2Former)."""


def multi_head_attention(attn: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         allowed: torch.Tensor | None = None) -> torch.Tensor:
    """``nn.MultiheadAttention`` (its weights, dropout 0) through ``F.scaled_dot_product_attention``.

    Args:
        query: (Lq, B, E); key, value: (Lk, B, E) (sequence first, as the module's default).
        allowed: optional (B, Lq, Lk) bool, True where a query may attend (shared by the heads,
            so no per-head copy of the mask is made).
    Returns:
        (Lq, B, E).
    """
    lq, b, e = query.shape
    heads = attn.num_heads
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = attn.in_proj_bias.chunk(3)

    def split(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w, bias).view(x.shape[0], b, heads, e // heads).permute(1, 2, 0, 3)  # (B, h, L, d)

    mask = None if allowed is None else allowed.unsqueeze(1)
    out = F.scaled_dot_product_attention(split(query, w_q, b_q), split(key, w_k, b_k), split(value, w_v, b_v),
                                         attn_mask=mask)
    return attn.out_proj(out.permute(2, 0, 1, 3).reshape(lq, b, e))


class SelfAttentionLayer(nn.Module):
    """Self-attention among queries (q = k = x + pos, v = x), residual, LayerNorm (post or pre)."""

    def __init__(self, d_model: int, nhead: int, pre_norm: bool = False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """``x``, ``query_pos``: (Q, B, D) -> (Q, B, D)."""
        h = self.norm(x) if self.pre_norm else x
        qk = h + query_pos
        out = x + multi_head_attention(self.self_attn, qk, qk, h)
        return out if self.pre_norm else self.norm(out)


class CrossAttentionLayer(nn.Module):
    """Masked cross-attention from queries to one memory level, residual, LayerNorm."""

    def __init__(self, d_model: int, nhead: int, pre_norm: bool = False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0)
        self.norm = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor | None,
                memory_with_pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        """``x`` (Q, B, D), ``memory`` and ``memory_with_pos`` (= memory + position; the keys)
        (HW, B, D), ``allowed`` (B, Q, HW) bool (True = may attend) -> (Q, B, D)."""
        h = self.norm(x) if self.pre_norm else x
        out = x + multi_head_attention(self.multihead_attn, h + query_pos, memory_with_pos, memory, allowed)
        return out if self.pre_norm else self.norm(out)


class FFNLayer(nn.Module):
    """``linear2(ReLU(linear1(x)))`` + residual, LayerNorm."""

    def __init__(self, d_model: int, dim_feedforward: int, pre_norm: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x) if self.pre_norm else x
        out = x + self.linear2(F.relu(self.linear1(h)))
        return out if self.pre_norm else self.norm(out)


class MLP(nn.Module):
    """``layers`` of Linear with ReLU between them (DETR's MLP)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        outs = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, outs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskedTransformerDecoder(nn.Module):
    """See the module docstring."""

    def __init__(self, num_classes: int, hidden_dim: int = 256, num_queries: int = 100, nheads: int = 8,
                 dim_feedforward: int = 2048, dec_layers: int = 9, pre_norm: bool = False, mask_dim: int = 256):
        super().__init__()
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads, pre_norm) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, dim_feedforward, pre_norm) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.level_embed = nn.Embedding(NUM_LEVELS, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        for layers in (self.transformer_self_attention_layers, self.transformer_cross_attention_layers,
                       self.transformer_ffn_layers):
            for p in layers.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def heads(
        self, x: torch.Tensor, mask_features: torch.Tensor, target_hw: tuple[int, int] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Prediction heads on queries ``x`` (Q, B, D).

        Returns:
            class logits (B, Q, C + 1), mask logits (B, Q, H/4, W/4), the normed queries
            (B, Q, D) and the cross-attention mask of the next layer for ``target_hw``:
            (B, Q, h * w) bool, True where ``sigmoid(mask) >= 0.5`` (may attend), a row with no
            True set to all True (None when ``target_hw`` is None).
        """
        normed = self.decoder_norm(x).transpose(0, 1)
        logits = self.class_embed(normed)
        embed = self.mask_embed(normed)
        masks = torch.einsum("bqc,bchw->bqhw", embed, mask_features)
        if target_hw is None:
            return logits, masks, normed, None
        small = F.interpolate(masks.detach(), size=target_hw, mode="bilinear", align_corners=False)
        allowed = ~(small.sigmoid().flatten(2) < 0.5)  # (B, Q, hw); the reference's mask is its negation
        allowed |= ~allowed.any(-1, keepdim=True)
        return logits, masks, normed, allowed

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor) -> dict[str, Any]:
        """
        Args:
            multi_scale: [1/32, 1/16, 1/8] maps, each (B, D, h_l, w_l).
            mask_features: (B, mask_dim, H/4, W/4).
        Returns:
            ``pred_logits`` (B, Q, C + 1), ``pred_masks`` (B, Q, H/4, W/4), ``pred_embds`` (B, Q, D)
            (``decoder_norm`` of the last layer's queries), ``aux_outputs``: ``dec_layers`` dicts
            {pred_logits, pred_masks}, entry i = after i layers (0 = heads on ``query_feat``).
        """
        if len(multi_scale) != NUM_LEVELS:
            raise ValueError(f"the decoder needs {NUM_LEVELS} feature levels, got {len(multi_scale)}")
        sizes = [(int(f.shape[2]), int(f.shape[3])) for f in multi_scale]
        b, d = multi_scale[0].shape[:2]
        memory, keys = [], []
        for i, f in enumerate(multi_scale):
            mem = (f.flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1).contiguous()
            pe = sine_position_embedding(*sizes[i], d // 2, device=f.device, dtype=f.dtype)
            memory.append(mem)
            keys.append(mem + pe.flatten(1).t().unsqueeze(1))  # (hw, B, D): keys = memory + position
        query_pos = self.query_embed.weight.unsqueeze(1).expand(-1, b, -1)
        x = self.query_feat.weight.unsqueeze(1).expand(-1, b, -1)
        logits, masks, normed, attn = self.heads(x, mask_features, sizes[0])
        aux = []
        for i in range(self.num_layers):
            aux.append({"pred_logits": logits, "pred_masks": masks})
            level = i % NUM_LEVELS
            x = self.transformer_cross_attention_layers[i](x, memory[level], attn, keys[level], query_pos)
            x = self.transformer_self_attention_layers[i](x, query_pos)
            x = self.transformer_ffn_layers[i](x)
            last = i == self.num_layers - 1
            logits, masks, normed, attn = self.heads(x, mask_features, None if last else sizes[(i + 1) % NUM_LEVELS])
        return {"pred_logits": logits, "pred_masks": masks, "pred_embds": normed, "aux_outputs": aux}

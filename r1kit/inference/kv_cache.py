"""A static KV cache (gpt-fast style): preallocated buffers, one `update` per layer.

The token at position p of row b lives in slot p of row b, so rows of a batch can sit at
different positions (ragged prompts, right-padded): a row's query at position p sees slots 0..p,
which it has all written itself. Slots beyond a row's position may hold stale values (padding,
an abandoned branch); causal masking never lets a query see them, and they are overwritten when
the row gets there.

Usage per forward call: `start(positions_BT, is_symbol_BT)` once (the model does it), then each
layer's attention calls `update(layer, k, v)` and receives the visible keys and values.

Shape legend: L layers, B rows, G key/value heads, S_max capacity, S visible slots, T new tokens, D head dim.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        max_seq_len: int,
        n_kv_heads: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        shape = (n_layers, batch_size, n_kv_heads, max_seq_len, head_dim)
        self.k_LBGSD = torch.zeros(shape, dtype=dtype, device=device)
        self.v_LBGSD = torch.zeros(shape, dtype=dtype, device=device)
        self.is_symbol_BS = torch.zeros(batch_size, max_seq_len, dtype=torch.bool, device=device)
        self.max_seq_len = max_seq_len
        self.length = 0  # visible slots this step: 1 + the largest position written so far
        self.row_length_B = torch.zeros(batch_size, dtype=torch.long)  # per row: 1 + its largest position written
        self._rows_BT: torch.Tensor | None = None
        self._positions_BT: torch.Tensor | None = None
        self._slots: slice | None = None
        self._rows_N: torch.Tensor | None = None  # `narrow`: the rows this forward still carries (None: all)

    @classmethod
    def for_model(cls, model, batch_size: int, max_seq_len: int | None = None, dtype: torch.dtype | None = None) -> "KVCache":
        cfg = model.config
        param = next(model.parameters())
        return cls(cfg.n_layers, batch_size, max_seq_len or cfg.max_seq_len, cfg.kv_heads, cfg.head_dim,
                   dtype=dtype or param.dtype, device=param.device)

    @property
    def batch_size(self) -> int:
        return self.k_LBGSD.shape[1]

    def start(self, positions_BT: torch.Tensor, is_symbol_BT: torch.Tensor) -> None:
        """Begin a forward step that writes tokens at `positions_BT` (int64, [B, T])."""
        B, T = positions_BT.shape
        if B != self.batch_size:
            raise ValueError(f"cache holds {self.batch_size} rows but the input has {B}")
        last = int(positions_BT.max())
        if int(positions_BT.min()) < 0 or last >= self.max_seq_len:
            raise ValueError(f"positions must lie in [0, {self.max_seq_len}) for this cache, got up to {last}")
        self._rows_BT = torch.arange(B, device=positions_BT.device)[:, None].expand(B, T)
        self._rows_N = None
        self._positions_BT = positions_BT
        # every row writing the same run of slots (batch 1, or a decode step in lockstep): a plain
        # slice assignment per layer instead of advanced indexing, which is much cheaper per step
        first = int(positions_BT[0, 0])
        same = B == 1 or bool((positions_BT == positions_BT[:1]).all())
        self._slots = slice(first, first + T) if same and int(positions_BT[0, -1]) - first == T - 1 else None
        self.is_symbol_BS[self._rows_BT, positions_BT] = is_symbol_BT
        self.row_length_B = torch.maximum(self.row_length_B, positions_BT.max(dim=1).values.cpu() + 1)
        self.length = max(self.length, last + 1)

    def narrow(self, rows_N: torch.Tensor) -> None:
        """For the rest of this forward, only these of the rows still running (some left at an
        early exit): later layers write and read theirs alone (KVCacheLike)."""
        self._rows_N = rows_N if self._rows_N is None else self._rows_N.index_select(0, rows_N)

    def update(self, layer: int, k_BGTD: torch.Tensor, v_BGTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._rows_N is not None:
            return self._update_rows(layer, k_BGTD, v_BGTD, self._rows_N)
        if self._slots is not None:
            self.k_LBGSD[layer, :, :, self._slots] = k_BGTD
            self.v_LBGSD[layer, :, :, self._slots] = v_BGTD
        else:  # advanced indexing on (row, slot) puts those dims first: the values go in as [B, T, G, D]
            self.k_LBGSD[layer][self._rows_BT, :, self._positions_BT] = k_BGTD.transpose(1, 2).to(self.k_LBGSD.dtype)
            self.v_LBGSD[layer][self._rows_BT, :, self._positions_BT] = v_BGTD.transpose(1, 2).to(self.v_LBGSD.dtype)
        return self.k_LBGSD[layer, :, :, : self.length], self.v_LBGSD[layer, :, :, : self.length]

    def _update_rows(self, layer: int, k_NGTD: torch.Tensor, v_NGTD: torch.Tensor, rows_N: torch.Tensor):
        """`update` for a narrowed forward: N of the B rows write, and get their visible keys back
        (a copy, gathered by row)."""
        k_BGSD, v_BGSD = self.k_LBGSD[layer], self.v_LBGSD[layer]
        if self._slots is not None:
            k_BGSD[:, :, self._slots].index_copy_(0, rows_N, k_NGTD.to(k_BGSD.dtype))
            v_BGSD[:, :, self._slots].index_copy_(0, rows_N, v_NGTD.to(v_BGSD.dtype))
        else:
            rows_NT, positions_NT = self._rows_BT.index_select(0, rows_N), self._positions_BT.index_select(0, rows_N)
            k_BGSD[rows_NT, :, positions_NT] = k_NGTD.transpose(1, 2).to(k_BGSD.dtype)
            v_BGSD[rows_NT, :, positions_NT] = v_NGTD.transpose(1, 2).to(v_BGSD.dtype)
        return k_BGSD[:, :, : self.length].index_select(0, rows_N), v_BGSD[:, :, : self.length].index_select(0, rows_N)

    def visible_symbols(self) -> torch.Tensor:
        return self.is_symbol_BS[:, : self.length]

    def reset(self) -> None:
        self.length = 0
        self.row_length_B.zero_()

    def select_rows(self, rows: torch.Tensor) -> None:
        """Keep (or repeat) rows in the given order: drops finished sequences from the batch, or
        copies a prompt's cache into several samples. The visible length shrinks to the longest
        row kept, so a long finished row stops costing attention."""
        self.k_LBGSD = self.k_LBGSD.index_select(1, rows)
        self.v_LBGSD = self.v_LBGSD.index_select(1, rows)
        self.is_symbol_BS = self.is_symbol_BS.index_select(0, rows)
        self.row_length_B = self.row_length_B.index_select(0, rows.cpu())
        self.length = int(self.row_length_B.max()) if len(self.row_length_B) else 0

    def grow(self, max_seq_len: int) -> None:
        """Raise the capacity to max_seq_len slots (new slots zero), keeping what is written."""
        extra = max_seq_len - self.max_seq_len
        if extra <= 0:
            return
        pad = (0, 0, 0, extra)  # the slot dim, second from last
        self.k_LBGSD = torch.nn.functional.pad(self.k_LBGSD, pad)
        self.v_LBGSD = torch.nn.functional.pad(self.v_LBGSD, pad)
        self.is_symbol_BS = torch.nn.functional.pad(self.is_symbol_BS, (0, extra))
        self.max_seq_len = max_seq_len

    def append_rows(self, other: "KVCache") -> None:
        """Add another cache's rows after these (sequences joining a running batch); the smaller
        capacity grows to the larger."""
        if other.k_LBGSD.shape[::2] != self.k_LBGSD.shape[::2]:
            raise ValueError("append_rows needs a cache of the same model (layers, heads, head dim)")
        self.grow(other.max_seq_len)
        other.grow(self.max_seq_len)
        self.k_LBGSD = torch.cat([self.k_LBGSD, other.k_LBGSD], dim=1)
        self.v_LBGSD = torch.cat([self.v_LBGSD, other.v_LBGSD], dim=1)
        self.is_symbol_BS = torch.cat([self.is_symbol_BS, other.is_symbol_BS])
        self.row_length_B = torch.cat([self.row_length_B, other.row_length_B])
        self.length = max(self.length, other.length)
